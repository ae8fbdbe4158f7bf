//! The S3 sink against moto's S3 server on loopback (started by `cargo xtask test`).

use std::sync::Arc;

use auditsync_core::testkit::{backend_env, unique_name};
use auditsync_core::{ErrorKind, ObjectKey, PutOutcome, Sink, SinkOp};
use auditsync_s3::{S3Config, S3Sink};
use bytes::Bytes;

fn config(endpoint: &str, bucket: &str) -> S3Config {
    serde_json::from_value(serde_json::json!({
        "bucket": bucket,
        "region": "us-east-1",
        "endpoint": endpoint,
        "force_path_style": true,
        "access_key_id": "test",
        "secret_access_key": "test",
    }))
    .unwrap()
}

/// A sink on a fresh bucket, or None when the emulator is not running (outside CI).
async fn sink_with_bucket(bucket: &str, tweak: impl FnOnce(&mut S3Config)) -> Option<S3Sink> {
    let endpoint = backend_env("EMULATOR_S3_ENDPOINT")?;
    // A fresh bucket per run: the emulator may outlive one test run.
    let bucket = &unique_name(bucket);
    let mut config = config(&endpoint, bucket);
    tweak(&mut config);
    let sink = S3Sink::new(config).unwrap();
    sink.client()
        .await
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    Some(sink)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let Some(sink) = sink_with_bucket("conformance", |_| {}).await else {
        return;
    };
    auditsync_core::testkit::run_conformance(Arc::new(sink), "prefix/run").await;
}

