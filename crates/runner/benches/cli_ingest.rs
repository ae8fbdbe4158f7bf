//! `auditsync ingest FILE` of one large NDJSON file (default 1,000,000 catalog-valid
//! uevents-shaped events, about 457 MB), three runs, each on a fresh store: events/s, the ratio to floors
//! timed on the same file in the same run (`sha256sum`, `gzip -6`), and the process's peak
//! RSS. The store commits the whole file in one transaction (all or nothing), so the figure
//! includes the fsync of everything.
//!
//! Run with `cargo xtask bench ingest` (or `cargo bench -p auditsync --bench cli_ingest -- N`).
//! With `AUDITSYNC_BENCH_INPUT=PATH` the input is kept at PATH (and reused if it exists).

use std::time::Duration;

mod common;
use common::{auditsync, floor, measure};

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    // AUDITSYNC_BENCH_INPUT keeps the generated file at a path (written once), so a profiler
    // can run `auditsync ingest` on the same bytes afterwards.
    let input = match std::env::var_os("AUDITSYNC_BENCH_INPUT") {
        Some(path) => std::path::PathBuf::from(path),
        None => dir.path().join("events.ndjson"),
    };
    if !input.exists() {
        common::write_events(&input, n);
    }
    let bytes = std::fs::metadata(&input).unwrap().len();
    println!(
        "cli ingest: {n} events, {:.0} MB ({} bytes/event)",
        bytes as f64 / 1e6,
        bytes / n.max(1)
    );
    let mut rates = Vec::new();
    for run in 1..=3 {
        let sha = floor("sha256sum", &[], &input);
        let gzip = floor("gzip", &["-6", "-c"], &input);
        let config = dir.path().join(format!("run{run}.json"));
        std::fs::write(
            &config,
            serde_json::json!({
                "enableUserEvents": true, "namespace": "acme",
                "store": {"path": dir.path().join(format!("db{run}/audit.db"))},
            })
            .to_string(),
        )
        .unwrap();
        let (took, rss) = measure(auditsync(&config, &["ingest", input.to_str().unwrap()]));
        let rate = n as f64 / took.as_secs_f64();
        let ratio = |floor: Option<Duration>| {
            floor.map_or("n/a".to_string(), |f| {
                format!("{:.2}x", f.as_secs_f64() / took.as_secs_f64())
            })
        };
        println!(
            "cli ingest run {run}: {:.2} s = {rate:.0} events/s, peak RSS {rss:.0} MiB; speed vs sha256sum {} ({:.2} s), vs gzip -6 {} ({:.2} s)",
            took.as_secs_f64(),
            ratio(sha),
            sha.map_or(0.0, |d| d.as_secs_f64()),
            ratio(gzip),
            gzip.map_or(0.0, |d| d.as_secs_f64()),
        );
        rates.push(rate);
        let _ = std::fs::remove_dir_all(dir.path().join(format!("db{run}")));
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "cli ingest: median {:.0} events/s (range {:.0}-{:.0})",
        rates[1], rates[0], rates[2]
    );
}
