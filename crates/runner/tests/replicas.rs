//! Issue 14: three `auditsync run` replicas share one PostgreSQL outbox (started by
//! `cargo xtask test`); events posted round-robin over HTTP, one replica SIGKILLed twice
//! while exports run, and every acknowledged event is in S3 (moto) and in a volume exactly
//! once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditsync_core::testkit::{backend_env, unique_name};
use auditsync_core::Sink;
use serde_json::{json, Value};

mod support;
use support::{collect_records, line, read_back_skipping_temp_files, records, Client, Env, Server};

/// Events posted; `AUDITSYNC_TEST_REPLICA_EVENTS` raises it (the issue's run: 1,000,000).
fn events() -> u64 {
    std::env::var("AUDITSYNC_TEST_REPLICA_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000)
}
const BATCH: u64 = 100;

async fn s3_sink(endpoint: &str, bucket: &str) -> Arc<dyn Sink> {
    let config = serde_json::from_value(json!({
        "bucket": bucket, "region": "us-east-1", "endpoint": endpoint,
        "force_path_style": true, "access_key_id": "test", "secret_access_key": "test"
    }))
    .unwrap();
    let sink = auditsync_s3::S3Sink::new(config).unwrap();
    sink.client()
        .await
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    Arc::new(sink)
}

async fn read_sink(sink: &dyn Sink) -> HashMap<u64, Value> {
    let mut all = HashMap::new();
    for meta in sink.list("").await.unwrap() {
        let body = sink.get(&meta.key).await.unwrap();
        collect_records(&mut all, records(meta.key.as_str(), &body));
    }
    all
}

#[test]
fn three_replicas_on_one_postgres_export_every_acknowledged_event_once() {
    let (Some(pg), Some(s3)) = (
        backend_env("EMULATOR_POSTGRES_URL"),
        backend_env("EMULATOR_S3_ENDPOINT"),
    ) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = unique_name("replicas");
    let sink = rt.block_on(s3_sink(&s3, &bucket));
    let env = Env::new(json!({}));
    // Written by hand: Env::write_config puts a SQLite store in.
    let config = json!({
        "enableUserEvents": true,
        "namespace": "acme",
        "ueventsSchedule": "@every 1s",
        "ingest": {"listen": "127.0.0.1:0"},
        // `path` only places the export jobs' directory: inside the test's folder.
        "store": {"type": "postgres", "url": pg, "schema": unique_name("r").replace('-', "_"),
                  "path": env.path("db/unused.db")},
        "destinations": [
            {"name": "volume", "type": "pv", "root": env.path("out"), "max_events": 700},
            {"name": "s3", "type": "s3", "bucket": bucket, "region": "us-east-1", "endpoint": s3,
             "force_path_style": true, "access_key_id": "test", "secret_access_key": "test",
             "max_events": 900, "compression": "gzip"},
        ],
    });
    std::fs::write(&env.config, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let start = |i: usize| -> Server {
        support::start_server(
            std::path::Path::new(env!("CARGO_BIN_EXE_auditsync")),
            &env.config,
            &env.path(&format!("replica{i}-{}.log", unique_name("l"))),
        )
    };
    let mut replicas: Vec<Option<Server>> = (0..3).map(|i| Some(start(i))).collect();

    let mut acked = HashSet::new();
    let started = Instant::now();
    let batches = events() / BATCH;
    for b in 0..batches {
        // SIGKILL replica 1 a third of the way in and two thirds in, while exports run
        // (every second, on every replica); it comes back at once.
        if b == batches / 3 || b == 2 * batches / 3 {
            replicas[1].take().unwrap().kill();
            replicas[1] = Some(start(1));
        }
        let body: String = (b * BATCH..(b + 1) * BATCH)
            .map(|n| {
                let mut l = line(n);
                l["id"] = json!(format!("r-{n}"));
                format!("{l}\n")
            })
            .collect();
        // Round-robin; a replica that does not answer is skipped, the batch resent as is.
        let mut sent = false;
        for attempt in 0..3 {
            let server = replicas[(b as usize + attempt) % 3].as_ref().unwrap();
            let Ok(mut client) = Client::connect(server.addr) else {
                continue;
            };
            if let Ok(r) = client.post("application/x-ndjson", None, body.as_bytes()) {
                assert_eq!(r.status, 200, "{}", r.text());
                sent = true;
                break;
            }
        }
        assert!(sent, "batch {b} acknowledged by no replica");
        acked.extend(b * BATCH..(b + 1) * BATCH);
    }
    let posting = started.elapsed();
    eprintln!(
        "{} events acknowledged by 3 replicas in {:.1} s",
        acked.len(),
        posting.as_secs_f64()
    );

    // Every acknowledged event reaches both destinations, once.
    let deadline = Instant::now() + Duration::from_secs(120 + acked.len() as u64 / 5_000);
    loop {
        // The replicas keep exporting (their own events) while this reads, and the one
        // killed mid-export may have left a put's temporary file.
        let volume = read_back_skipping_temp_files(&env.path("out"));
        let in_s3 = rt.block_on(read_sink(sink.as_ref()));
        if volume.len() == acked.len() && in_s3.len() == acked.len() {
            for n in &acked {
                assert!(volume.contains_key(n) && in_s3.contains_key(n), "event {n}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: {} of {} events in the volume, {} in S3",
            volume.len(),
            acked.len(),
            in_s3.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for server in replicas.into_iter().flatten() {
        assert!(server.terminate().success());
    }
    // No replica met another's batch with different bytes at its key.
    for entry in std::fs::read_dir(env.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            let log = std::fs::read_to_string(&path).unwrap();
            assert!(!log.contains("conflict at"), "{}: {log}", path.display());
        }
    }
}
