//! The store conformance suite, and the PostgreSQL store's own promises, on a real server
//! (`cargo xtask test` starts one on loopback and sets `EMULATOR_POSTGRES_URL`).

use std::sync::Arc;

use auditsync_core::testkit::{backend_env, unique_name};
use auditsync_core::Sink;
use auditsync_store::Store;
use auditsync_store_postgres::{PostgresConfig, PostgresStore};

/// A store in a schema of its own (a fresh, empty store each time).
fn fresh(url: &str) -> PostgresStore {
    PostgresStore::new(PostgresConfig {
        url: url.to_string(),
        password_env: None,
        password_file: None,
        tls: auditsync_store_postgres::TlsMode::Off,
        ca_file: None,
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

/// PostgreSQL keeps destination failures for every replica (the suite accepts a store that
/// keeps none).
#[tokio::test]
async fn postgres_keeps_destination_failures() {
    let Some(url) = backend_env("EMULATOR_POSTGRES_URL") else {
        return;
    };
    let store = fresh(&url);
    assert_eq!(
        store.destination_failures().await.unwrap(),
        Some(Vec::new())
    );
}

#[test]
fn the_registry_opens_postgres_by_type() {
    auditsync_store_postgres::link();
    assert!(auditsync_store::registry::store_names().contains(&"postgres"));
}

/// Issue 14, point 3: a writer whose transaction is still open holds back every later
/// writer, so an export running meanwhile never moves its cursor past an event that commits
/// afterwards with a lower sequence number.
#[tokio::test]
async fn an_export_never_passes_an_event_whose_transaction_is_still_open() {
    use auditsync_engine::{BatchLimits, Compression, Destination, Exporter, FileFormat};
    use auditsync_store::testkit::event;
    use std::time::Duration;

    let Some(url) = backend_env("EMULATOR_POSTGRES_URL") else {
        return;
    };
    auditsync_catalog::link();
    auditsync_ndjson::link();
    let pg = fresh(&url);
    let schema = pg
        .describe()
        .rsplit("schema ")
        .next()
        .unwrap()
        .trim_end_matches(')')
        .to_string();
    let store: Arc<dyn Store> = Arc::new(pg);
    store
        .append_events((1..=3).map(|i| event(&format!("e{i}"), i)).collect())
        .await
        .unwrap();

    // Another writer, by hand, as any writer does: it takes the sequencer and inserts seq 4,
    // and does not commit yet.
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    config.options(format!("-c search_path={schema}"));
    let (mut raw, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let held = raw.transaction().await.unwrap();
    let last: i64 = held
        .query_one("SELECT last_seq FROM sequencer FOR UPDATE", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(last, 3);
    let body = serde_json::to_string(&event("held", 4)).unwrap();
    held.execute(
        "INSERT INTO events (seq, id, time_ms, body) VALUES (4, 'held', 4, $1)",
        &[&body],
    )
    .await
    .unwrap();
    held.execute("UPDATE sequencer SET last_seq = 4", &[])
        .await
        .unwrap();

    // A later writer waits for it instead of committing seq 5 first.
    let later = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .append_events((5..=6).map(|i| event(&format!("e{i}"), i)).collect())
                .await
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(auditsync_pv::PvSink::new(auditsync_pv::PvConfig {
        root: dir.path().to_path_buf(),
        stale_temp_secs: 600,
    }));
    let exporter = Arc::new(Exporter::new(
        store.clone(),
        "acme".into(),
        vec![Destination {
            tenant: None,
            pause: None,
            name: "d".into(),
            sink: sink.clone(),
            format: FileFormat {
                schema: auditsync_core::registry::build_schema("uevents").unwrap(),
                formatter: auditsync_core::registry::build_formatter("ndjson", &Default::default())
                    .unwrap(),
                compression: Compression::None,
            },
            limits: BatchLimits::default(),
        }],
    ));
    let first = exporter.export_once().await;
    assert_eq!((first[0].events, store.cursor("d").await.unwrap()), (3, 3));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !later.is_finished(),
        "a later writer committed while seq 4 was in flight"
    );

    held.commit().await.unwrap();
    let appended = later.await.unwrap().unwrap();
    assert_eq!(
        appended.iter().map(|a| a.seq).collect::<Vec<_>>(),
        vec![5, 6]
    );
    let second = exporter.export_once().await;
    assert_eq!((second[0].events, store.cursor("d").await.unwrap()), (3, 6));

    // Every event in the files exactly once.
    let mut times = Vec::new();
    for meta in sink.list("").await.unwrap() {
        let body = sink.get(&meta.key).await.unwrap();
        for line in std::str::from_utf8(&body).unwrap().lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            times.push(value["createdAt"].as_i64().unwrap());
        }
    }
    times.sort_unstable();
    assert_eq!(times, vec![1, 2, 3, 4, 5, 6]);
}

/// `tls: verify` connects over TLS to a server whose certificate the given CA signed, and
/// refuses the same server when the certificate cannot be verified (the system's roots do
/// not know the test CA).
#[tokio::test]
async fn tls_verifies_the_server_against_the_given_ca() {
    let (Some(url), Some(ca)) = (
        backend_env("EMULATOR_POSTGRES_URL"),
        backend_env("EMULATOR_POSTGRES_CA"),
    ) else {
        return;
    };
    let config = |ca_file: Option<&str>| PostgresConfig {
        url: url.clone(),
        password_env: None,
        password_file: None,
        tls: auditsync_store_postgres::TlsMode::Verify,
        ca_file: ca_file.map(Into::into),
        schema: unique_name("tls").replace('-', "_"),
        pool_size: 2,
        dedupe_window_days: 7,
        dedupe_max_ids: 10_000_000,
    };
    let store = PostgresStore::new(config(Some(&ca))).unwrap();
    assert!(store.describe().ends_with(", TLS)"), "{}", store.describe());
    let appended = store
        .append_events(vec![auditsync_store::testkit::event("tls-1", 1)])
        .await
        .unwrap();
    assert_eq!(appended[0].seq, 1);
    assert_eq!(store.read_after(0, 10, 10).await.unwrap().len(), 1);

    match PostgresStore::new(config(None)) {
        // No system roots at all: refused when built.
        Err(e) => assert!(e.to_string().contains("ca_file"), "{e}"),
        Ok(store) => {
            let err = store.stats().await.unwrap_err();
            let chain = format!("{err} {:?}", std::error::Error::source(&err));
            assert!(
                chain.to_lowercase().contains("certificate") || chain.contains("UnknownIssuer"),
                "{chain}"
            );
        }
    }
    let err = PostgresStore::new(PostgresConfig {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..config(None)
    })
    .unwrap_err();
    assert!(err.to_string().contains("`ca_file`"), "{err}");
}
