//! `auditsync schedule` through the real binary: fire times as robfig/cron v3 computes them
//! (the expected instants come from robfig/cron v3.0.1 itself, run by `xtask/robfig-oracle`),
//! and expressions refused when the config is loaded.

use std::process::Output;

use serde_json::{json, Value};

mod support;
use support::Env;

fn auditsync(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_auditsync"))
        .args(args)
        .env("AUDITSYNC_LOG", "warn")
        .env("AUDITSYNC_CONFIG", "/nonexistent/auditsync.json")
        .output()
        .unwrap()
}

/// Runs `command`, killing it if it has not exited after 20 s (a `run` that started).
fn output_within_20s(mut command: std::process::Command) -> Output {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// `schedule EXPR --at START --count N --json`, parsed.
fn fire_times(expr: &str, start: &str, count: usize) -> (bool, Value) {
    let out = auditsync(&[
        "schedule",
        expr,
        "--at",
        start,
        "--count",
        &count.to_string(),
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{expr}: {e}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), json["schedules"][0].clone())
}

#[test]
fn fires_where_robfig_cron_fires_across_zones_and_daylight_saving() {
    // (expression, start, the next fire times robfig/cron v3.0.1 computes, in UTC)
    let table: &[(&str, &str, &[&str])] = &[
        // names and a range
        (
            "0 15 10 * * mon-fri",
            "2024-03-08T11:00:00Z",
            &[
                "2024-03-11T10:15:00Z",
                "2024-03-12T10:15:00Z",
                "2024-03-13T10:15:00Z",
            ],
        ),
        // month names in any case, a list, `?`
        (
            "0 0 0 1 jan-mar,DEC ?",
            "2024-04-01T00:00:00Z",
            &[
                "2024-12-01T00:00:00Z",
                "2025-01-01T00:00:00Z",
                "2025-02-01T00:00:00Z",
            ],
        ),
        // a range with a step
        (
            "0 0 9-17/4 * * *",
            "2024-03-10T13:00:00Z",
            &[
                "2024-03-10T17:00:00Z",
                "2024-03-11T09:00:00Z",
                "2024-03-11T13:00:00Z",
                "2024-03-11T17:00:00Z",
            ],
        ),
        // `a/n` runs from a to the field's maximum
        (
            "15/20 * * * * *",
            "2024-03-10T10:00:36Z",
            &[
                "2024-03-10T10:00:55Z",
                "2024-03-10T10:01:15Z",
                "2024-03-10T10:01:35Z",
            ],
        ),
        // a step over `*`
        (
            "0 */20 * * * ?",
            "2024-03-10T10:05:00Z",
            &[
                "2024-03-10T10:20:00Z",
                "2024-03-10T10:40:00Z",
                "2024-03-10T11:00:00Z",
            ],
        ),
        // day of month and day of week both restricted: either may match
        (
            "0 0 0 13 * fri",
            "2024-09-01T00:00:00Z",
            &[
                "2024-09-06T00:00:00Z",
                "2024-09-13T00:00:00Z",
                "2024-09-20T00:00:00Z",
                "2024-09-27T00:00:00Z",
            ],
        ),
        // `*/1` still counts as `*`: both must match (Mondays only)
        (
            "0 0 0 */1 * mon",
            "2024-09-01T00:00:00Z",
            &["2024-09-02T00:00:00Z", "2024-09-09T00:00:00Z"],
        ),
        // `*/2` is a restriction: odd days or Mondays
        (
            "0 0 0 */2 * mon",
            "2024-09-01T00:00:00Z",
            &[
                "2024-09-02T00:00:00Z",
                "2024-09-03T00:00:00Z",
                "2024-09-05T00:00:00Z",
            ],
        ),
        // descriptors
        (
            "@yearly",
            "2024-03-10T10:00:00Z",
            &["2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z"],
        ),
        (
            "@annually",
            "2024-03-10T10:00:00Z",
            &["2025-01-01T00:00:00Z"],
        ),
        (
            "@monthly",
            "2024-03-10T10:00:00Z",
            &["2024-04-01T00:00:00Z", "2024-05-01T00:00:00Z"],
        ),
        (
            "@weekly",
            "2024-03-10T10:00:00Z",
            &["2024-03-17T00:00:00Z", "2024-03-24T00:00:00Z"],
        ),
        (
            "@daily",
            "2024-03-10T10:00:00Z",
            &["2024-03-11T00:00:00Z", "2024-03-12T00:00:00Z"],
        ),
        (
            "@midnight",
            "2024-03-10T10:00:00Z",
            &["2024-03-11T00:00:00Z"],
        ),
        (
            "@hourly",
            "2024-03-10T10:59:59Z",
            &["2024-03-10T11:00:00Z", "2024-03-10T12:00:00Z"],
        ),
        // `@every`: from the previous run, whole seconds
        (
            "@every 1h30m",
            "2024-03-10T10:00:00.5Z",
            &["2024-03-10T11:30:00Z", "2024-03-10T13:00:00Z"],
        ),
        (
            "@every 90s",
            "2024-03-10T10:00:00Z",
            &["2024-03-10T10:01:30Z", "2024-03-10T10:03:00Z"],
        ),
        // time zones, by either prefix
        (
            "CRON_TZ=Europe/Berlin 0 0 2 * * *",
            "2024-01-01T00:00:00Z",
            &["2024-01-01T01:00:00Z", "2024-01-02T01:00:00Z"],
        ),
        (
            "TZ=Asia/Kolkata 0 30 9 * * *",
            "2024-01-01T00:00:00Z",
            &["2024-01-01T04:00:00Z", "2024-01-02T04:00:00Z"],
        ),
        // New York, 10 March 2024: 02:30 does not exist, so nothing fires that day
        (
            "CRON_TZ=America/New_York 0 30 2 * * *",
            "2024-03-09T12:00:00Z",
            &[
                "2024-03-11T06:30:00Z",
                "2024-03-12T06:30:00Z",
                "2024-03-13T06:30:00Z",
            ],
        ),
        // New York, 3 November 2024: 01:30 happens twice, and fires twice
        (
            "CRON_TZ=America/New_York 0 30 1 * * *",
            "2024-11-02T12:00:00Z",
            &[
                "2024-11-03T05:30:00Z",
                "2024-11-03T06:30:00Z",
                "2024-11-04T06:30:00Z",
                "2024-11-05T06:30:00Z",
            ],
        ),
        // hourly across fall-back (01:00 twice) and spring-forward (no 02:00)
        (
            "CRON_TZ=America/New_York 0 0 * * * *",
            "2024-11-03T04:30:00Z",
            &[
                "2024-11-03T05:00:00Z",
                "2024-11-03T06:00:00Z",
                "2024-11-03T07:00:00Z",
                "2024-11-03T08:00:00Z",
            ],
        ),
        (
            "CRON_TZ=America/New_York 0 0 * * * *",
            "2024-03-10T05:30:00Z",
            &[
                "2024-03-10T06:00:00Z",
                "2024-03-10T07:00:00Z",
                "2024-03-10T08:00:00Z",
            ],
        ),
        // a descriptor in a zone: midnight local, EST then EDT
        (
            "CRON_TZ=America/New_York @daily",
            "2024-03-09T12:00:00Z",
            &[
                "2024-03-10T05:00:00Z",
                "2024-03-11T04:00:00Z",
                "2024-03-12T04:00:00Z",
            ],
        ),
        // Havana, 10 March 2024: the clocks go from 23:59:59 to 01:00, midnight does not exist and the day does not fire
        (
            "CRON_TZ=America/Havana 0 0 0 * * *",
            "2024-03-09T12:00:00Z",
            &[
                "2024-03-11T04:00:00Z",
                "2024-03-12T04:00:00Z",
                "2024-03-13T04:00:00Z",
            ],
        ),
        (
            "CRON_TZ=America/Havana 0 30 0 * * *",
            "2024-03-09T12:00:00Z",
            &[
                "2024-03-11T04:30:00Z",
                "2024-03-12T04:30:00Z",
                "2024-03-13T04:30:00Z",
            ],
        ),
        // Sao Paulo, 4 November 2018: the same, in the southern spring
        (
            "CRON_TZ=America/Sao_Paulo 0 0 0 * * *",
            "2018-11-03T12:00:00Z",
            &[
                "2018-11-05T02:00:00Z",
                "2018-11-06T02:00:00Z",
                "2018-11-07T02:00:00Z",
            ],
        ),
        (
            "CRON_TZ=America/Santiago 0 0 0 * * *",
            "2024-09-07T12:00:00Z",
            &[
                "2024-09-09T03:00:00Z",
                "2024-09-10T03:00:00Z",
                "2024-09-11T03:00:00Z",
            ],
        ),
        // Berlin, 31 March 2024: 02:30 is skipped there too
        (
            "CRON_TZ=Europe/Berlin 0 30 2 * * *",
            "2024-03-30T12:00:00Z",
            &[
                "2024-04-01T00:30:00Z",
                "2024-04-02T00:30:00Z",
                "2024-04-03T00:30:00Z",
            ],
        ),
        // a date that never comes
        ("0 0 0 30 Feb ?", "2024-01-01T00:00:00Z", &["never"]),
    ];
    for (expr, start, expected) in table {
        let (ok, entry) = fire_times(expr, start, expected.len());
        if expected == &["never"] {
            assert!(!ok, "{expr}: a schedule that never fires exits 1");
            assert_eq!(entry["neverFires"], json!(true), "{expr}");
            continue;
        }
        assert!(ok, "{expr}: {entry}");
        let got: Vec<&str> = entry["next"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["utc"].as_str().unwrap())
            .collect();
        assert_eq!(&got, expected, "{expr} after {start}");
    }
}

#[test]
fn times_are_shown_in_the_schedules_own_zone_with_their_offset() {
    // The hour New York repeats at fall-back: the same wall-clock time, two offsets.
    let (ok, entry) = fire_times(
        "CRON_TZ=America/New_York 0 30 1 * * *",
        "2024-11-02T12:00:00-04:00",
        3,
    );
    assert!(ok);
    assert_eq!(entry["timeZone"], "America/New_York");
    let local: Vec<&str> = entry["next"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["local"].as_str().unwrap())
        .collect();
    assert_eq!(
        local,
        [
            "2024-11-03T01:30:00-04:00",
            "2024-11-03T01:30:00-05:00",
            "2024-11-04T01:30:00-05:00"
        ]
    );
    // The text form prints both clocks too.
    let out = auditsync(&[
        "schedule",
        "TZ=Asia/Kolkata 0 30 9 * * *",
        "--at",
        "2024-01-01T00:00:00Z",
        "--count",
        "1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("2024-01-01T04:00:00Z") && text.contains("2024-01-01T09:30:00+05:30"),
        "{text}"
    );
}

#[test]
fn bad_input_to_the_command_is_refused_with_the_reason() {
    for (args, expected) in [
        (
            vec!["schedule", "@daily", "--at", "2024-01-01 00:00"],
            "--at `2024-01-01 00:00`: expected RFC 3339",
        ),
        (
            vec!["schedule", "@daily", "--at", "2024-01-01T00:00:00"],
            "expected RFC 3339 with an offset",
        ),
        (
            vec!["schedule", "@daily", "--count", "0"],
            "--count 0: expected 1 to 1000",
        ),
        (
            vec!["schedule", "0 0 0 * * 1#2"],
            "day of week field `1#2`: `1#2` is not a number or a name",
        ),
    ] {
        let out = auditsync(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
    }
    let out = auditsync(&["schedule", "0 0 0 30 Feb ?"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("never fires"));
}

#[test]
fn a_config_with_an_unreadable_schedule_is_refused_naming_key_field_and_reason() {
    let cases = [
        (
            "ueventsSchedule",
            "*/0 * * * * *",
            "seconds field `*/0`: step must be at least 1",
        ),
        (
            "ueventsSchedule",
            "0 60 * * * *",
            "minutes field `60`: 60 is outside 0-59",
        ),
        (
            "ueventsGCSchedule",
            "0 0 5-2 * * *",
            "hours field `5-2`: range start 5 is beyond its end 2",
        ),
        (
            "ueventsGCSchedule",
            "@fortnightly",
            "unknown descriptor `@fortnightly`",
        ),
        (
            "ueventsSchedule",
            "@every 5d",
            "duration `5d`: unknown unit `d`",
        ),
        ("ueventsSchedule", "@every soon", "duration `soon`"),
        (
            "ueventsGCSchedule",
            "CRON_TZ=Europe/Atlantis 0 0 2 * * *",
            "unknown time zone `Europe/Atlantis`",
        ),
        (
            "ueventsSchedule",
            "0 */5 * * *",
            "expected 6 fields (second minute hour day-of-month month day-of-week), found 5",
        ),
        (
            "ueventsSchedule",
            "0 0 0 30 Feb ?",
            "`0 0 0 30 Feb ?` never fires",
        ),
        ("syncs", "0 0 0 * * 7", "config key `syncs[0].schedule`"),
    ];
    for (key, expr, reason) in cases {
        let mut config = json!({
            "destinations": [{"name": "local", "type": "pv", "root": "out"}],
            "ingest": {"listen": "127.0.0.1:0"},
        });
        if key == "syncs" {
            config["syncs"] =
                json!([{"name": "m", "from": "local", "to": "file:///tmp/m", "schedule": expr}]);
        } else {
            config[key] = json!(expr);
        }
        let env = Env::new(config);
        for command in [&["config", "check"][..], &["run"], &["schedule"]] {
            let out = output_within_20s(env.command(command));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{expr}: `{command:?}` started");
            if key != "syncs" {
                assert!(
                    stderr.contains(&format!("config key `{key}`")),
                    "{expr}: {stderr}"
                );
            }
            assert!(stderr.contains(reason), "{expr}: {stderr}");
        }
    }
}
