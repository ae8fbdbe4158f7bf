//! Many tenants against one: `export --once` of T tenants × E events each (default
//! 1,000 × 100) into T tenant destinations, against 1 tenant × T·E events into one, on the
//! same machine in the same run, three runs on fresh stores:
//! - to a volume, one prefix per tenant, NDJSON without compression;
//! - to S3 (moto), `--buckets B` buckets (default 50), several tenants per bucket under
//!   their own prefixes, gzip NDJSON.
//!
//! Printed per run: the export's wall time, events/s, peak RSS and the ratio of the many
//! tenants' time to the one tenant's (issue 13 asks for at most 2×). On the volume two more
//! exports follow the first: an idle tick (nothing new), and the steady state (the next
//! round of events, later in time, into the prefixes the first export made). The events
//! are stored by `ingest FILE` first, untimed. `gzip -6` of the input is timed beside, for
//! scale.
//!
//! Run with `cargo xtask bench tenants [T] [E] [--buckets B] [--runs R] [--only volume|s3]`,
//! which starts moto.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

mod common;
use common::{auditsync, floor, line, measure};

struct Args {
    tenants: usize,
    per_tenant: usize,
    buckets: usize,
    runs: usize,
    only: Option<String>,
}

fn args() -> Args {
    let mut args = Args {
        tenants: 1_000,
        per_tenant: 100,
        buckets: 50,
        runs: 3,
        only: None,
    };
    let mut numbers = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--buckets" => args.buckets = it.next().unwrap().parse().unwrap(),
            "--runs" => args.runs = it.next().unwrap().parse().unwrap(),
            "--only" => args.only = it.next(),
            "--bench" => {}
            other => {
                if let Ok(n) = other.parse() {
                    numbers.push(n)
                }
            }
        }
    }
    if let Some(t) = numbers.first() {
        args.tenants = *t;
    }
    if let Some(e) = numbers.get(1) {
        args.per_tenant = *e;
    }
    args
}

/// Writes `tenants` × `per_tenant` events, the tenants taking turns (as live traffic
/// interleaves them), numbered from `from` (later numbers are later events); returns the
/// tenants' names.
fn write_input(path: &Path, tenants: usize, per_tenant: usize, from: usize) -> Vec<String> {
    use std::io::Write;
    let names: Vec<String> = (0..tenants).map(|t| format!("customer {t:05}")).collect();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..tenants * per_tenant {
        let mut event = line((from + i) as u64);
        event["customerName"] = json!(names[i % tenants]);
        serde_json::to_writer(&mut out, &event).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
    names
}

/// Creates a bucket on moto (which takes an unsigned request).
fn create_bucket(endpoint: &str, bucket: &str) {
    let answer = reqwest::blocking::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .unwrap();
    assert!(answer.status().is_success(), "create bucket: {answer:?}");
}

/// The emulator's own floor: `count` PUTs of `bytes` each into `bucket`, from 16 threads
/// (the exports auditsync runs at once), each with a keep-alive connection.
fn put_floor(endpoint: &str, bucket: &str, count: usize, bytes: usize) -> Duration {
    create_bucket(endpoint, bucket);
    let body = vec![b'x'; bytes];
    let start = std::time::Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..16 {
            let body = body.clone();
            scope.spawn(move || {
                let client = reqwest::blocking::Client::new();
                for i in (thread..count).step_by(16) {
                    let answer = client
                        .put(format!("{endpoint}/{bucket}/floor/{i}"))
                        .body(body.clone())
                        .send()
                        .unwrap();
                    assert!(answer.status().is_success(), "{answer:?}");
                }
            });
        }
    });
    start.elapsed()
}

