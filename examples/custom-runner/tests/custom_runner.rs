//! The third party's binary runs the stock commands with its own sink, named in the config
//! and as a `sqlite-table://` URL.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(config: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_custom-runner"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("AUDITSYNC_LOG", "warn")
        .output()
        .expect("the custom runner starts");
    assert!(
        out.status.success(),
        "custom-runner {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every (key, body) in a sqlite-table sink's database.
fn table(db: &Path) -> Vec<(String, Vec<u8>)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT key, body FROM objects ORDER BY key")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    rows
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../seed-002-sample.ndjson")
}

#[test]
fn stock_commands_run_with_the_custom_sink_by_name_and_by_url() {
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects.db");
    let config = dir.path().join("auditsync.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "enableUserEvents": true,
            "namespace": "acme",
            "store": {"path": dir.path().join("audit.db")},
            "destinations": [{"name": "table", "type": "sqlite-table", "path": objects}]
        })
        .to_string(),
    )
    .unwrap();

    let sinks = stdout(&run(&config, &["sinks"]));
    assert!(sinks.contains("sqlite-table"), "{sinks}");

    let verify = stdout(&run(&config, &["verify"]));
    assert!(
        verify.contains("table (sqlite-table:") && verify.contains("ok"),
        "{verify}"
    );
    assert!(table(&objects).is_empty(), "verify deletes its test object");

    let ingest = stdout(&run(&config, &["ingest", sample().to_str().unwrap()]));
    assert!(ingest.contains("ingested 3 events"), "{ingest}");

    let export = stdout(&run(&config, &["export", "--once"]));
    assert!(export.contains("table: 1 files"), "{export}");
    let exported = table(&objects);
    assert_eq!(exported.len(), 1, "{exported:?}");
    let (key, body) = &exported[0];
    assert!(
        key.starts_with("acme/audit/") && key.ends_with(".ndjson"),
        "{key}"
    );
    // The three sample events and the verify run's own event.
    let lines = String::from_utf8(body.clone()).unwrap();
    assert_eq!(lines.lines().count(), 4, "{lines}");

    // By name, to a plain directory...
    let copy = dir.path().join("copy");
    let to_dir = format!("file://{}", copy.display());
    let synced = stdout(&run(&config, &["sync", "--from", "table", "--to", &to_dir]));
    assert!(synced.contains("1 copied"), "{synced}");
    assert_eq!(std::fs::read(copy.join(key)).unwrap(), *body);

    // ...and by URL, from the directory into a second table.
    let other = dir.path().join("other.db");
    let to_table = format!("sqlite-table://{}", other.display());
    let synced = stdout(&run(
        &config,
        &["sync", "--from", &to_dir, "--to", &to_table],
    ));
    assert!(synced.contains("1 copied"), "{synced}");
    assert_eq!(table(&other), exported);

    // A second sync finds nothing missing.
    let again = stdout(&run(
        &config,
        &["sync", "--from", "table", "--to", &to_table],
    ));
    assert!(
        again.contains("0 missing in the target") && again.contains("1 identical"),
        "{again}"
    );
}
