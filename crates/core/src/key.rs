use std::fmt;

/// The longest key accepted, in bytes (S3's and GCS's limit).
pub const MAX_KEY_LEN: usize = 1024;

/// Prefix of the temporary names sinks may use while writing; no key may start a segment
/// with it, so a temporary file can never be mistaken for an object.
pub const TEMP_MARKER: &str = ".auditsync-tmp";

/// A relative, `/`-separated object key that cannot escape a sink's root.
///
/// Rejected: empty keys, absolute paths, empty segments (`a//b`, trailing `/`), `.` and `..`
/// segments, backslashes, control characters, keys over `MAX_KEY_LEN` (1,024) bytes and segments
/// that start with the temporary-file marker.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

/// Why a string is not a valid [`ObjectKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid object key {key:?}: {reason}")]
pub struct KeyError {
    /// The rejected key.
    pub key: String,
    /// Why it was rejected.
    pub reason: &'static str,
}

impl ObjectKey {
    /// Validates `key`.
    pub fn new(key: impl Into<String>) -> Result<Self, KeyError> {
        let key = key.into();
        let fail = |reason| {
            Err(KeyError {
                key: key.clone(),
                reason,
            })
        };
        if key.is_empty() {
            return fail("it is empty");
        }
        if key.len() > MAX_KEY_LEN {
            return fail("it is longer than 1024 bytes");
        }
        if key.starts_with('/') {
            return fail("it is an absolute path");
        }
        if key.chars().any(char::is_control) {
            return fail("it contains a control character");
        }
        if key.contains('\\') {
            return fail("it contains a backslash");
        }
        for segment in key.split('/') {
            match segment {
                "" => return fail("it has an empty path segment"),
                "." | ".." => return fail("it has a `.` or `..` segment"),
                s if s.starts_with(TEMP_MARKER) => {
                    return fail("a segment starts with the reserved temporary-file marker")
                }
                _ => {}
            }
        }
        Ok(Self(key))
    }

    /// Joins a prefix (possibly empty, with or without a trailing `/`) and a relative key.
    pub fn join(prefix: &str, rest: &str) -> Result<Self, KeyError> {
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() {
            Self::new(rest)
        } else {
            Self::new(format!("{prefix}/{rest}"))
        }
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's `/`-separated segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys() {
        for ok in [
            "a",
            "acme/audit/2024/01/02/03/00000000000000000001-00000000000000000010.ndjson",
            "with space/ünïcødé.csv",
            ".hidden",
            "a..b/c",
        ] {
            assert_eq!(ObjectKey::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_keys_that_could_escape_or_confuse() {
        let cases = [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("../x", "`..`"),
            ("a/../../x", "`..`"),
            ("a/./b", "`.`"),
            ("a//b", "empty path segment"),
            ("a/", "empty path segment"),
            ("a\\..\\b", "backslash"),
            ("a\nb", "control"),
            ("a\0b", "control"),
            ("x/.auditsync-tmp-1", "temporary"),
        ];
        for (key, why) in cases {
            let err = ObjectKey::new(key).unwrap_err();
            assert!(err.reason.contains(why), "{key:?}: {err}");
        }
        assert!(ObjectKey::new("k".repeat(1025)).is_err());
    }

    #[test]
    fn join_handles_empty_and_slashed_prefixes() {
        assert_eq!(ObjectKey::join("", "a/b").unwrap().as_str(), "a/b");
        assert_eq!(ObjectKey::join("p/", "a").unwrap().as_str(), "p/a");
        assert_eq!(ObjectKey::join("p/q", "a").unwrap().as_str(), "p/q/a");
        assert!(ObjectKey::join("/abs", "a").is_err());
    }
}
