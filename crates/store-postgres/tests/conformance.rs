//! The store conformance suite, and the PostgreSQL store's own promises, on a real server
//! (`cargo xtask test` starts one on loopback and sets `EMULATOR_POSTGRES_URL`).

use std::sync::Arc;

use auditsync_core::testkit::{backend_env, unique_name};
use auditsync_store::Store;
use auditsync_store_postgres::{PostgresConfig, PostgresStore};

/// A store in a schema of its own (a fresh, empty store each time).
fn fresh(url: &str) -> PostgresStore {
    PostgresStore::new(PostgresConfig {
        url: url.to_string(),
        password_env: None,
        password_file: None,
        schema: unique_name("t").replace('-', "_"),
        pool_size: 4,
        dedupe_window_days: 7,
        dedupe_max_ids: 10_000_000,
    })
    .unwrap()
}

#[tokio::test]
async fn postgres_passes_the_store_conformance_suite() {
    let Some(url) = backend_env("EMULATOR_POSTGRES_URL") else {
        return;
    };
    auditsync_store::testkit::run(|| {
        let url = url.clone();
        async move { Arc::new(fresh(&url)) as Arc<dyn Store> }
    })
    .await;
}

#[test]
fn the_registry_opens_postgres_by_type() {
    auditsync_store_postgres::link();
    assert!(auditsync_store::registry::store_names().contains(&"postgres"));
}
