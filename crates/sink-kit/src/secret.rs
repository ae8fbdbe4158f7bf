//! A secret config value: read from the config like a string, never shown.

use std::fmt;

/// A credential, token or key from a config. `Debug`, `Display` and serialization print
/// `***`; only [`Secret::expose`] gives the value, at the one place that needs it.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_read_like_a_string_and_never_shown() {
        #[derive(Debug, serde::Deserialize, serde::Serialize)]
        struct Config {
            key: Secret,
        }
        let c: Config = serde_json::from_str(r#"{"key": "hunter2"}"#).unwrap();
        assert_eq!(c.key.expose(), "hunter2");
        for shown in [
            format!("{c:?}"),
            format!("{}", c.key),
            serde_json::to_string(&c).unwrap(),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
    }
}
