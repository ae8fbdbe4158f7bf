//! End to end: the real `auditsync` binary from input to S3 (moto) or a volume, each
//! pipeline beside floors timed on the same bytes in the same run (`cat`, `gzip -6`,
//! `zstd -3`), three runs on fresh stores, and a JSON result file.
//!
//! Pipelines (N events, default 1,000,000 catalog-valid uevents-shaped events, ~446 MB):
//! - (a) bulk: `ingest FILE`, then `export --once` to S3, gzip NDJSON;
//! - (b) stream: `auditsync run` exporting to S3 every second while `ingest FILE` runs, timed
//!   until the last event is in S3;
//! - (c) HTTP -> S3: `auditsync run` under 8 keep-alive clients posting 1,000-event NDJSON
//!   bodies; acknowledged events/s, and events/s until the last one is in S3;
//! - (d) single-event JSON POSTs from 64 keep-alive clients, requests/s;
//! - (e) `export --once` of the stored events to a volume: none, gzip, zstd;
//! - (f) peak RSS of `export --once` of a large backlog (`--backlog M`, default
//!   10,000,000) against a 10,000-event one (once, not per run).
//!
//! The HTTP clients of (c) and (d), and Vector's beside (c), are keep-alive connections
//! polled by one thread per core, as `wrk` does ([`common::post_all`]).
//!
//! With `AUDITSYNC_BENCH_VECTOR=PATH` (a Vector binary), each run also times Vector on the same
//! input and moto beside (a) and (c), and prints auditsync's rate over Vector's
//! (see `common/vector.rs`).
//!
//! Before the floors and before each pipeline, `sync` (untimed) writes out what the ones
//! before left dirty, so that no pipeline waits behind another's write-back.
//!
//! Run with `cargo xtask bench e2e [N] [--backlog M] [--runs R] [--only abcdef]`, which
//! starts moto and passes `EMULATOR_S3_ENDPOINT`. Results go to stdout and to
//! `target/bench-e2e.json` (or `AUDITSYNC_BENCH_OUT`). `AUDITSYNC_BENCH_INPUT=PATH` keeps the generated input.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::support::{line, new_token, start_server, Server};
use common::vector::{Reading, Vector};
use common::{auditsync, measure, post_all};

/// Seconds a floor takes; every run needs all three.
fn floor_secs(tool: &str, args: &[&str], input: &Path) -> f64 {
    common::floor(tool, args, input)
        .unwrap_or_else(|| panic!("cannot run {tool} (a floor of this benchmark)"))
        .as_secs_f64()
}

/// Creates a bucket on moto (which takes an unsigned request).
fn create_bucket(endpoint: &str, bucket: &str) {
    let answer = reqwest::blocking::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .unwrap();
    assert!(answer.status().is_success(), "create bucket: {answer:?}");
}

fn s3_destination(endpoint: &str, bucket: &str) -> Value {
    json!({"name": "s3", "type": "s3", "bucket": bucket, "region": "us-east-1",
           "endpoint": endpoint, "force_path_style": true,
           "access_key_id": "test", "secret_access_key": "test",
           "format": "ndjson", "compression": "gzip"})
}

/// Writes a config for a store under `dir` with `destination`, and beside it the same
/// without the integrity check at open, for [`exported`].
fn config(dir: &Path, name: &str, destination: Value, schedule: &str, hash: &str) -> PathBuf {
    let path = dir.join(format!("{name}.json"));
    let mut config = json!({
        "enableUserEvents": true,
        "namespace": "bench",
        "ueventsSchedule": schedule,
        "ueventsGCSchedule": "@yearly",
        "store": {"path": dir.join("store/audit.db")},
        "ingest": {"listen": "127.0.0.1:0", "token_hashes": [hash]},
        "destinations": [destination],
    });
    std::fs::write(&path, config.to_string()).unwrap();
    config["store"]["integrity_check"] = json!("off");
    std::fs::write(status_config(&path), config.to_string()).unwrap();
    path
}

/// The config [`exported`] polls with: a quick check of a large store at every poll would
/// take a core away from the pipeline being measured.
fn status_config(config: &Path) -> PathBuf {
    config.with_extension("status.json")
}

