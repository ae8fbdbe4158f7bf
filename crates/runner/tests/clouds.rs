//! The binary against the cloud emulators (moto, Azurite, fake-gcs-server) on loopback,
//! started by `cargo xtask test`. Objects are read back through each sink's own SDK.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditsync_core::testkit::{backend_env, unique_name as unique};
use auditsync_core::Sink;
use serde_json::{json, Value};

mod support;
use support::{collect_records, line, read_back, records, Env};

const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's public development key, documented by Microsoft.
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

struct Endpoints {
    s3: String,
    azure: String,
    gcs: String,
}

fn endpoints() -> Option<Endpoints> {
    Some(Endpoints {
        s3: backend_env("EMULATOR_S3_ENDPOINT")?,
        azure: backend_env("EMULATOR_AZURE_URL")?,
        gcs: backend_env("EMULATOR_GCS_ENDPOINT")?,
    })
}

fn s3_destination(endpoint: &str, bucket: &str) -> Value {
    json!({"name": "s3", "type": "s3", "bucket": bucket, "region": "us-east-1",
           "endpoint": endpoint, "force_path_style": true,
           "access_key_id": "test", "secret_access_key": "test"})
}

fn azure_destination(url: &str, container: &str, key: &str) -> Value {
    let sas = auditsync_azure::account_sas(AZURITE_ACCOUNT, key, "racwdl", "2099-01-01T00:00:00Z")
        .unwrap();
    json!({"name": "azure", "type": "azure", "account_url": url, "container": container,
           "auth": "sas", "sas_token": sas})
}

fn gcs_destination(endpoint: &str, bucket: &str) -> Value {
    json!({"name": "gcs", "type": "gcs", "bucket": bucket, "endpoint": endpoint, "anonymous": true})
}

/// Builds the sink a destination describes (as the runner does) and creates its bucket.
async fn sink_for(destination: &Value) -> Arc<dyn Sink> {
    let mut options = destination.as_object().unwrap().clone();
    let kind = options.remove("type").unwrap();
    for common in ["name", "prefix", "format", "compression", "max_events"] {
        options.remove(common);
    }
    match kind.as_str().unwrap() {
        "s3" => {
            let config = serde_json::from_value(Value::Object(options)).unwrap();
            let sink = auditsync_s3::S3Sink::new(config).unwrap();
            let bucket = destination["bucket"].as_str().unwrap();
            let _ = sink
                .client()
                .await
                .create_bucket()
                .bucket(bucket)
                .send()
                .await;
            Arc::new(sink)
        }
        "azure" => {
            let config = serde_json::from_value(Value::Object(options)).unwrap();
            let sink = auditsync_azure::AzureSink::new(config).unwrap();
            let _ = sink.container_client().create(None).await;
            Arc::new(sink)
        }
        "gcs" => {
            use gcloud_storage::http::buckets::insert::{InsertBucketParam, InsertBucketRequest};
            let config = serde_json::from_value(Value::Object(options)).unwrap();
            let sink = auditsync_gcs::GcsSink::new(config).unwrap();
            let request = InsertBucketRequest {
                name: destination["bucket"].as_str().unwrap().into(),
                param: InsertBucketParam {
                    project: "test".into(),
                    ..Default::default()
                },
                ..Default::default()
            };
            let _ = sink.client().await.unwrap().insert_bucket(&request).await;
            Arc::new(sink)
        }
        other => panic!("no test sink for {other}"),
    }
}

