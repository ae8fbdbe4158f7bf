//! Secrets by reference: a sink option may be `{"env": "NAME"}` (an environment variable)
//! or `{"file": "/path"}` (a file's content, without a trailing newline) instead of the
//! secret itself, so that config and tenant files hold no secret. The reference is
//! resolved when the sink is built; masking and `GET`s show the reference, never the value.

use auditsync_core::ConfigError;
use serde_json::{Map, Value};

/// A reference, if `value` is one.
fn reference(value: &Value) -> Option<(&'static str, &str)> {
    let map = value.as_object().filter(|m| m.len() == 1)?;
    if let Some(name) = map.get("env").and_then(Value::as_str) {
        return Some(("env", name));
    }
    map.get("file").and_then(Value::as_str).map(|p| ("file", p))
}

/// The options with every reference replaced by what it names; the error names the key.
pub fn resolve(options: &Map<String, Value>) -> Result<Map<String, Value>, ConfigError> {
    let mut resolved = options.clone();
    for (key, value) in resolved.iter_mut() {
        match reference(value) {
            Some(("env", name)) => {
                let secret = std::env::var(name).map_err(|_| {
                    ConfigError::invalid(
                        key.as_str(),
                        format!("environment variable {name} is not set (or not UTF-8)"),
                    )
                })?;
                *value = Value::String(secret);
            }
            Some((_, path)) => {
                let mut secret = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::invalid(key.as_str(), format!("cannot read {path}: {e}"))
                })?;
                while secret.ends_with('\n') || secret.ends_with('\r') {
                    secret.pop();
                }
                *value = Value::String(secret);
            }
            None => {}
        }
    }
    Ok(resolved)
}

/// Refuses a secret given as its value rather than by reference (for what the admin API
/// writes into tenant files); the error names the key.
pub fn refuse_literal_secrets(options: &Map<String, Value>) -> Result<(), ConfigError> {
    for (key, value) in options {
        if super::is_secret_key(key) && value.is_string() {
            return Err(ConfigError::invalid(
                key.as_str(),
                "give the secret by reference, {\"env\": \"NAME\"} or {\"file\": \"/path\"}, not its value: tenant files keep no secrets",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_are_replaced_by_what_they_name_and_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "from-a-file\n").unwrap();
        std::env::set_var("AUDITSYNC_TEST_SECRET_REF", "from-the-env");
        let options = json!({"bucket": "b", "secret_access_key": {"env": "AUDITSYNC_TEST_SECRET_REF"},
                             "sas_token": {"file": file}, "tags": {"env": "X", "other": 1}});
        let resolved = resolve(options.as_object().unwrap()).unwrap();
        assert_eq!(resolved["secret_access_key"], "from-the-env");
        assert_eq!(resolved["sas_token"], "from-a-file");
        assert_eq!(resolved["bucket"], "b");
        assert_eq!(
            resolved["tags"],
            json!({"env": "X", "other": 1}),
            "not a reference"
        );

        let missing = json!({"secret_access_key": {"env": "AUDITSYNC_TEST_NOT_SET_ANYWHERE"}});
        let err = resolve(missing.as_object().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`secret_access_key`") && err.contains("AUDITSYNC_TEST_NOT_SET_ANYWHERE"),
            "{err}"
        );
        let unreadable = json!({"sas_token": {"file": "/nonexistent/key"}});
        let err = resolve(unreadable.as_object().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`sas_token`") && err.contains("/nonexistent/key"),
            "{err}"
        );
    }

    #[test]
    fn a_literal_secret_is_refused_and_a_reference_is_not() {
        let literal = json!({"bucket": "b", "secret_access_key": "AKIA..."});
        let err = refuse_literal_secrets(literal.as_object().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`secret_access_key`") && !err.contains("AKIA"),
            "{err}"
        );
        let by_ref =
            json!({"bucket": "b", "secret_access_key": {"env": "S"}, "access_key_id": "id"});
        assert!(refuse_literal_secrets(by_ref.as_object().unwrap()).is_ok());
    }
}