#[tokio::test]
async fn multipart_uploads_are_whole_and_create_if_absent() {
    let Some(sink) = sink_with_bucket("multipart", |c| {
        c.multipart_threshold_bytes = 6 << 20;
        c.part_size_bytes = 5 << 20;
    })
    .await
    else {
        return;
    };
    let key = ObjectKey::new("big/file.ndjson").unwrap();
    let body: Bytes = (0..12 << 20)
        .map(|i: u32| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    assert_eq!(
        sink.put(&key, body.clone()).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(sink.get(&key).await.unwrap(), body);
    let other: Bytes = vec![7u8; 7 << 20].into();
    assert_eq!(
        sink.put(&key, other).await.unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(sink.get(&key).await.unwrap(), body, "not overwritten");
}

#[tokio::test]
async fn a_missing_bucket_is_a_permanent_error_naming_bucket_and_code() {
    let Some(endpoint) = backend_env("EMULATOR_S3_ENDPOINT") else {
        return;
    };
    let sink = S3Sink::new(config(&endpoint, "no-such-bucket")).unwrap();
    let err = sink.verify("p").await.unwrap_err();
    assert_eq!(err.op, SinkOp::Put);
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert!(!err.is_retryable());
    assert_eq!(err.code.as_deref(), Some("NoSuchBucket"));
    let text = err.to_string();
    assert!(
        text.contains("no-such-bucket") && text.contains("NoSuchBucket"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_transient() {
    // Port 9 on loopback: nothing listens; the connection is refused at once.
    let sink = S3Sink::new(config("http://127.0.0.1:9", "b")).unwrap();
    let err = sink.get(&ObjectKey::new("k").unwrap()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
}

#[test]
fn config_errors_name_the_option_and_debug_hides_secrets() {
    let bad = [
        (serde_json::json!({"bucket": "b", "sse": "rot13"}), "sse"),
        (
            serde_json::json!({"bucket": "b", "access_key_id": "a"}),
            "secret_access_key",
        ),
        (
            serde_json::json!({"bucket": "b", "kms_key_id": "k"}),
            "kms_key_id",
        ),
        (
            serde_json::json!({"bucket": "b", "part_size_bytes": 1024}),
            "part_size_bytes",
        ),
        (serde_json::json!({"bucket": ""}), "bucket"),
        (
            serde_json::json!({"bucket": "b", "external_id": "e"}),
            "role_arn",
        ),
        (serde_json::json!({"bucket": "b", "regoin": "x"}), "regoin"),
    ];
    auditsync_s3::link();
    for (options, key) in bad {
        let err =
            auditsync_core::registry::build_sink("s3", options.as_object().unwrap()).unwrap_err();
        assert!(
            err.to_string().contains(&format!("`{key}`")),
            "{key}: {err}"
        );
    }
    let c = config("http://x", "b");
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("test\"") && shown.contains("static_credentials: true"),
        "{shown}"
    );
}

#[tokio::test]
async fn put_options_reach_the_object_on_single_and_multipart_puts() {
    let Some(sink) = sink_with_bucket("options", |c| {
        c.multipart_threshold_bytes = 6 << 20;
        c.part_size_bytes = 5 << 20;
    })
    .await
    else {
        return;
    };
    let options = auditsync_core::PutOptions::default()
        .with_content_type("application/gzip")
        .with_metadata("auditsync-schema", "uevents");
    for (name, size) in [("small.ndjson.gz", 1_000usize), ("big.ndjson.gz", 11 << 20)] {
        let key = ObjectKey::new(name).unwrap();
        let body: Bytes = vec![3u8; size].into();
        assert_eq!(
            sink.put_opts(&key, body.clone(), &options).await.unwrap(),
            PutOutcome::Created
        );
        let head = sink
            .client()
            .await
            .head_object()
            .bucket(sink_bucket(&sink))
            .key(name)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_type(), Some("application/gzip"), "{name}");
        assert_eq!(
            head.metadata()
                .and_then(|m| m.get("auditsync-schema"))
                .map(String::as_str),
            Some("uevents"),
            "{name}"
        );
        assert_eq!(sink.get(&key).await.unwrap(), body, "bytes stored as given");
    }
}

/// The bucket a sink writes to, from its description (`s3://bucket at endpoint`).
fn sink_bucket(sink: &S3Sink) -> String {
    let described = sink.describe();
    let rest = described.trim_start_matches("s3://");
    rest.split([' ', '/']).next().unwrap().to_string()
}

/// Issue 11, item 3: a multipart upload cut off by SIGKILL stayed open forever (its parts
/// billed), because the resumed batch started a new upload and never aborted the old one.
/// The state a killed attempt leaves is made here with the SDK: an upload created, one part
/// sent, never completed.
#[tokio::test]
async fn a_stale_multipart_upload_of_the_key_is_aborted_when_the_batch_is_put_again() {
    let Some(sink) = sink_with_bucket("stale", |c| {
        c.multipart_threshold_bytes = 6 << 20;
        c.part_size_bytes = 5 << 20;
    })
    .await
    else {
        return;
    };
    let client = sink.client().await;
    let bucket = sink.config().bucket.clone();
    let key = ObjectKey::new("acme/audit/2024/03/01/00/1-100.ndjson").unwrap();
    let neighbour = "acme/audit/2024/03/01/00/1-100.ndjson.other";
    let open_upload = |key: String| {
        let (client, bucket) = (client.clone(), bucket.clone());
        async move {
            let created = client
                .create_multipart_upload()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
                .unwrap();
            let id = created.upload_id().unwrap().to_string();
            client
                .upload_part()
                .bucket(&bucket)
                .key(&key)
                .upload_id(&id)
                .part_number(1)
                .body(vec![1u8; 5 << 20].into())
                .send()
                .await
                .unwrap();
            id
        }
    };
    open_upload(key.to_string()).await;
    let other_id = open_upload(neighbour.to_string()).await;
    let open_uploads = || {
        let (client, bucket) = (client.clone(), bucket.clone());
        async move {
            client
                .list_multipart_uploads()
                .bucket(&bucket)
                .send()
                .await
                .unwrap()
                .uploads
                .unwrap_or_default()
                .into_iter()
                .map(|u| {
                    (
                        u.key().unwrap().to_string(),
                        u.upload_id().unwrap().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(open_uploads().await.len(), 2);
    // The resumed batch: the same key, a multipart put.
    let body: Bytes = vec![9u8; 12 << 20].into();
    assert_eq!(
        sink.put(&key, body.clone()).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(sink.get(&key).await.unwrap(), body);
    // The stale upload of this key is gone; another key's upload is left alone.
    assert_eq!(
        open_uploads().await,
        vec![(neighbour.to_string(), other_id)]
    );
}

/// With `role_arn`, the static keys only assume the role (STS at the same endpoint, as moto
/// serves it), with the external id, and the role's temporary credentials do the writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_is_assumed_with_its_external_id_and_writes() {
    let Some(endpoint) = backend_env("EMULATOR_S3_ENDPOINT") else {
        return;
    };
    let session = unique_name("tenant-a");
    let Some(sink) = sink_with_bucket("role", |c| {
        c.role_arn = Some("arn:aws:iam::123456789012:role/auditsync-writer".into());
        c.external_id = Some("tenant-a-external-id".into());
        c.role_session_name = Some(session.clone());
    })
    .await
    else {
        return;
    };
    sink.verify("").await.unwrap();
    let key = ObjectKey::new("a/b.ndjson").unwrap();
    assert_eq!(
        sink.put(&key, Bytes::from_static(b"{}\n")).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(&sink.get(&key).await.unwrap()[..], b"{}\n");
    // The role really is assumed: with STS unreachable, nothing can be written.
    let mut unreachable = config(&endpoint, &sink_bucket(&sink));
    unreachable.role_arn = Some("arn:aws:iam::123456789012:role/auditsync-writer".into());
    unreachable.sts_endpoint = Some("http://127.0.0.1:9".into());
    let refused = S3Sink::new(unreachable)
        .unwrap()
        .verify("")
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.to_lowercase().contains("credential"), "{refused}");
}