/// The volume's own floor: what the volume sink does for each tenant's first file, without
/// auditsync: a fresh 7-deep directory chain (each new directory's parent fsynced), a file of
/// `bytes` written and fsynced, linked into place, and its directory fsynced; 16 threads.
fn volume_floor(root: &Path, count: usize, bytes: usize) -> Duration {
    use std::io::Write;
    let body = vec![b'x'; bytes];
    let sync = |dir: &Path| std::fs::File::open(dir).unwrap().sync_all().unwrap();
    std::fs::create_dir_all(root).unwrap();
    let start = std::time::Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..16 {
            let body = &body;
            scope.spawn(move || {
                for t in (thread..count).step_by(16) {
                    let mut dir = root.to_path_buf();
                    let segments = [
                        &format!("t{t:05}"),
                        "bench",
                        "audit",
                        "2023",
                        "07",
                        "29",
                        "06",
                    ];
                    for segment in segments {
                        let next = dir.join(segment);
                        std::fs::create_dir(&next).unwrap();
                        sync(&dir);
                        dir = next;
                    }
                    let temp = dir.join(".tmp");
                    let mut file = std::fs::File::create(&temp).unwrap();
                    file.write_all(body).unwrap();
                    file.sync_all().unwrap();
                    std::fs::hard_link(&temp, dir.join("file.ndjson")).unwrap();
                    std::fs::remove_file(&temp).unwrap();
                    sync(&dir);
                }
            });
        }
    });
    start.elapsed()
}

/// Checks placement after the many tenants' export: every event in its own tenant's place
/// (`place` of a key or path gives the tenant number), exactly once. Returns the count.
fn check_placement(
    objects: Vec<(String, Vec<u8>)>,
    place: impl Fn(&str) -> usize,
    names: &[String],
    events: usize,
) -> usize {
    let mut seen = vec![0u8; events];
    let mut cross = 0;
    for (name, body) in objects {
        let t = place(&name);
        for record in common::support::records(&name, &body) {
            if record["customerName"].as_str() != Some(names[t].as_str()) {
                cross += 1;
            }
            let n = record["requestParams"]["n"].as_u64().unwrap() as usize;
            seen[n] = seen[n].saturating_add(1);
        }
    }
    let missing = seen.iter().filter(|c| **c == 0).count();
    let twice = seen.iter().filter(|c| **c > 1).count();
    assert_eq!(
        (cross, missing, twice),
        (0, 0, 0),
        "placement: cross-tenant, missing, duplicated"
    );
    seen.len()
}

/// Every object of the buckets, as (`<bucket number>/<key>`, bytes), read through the S3
/// sink (objects are private: moto refuses unsigned reads).
fn read_buckets(
    endpoint: &str,
    buckets: impl Iterator<Item = (usize, String)>,
) -> Vec<(String, Vec<u8>)> {
    use auditsync_core::Sink;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut objects = Vec::new();
    for (b, bucket) in buckets {
        let config = serde_json::from_value(json!({"bucket": bucket, "region": "us-east-1",
            "endpoint": endpoint, "force_path_style": true,
            "access_key_id": "test", "secret_access_key": "test"}))
        .unwrap();
        let sink = auditsync_s3::S3Sink::new(config).unwrap();
        for meta in rt.block_on(sink.list("")).unwrap() {
            let body = rt.block_on(sink.get(&meta.key)).unwrap().to_vec();
            objects.push((format!("{b}/{}", meta.key.as_str()), body));
        }
    }
    objects
}

/// A store with `input` ingested and one tenant file per tenant, each made by
/// `destination(index)`; returns the config.
fn setup(
    dir: &Path,
    input: &Path,
    tenants: &[String],
    destination: impl Fn(usize) -> Value,
) -> PathBuf {
    std::fs::create_dir_all(dir.join("tenants")).unwrap();
    for (t, tenant) in tenants.iter().enumerate() {
        let file = json!({"tenant": tenant, "destinations": [destination(t)]});
        std::fs::write(dir.join(format!("tenants/{t:05}.json")), file.to_string()).unwrap();
    }
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        json!({
            "enableUserEvents": true, "namespace": "bench",
            "store": {"path": dir.join("store/audit.db")},
            "tenants_dir": dir.join("tenants"),
        })
        .to_string(),
    )
    .unwrap();
    ingest(&config, input);
    config
}

