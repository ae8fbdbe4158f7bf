//! The same events exported with every built-in schema in both formats; the CSV files load
//! into DuckDB with the DDL `auditsync schema ddl --dialect duckdb` prints.

use std::collections::HashSet;
use std::process::Command;

use serde_json::{json, Value};

mod support;
use support::{decode, files_under, Env};

const SCHEMAS: &[&str] = &["uevents", "warehouse", "actor_change", "event"];
const N: u64 = 1_000;
/// 2023-07-29 23:00:00 UTC: one event a minute crosses a day and several hours.
const BASE_MS: i64 = 1_690_671_600_000;
const ACTIONS: &[&str] = &["graph.created", "team.member.added", "getUser"];

/// A canonical event with every field set, awkward text included.
fn event(i: u64) -> Value {
    json!({
        "id": format!("e-{i:04}"),
        "time": BASE_MS + i as i64 * 60_000,
        "actor": {
            "user_id": format!("u-{}", i % 10),
            "user_email": format!("user{i}@example.com"),
            "token_name": if i % 3 == 0 { Value::from("ci-token") } else { Value::Null },
        },
        "action": ACTIONS[(i % 3) as usize],
        "organization": "acme, inc.",
        "outcome": {"code": if i % 11 == 0 { 500 } else { 200 }, "latency_ms": i % 97},
        "params": {"n": i, "email": format!("user{i}@example.com")},
        "payload": format!("[\"_id\",\"{i}\"]"),
        "previous": {"v": i},
        "next": {"v": i + 1, "note": "comma, \"quote\"\nnewline"},
        "extra": {"opType": "Mutation", "APP_ID": format!("app-{}", i % 5)},
    })
}