/// Every record in the sink, read through its SDK; panics on a duplicate.
async fn read_sink(sink: &dyn Sink) -> HashMap<u64, Value> {
    let mut all = HashMap::new();
    for meta in sink.list("").await.unwrap() {
        let body = sink.get(&meta.key).await.unwrap();
        assert_eq!(body.len() as u64, meta.size, "{}", meta.key);
        collect_records(&mut all, records(meta.key.as_str(), &body));
    }
    all
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn ten_thousand_events_reach_each_cloud_exactly_once() {
    let Some(ep) = endpoints() else { return };
    let mut destinations = vec![
        s3_destination(&ep.s3, &unique("e2e")),
        azure_destination(&ep.azure, &unique("e2e"), AZURITE_KEY),
        gcs_destination(&ep.gcs, &unique("e2e")),
    ];
    for (d, (format, compression)) in
        destinations
            .iter_mut()
            .zip([("ndjson", "gzip"), ("csv", "zstd"), ("ndjson", "none")])
    {
        d["format"] = json!(format);
        d["compression"] = json!(compression);
        d["prefix"] = json!("tenant-a");
        d["max_events"] = json!(4_000);
    }
    let rt = runtime();
    let sinks: Vec<Arc<dyn Sink>> = rt.block_on(async {
        let mut sinks = Vec::new();
        for d in &destinations {
            sinks.push(sink_for(d).await);
        }
        sinks
    });
    let env = Env::new(
        json!({"enableUserEvents": true, "namespace": "acme", "destinations": destinations}),
    );
    let lines: Vec<Value> = (0..10_000).map(line).collect();
    env.ingest(&lines);
    let out = env.ok(&["export", "--once"]);
    for name in ["s3", "azure", "gcs"] {
        assert!(
            out.contains(&format!("{name}: 3 files, 10000 events")),
            "{out}"
        );
    }
    for (sink, name) in sinks.iter().zip(["s3", "azure", "gcs"]) {
        let exported = rt.block_on(read_sink(sink.as_ref()));
        assert_eq!(exported.len(), 10_000, "{name}");
        for (i, input) in lines.iter().enumerate() {
            for (column, value) in input.as_object().unwrap() {
                assert_eq!(
                    &exported[&(i as u64)][column],
                    value,
                    "{name}: record {i} column {column}"
                );
            }
        }
        let keys = rt.block_on(sink.list("")).unwrap();
        assert!(
            keys.iter().all(|m| m
                .key
                .as_str()
                .starts_with("tenant-a/acme/audit/2023/07/29/")),
            "{name}: {keys:?}"
        );
    }
}

/// A fake-gcs-server of this test's own, on the filesystem backend so that a restart keeps
/// its objects.
struct OwnGcs {
    child: Option<Child>,
    port: u16,
    root: std::path::PathBuf,
    binary: String,
}

impl OwnGcs {
    fn start(binary: String, root: std::path::PathBuf) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut gcs = OwnGcs {
            child: None,
            port,
            root,
            binary,
        };
        gcs.restart();
        gcs
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let url = self.endpoint();
        let child = Command::new(&self.binary)
            .args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                &self.port.to_string(),
            ])
            .args([
                "-external-url",
                &url,
                "-public-host",
                &format!("127.0.0.1:{}", self.port),
            ])
            .args(["-backend", "filesystem", "-filesystem-root"])
            .arg(&self.root)
            .args(["-log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "fake-gcs-server did not come back"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnGcs {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn fan_out_survives_a_gcs_outage_and_every_destination_ends_complete() {
    let Some(ep) = endpoints() else { return };
    let Some(binary) = backend_env("EMULATOR_FAKE_GCS_BIN") else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let mut gcs = OwnGcs::start(binary, scratch.path().join("gcs"));
    let mut destinations = vec![
        s3_destination(&ep.s3, &unique("fan")),
        azure_destination(&ep.azure, &unique("fan"), AZURITE_KEY),
        gcs_destination(&gcs.endpoint(), &unique("fan")),
        json!({"name": "volume", "type": "pv", "root": "volume"}),
    ];
    for d in &mut destinations {
        d["max_events"] = json!(700);
    }
    let rt = runtime();
    let sinks: Vec<Arc<dyn Sink>> = rt.block_on(async {
        let mut sinks = Vec::new();
        for d in &destinations[..3] {
            sinks.push(sink_for(d).await);
        }
        sinks
    });
    let env = Env::new(json!({
        "enableUserEvents": true, "namespace": "acme", "destinations": destinations,
        "retry": {"max_attempts": 2, "initial_delay_ms": 50, "max_delay_ms": 100},
    }));

    env.ingest(&(0..1_500).map(line).collect::<Vec<_>>());
    env.ok(&["export", "--once"]);

    gcs.stop();
    env.ingest(&(1_500..3_000).map(line).collect::<Vec<_>>());
    let out = env.run(&["export", "--once"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("gcs: FAILED after 0 files"), "{stdout}");
    for name in ["s3", "azure", "volume"] {
        assert!(
            stdout.contains(&format!("{name}: 3 files, 1500 events")),
            "{stdout}"
        );
    }
    env.ok(&["gc", "--once"]);
    assert_eq!(env.events_held(), 1_500, "GC keeps what GCS lacks");

    gcs.restart();
    env.ingest(&(3_000..4_000).map(line).collect::<Vec<_>>());
    let out = env.ok(&["export", "--once"]);
    assert!(out.contains("gcs: 4 files, 2500 events"), "{out}");

    for (sink, name) in sinks.iter().zip(["s3", "azure", "gcs"]) {
        let exported = rt.block_on(read_sink(sink.as_ref()));
        assert_eq!(exported.len(), 4_000, "{name}");
    }
    assert_eq!(read_back(&env.path("volume")).len(), 4_000);
    env.ok(&["gc", "--once"]);
    assert_eq!(env.events_held(), 0);
}

#[test]
fn verify_names_destination_operation_and_reason_for_each_cloud() {
    let Some(ep) = endpoints() else { return };
    let wrong_key = "AAAA".repeat(22);
    let destinations = vec![
        s3_destination(&ep.s3, "no-such-bucket"),
        azure_destination(&ep.azure, &unique("denied"), &wrong_key),
        gcs_destination(&ep.gcs, "no-such-bucket"),
    ];
    let env = Env::new(json!({"enableUserEvents": true, "destinations": destinations}));
    let out = env.run(&["verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    let line_of = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} (")))
            .unwrap_or_else(|| panic!("no line for {name}: {stdout}"))
            .to_string()
    };
    let s3 = line_of("s3");
    assert!(
        s3.contains("FAILED: put `verify-test-")
            && s3.contains("NoSuchBucket")
            && s3.contains("no-such-bucket"),
        "{s3}"
    );
    let azure = line_of("azure");
    assert!(
        azure.contains("FAILED: put `verify-test-") && azure.contains("PermissionDenied"),
        "{azure}"
    );
    assert!(
        !azure.contains("sig="),
        "the SAS must not be printed: {azure}"
    );
    let gcs = line_of("gcs");
    assert!(
        gcs.contains("FAILED: put `verify-test-")
            && gcs.contains("NotFound")
            && gcs.contains("no-such-bucket"),
        "{gcs}"
    );
    let _ = Path::new("");
}

