//! The GCS sink against fake-gcs-server on loopback (started by `cargo xtask test`).

use std::sync::Arc;

use auditsync_core::testkit::{backend_env, unique_name as unique};
use auditsync_core::{ErrorKind, ObjectKey, PutOutcome, Sink, SinkOp};
use auditsync_gcs::{GcsConfig, GcsSink};
use bytes::Bytes;
use gcloud_storage::http::buckets::insert::{InsertBucketParam, InsertBucketRequest};

fn config(endpoint: &str, bucket: &str) -> GcsConfig {
    GcsConfig {
        bucket: bucket.into(),
        endpoint: Some(endpoint.into()),
        credentials_file: None,
        anonymous: true,
        resumable_threshold_bytes: 64 << 20,
    }
}

async fn sink_with_bucket(name: &str, tweak: impl FnOnce(&mut GcsConfig)) -> Option<GcsSink> {
    let endpoint = backend_env("EMULATOR_GCS_ENDPOINT")?;
    let bucket = unique(name);
    let mut config = config(&endpoint, &bucket);
    tweak(&mut config);
    let sink = GcsSink::new(config).unwrap();
    let request = InsertBucketRequest {
        name: bucket,
        param: InsertBucketParam {
            project: "test".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    sink.client()
        .await
        .unwrap()
        .insert_bucket(&request)
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
async fn resumable_uploads_are_whole() {
    let Some(sink) = sink_with_bucket("resumable", |c| c.resumable_threshold_bytes = 1 << 20).await
    else {
        return;
    };
    let key = ObjectKey::new("big/file.ndjson").unwrap();
    let body: Bytes = (0..3 << 20)
        .map(|i: u32| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    assert_eq!(
        sink.put(&key, body.clone()).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(sink.get(&key).await.unwrap(), body);
    // fake-gcs-server ignores ifGenerationMatch on resumable sessions (GCS honours it), so
    // create-if-absent is checked here only on multipart uploads (the conformance suite),
    // and the condition on every request by the crate's unit test.
}

#[tokio::test]
async fn a_missing_bucket_is_a_permanent_error_naming_the_bucket() {
    let Some(endpoint) = backend_env("EMULATOR_GCS_ENDPOINT") else {
        return;
    };
    let sink = GcsSink::new(config(&endpoint, "no-such-bucket")).unwrap();
    let err = sink.verify("p").await.unwrap_err();
    assert_eq!(err.op, SinkOp::Put, "{err}");
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("no-such-bucket"), "{err}");
}

#[test]
fn config_errors_name_the_option() {
    auditsync_gcs::link();
    let bad = [
        (serde_json::json!({"bucket": ""}), "bucket"),
        (
            serde_json::json!({"bucket": "b", "anonymous": true, "credentials_file": "/k.json"}),
            "anonymous",
        ),
        (
            serde_json::json!({"bucket": "b", "credential_file": "/k.json"}),
            "credential_file",
        ),
    ];
    for (options, key) in bad {
        let err =
            auditsync_core::registry::build_sink("gcs", options.as_object().unwrap()).unwrap_err();
        assert!(
            err.to_string().contains(&format!("`{key}`")),
            "{key}: {err}"
        );
    }
}

#[tokio::test]
async fn put_options_reach_the_object() {
    let Some(sink) = sink_with_bucket("options", |_| {}).await else {
        return;
    };
    let options = auditsync_core::PutOptions::default()
        .with_content_type("text/csv")
        .with_metadata("auditsync-schema", "warehouse");
    let key = ObjectKey::new("a/file.csv").unwrap();
    assert_eq!(
        sink.put_opts(&key, Bytes::from_static(b"a,b\n"), &options)
            .await
            .unwrap(),
        PutOutcome::Created
    );
    let bucket = sink
        .describe()
        .trim_start_matches("gs://")
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let object = sink
        .client()
        .await
        .unwrap()
        .get_object(&gcloud_storage::http::objects::get::GetObjectRequest {
            bucket,
            object: key.to_string(),
            ..Default::default()
        })
        .await
        .unwrap();
    // fake-gcs-server keeps the metadata of a multipart upload but not its content type;
    // the request's content type is checked by the crate's unit test.
    assert_eq!(
        object
            .metadata
            .as_ref()
            .and_then(|m| m.get("auditsync-schema"))
            .map(String::as_str),
        Some("warehouse")
    );
}
