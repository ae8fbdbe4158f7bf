//! Sync and range-export figures, printed one per line:
//!
//! - `sync` volume -> volume beside `cp -r` of the same tree;
//! - `sync` S3 -> S3 on the moto emulator beside boto3 copying the same objects (get + put,
//!   8 threads, like `sync --concurrency 8`), when `EMULATOR_S3_ENDPOINT` is set;
//! - `export --from/--to` of a 1M-event range from the store, and from a volume archive
//!   after GC: events/s and the process's peak RSS.
//!
//! Run with `cargo xtask bench` (which starts the emulators), or
//! `cargo bench -p auditsync --bench sync_range` (volume and export figures only).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::support::line;
mod common;
use common::{auditsync, measure};

/// A tree like an export's: `files` files of `size` bytes of NDJSON-like text.
fn make_tree(root: &Path, files: usize, size: usize) -> u64 {
    let mut total = 0;
    for i in 0..files {
        let dir = root.join(format!(
            "acme/audit/2024/03/{:02}/{:02}",
            1 + i % 28,
            i % 24
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut body = String::with_capacity(size + 512);
        let mut n = i as u64 * 100_000;
        while body.len() < size {
            body.push_str(&line(n).to_string());
            body.push('\n');
            n += 1;
        }
        total += body.len() as u64;
        std::fs::write(dir.join(format!("{i:020}.ndjson")), body).unwrap();
    }
    total
}

fn mb_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bench.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "enableUserEvents": true, "namespace": "acme",
            "store": {"path": dir.path().join("db/audit.db")},
            "destinations": [{"name": "archive", "type": "pv", "root": dir.path().join("archive"),
                              "format": "ndjson", "compression": "gzip"}],
        })
        .to_string(),
    )
    .unwrap();

    // sync volume -> volume, beside cp -r
    let src = dir.path().join("tree");
    let bytes = make_tree(&src, 256, 512 * 1024);
    let url = |p: &Path| format!("file://{}", p.display());
    let (cp, _) = measure({
        let mut c = Command::new("cp");
        c.arg("-r").arg(&src).arg(dir.path().join("cp-copy"));
        c
    });
    let (took, rss) = measure(auditsync(
        &config,
        &[
            "sync",
            "--from",
            &url(&src),
            "--to",
            &url(&dir.path().join("synced")),
            "--concurrency",
            "8",
        ],
    ));
    println!(
        "sync volume->volume: 256 files, {:.1} MB in {:.2} s = {:.0} MB/s (peak RSS {rss:.0} MiB); cp -r: {:.2} s = {:.0} MB/s",
        bytes as f64 / 1e6,
        took.as_secs_f64(),
        mb_s(bytes, took),
        cp.as_secs_f64(),
        mb_s(bytes, cp)
    );
    let (again, _) = measure(auditsync(
        &config,
        &[
            "sync",
            "--from",
            &url(&src),
            "--to",
            &url(&dir.path().join("synced")),
        ],
    ));
    println!(
        "sync volume->volume, second run (nothing to copy, both sides compared): {:.2} s",
        again.as_secs_f64()
    );

    // sync S3 -> S3 on moto, beside boto3
    match std::env::var("EMULATOR_S3_ENDPOINT") {
        Err(_) => println!(
            "sync S3->S3: skipped (EMULATOR_S3_ENDPOINT not set; `cargo xtask bench` starts moto)"
        ),
        Ok(endpoint) => {
            let s3 = |bucket: &str| {
                format!("s3://{bucket}?endpoint={endpoint}&force_path_style=true&region=us-east-1")
            };
            let small = dir.path().join("small");
            let bytes = make_tree(&small, 64, 512 * 1024);
            let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
            let boto = |script: &str| {
                let mut c = Command::new(&python);
                c.args(["-c", script])
                    .env("AWS_ACCESS_KEY_ID", "test")
                    .env("AWS_SECRET_ACCESS_KEY", "test")
                    .env("ENDPOINT", &endpoint);
                c
            };
            let setup = "import boto3,os\ns=boto3.client('s3',endpoint_url=os.environ['ENDPOINT'],region_name='us-east-1')\nfor b in ['bench-src','bench-dst','bench-boto']:\n  s.create_bucket(Bucket=b)";
            measure(boto(setup));
            measure(auditsync(
                &config,
                &["sync", "--from", &url(&small), "--to", &s3("bench-src")],
            ));
            let (took, _) = measure(auditsync(
                &config,
                &[
                    "sync",
                    "--from",
                    &s3("bench-src"),
                    "--to",
                    &s3("bench-dst"),
                    "--concurrency",
                    "8",
                ],
            ));
            let copy = "import boto3,os\nfrom concurrent.futures import ThreadPoolExecutor\ns=boto3.client('s3',endpoint_url=os.environ['ENDPOINT'],region_name='us-east-1')\nkeys=[o['Key'] for p in s.get_paginator('list_objects_v2').paginate(Bucket='bench-src') for o in p.get('Contents',[])]\ndef cp(k):\n  s.put_object(Bucket='bench-boto',Key=k,Body=s.get_object(Bucket='bench-src',Key=k)['Body'].read())\nlist(ThreadPoolExecutor(8).map(cp,keys))";
            let (boto_took, _) = measure(boto(copy));
            println!(
                "sync S3->S3 (moto): 64 objects, {:.1} MB in {:.2} s = {:.1} MB/s (each copy read back and hashed); boto3 get+put, 8 threads: {:.2} s = {:.1} MB/s",
                bytes as f64 / 1e6,
                took.as_secs_f64(),
                mb_s(bytes, took),
                boto_took.as_secs_f64(),
                mb_s(bytes, boto_took)
            );
        }
    }

    // export of a 1M-event range: from the store, then from the archive after GC
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let chunk = 100_000;
    let input = dir.path().join("chunk.ndjson");
    let ingest_start = Instant::now();
    for start in (0..n).step_by(chunk as usize) {
        let body: String = (start..(start + chunk).min(n))
            .map(|i| format!("{}\n", line(i)))
            .collect();
        std::fs::write(&input, body).unwrap();
        measure(auditsync(&config, &["ingest", input.to_str().unwrap()]));
    }
    eprintln!(
        "(ingested {n} events in {:.1} s)",
        ingest_start.elapsed().as_secs_f64()
    );
    let base = line(0)["createdAt"].as_i64().unwrap();
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let (from, to) = (at(base), at(base + n as i64 * 1_000));
    let out = dir.path().join("range.csv");
    let range = |source: bool| {
        let mut args = vec![
            "export",
            "--from",
            &from,
            "--to",
            &to,
            "--format",
            "csv",
            "--out",
            out.to_str().unwrap(),
        ];
        if source {
            args.extend(["--source", "archive"]);
        }
        measure(auditsync(&config, &args))
    };
    let (took, rss) = range(false);
    println!(
        "range export, store: {n} events to CSV in {:.2} s = {:.0} events/s, peak RSS {rss:.0} MiB, {:.1} MB written",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        std::fs::metadata(&out).unwrap().len() as f64 / 1e6
    );
    measure(auditsync(&config, &["export", "--once"]));
    measure(auditsync(&config, &["gc", "--once"]));
    let (took, rss) = range(true);
    println!(
        "range export, archive (volume, ndjson.gz, store empty): {n} events in {:.2} s = {:.0} events/s, peak RSS {rss:.0} MiB",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
}
