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
/// Writes `<dir>/<stem>.json`: the tenant file of `tenant` with these destinations.
fn write_tenant_file(dir: &std::path::Path, stem: &str, tenant: &str, destinations: Value) {
    let file = json!({"tenant": tenant, "destinations": destinations});
    std::fs::write(dir.join(format!("{stem}.json")), file.to_string()).unwrap();
}

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
        write_tenant_file(
            &tenants_dir,
            &format!("{t:03}"),
            &tenant(t),
            json!([
                {"name": "vol", "type": "pv", "root": volume, "prefix": format!("t{t:03}"),
                 "max_events": 3},
                s3_dest,
            ]),
        );
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

/// Empties and deletes a bucket (S3 deletes only empty ones).
async fn delete_bucket(sink: &auditsync_s3::S3Sink, bucket: &str) {
    let client = sink.client().await;
    for meta in sink.list("").await.unwrap() {
        client
            .delete_object()
            .bucket(bucket)
            .key(meta.key.as_str())
            .send()
            .await
            .unwrap();
    }
    client.delete_bucket().bucket(bucket).send().await.unwrap();
}

/// `requestParams.n` of every record in the bucket; panics on a duplicate.
fn numbers_in(rt: &tokio::runtime::Runtime, sink: &dyn Sink) -> Vec<usize> {
    let mut all = Vec::new();
    for meta in rt.block_on(sink.list("")).unwrap_or_default() {
        let body = rt.block_on(sink.get(&meta.key)).unwrap();
        all.extend(
            by_customer(records(meta.key.as_str(), &body))
                .into_iter()
                .map(|(_, n)| n),
        );
    }
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(all.len(), before, "an event exported twice");
    all
}

/// `requestParams.n` of every record on the volume (read through the volume sink, which
/// lists no file still being written); panics on a duplicate.
fn numbers_on_volume(rt: &tokio::runtime::Runtime, root: &std::path::Path) -> Vec<usize> {
    let volume = auditsync_pv::PvSink::new(auditsync_pv::PvConfig {
        root: root.to_path_buf(),
        stale_temp_secs: 600,
    });
    numbers_in(rt, &volume)
}

