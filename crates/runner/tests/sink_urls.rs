//! Sink URLs of the stock sinks, each parsed by the sink that registered its scheme.

use auditsync_engine::sink_url::parse;
use serde_json::{json, Value};

#[test]
fn each_scheme_maps_to_its_sink_options_and_prefix() {
    auditsync::plugins::link();
    let s3 = parse("s3://audit-bucket/acme/exports?region=eu-west-1&endpoint=http://127.0.0.1:9000&force_path_style=true").unwrap();
    assert_eq!(s3.kind, "s3");
    assert_eq!(s3.prefix, "acme/exports");
    assert_eq!(
        Value::Object(s3.options),
        json!({"bucket": "audit-bucket", "region": "eu-west-1",
               "endpoint": "http://127.0.0.1:9000", "force_path_style": true})
    );
    let az =
        parse("az://acct/logs/a%20b?endpoint=http://127.0.0.1:10000/devstoreaccount1").unwrap();
    assert_eq!(az.kind, "azure");
    assert_eq!(az.prefix, "a b");
    assert_eq!(az.options["container"], json!("logs"));
    assert_eq!(
        az.options["account_url"],
        json!("http://127.0.0.1:10000/devstoreaccount1")
    );
    let gs = parse("gs://b?anonymous=true").unwrap();
    assert_eq!((gs.kind, gs.prefix.as_str()), ("gcs", ""));
    assert_eq!(gs.options["anonymous"], json!(true));
    let file = parse("file:///var/audit").unwrap();
    assert_eq!(file.kind, "pv");
    assert_eq!(file.options["root"], json!("/var/audit"));
}

#[test]
fn a_bad_url_names_the_part_that_is_wrong() {
    auditsync::plugins::link();
    for (url, part) in [
        ("ftp://x/y", "scheme"),
        ("s3:///prefix", "bucket"),
        ("az://acct", "container"),
        ("s3://b/p?regoin=x", "query parameter `regoin`"),
        (
            "s3://b/p?force_path_style=maybe",
            "query parameter `force_path_style`",
        ),
        ("s3://key:secret@b/p", "credentials"),
        ("file://server/share", "host"),
        ("file:///x?root=/y", "query parameter `root`"),
        ("not a url", "url"),
    ] {
        let err = parse(url).unwrap_err();
        assert_eq!(err.part, part, "{url}: {err}");
        assert!(err.to_string().contains(url), "{err}");
    }
    // The known schemes come from the registry, sorted.
    assert!(parse("ftp://x")
        .unwrap_err()
        .to_string()
        .contains("az://, file://, gs://, s3://"));
}
