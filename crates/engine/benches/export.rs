//! Export throughput to the volume sink, beside the floors it cannot beat: the same records
//! through `serde_json` alone, and the same NDJSON bytes through `gzip -6` and `zstd -3`.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p auditsync-engine --bench export -- N`).
//! Prints one line per figure; peak RSS is the high-water mark of each phase alone.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use auditsync_core::registry::{build_formatter, build_schema};
use auditsync_core::Event;
use auditsync_engine::{BatchLimits, Compression, Destination, Exporter, FileFormat};
use auditsync_pv::{PvConfig, PvSink};
use auditsync_store::Store;
use auditsync_store_sqlite::SqliteStore;
use serde_json::{json, Map, Value};

fn uevent(i: u64) -> Event {
    let schema = build_schema("uevents").unwrap();
    let mut e = schema
        .parse(json!({
            "opType": if i % 5 == 0 { "Mutation" } else { "Query" },
            "createdAt": 1_690_610_557_857u64 + i * 7,
            "nameHints": ["ProjectReleaseByProjectIdAndStatus"],
            "userEmail": format!("user{}@example.com", i % 5_000),
            "customerName": "example.com",
            "responseCode": 200,
            "requestParams": {"projectId": format!("\"{}\"", i % 977), "statuses": "[Pending,Running,Retrying]"},
            "requestPayload": "[\"_id\",\"releaseTag\",\"status\",\"attempt\",\"createdBy\",\"project{_id name}\"]",
            "latencyInMillis": i % 113,
        }))
        .unwrap();
    e.id = format!("{i:016x}");
    e
}

/// Resets the peak-RSS counter (Linux), so each phase reports its own peak.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A `/proc/self/status` field in MiB (Linux).
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with(field))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

fn rss_mib() -> f64 {
    status_mib("VmRSS:")
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn tool_mb_s(tool: &str, args: &[&str], input: &std::path::Path, raw: u64) -> Option<f64> {
    let start = Instant::now();
    let status = Command::new(tool)
        .args(args)
        .arg(input)
        .stdout(Stdio::null())
        .status()
        .ok()?;
    status
        .success()
        .then(|| mb(raw) / start.elapsed().as_secs_f64())
}

fn main() {
    auditsync_catalog::link();
    auditsync_ndjson::link();
    auditsync_pv::link();
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("bench.db")).unwrap());

    let start = Instant::now();
    runtime.block_on(async {
        let mut i = 0;
        while i < n {
            let chunk: Vec<Event> = (i..(i + 10_000).min(n)).map(uevent).collect();
            i += chunk.len() as u64;
            store.append_events(chunk).await.unwrap();
        }
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "store append: {n} events in {secs:.2} s = {:.0} events/s",
        n as f64 / secs
    );

    let mut raw_file = None;
    for (label, compression) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip(6)),
        ("zstd", Compression::Zstd(3)),
    ] {
        let root = dir.path().join(format!("out-{label}"));
        let dest = Destination {
            tenant: None,
            pause: None,
            name: format!("bench-{label}"),
            sink: Arc::new(PvSink::new(PvConfig {
                root: root.clone(),
                stale_temp_secs: 600,
            })),
            format: FileFormat {
                schema: build_schema("uevents").unwrap(),
                formatter: build_formatter("ndjson", &Map::new()).unwrap(),
                compression,
            },
            limits: BatchLimits::default(),
        };
        let exporter = Arc::new(Exporter::new(store.clone(), "bench".into(), vec![dest]));
        reset_peak_rss();
        let rss_before = rss_mib();
        let start = Instant::now();
        let report = runtime.block_on(exporter.export_once()).remove(0);
        let secs = start.elapsed().as_secs_f64();
        assert!(report.error.is_none(), "{:?}", report.error);
        assert_eq!(report.events, n);
        // uncompressed size: the none run's output
        let files: Vec<_> = walk(&root);
        if label == "none" {
            let raw: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
            let joined = dir.path().join("all.ndjson");
            let mut out = std::fs::File::create(&joined).unwrap();
            for f in &files {
                out.write_all(&std::fs::read(f).unwrap()).unwrap();
            }
            raw_file = Some((joined, raw));
        }
        let raw = raw_file.as_ref().map(|r| r.1).unwrap_or(report.bytes);
        println!(
            "export {label}: {n} events, {} files, {:.1} MB raw -> {:.1} MB in {secs:.2} s = {:.0} events/s, {:.1} MB/s (raw), RSS {:.0} MiB before, peak {:.0} MiB",
            report.files,
            mb(raw),
            mb(report.bytes),
            n as f64 / secs,
            mb(raw) / secs,
            rss_before,
            peak_rss_mib()
        );
    }
    // Floor: the same records through serde_json alone, from events in memory (run last, so
    // its allocations do not count in the exports' peak RSS).
    let schema = build_schema("uevents").unwrap();
    let columns: Vec<String> = schema.columns().iter().map(|c| c.name.clone()).collect();
    let events: Vec<Event> = (0..n.min(200_000)).map(uevent).collect();
    let start = Instant::now();
    let mut ndjson = Vec::with_capacity(64 << 20);
    let mut values = Vec::new();
    for e in &events {
        // the clone stands for the store read the export pays for
        values.clear();
        schema.render(e.clone(), &mut values);
        let map: Map<String, Value> = columns.iter().cloned().zip(values.drain(..)).collect();
        serde_json::to_writer(&mut ndjson, &map).unwrap();
        ndjson.push(b'\n');
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "floor serde_json: {} events, {:.1} MB in {secs:.2} s = {:.0} events/s, {:.1} MB/s",
        events.len(),
        mb(ndjson.len() as u64),
        events.len() as f64 / secs,
        mb(ndjson.len() as u64) / secs
    );
    drop(events);
    drop(ndjson);

    if let Some((file, raw)) = raw_file {
        // The same bytes through the libraries the export uses, in-process, one thread.
        let data = std::fs::read(&file).unwrap();
        let start = Instant::now();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        gz.write_all(&data).unwrap();
        let gz_len = gz.finish().unwrap().len();
        println!(
            "floor flate2 (zlib-rs) level 6, in-process: {:.1} MB/s (raw) -> {:.1} MB",
            mb(raw) / start.elapsed().as_secs_f64(),
            mb(gz_len as u64)
        );
        let start = Instant::now();
        let zst_len = zstd::encode_all(&data[..], 3).unwrap().len();
        println!(
            "floor zstd crate level 3, in-process: {:.1} MB/s (raw) -> {:.1} MB",
            mb(raw) / start.elapsed().as_secs_f64(),
            mb(zst_len as u64)
        );
        drop(data);
        for (tool, args) in [("gzip", ["-6", "-c"]), ("zstd", ["-3", "-c"])] {
            match tool_mb_s(tool, &args, &file, raw) {
                Some(speed) => println!("floor {tool} {}: {:.1} MB/s (raw)", args[0], speed),
                None => println!("floor {tool}: not run ({tool} not found)"),
            }
        }
    }
}

fn walk(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    files.sort();
    files
}