/// A sink URL for the S3 emulator; credentials come from the environment.
fn s3_url(endpoint: &str, bucket: &str) -> String {
    format!("s3://{bucket}?endpoint={endpoint}&force_path_style=true&region=us-east-1")
}

/// The AWS provider chain's environment credentials (moto accepts any).
fn with_aws_env(mut cmd: Command) -> Command {
    cmd.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

/// Every object of a sink: key -> bytes.
async fn tree(sink: &dyn Sink) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut all = std::collections::BTreeMap::new();
    for meta in sink.list("").await.unwrap() {
        all.insert(
            meta.key.as_str().to_string(),
            sink.get(&meta.key).await.unwrap().to_vec(),
        );
    }
    all
}

#[test]
fn a_range_export_reads_the_s3_archive_and_the_store_each_event_once_in_time_order() {
    let Some(ep) = endpoints() else { return };
    let bucket = unique("range");
    let mut s3 = s3_destination(&ep.s3, &bucket);
    s3["max_events"] = json!(2_000);
    s3["compression"] = json!("gzip");
    let rt = runtime();
    rt.block_on(sink_for(&s3));
    let env =
        Env::new(json!({"enableUserEvents": true, "namespace": "acme", "destinations": [s3]}));
    env.ingest(&(0..20_000).map(line).collect::<Vec<_>>());
    assert!(env
        .ok(&["export", "--once"])
        .contains("s3: 10 files, 20000 events"));
    env.ok(&["gc", "--once"]);
    assert_eq!(env.events_held(), 0);
    env.ingest(&(20_000..21_000).map(line).collect::<Vec<_>>());

    let base = line(0)["createdAt"].as_i64().unwrap();
    let at = |i: i64| {
        chrono::DateTime::from_timestamp_millis(base + i * 1_000)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let out = env.path("march.csv");
    let output = with_aws_env(env.command(&[
        "export",
        "--from",
        &at(12_345),
        "--to",
        &at(20_500),
        "--source",
        &s3_url(&ep.s3, &bucket),
        "--source-schema",
        "uevents",
        "--format",
        "csv",
        "--out",
        out.to_str().unwrap(),
    ]))
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("exported 8155 events (500 from the store, 7655 from the archive"),
        "{stderr}"
    );
    let records = records("march.csv", &std::fs::read(&out).unwrap());
    let ns: Vec<u64> = records
        .iter()
        .map(|r| r["requestParams"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, (12_345..20_500).collect::<Vec<_>>());
    for (record, n) in records.iter().zip(12_345u64..).step_by(97) {
        assert_eq!(record, &line(n));
    }
}

#[test]
fn sync_copies_s3_to_gcs_and_to_a_volume_resumes_after_a_kill_and_leaves_conflicts_alone() {
    let Some(ep) = endpoints() else { return };
    let (source_bucket, gcs_bucket) = (unique("sync-src"), unique("sync-dst"));
    let mut s3 = s3_destination(&ep.s3, &source_bucket);
    s3["max_events"] = json!(250);
    let gcs = gcs_destination(&ep.gcs, &gcs_bucket);
    let rt = runtime();
    let (source, target) = rt.block_on(async { (sink_for(&s3).await, sink_for(&gcs).await) });
    let env =
        Env::new(json!({"enableUserEvents": true, "namespace": "acme", "destinations": [s3]}));
    env.ingest(&(0..10_000).map(line).collect::<Vec<_>>());
    env.ok(&["export", "--once"]);
    let source_tree = rt.block_on(tree(source.as_ref()));
    assert_eq!(source_tree.len(), 40);

    let sync = |to: &str, extra: &[&str]| {
        let mut args = vec!["sync", "--from", "s3", "--to", to];
        args.extend_from_slice(extra);
        with_aws_env(env.command(&args)).output().unwrap()
    };
    // S3 -> GCS (by URL), then again: nothing to copy.
    let gs = format!("gs://{gcs_bucket}?endpoint={}&anonymous=true", ep.gcs);
    let first = sync(&gs, &[]);
    let stdout = String::from_utf8_lossy(&first.stdout).to_string();
    assert!(
        first.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout.contains("40 missing in the target, 40 copied"),
        "{stdout}"
    );
    assert_eq!(
        rt.block_on(tree(target.as_ref())),
        source_tree,
        "same keys, same bytes"
    );
    let second = sync(&gs, &[]);
    let stdout = String::from_utf8_lossy(&second.stdout).to_string();
    assert!(second.status.success());
    assert!(
        stdout.contains("0 missing in the target, 0 copied") && stdout.contains("40 identical"),
        "{stdout}"
    );

    // S3 -> Azure by URL, the SAS from the environment.
    let container = unique("sync-az");
    let azure = azure_destination(&ep.azure, &container, AZURITE_KEY);
    let azure_sink = rt.block_on(sink_for(&azure));
    let az = format!(
        "az://{AZURITE_ACCOUNT}/{container}/mirror?endpoint={}",
        ep.azure
    );
    let out = with_aws_env(env.command(&["sync", "--from", "s3", "--to", &az]))
        .env(
            "AZURE_STORAGE_SAS_TOKEN",
            azure["sas_token"].as_str().unwrap(),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("sig="), "no SAS in the output: {stdout}");
    let mirrored: std::collections::BTreeMap<String, Vec<u8>> = rt
        .block_on(tree(azure_sink.as_ref()))
        .into_iter()
        .map(|(k, v)| (k.strip_prefix("mirror/").unwrap().to_string(), v))
        .collect();
    assert_eq!(mirrored, source_tree);

    // S3 -> volume, killed halfway, then run again.
    let volume = env.path("volume");
    let url = format!("file://{}", volume.display());
    let mut child =
        with_aws_env(env.command(&["sync", "--from", "s3", "--to", &url, "--concurrency", "1"]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    let count = || {
        support::files_under(&volume)
            .iter()
            .filter(|p| !p.to_string_lossy().contains(".auditsync-tmp"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while count() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = count();
    assert!(
        (5..40).contains(&at_kill),
        "killed after {at_kill} of 40 files"
    );
    let resumed = sync(&url, &[]);
    let stdout = String::from_utf8_lossy(&resumed.stdout).to_string();
    assert!(resumed.status.success(), "{stdout}");
    let volume_tree: std::collections::BTreeMap<String, Vec<u8>> = support::files_under(&volume)
        .into_iter()
        .map(|p| {
            let key = p
                .strip_prefix(&volume)
                .unwrap()
                .to_string_lossy()
                .to_string();
            assert!(
                !key.contains(".auditsync-tmp"),
                "temporary file left: {key}"
            );
            (key, std::fs::read(&p).unwrap())
        })
        .collect();
    assert_eq!(volume_tree, source_tree);

    // A key changed in the target is a conflict, reported and left alone; a dry run too.
    let changed_key = source_tree.keys().nth(7).unwrap().clone();
    let changed = volume.join(&changed_key);
    std::fs::write(&changed, b"tampered\n").unwrap();
    for extra in [&["--dry-run"][..], &[]] {
        let out = sync(&url, extra);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(
            stdout.contains(&format!("conflict: {changed_key}: source")),
            "{stdout}"
        );
        assert!(stdout.contains("39 identical, 1 conflicts"), "{stdout}");
        assert_eq!(std::fs::read(&changed).unwrap(), b"tampered\n");
    }
}

/// Issue 12: one archive with manifests in S3, Azure, GCS and a volume verifies clean through
/// each sink, and a file deleted from each is found there.
#[test]
fn each_cloud_holds_an_archive_that_verifies_and_a_deleted_file_is_found() {
    let Some(ep) = endpoints() else { return };
    let mut destinations = vec![
        s3_destination(&ep.s3, &unique("proof")),
        azure_destination(&ep.azure, &unique("proof"), AZURITE_KEY),
        gcs_destination(&ep.gcs, &unique("proof")),
        json!({"name": "volume", "type": "pv", "root": "volume"}),
    ];
    for d in &mut destinations {
        d["prefix"] = json!("p");
        d["max_events"] = json!(300);
        d["compression"] = json!("gzip");
    }
    let rt = runtime();
    let sinks: Vec<Arc<dyn Sink>> = rt.block_on(async {
        let mut sinks = Vec::new();
        for d in &destinations[..3] {
            sinks.push(sink_for(d).await);
        }
        sinks
    });
    let env = Env::new(json!({}));
    let key = env.path("signing.pem");
    env.ok(&["key", "new", "--out", key.to_str().unwrap()]);
    env.write_config(json!({"enableUserEvents": true, "namespace": "acme",
        "destinations": destinations, "manifests": {"signing_key_file": key}}));
    env.ingest(&(0..1_000).map(line).collect::<Vec<_>>());
    env.ok(&["export", "--once"]);
    env.ingest(&(1_000..1_500).map(line).collect::<Vec<_>>());
    env.ok(&["export", "--once"]);
    for name in ["s3", "azure", "gcs", "volume"] {
        let out = env.ok(&["verify-archive", name]);
        assert!(
            out.contains("2 manifests, 6 files, 1500 records")
                && out.contains("everything verifies"),
            "{name}: {out}"
        );
    }
    for (sink, name) in sinks.iter().zip(["s3", "azure", "gcs"]) {
        let victim = rt.block_on(async {
            let listed = sink.list("p/acme/audit/2023/").await.unwrap();
            let victim = listed[1].key.clone();
            sink.delete(&victim).await.unwrap();
            victim
        });
        let out = env.run(&["verify-archive", name]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let text = String::from_utf8_lossy(&out.stdout);
        let relative = victim.as_str().strip_prefix("p/").unwrap();
        assert!(
            text.contains(&format!("FAIL file_missing {relative}")),
            "{name}: {text}"
        );
    }
}