/// `auditsync ingest FILE`, untimed.
fn ingest(config: &Path, input: &Path) {
    let out = auditsync(config, &["ingest", input.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Timed {
    took: Duration,
    rss: f64,
}

fn export(config: &Path) -> Timed {
    let (took, rss) = measure(auditsync(config, &["export", "--once"]));
    Timed { took, rss }
}

fn report(what: &str, run: usize, events: usize, one: &Timed, many: &Timed, gzip: f64) {
    let rate = |t: &Timed| events as f64 / t.took.as_secs_f64();
    println!(
        "{what} run {run}: 1 tenant {:.2} s ({:.0} events/s, {:.0} MiB), many tenants {:.2} s ({:.0} events/s, {:.0} MiB); many/one {:.2}x; gzip -6 of the input {gzip:.2} s",
        one.took.as_secs_f64(),
        rate(one),
        one.rss,
        many.took.as_secs_f64(),
        rate(many),
        many.rss,
        many.took.as_secs_f64() / one.took.as_secs_f64(),
    );
}

fn main() {
    let args = args();
    let events = args.tenants * args.per_tenant;
    let dir = tempfile::tempdir().unwrap();
    let one_input = dir.path().join("one.ndjson");
    let many_input = dir.path().join("many.ndjson");
    let one = write_input(&one_input, 1, events, 0);
    let many = write_input(&many_input, args.tenants, args.per_tenant, 0);
    // The next round of as many events, later in time, for the steady-state export.
    let (one_next, many_next) = (
        dir.path().join("one-next.ndjson"),
        dir.path().join("many-next.ndjson"),
    );
    write_input(&one_next, 1, events, events);
    write_input(&many_next, args.tenants, args.per_tenant, events);
    println!(
        "tenants: {} tenants x {} events against 1 tenant x {events} events ({:.0} MB)",
        args.tenants,
        args.per_tenant,
        std::fs::metadata(&many_input).unwrap().len() as f64 / 1e6
    );
    let endpoint = std::env::var("EMULATOR_S3_ENDPOINT").ok();
    let wants = |what: &str| args.only.as_deref().is_none_or(|o| o == what);
    let mut ratios: Vec<(&str, f64)> = Vec::new();
    for run in 1..=args.runs {
        let gzip = floor("gzip", &["-6", "-c"], &many_input).map_or(f64::NAN, |d| d.as_secs_f64());
        if wants("volume") {
            let base = dir.path().join(format!("volume{run}"));
            let volume = |root: PathBuf| move |t: usize| json!({"name": "vol", "type": "pv", "root": root, "prefix": format!("t{t:05}")});
            let one_config = setup(
                &base.join("one"),
                &one_input,
                &one,
                volume(base.join("one/out")),
            );
            let many_config = setup(
                &base.join("many"),
                &many_input,
                &many,
                volume(base.join("many/out")),
            );
            let (a, b) = (export(&one_config), export(&many_config));
            report("volume", run, events, &a, &b, gzip);
            ratios.push(("volume", b.took.as_secs_f64() / a.took.as_secs_f64()));
            let out = base.join("many/out");
            let files: Vec<(String, Vec<u8>)> = common::support::files_under(&out)
                .into_iter()
                .map(|p| {
                    let name = p.strip_prefix(&out).unwrap().to_string_lossy().into_owned();
                    (name, std::fs::read(&p).unwrap())
                })
                .collect();
            let prefixes: std::collections::HashSet<String> =
                files.iter().map(|(n, _)| n[..6].to_string()).collect();
            let checked = check_placement(files, |n| n[1..6].parse().unwrap(), &many, events);
            // An export tick with nothing new, then the next round into the same prefixes.
            let (a, b) = (export(&one_config), export(&many_config));
            report("volume idle", run, 0, &a, &b, gzip);
            ingest(&one_config, &one_next);
            ingest(&many_config, &many_next);
            let (a, b) = (export(&one_config), export(&many_config));
            report("volume steady", run, events, &a, &b, gzip);
            ratios.push(("volume steady", b.took.as_secs_f64() / a.took.as_secs_f64()));
            let floor = volume_floor(&base.join("floor"), args.tenants, 26_000);
            println!(
                "volume run {run}: placement: {checked} events in {} tenant prefixes, 0 cross-tenant, each once; the volume's floor, {} fresh prefixes each with one fsynced file of 26 KB, 16 threads: {:.2} s; many tenants / floor {:.2}x",
                prefixes.len(),
                args.tenants,
                floor.as_secs_f64(),
                b.took.as_secs_f64() / floor.as_secs_f64()
            );
            std::fs::remove_dir_all(&base).unwrap();
        }
        if wants("s3") {
            let Some(endpoint) = &endpoint else {
                println!(
                    "s3: EMULATOR_S3_ENDPOINT is not set; `cargo xtask bench tenants` starts moto"
                );
                continue;
            };
            let base = dir.path().join(format!("s3-{run}"));
            let bucket =
                |label: &str, b: usize| format!("tenants-{label}-{}-{run}-{b}", std::process::id());
            create_bucket(endpoint, &bucket("one", 0));
            for b in 0..args.buckets {
                create_bucket(endpoint, &bucket("many", b));
            }
            let s3 = |label: &'static str, buckets: usize| {
                let bucket = &bucket;
                move |t: usize| {
                    json!({"name": "s3", "type": "s3", "bucket": bucket(label, t % buckets),
                           "prefix": format!("t{t:05}"), "region": "us-east-1",
                           "endpoint": endpoint, "force_path_style": true,
                           "access_key_id": "test", "secret_access_key": "test",
                           "compression": "gzip"})
                }
            };
            let one_config = setup(&base.join("one"), &one_input, &one, s3("one", 1));
            let many_config = setup(
                &base.join("many"),
                &many_input,
                &many,
                s3("many", args.buckets),
            );
            let (a, b) = (export(&one_config), export(&many_config));
            report("s3", run, events, &a, &b, gzip);
            let objects = read_buckets(endpoint, (0..args.buckets).map(|b| (b, bucket("many", b))));
            let buckets_used = args.buckets;
            let checked = check_placement(
                objects,
                |n| {
                    let (b, key) = n.split_once('/').unwrap();
                    let t: usize = key[1..6].parse().unwrap();
                    assert_eq!(
                        t % buckets_used,
                        b.parse::<usize>().unwrap(),
                        "{n}: wrong bucket"
                    );
                    t
                },
                &many,
                events,
            );
            println!(
                "s3 run {run}: placement: {checked} events in {} buckets, 0 cross-tenant, each once",
                args.buckets
            );
            // What moto alone takes for as many PUTs as the many tenants' files, of their
            // average size (gzip NDJSON of E events is about 10 KB for the defaults).
            let floor = put_floor(endpoint, &bucket("floor", 0), args.tenants, 10_000);
            println!(
                "s3 run {run}: moto's floor, {} PUTs of 10 KB from 16 threads: {:.2} s; many tenants / floor {:.2}x",
                args.tenants,
                floor.as_secs_f64(),
                b.took.as_secs_f64() / floor.as_secs_f64()
            );
            ratios.push(("s3", b.took.as_secs_f64() / a.took.as_secs_f64()));
            std::fs::remove_dir_all(&base).unwrap();
        }
    }
    for what in ["volume", "volume steady", "s3"] {
        let mut r: Vec<f64> = ratios
            .iter()
            .filter(|(w, _)| *w == what)
            .map(|(_, r)| *r)
            .collect();
        if r.is_empty() {
            continue;
        }
        r.sort_by(f64::total_cmp);
        println!(
            "{what}: many/one median {:.2}x (range {:.2}x-{:.2}x over {} runs)",
            r[r.len() / 2],
            r[0],
            r[r.len() - 1],
            r.len()
        );
    }
}
