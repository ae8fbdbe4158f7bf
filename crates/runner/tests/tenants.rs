//! Tenant destinations (`tenants_dir`): each tenant's events reach that tenant's places
//! only, exactly once, on a volume and in S3 buckets shared by several tenants; GC keeps
//! what a destination that takes an event still lacks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use auditsync_core::testkit::{backend_env, unique_name as unique};
use auditsync_core::{ObjectKey, Sink};
use serde_json::{json, Value};

mod support;
use support::{files_under, records, Env};

/// Tenants with a tenant file.
const TENANTS: usize = 60;
/// Buckets they share (several tenants per bucket, each under its own prefix).
const BUCKETS: usize = 4;
/// Events per tenant.
const PER_TENANT: usize = 8;

/// The tenant of tenant number `t`; some need escaping in JSON and in keys they never
/// reach (the prefix is the tenant's number).
fn tenant(t: usize) -> String {
    match t % 3 {
        0 => format!("tenant-{t:03}"),
        1 => format!("Ünïcode \"{t}\", inc."),
        _ => format!("acme/{t} ltd"),
    }
}

/// Event `n` of `customer` (or of no tenant).
fn event(n: usize, customer: Option<&str>) -> Value {
    let mut line = json!({
        "opType": "Query",
        "createdAt": 1_690_610_557_857u64 + n as u64 * 1_000,
        "nameHints": ["User"],
        "userEmail": format!("user{n}@example.com"),
        "responseCode": 200,
        "requestParams": {"n": n, "email": format!("u{n}@example.com")},
        "latencyInMillis": 3,
    });
    if let Some(customer) = customer {
        line["customerName"] = json!(customer);
    }
    line
}

