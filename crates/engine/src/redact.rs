//! Redaction of sensitive parameters, before anything is stored.
//!
//! Any object key whose name, ignoring case, `_` and `-`, is in the list (`newPassword`,
//! `password`, `token`, `apiKey`, `authorization`, ...) has its value replaced by
//! [`REDACTED`], at any depth of `params`, `payload`, `previous`, `next` and `extra`. A string
//! that holds JSON (as `requestPayload` often does) is searched too; if something in it is
//! redacted, it is written back as compact JSON.

use std::collections::HashSet;

use auditsync_core::Event;
use serde_json::Value;

/// What a redacted value becomes.
pub const REDACTED: &str = "[REDACTED]";

/// Names redacted by default (compared ignoring case, `_` and `-`).
pub const DEFAULT_FIELDS: &[&str] = &[
    "password",
    "newPassword",
    "oldPassword",
    "currentPassword",
    "confirmPassword",
    "passwd",
    "secret",
    "clientSecret",
    "token",
    "accessToken",
    "refreshToken",
    "idToken",
    "sessionToken",
    "apiKey",
    "apiToken",
    "authorization",
    "cookie",
    "credential",
    "credentials",
    "privateKey",
    "secretAccessKey",
    "sasToken",
];

/// Replaces the values of sensitive fields.
#[derive(Debug, Clone)]
pub struct Redactor {
    names: HashSet<String>,
}

fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new(DEFAULT_FIELDS.iter().copied())
    }
}

impl Redactor {
    /// A redactor for exactly these names.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            names: names.into_iter().map(normalize).collect(),
        }
    }

    /// The default names plus `extra`.
    pub fn with_extra<'a>(extra: impl IntoIterator<Item = &'a str>) -> Self {
        Self::new(DEFAULT_FIELDS.iter().copied().chain(extra))
    }

    fn sensitive(&self, key: &str) -> bool {
        self.names.contains(&normalize(key))
    }

    /// Redacts the event in place; returns how many values were replaced.
    pub fn redact(&self, event: &mut Event) -> usize {
        let mut count = 0;
        for (key, value) in event.params.iter_mut().chain(event.extra.iter_mut()) {
            count += self.field(key, value);
        }
        for value in [&mut event.payload, &mut event.previous, &mut event.next]
            .into_iter()
            .flatten()
        {
            count += self.value(value);
        }
        count
    }

    fn field(&self, key: &str, value: &mut Value) -> usize {
        if self.sensitive(key) && !value.is_null() {
            *value = Value::String(REDACTED.into());
            1
        } else {
            self.value(value)
        }
    }

    fn value(&self, value: &mut Value) -> usize {
        match value {
            Value::Object(map) => map.iter_mut().map(|(k, v)| self.field(k, v)).sum(),
            Value::Array(items) => items.iter_mut().map(|v| self.value(v)).sum(),
            Value::String(text) => {
                let looks_like_json =
                    matches!(text.trim_start().as_bytes().first(), Some(b'{' | b'['));
                if !looks_like_json {
                    return 0;
                }
                let Ok(mut inner) = serde_json::from_str::<Value>(text) else {
                    return 0;
                };
                let count = self.value(&mut inner);
                if count > 0 {
                    *text = inner.to_string();
                }
                count
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_sensitive_names_at_any_depth_and_inside_json_strings() {
        let mut event = Event {
            action: "setPassword".into(),
            params: serde_json::from_value(json!({
                "user": "ada", "newPassword": "hunter2", "NEW_PASSWORD": "x",
                "nested": {"api-key": "k", "list": [{"token": "t"}], "tokenName": "ci"}
            }))
            .unwrap(),
            payload: Some(json!(
                "{\"variables\":{\"newPassword\":\"hunter2\"},\"query\":\"q\"}"
            )),
            previous: Some(json!({"passwordPolicy": "strict"})),
            ..Event::default()
        };
        let redactor = Redactor::with_extra(["ssn"]);
        assert_eq!(redactor.redact(&mut event), 5);
        let text = serde_json::to_string(&event).unwrap();
        assert!(
            !text.contains("hunter2") && !text.contains("\"k\"") && !text.contains("\"t\""),
            "{text}"
        );
        assert_eq!(event.params["user"], json!("ada"));
        assert_eq!(
            event.params["nested"]["tokenName"],
            json!("ci"),
            "only exact names"
        );
        assert_eq!(event.previous, Some(json!({"passwordPolicy": "strict"})));
        assert_eq!(
            event.payload,
            Some(json!(
                "{\"variables\":{\"newPassword\":\"[REDACTED]\"},\"query\":\"q\"}"
            ))
        );
        // a string that is not JSON, or has nothing to redact, is left byte for byte
        let mut plain = Event {
            payload: Some(json!("[\"_id\", \"name\"]")),
            ..Event::default()
        };
        assert_eq!(redactor.redact(&mut plain), 0);
        assert_eq!(plain.payload, Some(json!("[\"_id\", \"name\"]")));
    }
}
