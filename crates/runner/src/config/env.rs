//! `AUDITSYNC_...` environment variables override config keys.

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

/// Environment variables that are not config overrides.
pub(super) const RESERVED_ENV: &[&str] = &["AUDITSYNC_CONFIG", "AUDITSYNC_LOG"];

/// `AUDITSYNC_STORE__PATH=/x` sets `store.path`; segments are matched to keys ignoring case
/// and `_`, so `AUDITSYNC_UEVENTS_GC_SCHEDULE` is `ueventsGCSchedule`. In `destinations`, a
/// segment picks the destination by name (or index): `AUDITSYNC_DESTINATIONS__LOCAL__ROOT`.
pub(super) fn apply_override(root: &mut Value, name: &str, text: &str) -> anyhow::Result<()> {
    let rest = &name["AUDITSYNC_".len()..];
    let segments: Vec<&str> = rest.split("__").collect();
    let norm = |s: &str| {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase())
            .collect::<String>()
    };
    let unknown = || anyhow!("environment variable {name}: no such config key");
    let mut node = root;
    // Inside a destination, sink options are free-form: a missing one may be added.
    let mut free_form = false;
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match node {
            Value::Object(map) => {
                let key = match map.keys().find(|k| norm(k) == norm(segment)) {
                    Some(k) => k.clone(),
                    None if free_form && last => segment.to_ascii_lowercase(),
                    None => return Err(unknown()),
                };
                if last {
                    let current = map.get(&key).cloned().unwrap_or(Value::Null);
                    let value = typed(&current, text)
                        .with_context(|| format!("environment variable {name}"))?;
                    map.insert(key, value);
                    return Ok(());
                }
                node = map.get_mut(&key).ok_or_else(unknown)?;
                free_form = false;
            }
            Value::Array(items) => {
                let by_name = |d: &Value| d.get("name").and_then(Value::as_str).map(norm);
                let pos = items
                    .iter()
                    .position(|d| by_name(d) == Some(norm(segment)))
                    .or_else(|| segment.parse::<usize>().ok().filter(|i| *i < items.len()))
                    .ok_or_else(|| {
                        anyhow!("environment variable {name}: no destination named or numbered `{segment}`")
                    })?;
                if last {
                    bail!("environment variable {name}: names a whole destination, not a key");
                }
                node = &mut items[pos];
                free_form = true;
            }
            _ => return Err(unknown()),
        }
    }
    Err(unknown())
}

/// Converts the variable's text to the type the key already has.
pub(super) fn typed(current: &Value, text: &str) -> anyhow::Result<Value> {
    Ok(match current {
        Value::Bool(_) => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Value::Bool(true),
            "false" | "0" | "no" => Value::Bool(false),
            _ => bail!("expected true or false, got {text:?}"),
        },
        Value::Number(_) => {
            let n: serde_json::Number = text
                .parse()
                .map_err(|_| anyhow!("expected a number, got {text:?}"))?;
            Value::Number(n)
        }
        Value::String(_) => Value::String(text.to_string()),
        Value::Array(_) | Value::Object(_) => {
            serde_json::from_str(text).context("expected JSON")?
        }
        Value::Null => match serde_json::from_str::<Value>(text) {
            Ok(v @ (Value::Bool(_) | Value::Array(_) | Value::Object(_))) => v,
            _ => Value::String(text.to_string()),
        },
    })
}
