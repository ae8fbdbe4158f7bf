//! Config loading, overrides, validation and masking.

use super::*;

fn link() {
    crate::plugins::link();
}

fn load(json: &str, env: &[(&str, &str)]) -> anyhow::Result<Config> {
    link();
    Config::from_json(
        json,
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

fn err(json: &str, env: &[(&str, &str)]) -> String {
    format!("{:#}", load(json, env).unwrap_err())
}

const DEST: &str = r#"{"name": "local", "type": "pv", "root": "/tmp/x"}"#;

#[test]
fn defaults_are_the_seed_defaults() {
    let config = load("{}", &[]).unwrap();
    assert!(!config.enable_user_events);
    assert_eq!(config.uevents_schedule, "0 0 */1 * * *");
    assert_eq!(config.uevents_gc_schedule, "0 0 1 * * *");
    assert!(!config.disable_uevents_gc);
    assert_eq!(config.schema, "uevents");
}

#[test]
fn errors_name_the_key() {
    let cases = [
        (r#"{"ueventsSchedule": "0 */5 * * *"}"#, "`ueventsSchedule`"),
        (
            r#"{"ueventsGCSchedule": "@sometimes"}"#,
            "`ueventsGCSchedule`",
        ),
        (r#"{"enableUserEvents": "yes"}"#, "`enableUserEvents`"),
        (
            r#"{"enableUserEvent": true}"#,
            "unknown field `enableUserEvent`",
        ),
        (r#"{"namespace": "a/b"}"#, "`namespace`"),
        (
            r#"{"store": {"type": "mysql"}}"#,
            "`store.type`: unknown store `mysql`; known: postgres, sqlite",
        ),
        (r#"{"store": {"path": 5}}"#, "`store.path`"),
        (r#"{"schema": "nope"}"#, "unknown schema `nope`"),
        (
            r#"{"destinations": [{"type": "pv", "root": "/x"}]}"#,
            "`destinations[0]`: missing field `name`",
        ),
        (
            r#"{"destinations": [{"name": "a b", "type": "pv"}]}"#,
            "`destinations[0].name`",
        ),
        (
            r#"{"destinations": [{"name": "a", "type": "pv", "max_events": -1}]}"#,
            "`destinations[0].max_events`",
        ),
        (
            r#"{"destinations": [{"name": "a", "type": "pv", "max_events": 0}]}"#,
            "`destinations[0].max_events`",
        ),
        (
            r#"{"destinations": [{"name": "a", "type": "pv", "prefix": "../up"}]}"#,
            "`destinations[0].prefix`",
        ),
    ];
    for (json, expected) in cases {
        let message = err(json, &[]);
        assert!(message.contains(expected), "{json}: {message}");
    }
    let twice = format!(r#"{{"destinations": [{DEST}, {DEST}]}}"#);
    assert!(err(&twice, &[]).contains("`destinations[1].name`: `local` is used"));
}

#[test]
fn environment_overrides_every_kind_of_key() {
    let json = format!(r#"{{"destinations": [{DEST}]}}"#);
    let config = load(
        &json,
        &[
            ("AUDITSYNC_ENABLE_USER_EVENTS", "true"),
            ("AUDITSYNC_UEVENTS_GC_SCHEDULE", "@daily"),
            ("AUDITSYNC_NAMESPACE", "123"),
            ("AUDITSYNC_STORE__PATH", "/var/lib/a.db"),
            ("AUDITSYNC_DESTINATIONS__LOCAL__ROOT", "/mnt/audit"),
            ("AUDITSYNC_DESTINATIONS__0__MAX_EVENTS", "7"),
            ("AUDITSYNC_DESTINATIONS__LOCAL__STALE_TEMP_SECS", "9"),
            ("AUDITSYNC_CONFIG", "ignored.json"),
            ("HOME", "/root"),
        ],
    )
    .unwrap();
    assert!(config.enable_user_events);
    assert_eq!(config.uevents_gc_schedule, "@daily");
    assert_eq!(config.namespace, "123");
    assert_eq!(config.store.path, PathBuf::from("/var/lib/a.db"));
    let d = &config.destinations[0];
    assert_eq!(d.options["root"], Value::from("/mnt/audit"));
    assert_eq!(d.max_events, 7);
    assert_eq!(d.options["stale_temp_secs"], Value::from("9"));
}

#[test]
fn bad_overrides_name_the_variable() {
    let json = format!(r#"{{"destinations": [{DEST}]}}"#);
    let cases = [
        (
            "AUDITSYNC_ENABLE_USER_EVENT",
            "true",
            "AUDITSYNC_ENABLE_USER_EVENT: no such config key",
        ),
        (
            "AUDITSYNC_DISABLE_UEVENTS_GC",
            "maybe",
            "AUDITSYNC_DISABLE_UEVENTS_GC",
        ),
        (
            "AUDITSYNC_DESTINATIONS__NOPE__ROOT",
            "/x",
            "no destination named or numbered `NOPE`",
        ),
        ("AUDITSYNC_UEVENTS_SCHEDULE", "bad", "`ueventsSchedule`"),
    ];
    for (name, value, expected) in cases {
        let message = err(&json, &[(name, value)]);
        assert!(message.contains(expected), "{name}: {message}");
    }
}

#[test]
fn secrets_are_masked() {
    let json = r#"{"destinations": [{"name": "s", "type": "pv", "root": "/x",
        "secret_access_key": "AKIAVERYSECRET", "sas_token": "sig=abc", "credentials_file": "/k.json"}]}"#;
    let value: Value = serde_json::from_str(json).unwrap();
    let config: Config = serde_json::from_value(value).unwrap();
    let shown = config.masked().to_string();
    assert!(
        !shown.contains("AKIAVERYSECRET") && !shown.contains("sig=abc"),
        "{shown}"
    );
    assert!(shown.contains("/k.json"), "{shown}");
}
