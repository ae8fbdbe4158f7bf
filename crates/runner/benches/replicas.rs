//! One outbox, several replicas: HTTP ingest and scheduled export through real `auditsync
//! run` processes on loopback, on SQLite (one replica, for reference) and on PostgreSQL
//! (one and three replicas), on the same machine in the same run.
//!
//! - ingest: 4 keep-alive clients post 1,000-event NDJSON bodies round-robin over the
//!   replicas (exports off): acknowledged events/s;
//! - export: the replicas restarted with a 1-second export schedule drain that backlog into
//!   a volume: events/s until the last event is in a file.
//!
//! Needs `EMULATOR_POSTGRES_URL` (run with `cargo xtask bench replicas [N]`, which starts
//! PostgreSQL).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;
use common::support::{line, new_token, start_server, Server};
use common::LoadClient;

/// Events in the volume, from the keys' sequence ranges (`<first>-<last>.<ext>`; the
/// backlog has no gaps).
fn exported(root: &Path) -> u64 {
    fn walk(dir: &Path, total: &mut u64) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, total);
            } else if let Some((first, last)) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split('.').next())
                .and_then(|n| n.split_once('-'))
            {
                if let (Ok(first), Ok(last)) = (first.parse::<u64>(), last.parse::<u64>()) {
                    *total += last - first + 1;
                }
            }
        }
    }
    let mut total = 0;
    walk(root, &mut total);
    total
}

struct Setup {
    name: &'static str,
    store: serde_json::Value,
    replicas: usize,
}

fn config(dir: &Path, setup: &Setup, hash: &str, export: bool) -> PathBuf {
    let path = dir.join(format!("{}-{}.json", setup.name, export));
    let schedule = if export { "@every 1s" } else { "@yearly" };
    std::fs::write(
        &path,
        serde_json::json!({
            "enableUserEvents": true,
            "ueventsSchedule": schedule,
            "ueventsGCSchedule": "@yearly",
            "namespace": "bench",
            "store": setup.store,
            "ingest": {"listen": "127.0.0.1:0", "token_hashes": [hash]},
            "destinations": [{"name": "local", "type": "pv", "root": dir.join(format!("{}-out", setup.name))}],
        })
        .to_string(),
    )
    .unwrap();
    path
}

fn start(dir: &Path, config: &Path, setup: &Setup) -> Vec<Server> {
    let binary = Path::new(env!("CARGO_BIN_EXE_auditsync"));
    (0..setup.replicas)
        .map(|i| start_server(binary, config, &dir.join(format!("{}-{i}.log", setup.name))))
        .collect()
}

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let Ok(pg) = std::env::var("EMULATOR_POSTGRES_URL") else {
        eprintln!("EMULATOR_POSTGRES_URL is not set: run `cargo xtask bench replicas`");
        std::process::exit(2);
    };
    let dir = tempfile::tempdir().unwrap();
    let (token, hash) = new_token();
    let body: String = (0..1_000).map(|i| format!("{}\n", line(i))).collect();
    let requests = (n / 1_000).max(4) as usize;
    let pid = std::process::id();
    let setups = [
        Setup {
            name: "sqlite-1",
            store: serde_json::json!({"path": dir.path().join("bench.db")}),
            replicas: 1,
        },
        Setup {
            name: "postgres-1",
            store: serde_json::json!({"type": "postgres", "url": pg, "schema": format!("bench1_{pid}"), "path": dir.path().join("pg1.db")}),
            replicas: 1,
        },
        Setup {
            name: "postgres-3",
            store: serde_json::json!({"type": "postgres", "url": pg, "schema": format!("bench3_{pid}"), "path": dir.path().join("pg3.db")}),
            replicas: 3,
        },
    ];
    for setup in &setups {
        let servers = start(dir.path(), &config(dir.path(), setup, &hash, false), setup);
        let addrs: Vec<_> = servers.iter().map(|s| s.addr).collect();
        let started = Instant::now();
        std::thread::scope(|scope| {
            for c in 0..4 {
                let (addrs, token, body) = (&addrs, &token, &body);
                scope.spawn(move || {
                    let mut clients: Vec<LoadClient> = addrs
                        .iter()
                        .map(|a| LoadClient::connect(*a).unwrap())
                        .collect();
                    for r in (c..requests).step_by(4) {
                        let client = &mut clients[r % addrs.len()];
                        let (status, answer) = client
                            .post("application/x-ndjson", token, body.as_bytes())
                            .unwrap();
                        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
                    }
                });
            }
        });
        let ingest = started.elapsed();
        for s in servers {
            assert!(s.terminate().success());
        }
        let total = requests as u64 * 1_000;

        let servers = start(dir.path(), &config(dir.path(), setup, &hash, true), setup);
        let started = Instant::now();
        let out = dir.path().join(format!("{}-out", setup.name));
        while exported(&out) < total {
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "{}: export did not finish",
                setup.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let export = started.elapsed();
        for s in servers {
            assert!(s.terminate().success());
        }
        println!(
            "{}: ingest {:.0} events/s ({total} events in {:.2} s); export {:.0} events/s ({:.2} s, schedule every 1 s)",
            setup.name,
            total as f64 / ingest.as_secs_f64(),
            ingest.as_secs_f64(),
            total as f64 / export.as_secs_f64(),
            export.as_secs_f64()
        );
    }
}