/// The events the config's only destination has exported, from `auditsync status`.
fn exported(config: &Path) -> u64 {
    let out = auditsync(&status_config(config), &["status"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // "destination s3: cursor 123, backlog 0, ..."
    text.lines()
        .find_map(|l| l.split("cursor ").nth(1))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Waits until `total` events are exported; returns when that was seen.
fn wait_exported(config: &Path, total: u64) -> Instant {
    let started = Instant::now();
    loop {
        if exported(config) >= total {
            return Instant::now();
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "export did not finish"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The peak RSS of a running server, MiB.
fn peak_rss(pid: u32) -> f64 {
    common::peak_rss_mib(pid).unwrap_or(0.0)
}

fn stop(server: Server) {
    assert!(server.terminate().success());
}

// The rows auditsync is compared with Vector by.
const BULK: &str = "(a) bulk: ingest FILE, export --once -> S3, gzip";
const HTTP_ACKNOWLEDGED: &str = "(c) HTTP -> S3, acknowledged (fsynced before each 200)";
const HTTP_END_TO_END: &str = "(c) HTTP -> S3, end to end (until the last is in S3)";

/// The row of one of Vector's stdin runs.
fn vector_bulk_row(reading: Reading) -> &'static str {
    match reading {
        Reading::Lines => "(a) Vector: stdin -> S3, gzip, lines as they came",
        Reading::Json => "(a) Vector: stdin -> S3, gzip, lines parsed as JSON",
    }
}

/// The rows of one of Vector's HTTP runs: acknowledged, and end to end.
fn vector_http_rows(reading: Reading, acknowledgements: bool) -> (&'static str, &'static str) {
    match (reading, acknowledgements) {
        (Reading::Lines, true) => (
            "(c) Vector, lines, acknowledgements on: acknowledged (in S3 before each 200)",
            "(c) Vector, lines, acknowledgements on: end to end",
        ),
        (Reading::Lines, false) => (
            "(c) Vector, lines, acknowledgements off: acknowledged (nothing durable)",
            "(c) Vector, lines, acknowledgements off: end to end (until it has flushed)",
        ),
        (Reading::Json, true) => (
            "(c) Vector, JSON, acknowledgements on: acknowledged (in S3 before each 200)",
            "(c) Vector, JSON, acknowledgements on: end to end",
        ),
        (Reading::Json, false) => (
            "(c) Vector, JSON, acknowledgements off: acknowledged (nothing durable)",
            "(c) Vector, JSON, acknowledgements off: end to end (until it has flushed)",
        ),
    }
}

/// One row of the results.
struct Row {
    pipeline: &'static str,
    rate: f64,
    unit: &'static str,
    floor: &'static str,
    ratio: f64,
    rss_mib: f64,
}

impl Row {
    /// `events` in `secs`, against a floor that took `floor_secs` on the same bytes.
    fn events(
        pipeline: &'static str,
        events: u64,
        secs: f64,
        (floor, floor_secs): (&'static str, f64),
        rss_mib: f64,
    ) -> Self {
        Self {
            pipeline,
            rate: events as f64 / secs,
            unit: "events/s",
            floor,
            ratio: floor_secs / secs,
            rss_mib,
        }
    }
}

struct Bench {
    dir: PathBuf,
    input: PathBuf,
    n: u64,
    endpoint: String,
    token: String,
    hash: String,
    /// Timed beside (a) and (c) when set.
    vector: Option<Vector>,
}

impl Bench {
    fn fresh(&self, name: &str) -> PathBuf {
        let dir = self.dir.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A fresh store for `pipeline` with one S3 destination in a new bucket, exported on
    /// `schedule`; returns its directory and config.
    fn s3_setup(&self, pipeline: &str, run: usize, schedule: &str) -> (PathBuf, PathBuf) {
        let dir = self.fresh(pipeline);
        let bucket = format!("e2e-{pipeline}-{}-{run}", std::process::id());
        create_bucket(&self.endpoint, &bucket);
        let destination = s3_destination(&self.endpoint, &bucket);
        let config = config(&dir, pipeline, destination, schedule, &self.hash);
        (dir, config)
    }

    /// A fresh directory and a new bucket for one of Vector's runs.
    fn vector_setup(&self, pipeline: &str, run: usize) -> (PathBuf, String) {
        let dir = self.fresh(pipeline);
        let bucket = format!("e2e-{pipeline}-{}-{run}", std::process::id());
        create_bucket(&self.endpoint, &bucket);
        (dir, bucket)
    }

    /// Vector: stdin -> S3, beside (a).
    fn vector_bulk(&self, vector: &Vector, reading: Reading, run: usize, floors: &Floors) -> Row {
        let (dir, bucket) = self.vector_setup(&format!("va-{reading:?}"), run);
        let timed = vector.stdin_to_s3(&dir, &bucket, reading, &self.input);
        assert_eq!(vector.events_in(&bucket), self.n, "Vector put every event");
        Row::events(
            vector_bulk_row(reading),
            self.n,
            timed.end_to_end,
            ("gzip -6", floors.gzip),
            timed.rss_mib,
        )
    }

    /// Vector: HTTP -> S3 under (c)'s load (`bodies`), with end-to-end acknowledgements on
    /// or off.
    fn vector_http(
        &self,
        vector: &Vector,
        (reading, acknowledgements): (Reading, bool),
        bodies: &[String],
        run: usize,
        floors: &Floors,
    ) -> (Row, Row) {
        let name = format!("vc-{reading:?}-{acknowledgements}").to_lowercase();
        let (dir, bucket) = self.vector_setup(&name, run);
        let total = bodies.len() as u64 * 1_000;
        let timed = vector.http_to_s3(&dir, &bucket, reading, acknowledgements, |addr| {
            post_all(
                addr,
                &self.token,
                8,
                "application/x-ndjson",
                bodies.len(),
                |i| bodies[i].as_bytes(),
            )
        });
        assert_eq!(vector.events_in(&bucket), total, "Vector put every event");
        let gzip = ("gzip -6", floors.gzip_of(bodies));
        let (acknowledged, end_to_end) = vector_http_rows(reading, acknowledgements);
        (
            Row::events(acknowledged, total, timed.acknowledged, gzip, timed.rss_mib),
            Row::events(end_to_end, total, timed.end_to_end, gzip, timed.rss_mib),
        )
    }

    /// (a) `ingest FILE`, then `export --once` to S3.
    fn bulk(&self, run: usize, floors: &Floors) -> Row {
        let (_dir, config) = self.s3_setup("a", run, "@yearly");
        let input = self.input.to_str().unwrap();
        let (ingest, rss_ingest) = measure(auditsync(&config, &["ingest", input]));
        let (export, rss_export) = measure(auditsync(&config, &["export", "--once"]));
        assert_eq!(exported(&config), self.n, "(a) exported everything");
        let took = (ingest + export).as_secs_f64();
        println!(
            "  (a) ingest {:.2} s + export {:.2} s",
            ingest.as_secs_f64(),
            export.as_secs_f64()
        );
        Row::events(
            BULK,
            self.n,
            took,
            ("gzip -6", floors.gzip),
            rss_ingest.max(rss_export),
        )
    }

    /// (b) `auditsync run` exporting every second while `ingest FILE` runs.
    fn stream(&self, run: usize, floors: &Floors) -> Row {
        let (dir, config) = self.s3_setup("b", run, "@every 1s");
        let server = start_server(Path::new(common::BIN), &config, &dir.join("server.log"));
        let started = Instant::now();
        let (_, rss_ingest) = measure(auditsync(
            &config,
            &["ingest", self.input.to_str().unwrap()],
        ));
        let done = wait_exported(&config, self.n);
        let took = (done - started).as_secs_f64();
        let rss = peak_rss(server.child.id()).max(rss_ingest);
        stop(server);
        Row::events(
            "(b) stream: ingest FILE beside run, export every 1 s -> S3, gzip",
            self.n,
            took,
            ("gzip -6", floors.gzip),
            rss,
        )
    }

    /// (c) HTTP -> S3 under the load `bodies`: acknowledged, and end to end.
    fn http(&self, bodies: &[String], run: usize, floors: &Floors) -> (Row, Row) {
        let (dir, config) = self.s3_setup("c", run, "@every 1s");
        let total = bodies.len() as u64 * 1_000;
        let server = start_server(Path::new(common::BIN), &config, &dir.join("server.log"));
        let started = Instant::now();
        let acknowledged = post_all(
            server.addr,
            &self.token,
            8,
            "application/x-ndjson",
            bodies.len(),
            |i| bodies[i].as_bytes(),
        );
        let done = wait_exported(&config, total);
        let end_to_end = (done - started).as_secs_f64();
        let rss = peak_rss(server.child.id());
        stop(server);
        let gzip = ("gzip -6", floors.gzip_of(bodies));
        (
            Row::events(HTTP_ACKNOWLEDGED, total, acknowledged, gzip, rss),
            Row::events(HTTP_END_TO_END, total, end_to_end, gzip, rss),
        )
    }

    /// (d) single-event POSTs from 64 keep-alive clients.
    fn single(&self) -> Row {
        let dir = self.fresh("d");
        let config = config(
            &dir,
            "d",
            json!({"name": "local", "type": "pv", "root": dir.join("out")}),
            "@yearly",
            &self.hash,
        );
        let server = start_server(Path::new(common::BIN), &config, &dir.join("server.log"));
        // Long enough (a few seconds) that a slow spell of this machine does not decide it.
        let requests = 64 * 2_000;
        // One body, built once: the load generator shares the two cores with the server.
        let body = line(7).to_string();
        let took = post_all(
            server.addr,
            &self.token,
            64,
            "application/json",
            requests,
            |_| body.as_bytes(),
        );
        let rss = peak_rss(server.child.id());
        stop(server);
        Row {
            pipeline: "(d) single-event POSTs, 64 clients (fsynced before each 200)",
            rate: requests as f64 / took,
            unit: "requests/s",
            floor: "-",
            ratio: f64::NAN,
            rss_mib: rss,
        }
    }

    /// (e) `export --once` of the events (a) stored, to a volume, per compression.
    fn export_volume(&self, floors: &Floors) -> Vec<Row> {
        let store = self.dir.join("a");
        [
            (
                "none",
                "(e) export --once -> volume, none",
                "gzip -6",
                floors.gzip,
            ),
            (
                "gzip",
                "(e) export --once -> volume, gzip",
                "gzip -6",
                floors.gzip,
            ),
            (
                "zstd",
                "(e) export --once -> volume, zstd",
                "zstd -3",
                floors.zstd,
            ),
        ]
        .into_iter()
        .map(|(compression, pipeline, floor, floor_s)| {
            let out = store.join(format!("out-{compression}"));
            let _ = std::fs::remove_dir_all(&out);
            settle();
            let config = config(
                &store,
                &format!("e-{compression}"),
                json!({"name": format!("vol-{compression}"), "type": "pv", "root": out,
                       "format": "ndjson", "compression": compression}),
                "@yearly",
                &self.hash,
            );
            let (took, rss) = measure(auditsync(&config, &["export", "--once"]));
            assert_eq!(exported(&config), self.n, "(e) exported everything");
            Row::events(pipeline, self.n, took.as_secs_f64(), (floor, floor_s), rss)
        })
        .collect()
    }

    /// (f) peak RSS of exporting `backlog` events against 10,000: the input file is
    /// ingested as often as needed (its events carry no id, so each copy is new events).
    fn backlog(&self, backlog: u64) -> (f64, f64) {
        let mut peaks = Vec::new();
        for events in [10_000, backlog] {
            let dir = self.fresh(&format!("f-{events}"));
            let config = config(
                &dir,
                "f",
                json!({"name": "local", "type": "pv", "root": dir.join("out"),
                       "format": "ndjson", "compression": "gzip"}),
                "@yearly",
                &self.hash,
            );
            let small = dir.join("small.ndjson");
            let input = if events < self.n {
                common::write_events(&small, events);
                small
            } else {
                self.input.clone()
            };
            let per_file = events.min(self.n);
            for _ in 0..events / per_file {
                measure(auditsync(&config, &["ingest", input.to_str().unwrap()]));
            }
            let (took, rss) = measure(auditsync(&config, &["export", "--once"]));
            println!(
                "  (f) export of a {events}-event backlog: {:.1} s, peak RSS {rss:.0} MiB",
                took.as_secs_f64()
            );
            peaks.push(rss);
            let _ = std::fs::remove_dir_all(&dir);
        }
        (peaks[0], peaks[1])
    }
}

/// Writes what the pipelines before left dirty to the disk (untimed), so that a pipeline's
/// fsyncs do not wait behind the write-back of the stores deleted before it: (d), timed
/// after (c), gave 22.7k-26.9k requests/s in one run of all, and 31.9k-36.8k alone.
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

/// The floors of one run, seconds.
struct Floors {
    bytes: u64,
    cat: f64,
    gzip: f64,
    zstd: f64,
}

impl Floors {
    /// `gzip -6` of `bodies`: the floors were timed on the input file, and these bodies are
    /// about as large.
    fn gzip_of(&self, bodies: &[String]) -> f64 {
        let bytes: usize = bodies.iter().map(String::len).sum();
        self.gzip * bytes as f64 / self.bytes as f64
    }
}

/// (c)'s load: the first `n` events (rounded down to thousands) in NDJSON bodies of 1,000.
fn http_bodies(n: u64) -> Vec<String> {
    (0..n / 1_000)
        .map(|b| {
            (b * 1_000..(b + 1) * 1_000)
                .map(|i| format!("{}\n", line(i)))
                .collect()
        })
        .collect()
}

/// Prints auditsync's rate over Vector's, for the rows named, and returns it.
fn versus(rows: &[Row], ours: &str, theirs: &str) -> Option<f64> {
    let rate = |name: &str| rows.iter().find(|r| r.pipeline == name).map(|r| r.rate);
    let ratio = rate(ours)? / rate(theirs)?;
    println!("  {ratio:.2}x: {ours}\n         over {theirs}");
    Some(ratio)
}

fn arg_after(args: &[String], flag: &str) -> Option<u64> {
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1)?.parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let backlog = arg_after(&args, "--backlog").unwrap_or(10_000_000);
    let runs = arg_after(&args, "--runs").unwrap_or(3) as usize;
    // `--only ace` runs those pipelines only (for a profile of one).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let wanted = |pipeline: char| only.as_ref().is_none_or(|o| o.contains(pipeline));
    let n: u64 = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && (*i == 0 || !args[i - 1].starts_with("--")))
        .find_map(|(_, a)| a.parse().ok())
        .unwrap_or(1_000_000);
    let Ok(endpoint) = std::env::var("EMULATOR_S3_ENDPOINT") else {
        eprintln!("EMULATOR_S3_ENDPOINT is not set: run `cargo xtask bench e2e`");
        std::process::exit(2);
    };
    let dir = tempfile::tempdir().unwrap();
    let input = std::env::var_os("AUDITSYNC_BENCH_INPUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.path().join("events.ndjson"));
    if !input.exists() {
        common::write_events(&input, n);
    }
    let bytes = std::fs::metadata(&input).unwrap().len();
    println!(
        "e2e: {n} events, {:.0} MB, {runs} runs; S3 on moto at {endpoint}",
        bytes as f64 / 1e6
    );
    let (token, hash) = new_token();
    let vector = Vector::from_env(&endpoint);
    let bench = Bench {
        dir: dir.path().to_path_buf(),
        input,
        n,
        endpoint,
        token,
        hash,
        vector,
    };
    let mut results = Vec::new();
    for run in 1..=runs {
        settle();
        let floors = Floors {
            bytes,
            cat: floor_secs("cat", &[], &bench.input),
            gzip: floor_secs("gzip", &["-6", "-c"], &bench.input),
            zstd: floor_secs("zstd", &["-3", "-c"], &bench.input),
        };
        println!(
            "run {run}: floors cat {:.2} s ({:.0} events/s), gzip -6 {:.2} s ({:.0} events/s), zstd -3 {:.2} s ({:.0} events/s)",
            floors.cat,
            n as f64 / floors.cat,
            floors.gzip,
            n as f64 / floors.gzip,
            floors.zstd,
            n as f64 / floors.zstd
        );
        let mut rows = Vec::new();
        // (e) exports the store (a) filled.
        if wanted('a') || wanted('e') {
            settle();
            rows.push(bench.bulk(run, &floors));
            if let Some(vector) = &bench.vector {
                for reading in [Reading::Lines, Reading::Json] {
                    settle();
                    rows.push(bench.vector_bulk(vector, reading, run, &floors));
                }
            }
        }
        if wanted('e') {
            // Settles before each of its exports.
            rows.extend(bench.export_volume(&floors));
        }
        if wanted('b') {
            settle();
            rows.push(bench.stream(run, &floors));
        }
        if wanted('c') {
            // Built once (untimed) for auditsync's load and each of Vector's.
            let bodies = http_bodies(bench.n);
            settle();
            let (acknowledged, end_to_end) = bench.http(&bodies, run, &floors);
            rows.extend([acknowledged, end_to_end]);
            if let Some(vector) = &bench.vector {
                for reading in [Reading::Lines, Reading::Json] {
                    for acknowledgements in [true, false] {
                        settle();
                        let (acknowledged, end_to_end) = bench.vector_http(
                            vector,
                            (reading, acknowledgements),
                            &bodies,
                            run,
                            &floors,
                        );
                        rows.extend([acknowledged, end_to_end]);
                    }
                }
            }
        }
        if wanted('d') {
            settle();
            rows.push(bench.single());
        }
        for row in &rows {
            let ratio = if row.ratio.is_nan() {
                "-".to_string()
            } else {
                format!("{:.2}x {}", row.ratio, row.floor)
            };
            println!(
                "  {:<66} {:>9.0} {:<10} {:<14} peak RSS {:>5.0} MiB",
                row.pipeline, row.rate, row.unit, ratio, row.rss_mib
            );
        }
        let mut versus_vector = serde_json::Map::new();
        for reading in [Reading::Lines, Reading::Json] {
            let bulk = vector_bulk_row(reading);
            let (_, acked) = vector_http_rows(reading, true);
            let (unacked_acknowledged, unacked) = vector_http_rows(reading, false);
            for (ours, theirs) in [
                (BULK, bulk),
                (HTTP_END_TO_END, acked),
                (HTTP_END_TO_END, unacked),
                (HTTP_ACKNOWLEDGED, unacked_acknowledged),
            ] {
                if let Some(ratio) = versus(&rows, ours, theirs) {
                    versus_vector.insert(format!("{ours} / {theirs}"), json!(ratio));
                }
            }
        }
        results.push(json!({
            "run": run,
            "versus_vector": versus_vector,
            "floors_s": {"cat": floors.cat, "gzip -6": floors.gzip, "zstd -3": floors.zstd},
            "pipelines": rows.iter().map(|r| json!({
                "pipeline": r.pipeline, "rate": r.rate, "unit": r.unit, "floor": r.floor,
                "ratio": if r.ratio.is_nan() { Value::Null } else { json!(r.ratio) },
                "peak_rss_mib": r.rss_mib,
            })).collect::<Vec<_>>(),
        }));
    }
    let (small, large) = if wanted('f') {
        bench.backlog(backlog)
    } else {
        (f64::NAN, f64::NAN)
    };
    if wanted('f') {
        println!(
            "(f) export peak RSS: 10000-event backlog {small:.0} MiB, {backlog}-event backlog {large:.0} MiB (+{:.0} MiB)",
            large - small
        );
    }
    let report = json!({
        "events": n, "bytes": bytes, "runs": results,
        "backlog": {"small_events": 10_000, "small_peak_rss_mib": small,
                    "large_events": backlog, "large_peak_rss_mib": large},
    });
    let out = std::env::var_os("AUDITSYNC_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2);
            workspace.unwrap().join("target/bench-e2e.json")
        });
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("results written to {}", out.display());
}