fn wait_for(what: &str, timeout: std::time::Duration, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn a_tenant_whose_bucket_is_deleted_fails_alone_and_gets_its_backlog_once_it_is_back() {
    let Some(s3) = backend_env("EMULATOR_S3_ENDPOINT") else {
        return;
    };
    // Tenant 0 exports into a bucket of its own, the 999 others onto a volume (1,000
    // tenants in all, as issue 13 asks; a volume keeps the test's reads quick).
    const OTHERS: usize = 999;
    let rt = runtime();
    let lonely = unique("lonely");
    let lonely_sink = {
        let mut options = s3_options(&s3, &lonely);
        options.as_object_mut().unwrap().remove("type");
        auditsync_s3::S3Sink::new(serde_json::from_value(options).unwrap()).unwrap()
    };
    rt.block_on(s3_bucket(&s3, &lonely));

    let (root, root_hash) = support::new_token();
    let (scoped, scoped_hash) = support::new_token();
    let env = Env::new(json!({}));
    let tenants_dir = env.path("tenants");
    let volume = env.path("volume");
    std::fs::create_dir(&tenants_dir).unwrap();
    for t in 0..=OTHERS {
        let mut dest = if t == 0 {
            s3_options(&s3, &lonely)
        } else {
            json!({"type": "pv", "root": volume})
        };
        dest["name"] = json!(if t == 0 { "s3" } else { "vol" });
        dest["prefix"] = json!(format!("t{t:03}"));
        write_tenant_file(
            &tenants_dir,
            &format!("{t:03}"),
            &format!("tenant-{t:03}"),
            json!([dest]),
        );
    }
    env.write_config(json!({
        "enableUserEvents": true, "namespace": "acme", "ueventsSchedule": "@every 1s",
        "ingest": {"listen": "127.0.0.1:0"},
        "tenants_dir": tenants_dir,
        "admin": {"tokens": [
            {"name": "root", "hash": root_hash},
            {"name": "tenant-1 auditor", "hash": scoped_hash, "tenant": "tenant-001"},
        ]},
    }));
    let server = env.start();
    let mut client = support::Client::connect(server.addr).unwrap();
    let mut next = 0;
    let mut post_round = |client: &mut support::Client| -> BTreeMap<usize, Vec<usize>> {
        let mut sent: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut body = String::new();
        for _ in 0..5 {
            for t in 0..=OTHERS {
                body.push_str(&format!(
                    "{}\n",
                    event(next, Some(&format!("tenant-{t:03}")))
                ));
                sent.entry(t).or_default().push(next);
                next += 1;
            }
        }
        let answer = client
            .post("application/x-ndjson", None, body.as_bytes())
            .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text());
        sent
    };
    let in_shared = |rt: &tokio::runtime::Runtime| numbers_on_volume(rt, &volume);
    let in_lonely = |rt: &tokio::runtime::Runtime| numbers_in(rt, &lonely_sink);

    // Everything flows.
    let first = post_round(&mut client);
    let others = |sent: &BTreeMap<usize, Vec<usize>>| -> Vec<usize> {
        let mut all: Vec<usize> = sent
            .iter()
            .filter(|(t, _)| **t != 0)
            .flat_map(|(_, n)| n.clone())
            .collect();
        all.sort_unstable();
        all
    };
    wait_for(
        "the first round",
        std::time::Duration::from_secs(30),
        || in_shared(&rt) == others(&first) && in_lonely(&rt) == first[&0],
    );

    // Tenant 0's bucket goes away: it fails alone, the others go on.
    rt.block_on(delete_bucket(&lonely_sink, &lonely));
    let second = post_round(&mut client);
    let mut both = others(&first);
    both.extend(others(&second));
    both.sort_unstable();
    wait_for(
        "the others' second round",
        std::time::Duration::from_secs(30),
        || in_shared(&rt) == both,
    );
    let root_auth = format!("Bearer {root}");
    let status_of = |client: &mut support::Client, tenant: &str, auth: &str| {
        client
            .request(
                "GET",
                &format!("/v1/tenants/{tenant}/destinations"),
                &[("Authorization", auth)],
                b"",
            )
            .unwrap()
    };
    wait_for(
        "tenant 0 to show as failing",
        std::time::Duration::from_secs(30),
        || {
            let answer = status_of(&mut client, "tenant-000", &root_auth);
            answer.json()["destinations"][0]["state"] == "failing"
        },
    );
    let failing = status_of(&mut client, "tenant-000", &root_auth).json();
    let destination = &failing["destinations"][0];
    assert_eq!(destination["name"], "s3");
    assert_eq!(destination["backlog_events"], 5, "{failing}");
    let reason = destination["last_error"].as_str().unwrap();
    assert!(
        reason.contains("NoSuchBucket") || reason.contains("bucket"),
        "{reason}"
    );
    assert!(destination["next_attempt"].is_string(), "{failing}");
    let healthy = status_of(&mut client, "tenant-003", &root_auth).json();
    assert_eq!(healthy["destinations"][0]["state"], "active", "{healthy}");
    assert_eq!(healthy["destinations"][0]["backlog_events"], 0, "{healthy}");
    let text = client.request("GET", "/metrics", &[], b"").unwrap().text();
    assert!(
        text.contains("auditsync_tenant_destinations 1000"),
        "{text}"
    );
    assert!(
        text.contains("auditsync_tenant_destinations_failing 1"),
        "{text}"
    );
    assert!(
        text.contains("auditsync_tenant_top_backlog_events{destination=\"s3@tenant-000\"} 5"),
        "{text}"
    );
    assert!(
        !text.contains("@tenant-003"),
        "only the top backlogs are named: {text}"
    );

    // A token scoped to tenant 1 sees tenant 1 only.
    let scoped_auth = format!("Bearer {scoped}");
    assert_eq!(
        status_of(&mut client, "tenant-001", &scoped_auth).status,
        200
    );
    assert_eq!(
        status_of(&mut client, "tenant-000", &scoped_auth).status,
        403
    );
    let range = |filter: Option<&str>| {
        let mut body = json!({"from": "2023-01-01", "to": "2024-12-31", "format": "ndjson"});
        if let Some(filter) = filter {
            body["filter"] = json!(filter);
        }
        body.to_string()
    };
    let post_export = |client: &mut support::Client, auth: &str, body: String| {
        client
            .request(
                "POST",
                "/v1/exports",
                &[
                    ("Authorization", auth),
                    ("Content-Type", "application/json"),
                ],
                body.as_bytes(),
            )
            .unwrap()
    };
    let refused = post_export(
        &mut client,
        &scoped_auth,
        range(Some("organization=tenant-000")),
    );
    assert_eq!(refused.status, 403, "{}", refused.text());
    let others_job = post_export(&mut client, &root_auth, range(None)).json();
    let others_id = others_job["id"].as_str().unwrap().to_string();
    for path in [
        format!("/v1/exports/{others_id}"),
        format!("/v1/exports/{others_id}/download"),
    ] {
        let answer = client
            .request("GET", &path, &[("Authorization", &scoped_auth)], b"")
            .unwrap();
        assert_eq!(answer.status, 403, "{path}: {}", answer.text());
    }
    let own = post_export(&mut client, &scoped_auth, range(None));
    assert_eq!(own.status, 202, "{}", own.text());
    let own_id = own.json()["id"].as_str().unwrap().to_string();
    let listed = client
        .request(
            "GET",
            "/v1/exports",
            &[("Authorization", &scoped_auth)],
            b"",
        )
        .unwrap()
        .json();
    let ids: Vec<&str> = listed["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [own_id.as_str()],
        "a scoped token lists its own jobs only"
    );
    let download = format!("/v1/exports/{own_id}/download");
    let mut body = Vec::new();
    wait_for(
        "the scoped export",
        std::time::Duration::from_secs(30),
        || {
            let answer = client
                .request("GET", &download, &[("Authorization", &scoped_auth)], b"")
                .unwrap();
            body = answer.body.clone();
            answer.status == 200
        },
    );
    let customers: Vec<Option<String>> = by_customer(records("x.ndjson", &body))
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    assert_eq!(customers.len(), 10, "tenant 1's two rounds");
    assert!(
        customers.iter().all(|c| c.as_deref() == Some("tenant-001")),
        "{customers:?}"
    );

    // The bucket is back: tenant 0's backlog arrives, once.
    rt.block_on(s3_bucket(&s3, &lonely));
    wait_for(
        "tenant 0's backlog",
        std::time::Duration::from_secs(60),
        || in_lonely(&rt) == second[&0],
    );
    wait_for(
        "tenant 0 to be active",
        std::time::Duration::from_secs(10),
        || {
            status_of(&mut client, "tenant-000", &root_auth).json()["destinations"][0]["state"]
                == "active"
        },
    );
    assert_eq!(in_shared(&rt), both, "nothing more for the others");
    server.terminate();
}

