//! Provable archives, measured on one large backlog (default 1,000,000 catalog-valid
//! uevents-shaped events, about 457 MB) exported as gzip NDJSON to a volume:
//!
//! - `export --once` with manifests off and on, alternating, three times each on fresh
//!   destinations of one store: the cost of manifests as a ratio of the two;
//! - `verify-archive` of the exported tree, three runs: events/s, MB/s of stored files, and
//!   the ratios to `sha256sum` and to `gzip -dc` of the same files timed in the same run
//!   (the verifier hashes every file and decompresses it to count its records), with peak
//!   RSS.
//!
//! Run with `cargo xtask bench archive` (or `cargo bench -p auditsync --bench archive -- N`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{auditsync, measure};

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// A tool over every export file of the tree (manifests aside), as one process.
fn floor(tool: &str, args: &[&str], tree: &Path) -> Duration {
    let mut files = Vec::new();
    files_under(tree, &mut files);
    files.retain(|p| !p.to_string_lossy().contains("_manifests"));
    let start = Instant::now();
    let status = Command::new(tool)
        .args(args)
        .args(&files)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    start.elapsed()
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    common::write_events(&input, n);
    let key = dir.path().join("signing.pem");
    let public = dir.path().join("public.pem");
    let status = auditsync(
        &dir.path().join("none.json"),
        &[
            "key",
            "new",
            "--out",
            key.to_str().unwrap(),
            "--public-out",
            public.to_str().unwrap(),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .status()
    .unwrap();
    assert!(status.success());
    let config = |run: &str, manifests: bool| {
        let path = dir.path().join(format!("{run}.json"));
        let mut value = serde_json::json!({
            "enableUserEvents": true, "namespace": "acme", "disableUeventsGC": true,
            "store": {"path": dir.path().join("db/audit.db")},
            "destinations": [{"name": run, "type": "pv", "root": dir.path().join(run), "compression": "gzip"}],
        });
        if manifests {
            value["manifests"] = serde_json::json!({"signing_key_file": key});
        }
        std::fs::write(&path, value.to_string()).unwrap();
        path
    };
    let (took, _) = measure(auditsync(
        &config("ingest", false),
        &["ingest", input.to_str().unwrap()],
    ));
    let mb = std::fs::metadata(&input).unwrap().len() as f64 / 1e6;
    println!(
        "archive: {n} events, {mb:.0} MB ingested in {:.1} s",
        took.as_secs_f64()
    );

    let mut ratios = Vec::new();
    for run in 1..=3 {
        let mut times = [0.0; 2];
        for (i, on) in [false, true].into_iter().enumerate() {
            let name = format!("run{run}-{}", if on { "on" } else { "off" });
            let (took, rss) = measure(auditsync(&config(&name, on), &["export", "--once"]));
            times[i] = took.as_secs_f64();
            println!(
                "export run {run}, manifests {}: {:.2} s = {:.0} events/s, peak RSS {rss:.0} MiB",
                if on { "on " } else { "off" },
                times[i],
                n as f64 / times[i]
            );
        }
        ratios.push(times[1] / times[0]);
    }
    let (mid, lo, hi) = median(ratios);
    println!("export with manifests / without: median {mid:.3} (range {lo:.3}-{hi:.3})");

    let tree = dir.path().join("run1-on");
    let mut stored = Vec::new();
    files_under(&tree, &mut stored);
    let stored_mb = stored
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum::<u64>() as f64
        / 1e6;
    let mut rates = Vec::new();
    for run in 1..=3 {
        let sha = floor("sha256sum", &[], &tree);
        let gunzip = floor("gzip", &["-dc"], &tree);
        let (took, rss) = measure(auditsync(
            &dir.path().join("none.json"),
            &[
                "verify-archive",
                tree.to_str().unwrap(),
                "--public-key",
                public.to_str().unwrap(),
            ],
        ));
        let s = took.as_secs_f64();
        println!(
            "verify-archive run {run}: {s:.2} s = {:.0} events/s, {:.0} MB/s of {stored_mb:.0} MB stored, peak RSS {rss:.0} MiB; speed vs sha256sum {:.2}x ({:.2} s), vs gzip -dc {:.2}x ({:.2} s)",
            n as f64 / s,
            stored_mb / s,
            sha.as_secs_f64() / s,
            sha.as_secs_f64(),
            gunzip.as_secs_f64() / s,
            gunzip.as_secs_f64()
        );
        rates.push(n as f64 / s);
    }
    let (mid, lo, hi) = median(rates);
    println!("verify-archive: median {mid:.0} events/s (range {lo:.0}-{hi:.0})");
}
