//! HTTP ingest throughput and latency against the real `auditsync run` on loopback.
//!
//! - batched: 1,000-event NDJSON posts from 4 keep-alive clients;
//! - single: one-event JSON posts from 64 concurrent keep-alive clients.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p auditsync --bench ingest`).

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::support::{line, new_token, start_server};
mod common;
use common::LoadClient;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Runs `clients` threads, each sending `requests` bodies; returns wall time and latencies.
fn load(
    addr: std::net::SocketAddr,
    token: &str,
    clients: usize,
    requests: usize,
    content_type: &str,
    body: &[u8],
) -> (Duration, Vec<Duration>) {
    let latencies = Mutex::new(Vec::with_capacity(clients * requests));
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..clients {
            scope.spawn(|| {
                let mut client = LoadClient::connect(addr).unwrap();
                let mut mine = Vec::with_capacity(requests);
                for _ in 0..requests {
                    let t = Instant::now();
                    let (status, answer) = client.post(content_type, token, body).unwrap();
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
                    mine.push(t.elapsed());
                }
                latencies.lock().unwrap().extend(mine);
            });
        }
    });
    let wall = start.elapsed();
    let mut latencies = latencies.into_inner().unwrap();
    latencies.sort_unstable();
    (wall, latencies)
}

fn main() {
    let binary = Path::new(env!("CARGO_BIN_EXE_auditsync"));
    let dir = tempfile::tempdir().unwrap();
    let (token, hash) = new_token();
    let config = dir.path().join("bench.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "enableUserEvents": true,
            "ueventsSchedule": "@yearly",
            "ueventsGCSchedule": "@yearly",
            "namespace": "bench",
            "store": {"path": dir.path().join("bench.db")},
            "ingest": {"listen": "127.0.0.1:0", "token_hashes": [hash]},
            "destinations": [{"name": "local", "type": "pv", "root": dir.path().join("out")}],
        })
        .to_string(),
    )
    .unwrap();
    let server = start_server(binary, &config, &dir.path().join("server.log"));

    let batch: String = (0..1_000).map(|i| format!("{}\n", line(i))).collect();
    // warm up
    load(
        server.addr,
        &token,
        2,
        5,
        "application/x-ndjson",
        batch.as_bytes(),
    );
    let (clients, posts) = (8, 60);
    let (wall, lat) = load(
        server.addr,
        &token,
        clients,
        posts,
        "application/x-ndjson",
        batch.as_bytes(),
    );
    let events = (clients * posts * 1_000) as f64;
    println!(
        "ingest batched (1,000-event NDJSON posts, {clients} clients): {:.0} events/s, {:.1} MB/s, post latency p50 {:.1} ms, p99 {:.1} ms",
        events / wall.as_secs_f64(),
        (clients * posts * batch.len()) as f64 / 1e6 / wall.as_secs_f64(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );

    let single = line(1).to_string();
    let (clients, posts) = (64, 300);
    let (wall, lat) = load(
        server.addr,
        &token,
        clients,
        posts,
        "application/json",
        single.as_bytes(),
    );
    println!(
        "ingest single-event posts ({clients} concurrent clients): {:.0} requests/s, latency p50 {:.2} ms, p99 {:.2} ms",
        (clients * posts) as f64 / wall.as_secs_f64(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    assert!(server.terminate().success());
}