/// A TCP server on loopback that accepts connections and never answers: a sink pointed at
/// it hangs. Dropping it closes them all (and refuses new ones).
struct Hanging {
    addr: std::net::SocketAddr,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hanging {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (stopping, counted) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((connection, _)) => {
                        held.push(connection);
                        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        });
        Self {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    /// Connections accepted so far.
    fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Hanging {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A tenant whose sink hangs (its endpoint accepts and never answers) holds up no other
/// tenant: the service's export ticks go on while its run waits, and do not start it again
/// beside itself.
#[test]
fn a_tenant_whose_sink_hangs_delays_no_other_tenant() {
    let hanging = Hanging::start();
    let rt = runtime();
    let env = Env::new(json!({}));
    let tenants_dir = env.path("tenants");
    let volume = env.path("volume");
    std::fs::create_dir(&tenants_dir).unwrap();
    let mut slow = s3_options(&format!("http://{}", hanging.addr), "hangs");
    slow["name"] = json!("s3");
    let quick = json!({"name": "vol", "type": "pv", "root": volume});
    for (t, dest) in [(0, slow), (1, quick)] {
        write_tenant_file(
            &tenants_dir,
            &t.to_string(),
            &format!("tenant-{t}"),
            json!([dest]),
        );
    }
    env.write_config(json!({
        "enableUserEvents": true, "namespace": "acme", "ueventsSchedule": "@every 1s",
        "ingest": {"listen": "127.0.0.1:0"},
        "tenants_dir": tenants_dir,
    }));
    let server = env.start();
    let mut client = support::Client::connect(server.addr).unwrap();
    let mut quick_sent = Vec::new();
    for round in 0..2 {
        let mut body = String::new();
        for i in 0..3 {
            let n = round * 10 + i;
            body.push_str(&format!("{}\n", event(n, Some("tenant-0"))));
            body.push_str(&format!("{}\n", event(100 + n, Some("tenant-1"))));
            quick_sent.push(100 + n);
        }
        let answer = client
            .post("application/x-ndjson", None, body.as_bytes())
            .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text());
        // Each round reaches the quick tenant's volume while the slow one's first run
        // still waits on its endpoint.
        wait_for(
            &format!("round {round} on the volume"),
            std::time::Duration::from_secs(20),
            || numbers_on_volume(&rt, &volume) == quick_sent,
        );
    }
    // One run of the slow tenant, one connection, over all those ticks: a run is not
    // started again beside itself (it would connect again).
    assert_eq!(hanging.connections(), 1);
    // Closing the endpoint ends the slow run (with an error), so the service can stop.
    drop(hanging);
    server.terminate();
}

#[test]
fn tenant_destinations_are_configured_over_the_api_verified_first_and_reloaded_from_files() {
    let Some(s3) = backend_env("EMULATOR_S3_ENDPOINT") else {
        return;
    };
    let rt = runtime();
    let bucket = unique("api");
    let sink = rt.block_on(s3_bucket(&s3, &bucket));
    let (root, root_hash) = support::new_token();
    let (scoped, scoped_hash) = support::new_token();
    let env = Env::new(json!({}));
    let tenants_dir = env.path("tenants");
    std::fs::create_dir(&tenants_dir).unwrap();
    let key_file = env.path("s3-secret");
    std::fs::write(&key_file, "test\n").unwrap();
    env.write_config(json!({
        "enableUserEvents": true, "namespace": "acme", "ueventsSchedule": "@every 1s",
        "ingest": {"listen": "127.0.0.1:0"},
        "tenants_dir": tenants_dir,
        "admin": {"tokens": [
            {"name": "root", "hash": root_hash},
            {"name": "b's auditor", "hash": scoped_hash, "tenant": "tenant-b"},
        ]},
    }));
    let server = env.start();
    let mut client = support::Client::connect(server.addr).unwrap();
    let root_auth = format!("Bearer {root}");
    let mut call = |method: &str, path: &str, auth: &str, body: Option<Value>| {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        client
            .request(
                method,
                path,
                &[
                    ("Authorization", auth),
                    ("Content-Type", "application/json"),
                ],
                body.as_bytes(),
            )
            .unwrap()
    };
    let tenant_files = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&tenants_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        names
    };

    // A volume destination for tenant-a: created, in a file of its own.
    let volume = env.path("volume");
    let put = call(
        "PUT",
        "/v1/tenants/tenant-a/destinations/vol",
        &root_auth,
        Some(json!({"type": "pv", "root": volume, "prefix": "a"})),
    );
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(put.json()["verified"], true);
    assert_eq!(tenant_files().len(), 1);
    let again = call(
        "PUT",
        "/v1/tenants/tenant-a/destinations/vol",
        &root_auth,
        Some(json!({"type": "pv", "root": volume, "prefix": "a", "max_events": 50})),
    );
    assert_eq!(again.status, 200, "{}", again.text());
    assert!(
        files_under(&volume).is_empty(),
        "the verify object is deleted"
    );

    // Refused, and nothing written: a literal secret, a bucket that does not exist, a bad
    // field, another tenant's token.
    let mut s3_dest = s3_options(&s3, &bucket);
    s3_dest["secret_access_key"] = json!({"file": key_file});
    let mut literal = s3_dest.clone();
    literal["secret_access_key"] = json!("test");
    let answer = call(
        "PUT",
        "/v1/tenants/tenant-a/destinations/s3",
        &root_auth,
        Some(literal),
    );
    assert_eq!(answer.status, 422, "{}", answer.text());
    assert!(
        answer.text().contains("secret_access_key") && !answer.text().contains("\"test\""),
        "{}",
        answer.text()
    );
    let mut missing = s3_dest.clone();
    missing["bucket"] = json!(unique("nobucket"));
    let answer = call(
        "PUT",
        "/v1/tenants/tenant-a/destinations/s3",
        &root_auth,
        Some(missing),
    );
    assert_eq!(answer.status, 422, "{}", answer.text());
    assert_eq!(
        answer.json()["error"]["code"],
        "verify_failed",
        "{}",
        answer.text()
    );
    let answer = call(
        "PUT",
        "/v1/tenants/tenant-a/destinations/s3",
        &root_auth,
        Some(json!({"type": "pv", "root": volume, "max_events": 0})),
    );
    assert_eq!(answer.status, 422, "{}", answer.text());
    assert!(answer.text().contains("max_events"), "{}", answer.text());
    let scoped_auth = format!("Bearer {scoped}");
    let answer = call(
        "PUT",
        "/v1/tenants/tenant-a/destinations/s3",
        &scoped_auth,
        Some(s3_dest.clone()),
    );
    assert_eq!(answer.status, 403, "{}", answer.text());
    let listed = call("GET", "/v1/tenants/tenant-a/destinations", &root_auth, None).json();
    assert_eq!(
        listed["destinations"].as_array().unwrap().len(),
        1,
        "{listed}"
    );

    // The S3 one with its secret by reference: verified, saved; a GET masks it.
    let answer = call(
        "PUT",
        "/v1/tenants/tenant-a/destinations/s3",
        &root_auth,
        Some(s3_dest),
    );
    assert_eq!(answer.status, 201, "{}", answer.text());
    let shown = call(
        "GET",
        "/v1/tenants/tenant-a/destinations/s3",
        &root_auth,
        None,
    )
    .json();
    assert_eq!(shown["config"]["bucket"], json!(bucket), "{shown}");
    assert_eq!(shown["config"]["secret_access_key"], "***", "{shown}");

    // Events of tenant-a reach both; tenant-b's reach neither.
    let body: String = (0..20)
        .map(|n| {
            format!(
                "{}\n",
                event(n, Some(if n % 2 == 0 { "tenant-a" } else { "tenant-b" }))
            )
        })
        .collect();
    assert_eq!(
        client
            .post("application/x-ndjson", None, body.as_bytes())
            .unwrap()
            .status,
        200
    );
    let evens: Vec<usize> = (0..20).step_by(2).collect();
    wait_for(
        "tenant-a's events in both",
        std::time::Duration::from_secs(30),
        || {
            numbers_in(&rt, sink.as_ref()) == evens && {
                let mut on_volume: Vec<usize> = files_under(&volume)
                    .iter()
                    .flat_map(|p| {
                        by_customer(records(&p.to_string_lossy(), &std::fs::read(p).unwrap()))
                    })
                    .map(|(_, n)| n)
                    .collect();
                on_volume.sort_unstable();
                on_volume == evens
            }
        },
    );

    // A file written by hand is picked up without a restart; a broken one changes nothing.
    let b_volume = env.path("b-volume");
    write_tenant_file(
        &tenants_dir,
        "b",
        "tenant-b",
        json!([{"name": "vol", "type": "pv", "root": b_volume}]),
    );
    let mut call = |method: &str, path: &str, auth: &str| {
        client
            .request(method, path, &[("Authorization", auth)], b"")
            .unwrap()
    };
    wait_for(
        "tenant-b's file to load",
        std::time::Duration::from_secs(15),
        || call("GET", "/v1/tenants/tenant-b/destinations", &scoped_auth).status == 200,
    );
    wait_for(
        "tenant-b's events on its volume",
        std::time::Duration::from_secs(30),
        || {
            files_under(&b_volume)
                .iter()
                .flat_map(|p| {
                    by_customer(records(&p.to_string_lossy(), &std::fs::read(p).unwrap()))
                })
                .count()
                == 10
        },
    );
    std::fs::write(tenants_dir.join("c.json"), "{ not json").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let log = std::fs::read_to_string(env.path("server.log")).unwrap();
    assert!(
        log.contains("tenant files not reloaded") && log.contains("c.json"),
        "{log}"
    );
    assert_eq!(
        call("GET", "/v1/tenants/tenant-b/destinations", &root_auth).status,
        200
    );
    // SIGHUP after the fix.
    write_tenant_file(
        &tenants_dir,
        "c",
        "tenant-c",
        json!([{"name": "vol", "type": "pv", "root": env.path("c-volume")}]),
    );
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_for(
        "tenant-c after SIGHUP",
        std::time::Duration::from_secs(10),
        || call("GET", "/v1/tenants/tenant-c/destinations", &root_auth).status == 200,
    );

    // Deleted: gone from the file and the service.
    assert_eq!(
        call(
            "DELETE",
            "/v1/tenants/tenant-a/destinations/vol",
            &root_auth
        )
        .status,
        204
    );
    assert_eq!(
        call("GET", "/v1/tenants/tenant-a/destinations/vol", &root_auth).status,
        404
    );
    assert_eq!(
        call("GET", "/v1/tenants/tenant-a/destinations/s3", &root_auth).status,
        200
    );
    assert_eq!(
        call(
            "DELETE",
            "/v1/tenants/tenant-a/destinations/s3",
            &scoped_auth
        )
        .status,
        403
    );
    assert_eq!(
        call("DELETE", "/v1/tenants/tenant-a/destinations/s3", &root_auth).status,
        204
    );
    assert_eq!(
        call("GET", "/v1/tenants/tenant-a/destinations", &root_auth).status,
        404
    );
    assert_eq!(
        tenant_files(),
        ["b.json", "c.json"],
        "tenant-a's file went with its last destination"
    );
    server.terminate();
}

#[test]
fn a_paused_tenant_destination_keeps_its_backlog_up_to_its_bound() {
    let env = Env::new(json!({}));
    let tenants_dir = env.path("tenants");
    std::fs::create_dir(&tenants_dir).unwrap();
    let tenant_file = |paused: bool| {
        json!({"tenant": "p", "destinations": [
            {"name": "vol", "type": "pv", "root": env.path("p"), "paused": paused,
             "paused_max_backlog": 10}]})
        .to_string()
    };
    std::fs::write(tenants_dir.join("p.json"), tenant_file(true)).unwrap();
    env.write_config(json!({
        "enableUserEvents": true, "namespace": "acme", "tenants_dir": tenants_dir,
        "destinations": [{"name": "all", "type": "pv", "root": "all"}],
    }));
    let mut next = 0;
    let mut ingest = |n: usize| {
        let lines: Vec<Value> = (next..next + n).map(|i| event(i, Some("p"))).collect();
        next += n;
        env.ingest(&lines);
    };
    let export_and_gc = || -> (String, String) {
        let exported = env.ok(&["export", "--once"]);
        let gc = env.run(&["gc", "--once"]);
        assert!(gc.status.success());
        (exported, String::from_utf8_lossy(&gc.stderr).into_owned())
    };

    // Paused: `all` exports, the paused one does not, and GC keeps what it lacks.
    ingest(6);
    let (exported, log) = export_and_gc();
    assert!(exported.contains("vol@p: skipped: paused"), "{exported}");
    assert!(exported.contains("all: 1 files, 6 events"), "{exported}");
    assert!(!log.contains("backlog bound"), "{log}");
    assert_eq!(env.events_held(), 6);
    // Near its bound (8 of 10): a warning.
    ingest(3);
    let (_, log) = export_and_gc();
    assert!(log.contains("nears its backlog bound"), "{log}");
    assert_eq!(env.events_held(), 9);
    // Past it: GC goes on without it, and says so.
    ingest(2);
    let (_, log) = export_and_gc();
    assert!(log.contains("past its backlog bound"), "{log}");
    assert_eq!(env.events_held(), 0);
    // Resumed: it gets what is still stored, from where GC left it.
    std::fs::write(tenants_dir.join("p.json"), tenant_file(false)).unwrap();
    ingest(1);
    let exported = env.ok(&["export", "--once"]);
    assert!(exported.contains("vol@p: 1 files, 1 events"), "{exported}");
    assert!(files_under(&env.path("p")).len() == 1);
}