/// `requestParams.n` of each record, by the record's `customerName` (`None`: none).
fn by_customer(records: Vec<Value>) -> Vec<(Option<String>, usize)> {
    records
        .into_iter()
        .map(|r| {
            let customer = r["customerName"].as_str().map(str::to_string);
            (customer, r["requestParams"]["n"].as_u64().unwrap() as usize)
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn s3_options(endpoint: &str, bucket: &str) -> Value {
    json!({"type": "s3", "bucket": bucket, "region": "us-east-1", "endpoint": endpoint,
           "force_path_style": true, "access_key_id": "test", "secret_access_key": "test"})
}

async fn s3_bucket(endpoint: &str, bucket: &str) -> Arc<dyn Sink> {
    let mut options = s3_options(endpoint, bucket);
    options.as_object_mut().unwrap().remove("type");
    let sink = auditsync_s3::S3Sink::new(serde_json::from_value(options).unwrap()).unwrap();
    sink.client()
        .await
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    Arc::new(sink)
}

/// Checks that each place holds exactly its tenant's events, each once: `found` maps a
/// place (a tenant number) to the (customer, n) pairs read there.
fn assert_placed(
    found: &BTreeMap<usize, Vec<(Option<String>, usize)>>,
    expected: &BTreeMap<usize, Vec<usize>>,
    what: &str,
) {
    let mut cross = 0;
    let mut seen_anywhere = HashMap::new();
    for (t, pairs) in found {
        let mut ns: Vec<usize> = Vec::new();
        for (customer, n) in pairs {
            if customer.as_deref() != Some(tenant(*t).as_str()) {
                cross += 1;
            }
            ns.push(*n);
            *seen_anywhere.entry(*n).or_insert(0) += 1;
        }
        ns.sort_unstable();
        assert_eq!(Some(&ns), expected.get(t), "{what}: tenant {t}");
    }
    assert_eq!(cross, 0, "{what}: events in another tenant's place");
    assert_eq!(
        found.len(),
        expected.len(),
        "{what}: every tenant has a place"
    );
    assert!(
        seen_anywhere.values().all(|c| *c == 1),
        "{what}: an event in two places"
    );
}

#[test]
fn each_tenants_events_reach_its_own_places_once_and_gc_keeps_what_is_not_taken() {
    let Some(s3) = backend_env("EMULATOR_S3_ENDPOINT") else {
        return;
    };
    let rt = runtime();
    let buckets: Vec<String> = (0..BUCKETS)
        .map(|b| unique(&format!("tenants{b}")))
        .collect();
    let sinks: Vec<Arc<dyn Sink>> = rt.block_on(async { futures_join(&s3, &buckets).await });

    let env = Env::new(json!({"enableUserEvents": true, "namespace": "acme"}));
    let tenants_dir = env.path("tenants");
    std::fs::create_dir(&tenants_dir).unwrap();
    let volume = env.path("volume");
    for t in 0..TENANTS {
        let mut s3_dest = s3_options(&s3, &buckets[t % BUCKETS]);
        s3_dest["name"] = json!("s3");
        s3_dest["prefix"] = json!(format!("t{t:03}"));
        s3_dest["compression"] = json!("gzip");
        let file = json!({
            "tenant": tenant(t),
            "destinations": [
                {"name": "vol", "type": "pv", "root": volume, "prefix": format!("t{t:03}"),
                 "max_events": 3},
                s3_dest,
            ],
        });
        std::fs::write(tenants_dir.join(format!("{t:03}.json")), file.to_string()).unwrap();
    }
    // A file that is not JSON by name is not a tenant file.
    std::fs::write(tenants_dir.join("README"), "not a tenant").unwrap();
    let config = |global: bool| {
        let mut config = json!({"enableUserEvents": true, "namespace": "acme",
                                "tenants_dir": tenants_dir});
        if global {
            config["destinations"] = json!([{"name": "all", "type": "pv", "root": "global"}]);
        }
        config
    };
    env.write_config(config(false));
    let check = env.ok(&["config", "check"]);
    assert!(
        check.contains(&format!(
            "tenants: {TENANTS} with {} destination(s)",
            2 * TENANTS
        )),
        "{check}"
    );

    // Tenants' events interleaved, and events of a tenant without a file and of none.
    let mut lines = Vec::new();
    let mut expected: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for round in 0..PER_TENANT {
        for t in 0..TENANTS {
            let n = lines.len();
            lines.push(event(n, Some(&tenant(t))));
            expected.entry(t).or_default().push(n);
        }
        let n = lines.len();
        lines.push(event(
            n,
            if round % 2 == 0 {
                Some("no file")
            } else {
                None
            },
        ));
    }
    let untaken = PER_TENANT;
    env.ingest(&lines);
    let out = env.ok(&["export", "--once"]);
    assert!(out.contains("vol@tenant-000: 3 files, 8 events"), "{out}");

    // The volume: one prefix per tenant.
    let mut found: BTreeMap<usize, Vec<(Option<String>, usize)>> = BTreeMap::new();
    for path in files_under(&volume) {
        let relative = path
            .strip_prefix(&volume)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let t: usize = relative[1..4].parse().unwrap();
        let body = std::fs::read(&path).unwrap();
        found
            .entry(t)
            .or_default()
            .extend(by_customer(records(&relative, &body)));
    }
    assert_placed(&found, &expected, "volume");

    // S3: several tenants per bucket, each under its prefix, in the bucket it was given.
    let mut found: BTreeMap<usize, Vec<(Option<String>, usize)>> = BTreeMap::new();
    for (b, sink) in sinks.iter().enumerate() {
        for meta in rt.block_on(sink.list("")).unwrap() {
            let key = meta.key.as_str();
            let t: usize = key[1..4].parse().unwrap();
            assert_eq!(t % BUCKETS, b, "{key} in bucket {b}");
            assert!(key.ends_with(".ndjson.gz"), "{key}");
            let body = rt
                .block_on(sink.get(&ObjectKey::new(key).unwrap()))
                .unwrap();
            found
                .entry(t)
                .or_default()
                .extend(by_customer(records(key, &body)));
        }
    }
    assert_placed(&found, &expected, "s3");

    // GC: with tenant destinations only, what they all have goes and the rest stays.
    env.ok(&["gc", "--once"]);
    assert_eq!(env.events_held(), untaken as u64);
    // Exported again: nothing new anywhere.
    let again = env.ok(&["export", "--once"]);
    assert!(
        again.contains("vol@tenant-000: 0 files, 0 events"),
        "{again}"
    );

    // A destination of every event takes the rest; then GC leaves nothing.
    env.write_config(config(true));
    let out = env.ok(&["export", "--once"]);
    assert!(
        out.contains(&format!("all: 1 files, {untaken} events")),
        "{out}"
    );
    let global: Vec<(Option<String>, usize)> = files_under(&env.path("global"))
        .iter()
        .flat_map(|p| by_customer(records(&p.to_string_lossy(), &std::fs::read(p).unwrap())))
        .collect();
    assert_eq!(global.len(), untaken);
    assert!(global
        .iter()
        .all(|(customer, _)| customer.as_deref().is_none_or(|c| c == "no file")));
    env.ok(&["gc", "--once"]);
    assert_eq!(env.events_held(), 0);
}

async fn futures_join(endpoint: &str, buckets: &[String]) -> Vec<Arc<dyn Sink>> {
    let mut sinks = Vec::new();
    for bucket in buckets {
        sinks.push(s3_bucket(endpoint, bucket).await);
    }
    sinks
}
