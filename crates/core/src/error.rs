use std::fmt;

/// A problem with one field of an incoming event or record.
///
/// `field` is a path such as `requestParams.email` or `actor`, so that the producer can find
/// the fault without reading the server's logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {problem}")]
pub struct ValidationError {
    /// Path of the offending field.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ValidationError {
    /// A validation error for `field`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// The field a serde error message names ("missing field `x`", "unknown field `x`"), if any:
/// serde puts such a field in its message rather than in the error's path.
pub fn field_in_serde_message(message: &str) -> Option<&str> {
    message
        .split('`')
        .nth(1)
        .filter(|_| message.contains("field `"))
}

/// A configuration problem, naming the key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A key has a value that cannot be used.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Path of the key, e.g. `destinations[0].root`.
        key: String,
        /// What is wrong with its value.
        message: String,
    },
    /// A registry was asked for a name it does not hold.
    #[error("config key `{key}`: unknown {kind} `{name}`; known: {}", known.join(", "))]
    UnknownName {
        /// Path of the key.
        key: String,
        /// What kind of thing was looked up (sink, formatter, schema).
        kind: &'static str,
        /// The name that was asked for.
        name: String,
        /// Every name the registry holds, sorted.
        known: Vec<String>,
    },
}

impl ConfigError {
    /// An invalid value at `key`.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same error, with its key placed under `parent` (e.g. `destinations[1]`).
    pub fn under(self, parent: &str) -> Self {
        let join = |key: String| {
            if key.is_empty() {
                parent.to_string()
            } else {
                format!("{parent}.{key}")
            }
        };
        match self {
            Self::Invalid { key, message } => Self::Invalid {
                key: join(key),
                message,
            },
            Self::UnknownName {
                key,
                kind,
                name,
                known,
            } => Self::UnknownName {
                key: join(key),
                kind,
                name,
                known,
            },
        }
    }
}

/// The sink operation an error happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkOp {
    /// Writing an object.
    Put,
    /// Reading an object.
    Get,
    /// Listing keys.
    List,
    /// Deleting an object.
    Delete,
    /// Setting the sink up (building a client, checking the root).
    Setup,
}

impl fmt::Display for SinkOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SinkOp::Put => "put",
            SinkOp::Get => "get",
            SinkOp::List => "list",
            SinkOp::Delete => "delete",
            SinkOp::Setup => "setup",
        })
    }
}

/// What class of failure a sink met; decides whether a retry can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The object or container does not exist.
    NotFound,
    /// Credentials are missing or wrong, or access is denied.
    PermissionDenied,
    /// The key or request is not acceptable to the backend.
    InvalidInput,
    /// A timeout, a connection failure, throttling or a server error: a retry may succeed.
    Transient,
    /// The object exists with different content than expected.
    Conflict,
    /// Anything else; not retried.
    Other,
}

impl ErrorKind {
    /// Whether retrying the same operation may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Transient)
    }
}

/// An error from a [`crate::Sink`] operation.
///
/// It names the operation, the key and the backend's reason, keeps the backend's error code
/// and request id where it has them, and says whether a retry can help.
#[derive(Debug, thiserror::Error)]
#[error("{op}{} failed ({kind:?}{}): {message}{}", key.as_deref().map(|k| format!(" `{k}`")).unwrap_or_default(), code.as_deref().map(|c| format!(", code {c}")).unwrap_or_default(), if *attempts > 1 { format!(" (gave up after {attempts} attempts)") } else { String::new() })]
#[non_exhaustive]
pub struct SinkError {
    /// The operation that failed.
    pub op: SinkOp,
    /// The key involved, if any.
    pub key: Option<String>,
    /// The class of failure.
    pub kind: ErrorKind,
    /// The backend's reason, in words.
    pub message: String,
    /// The backend's error code (e.g. `AccessDenied`), if it gave one.
    pub code: Option<String>,
    /// The backend's request id, if it gave one.
    pub request_id: Option<String>,
    /// The underlying error.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// How many times the operation was tried (more than 1 when a retry layer used up its
    /// attempts on an error that is still [`ErrorKind::Transient`]).
    pub attempts: u32,
}

impl SinkError {
    /// A new error of `kind` in `op`.
    pub fn new(op: SinkOp, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            op,
            key: None,
            kind,
            message: message.into(),
            code: None,
            request_id: None,
            source: None,
            attempts: 1,
        }
    }

    /// An error from an I/O failure, classified by its [`std::io::ErrorKind`].
    pub fn io(op: SinkOp, key: Option<&str>, err: std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match err.kind() {
            Io::NotFound => ErrorKind::NotFound,
            Io::PermissionDenied | Io::ReadOnlyFilesystem => ErrorKind::PermissionDenied,
            Io::InvalidInput | Io::InvalidFilename => ErrorKind::InvalidInput,
            Io::TimedOut | Io::Interrupted | Io::WouldBlock | Io::ResourceBusy => {
                ErrorKind::Transient
            }
            _ => ErrorKind::Other,
        };
        Self {
            op,
            key: key.map(str::to_string),
            kind,
            message: err.to_string(),
            code: err.raw_os_error().map(|c| format!("os error {c}")),
            request_id: None,
            source: Some(Box::new(err)),
            attempts: 1,
        }
    }

    /// Attaches the key involved.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Attaches the backend's error code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Attaches the backend's request id.
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// Whether retrying the same operation may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_name_lists_known_names() {
        let err = ConfigError::UnknownName {
            key: "type".into(),
            kind: "sink",
            name: "ftp".into(),
            known: vec!["pv".into(), "s3".into()],
        }
        .under("destinations[2]");
        assert_eq!(
            err.to_string(),
            "config key `destinations[2].type`: unknown sink `ftp`; known: pv, s3"
        );
    }

    #[test]
    fn io_errors_are_classified() {
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let err = SinkError::io(SinkOp::Put, Some("a/b"), denied);
        assert_eq!(err.kind, ErrorKind::PermissionDenied);
        assert!(!err.is_retryable());
        assert!(err
            .to_string()
            .starts_with("put `a/b` failed (PermissionDenied"));
        let timeout = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert!(SinkError::io(SinkOp::Get, None, timeout).is_retryable());
    }
}