/// Runs Python with DuckDB: creates the table with `ddl`, COPYs every file into it, and
/// prints the answers to `queries` as one JSON array.
fn duckdb(
    python: &str,
    ddl: &str,
    table: &str,
    files: &[String],
    queries: &[String],
) -> Vec<Value> {
    let script = r#"
import json, sys, duckdb
ddl, table, files, queries = json.loads(sys.stdin.read())
con = duckdb.connect()
con.execute(ddl)
for f in files:
    con.execute(f"COPY \"{table}\" FROM '{f}' (FORMAT CSV, HEADER)")
print(json.dumps([con.execute(q).fetchone()[0] for q in queries], default=str))
"#;
    let input = json!([ddl, table, files, queries]).to_string();
    let out = {
        use std::io::Write;
        let mut child = Command::new(python)
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    assert!(
        out.status.success(),
        "duckdb failed on {table}:\n{ddl}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_same_events_in_every_schema_and_format_load_into_duckdb_with_the_printed_ddl() {
    let Some(python) = auditsync_core::testkit::backend_env("DUCKDB_PYTHON") else {
        return;
    };
    let mut destinations = Vec::new();
    for schema in SCHEMAS {
        for (format, compression) in [("ndjson", "zstd"), ("csv", "gzip")] {
            destinations.push(json!({
                "name": format!("{schema}-{format}"), "type": "pv",
                "root": format!("out/{schema}-{format}"), "format": format,
                "compression": compression, "schema": schema, "max_events": 300,
            }));
        }
    }
    let env = Env::new(json!({
        "enableUserEvents": true, "namespace": "acme", "schema": "event",
        "destinations": destinations,
    }));
    let input: String = (0..N).map(|i| format!("{}\n", event(i))).collect();
    std::fs::write(env.path("events.ndjson"), input).unwrap();
    env.ok(&["ingest", env.path("events.ndjson").to_str().unwrap()]);
    env.ok(&["export", "--once"]);

    for schema in SCHEMAS {
        // NDJSON: every record once, with the schema's columns in order.
        let columns = schema_columns(&env, schema);
        let mut seen = HashSet::new();
        for path in files_under(&env.path(&format!("out/{schema}-ndjson"))) {
            let text = decode(&path.to_string_lossy(), &std::fs::read(&path).unwrap());
            for l in text.lines() {
                let record: serde_json::Map<String, Value> = serde_json::from_str(l).unwrap();
                let keys: Vec<&String> = record.keys().collect();
                assert_eq!(keys, columns.iter().collect::<Vec<_>>(), "{schema}");
                assert!(seen.insert(l.to_string()), "{schema}: a record twice");
            }
        }
        assert_eq!(seen.len() as u64, N, "{schema} ndjson");

        // CSV: into DuckDB with the printed DDL.
        let table = format!("t_{schema}");
        let ddl = env.ok(&[
            "schema",
            "ddl",
            schema,
            "--dialect",
            "duckdb",
            "--format",
            "csv",
            "--table",
            &table,
        ]);
        let files: Vec<String> = files_under(&env.path(&format!("out/{schema}-csv")))
            .iter()
            .map(|p| p.to_string_lossy().to_string())
            .collect();
        assert!(files.len() >= 4, "{schema}: {files:?}");
        let (queries, expected) = checks(schema, &table);
        let answers = duckdb(&python, &ddl, &table, &files, &queries);
        for ((query, answer), want) in queries.iter().zip(&answers).zip(&expected) {
            assert_eq!(answer, want, "{schema}: {query}");
        }
    }
}

fn schema_columns(env: &Env, schema: &str) -> Vec<String> {
    env.ok(&["schema", "show", schema])
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

/// Queries over the loaded table and the answers the generated events imply.
fn checks(schema: &str, table: &str) -> (Vec<String>, Vec<Value>) {
    let t = format!("\"{table}\"");
    let latency_sum: u64 = (0..N).map(|i| i % 97).sum();
    let tokens = (0..N).filter(|i| i % 3 == 0).count();
    let mut pairs: Vec<(String, Value)> = vec![(format!("SELECT count(*) FROM {t}"), json!(N))];
    match schema {
        "uevents" => pairs.extend([
            (format!("SELECT sum(\"latencyInMillis\") FROM {t}"), json!(latency_sum)),
            (format!("SELECT min(\"createdAt\") FROM {t}"), json!(BASE_MS)),
            (
                format!("SELECT json_extract_string(\"nameHints\", '$[0]') FROM {t} WHERE \"userEmail\" = 'user7@example.com'"),
                json!(ACTIONS[1]),
            ),
            (
                format!("SELECT CAST(json_extract(\"requestParams\", '$.n') AS INTEGER) FROM {t} WHERE \"userEmail\" = 'user42@example.com'"),
                json!(42),
            ),
            (format!("SELECT count(*) FROM {t} WHERE \"responseCode\" = 500"), json!((0..N).filter(|i| i % 11 == 0).count())),
            (format!("SELECT min(\"customerName\") FROM {t}"), json!("acme, inc.")),
        ]),
        "warehouse" => pairs.extend([
            (format!("SELECT count(DISTINCT \"EVENT_ID\") FROM {t}"), json!(N)),
            (format!("SELECT min(\"EVENT_TIME\") FROM {t}"), json!("2023-07-29 23:00:00")),
            (format!("SELECT CAST(\"EVENT_DATE\" AS VARCHAR) FROM {t} WHERE \"EVENT_ID\" = 'e-0061'"), json!("2023-07-30")),
            (format!("SELECT CAST(\"EVENT_MONTH\" AS VARCHAR) FROM {t} WHERE \"EVENT_ID\" = 'e-0061'"), json!("2023-07-01")),
            (format!("SELECT sum(\"EVENT_YEAR\") FROM {t}"), json!(2023 * N)),
            (format!("SELECT count(*) FROM {t} WHERE \"APP_ID\" = 'app-3'"), json!(N / 5)),
            (format!("SELECT \"EMAIL\" FROM {t} WHERE \"EVENT_ID\" = 'e-0999'"), json!("user999@example.com")),
            (format!("SELECT count(*) FROM {t} WHERE \"EVENT_TYPE\" = 'getUser'"), json!((0..N).filter(|i| i % 3 == 2).count())),
        ]),
        "actor_change" => pairs.extend([
            (format!("SELECT count(*) FROM {t} WHERE \"actor_access_token_name\" = 'ci-token'"), json!(tokens)),
            (format!("SELECT max(\"timestamp\") FROM {t}"), json!("2023-07-30 15:39:00")),
            (
                format!("SELECT CAST(json_extract(\"next\", '$.v') AS INTEGER) FROM {t} WHERE \"actor_user_email\" = 'user5@example.com'"),
                json!(6),
            ),
            (
                format!("SELECT json_extract_string(\"next\", '$.note') FROM {t} WHERE \"actor_user_email\" = 'user5@example.com'"),
                json!("comma, \"quote\"\nnewline"),
            ),
            (format!("SELECT count(*) FROM {t} WHERE \"previous\" IS NULL"), json!(0)),
        ]),
        "event" => pairs.extend([
            (format!("SELECT json_extract_string(\"actor\", '$.user_email') FROM {t} WHERE \"id\" = 'e-0123'"), json!("user123@example.com")),
            (format!("SELECT min(\"time\") FROM {t}"), json!(BASE_MS)),
            (format!("SELECT json_extract_string(\"extra\", '$.APP_ID') FROM {t} WHERE \"id\" = 'e-0004'"), json!("app-4")),
        ]),
        other => panic!("no checks for {other}"),
    }
    pairs.into_iter().unzip()
}
