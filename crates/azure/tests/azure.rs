//! The Azure sink against Azurite on loopback (started by `cargo xtask test`), with an
//! account SAS signed by Azurite's public development key.

use std::sync::Arc;

use auditsync_azure::{account_sas, AzureConfig, AzureSink};
use auditsync_core::testkit::{backend_env, unique_name as unique};
use auditsync_core::{ErrorKind, ObjectKey, PutOutcome, Sink, SinkOp};
use bytes::Bytes;

/// Azurite's well-known development account and key (published by Microsoft).
const ACCOUNT: &str = "devstoreaccount1";
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn sas() -> String {
    account_sas(ACCOUNT, KEY, "racwdl", "2099-01-01T00:00:00Z").unwrap()
}

fn config(url: &str, container: &str, sas_token: &str) -> AzureConfig {
    serde_json::from_value(serde_json::json!({
        "account_url": url,
        "container": container,
        "auth": "sas",
        "sas_token": sas_token,
    }))
    .unwrap()
}

async fn sink_with_container(name: &str) -> Option<AzureSink> {
    let url = backend_env("EMULATOR_AZURE_URL")?;
    let sink = AzureSink::new(config(&url, &unique(name), &sas())).unwrap();
    sink.container_client().create(None).await.unwrap();
    Some(sink)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let Some(sink) = sink_with_container("conformance").await else {
        return;
    };
    auditsync_core::testkit::run_conformance(Arc::new(sink), "prefix/run").await;
}

#[tokio::test]
async fn block_uploads_are_create_if_absent() {
    let Some(sink) = sink_with_container("blocks").await else {
        return;
    };
    let key = ObjectKey::new("big/file.csv.zst").unwrap();
    // 8 MiB blocks: three staged blocks, one commit
    let body: Bytes = (0..20 << 20)
        .map(|i: u32| (i % 253) as u8)
        .collect::<Vec<_>>()
        .into();
    assert_eq!(
        sink.put(&key, body.clone()).await.unwrap(),
        PutOutcome::Created
    );
    let other: Bytes = vec![1u8; 9 << 20].into();
    assert_eq!(
        sink.put(&key, other).await.unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(sink.get(&key).await.unwrap(), body, "not overwritten");
}

#[tokio::test]
async fn blocks_go_up_through_the_kit_driver_with_the_put_options() {
    use azure_storage_blob::models::{BlobClientGetPropertiesResultHeaders, BlockListType};
    let Some(url) = backend_env("EMULATOR_AZURE_URL") else {
        return;
    };
    let mut config = config(&url, &unique("kit-blocks"), &sas());
    config.block_size_bytes = 1 << 20;
    config.parallel_blocks = 3;
    let sink = AzureSink::new(config).unwrap();
    sink.container_client().create(None).await.unwrap();
    let key = ObjectKey::new("big/file.ndjson.gz").unwrap();
    // 5.5 blocks: five whole ones and a short last one, in order.
    let body: Bytes = (0..(11 << 19))
        .map(|i: u32| (i % 241) as u8)
        .collect::<Vec<_>>()
        .into();
    let options = auditsync_core::PutOptions::default()
        .with_content_type("application/x-ndjson")
        .with_metadata("first-seq", "7");
    assert_eq!(
        sink.put_opts(&key, body.clone(), &options).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(sink.get(&key).await.unwrap(), body);
    let blob = sink.container_client().blob_client(key.as_str());
    let blocks = blob
        .block_blob_client()
        .get_block_list(BlockListType::Committed, None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    let sizes: Vec<i64> = blocks
        .committed_blocks
        .unwrap_or_default()
        .iter()
        .map(|b| b.size.unwrap_or_default())
        .collect();
    assert_eq!(
        sizes,
        [1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 19]
    );
    let properties = blob.get_properties(None).await.unwrap();
    assert_eq!(
        properties.content_type().unwrap().as_deref(),
        Some("application/x-ndjson")
    );
    assert_eq!(
        properties
            .metadata()
            .unwrap()
            .get("first_seq")
            .map(String::as_str),
        Some("7")
    );
}

#[tokio::test]
async fn a_bad_signature_is_denied_and_the_sas_stays_secret() {
    let Some(url) = backend_env("EMULATOR_AZURE_URL") else {
        return;
    };
    let wrong_key = "AAAA".repeat(22);
    let bad = account_sas(ACCOUNT, &wrong_key, "racwdl", "2099-01-01T00:00:00Z").unwrap();
    let sink = AzureSink::new(config(&url, "whatever", &bad)).unwrap();
    let err = sink.verify("p").await.unwrap_err();
    assert_eq!(err.op, SinkOp::Put, "{err}");
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    assert!(!err.is_retryable());
    let text = format!("{err} {err:?}");
    let sig = bad.split("sig=").nth(1).unwrap();
    assert!(!text.contains(sig), "the SAS signature leaked: {text}");
    assert!(text.contains("whatever"), "{text}");
    assert!(!format!("{sink:?}").contains(sig));
    assert!(!sink.describe().contains("sig="));
}

#[tokio::test]
async fn a_missing_container_is_not_found() {
    let Some(url) = backend_env("EMULATOR_AZURE_URL") else {
        return;
    };
    let sink = AzureSink::new(config(&url, "no-such-container", &sas())).unwrap();
    let err = sink.verify("p").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    assert_eq!(err.code.as_deref(), Some("ContainerNotFound"), "{err}");
}

#[test]
fn config_errors_name_the_option() {
    auditsync_azure::link();
    let bad = [
        (
            serde_json::json!({"account_url": "http://x", "container": "c", "auth": "sas"}),
            "sas_token",
        ),
        (
            serde_json::json!({"account_url": "http://x", "container": ""}),
            "container",
        ),
        (
            serde_json::json!({"account_url": "not a url", "container": "c", "sas_token": "sv=1"}),
            "account_url",
        ),
        (
            serde_json::json!({"account_url": "https://x", "container": "c", "auth": "entra", "credential": "client_secret"}),
            "tenant_id",
        ),
        (
            serde_json::json!({"account_url": "https://x", "container": "c", "auth": "kerberos"}),
            "auth",
        ),
    ];
    for (options, key) in bad {
        let err = auditsync_core::registry::build_sink("azure", options.as_object().unwrap())
            .unwrap_err();
        assert!(
            err.to_string().contains(&format!("`{key}`")),
            "{key}: {err}"
        );
    }
}
