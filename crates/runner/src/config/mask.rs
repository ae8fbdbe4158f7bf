//! Secret values masked wherever the config is shown.

use serde_json::Value;

/// Key fragments whose values are secrets.
const SECRET_KEYS: &[&str] = &[
    "secret",
    "password",
    "passwd",
    "sas",
    "token",
    "private_key",
    "api_key",
    "apikey",
    "authorization",
    "credential",
];
/// Keys that look secret but hold none (hashes, file paths).
const NOT_SECRET: &[&str] = &["token_hashes", "credentials_file"];

/// Whether a key's value is a secret, by its name.
pub fn is_secret_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|s| lower.contains(s)) && !NOT_SECRET.contains(&lower.as_str())
}

/// Masks every secret value (see [`is_secret_key`]) as `***`.
pub fn mask_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                let secret = is_secret_key(key);
                if secret && !v.is_null() {
                    *v = Value::String("***".into());
                } else {
                    mask_secrets(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_secrets),
        _ => {}
    }
}
