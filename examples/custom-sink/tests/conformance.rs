//! What a third-party sink author runs: auditsync's conformance suite on the real backend.

use std::sync::Arc;

use auditsync_core::registry::build_sink;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite() {
    custom_sink::link();
    let dir = tempfile::tempdir().unwrap();
    let options = serde_json::json!({"path": dir.path().join("objects.db")});
    // Built through the registry, as the runner would from a destination's config.
    let sink = build_sink("sqlite-table", options.as_object().unwrap()).unwrap();
    auditsync_core::testkit::run_conformance(Arc::clone(&sink), "conformance").await;
}
