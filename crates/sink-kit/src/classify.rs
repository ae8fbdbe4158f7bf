//! One classification of backend failures into [`ErrorKind`], for every sink.
//!
//! A sink passes what its SDK tells it: the HTTP status, the backend's error code, and
//! whether the request failed before any answer (timeout, connection). The code is looked
//! at first, because it is more precise than the status (S3 answers 409 both for a conflict
//! and for `OperationAborted`, which a retry fixes).

use auditsync_core::{ErrorKind, SinkError, SinkOp};

/// Error codes (S3, Azure, GCS) after which the same request may succeed.
const TRANSIENT_CODES: &[&str] = &[
    // S3
    "SlowDown",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
    "OperationAborted",
    // Azure
    "ServerBusy",
    "OperationTimedOut",
    "InternalServerError",
    // GCS
    "rateLimitExceeded",
    "backendError",
    "userRateLimitExceeded",
];

/// Error codes that mean the credentials are missing, wrong or not allowed.
const PERMISSION_CODES: &[&str] = &[
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "AuthenticationFailed",
    "AuthorizationFailure",
    "AuthorizationPermissionMismatch",
    "InsufficientAccountPermissions",
    "forbidden",
    "Credential",
];

/// Error codes that mean the bucket, container or object does not exist.
const NOT_FOUND_CODES: &[&str] = &[
    "NoSuchBucket",
    "NoSuchKey",
    "NoSuchUpload",
    "ContainerNotFound",
    "BlobNotFound",
    "notFound",
];

/// What went wrong, as far as the SDK says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failure<'a> {
    /// The HTTP status, if an answer came.
    pub status: Option<u16>,
    /// The backend's error code (`SlowDown`, `BlobAlreadyExists`, `rateLimitExceeded`).
    pub code: Option<&'a str>,
    /// No answer came: a timeout, a refused or reset connection, a broken body.
    pub transport: bool,
}

/// The kind of a failure: whether a retry can help, and why not.
pub fn kind_of(failure: Failure<'_>) -> ErrorKind {
    if failure.transport {
        return ErrorKind::Transient;
    }
    if let Some(code) = failure.code {
        if TRANSIENT_CODES.contains(&code) {
            return ErrorKind::Transient;
        }
        if PERMISSION_CODES.contains(&code) {
            return ErrorKind::PermissionDenied;
        }
        if NOT_FOUND_CODES.contains(&code) {
            return ErrorKind::NotFound;
        }
    }
    match failure.status {
        Some(408 | 429) => ErrorKind::Transient,
        Some(s) if s >= 500 => ErrorKind::Transient,
        Some(401 | 403) => ErrorKind::PermissionDenied,
        Some(404) => ErrorKind::NotFound,
        Some(400 | 411 | 413 | 414 | 416) => ErrorKind::InvalidInput,
        // The target's state disagrees with the request (exists, leased, changed).
        Some(409 | 412) => ErrorKind::Conflict,
        _ => ErrorKind::Other,
    }
}

/// A [`SinkError`] for `failure`, with the backend's code (or `HTTP <status>`), its request
/// id, and a message that names where (`on bucket b`) and what the backend said.
pub fn sink_error(
    op: SinkOp,
    key: &str,
    failure: Failure<'_>,
    place: &str,
    detail: impl std::fmt::Display,
) -> SinkError {
    let kind = kind_of(failure);
    let code = failure
        .code
        .map(str::to_string)
        .or_else(|| failure.status.map(|s| format!("HTTP {s}")));
    let message = format!(
        "{} on {place}: {detail}",
        code.as_deref().unwrap_or(match kind {
            ErrorKind::Transient => "transient failure",
            _ => "error",
        })
    );
    let mut error = SinkError::new(op, kind, message).with_key(key);
    error.code = code;
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(status: Option<u16>, code: Option<&str>) -> ErrorKind {
        kind_of(Failure {
            status,
            code,
            transport: false,
        })
    }

    #[test]
    fn the_same_status_means_the_same_kind_for_every_backend() {
        // A plain 409 is a conflict wherever it comes from (S3, Azure, GCS).
        assert_eq!(kind(Some(409), None), ErrorKind::Conflict);
        assert_eq!(
            kind(Some(409), Some("BlobAlreadyExists")),
            ErrorKind::Conflict
        );
        // ...unless the code says a retry fixes it.
        assert_eq!(
            kind(Some(409), Some("OperationAborted")),
            ErrorKind::Transient
        );
        assert_eq!(kind(Some(503), Some("SlowDown")), ErrorKind::Transient);
        assert_eq!(kind(Some(429), None), ErrorKind::Transient);
        assert_eq!(kind(Some(500), None), ErrorKind::Transient);
        assert_eq!(kind(Some(403), None), ErrorKind::PermissionDenied);
        assert_eq!(
            kind(Some(400), Some("AccessDenied")),
            ErrorKind::PermissionDenied
        );
        assert_eq!(kind(Some(404), Some("NoSuchBucket")), ErrorKind::NotFound);
        assert_eq!(kind(Some(400), None), ErrorKind::InvalidInput);
        assert_eq!(kind(Some(418), None), ErrorKind::Other);
        assert_eq!(kind(None, None), ErrorKind::Other);
        assert_eq!(
            kind_of(Failure {
                transport: true,
                ..Failure::default()
            }),
            ErrorKind::Transient
        );
    }

    #[test]
    fn an_error_keeps_the_code_and_names_the_place() {
        let e = sink_error(
            SinkOp::Put,
            "a/b",
            Failure {
                status: Some(503),
                code: None,
                transport: false,
            },
            "bucket audit",
            "try later",
        );
        assert!(e.is_retryable());
        assert_eq!(e.code.as_deref(), Some("HTTP 503"));
        assert!(
            e.to_string()
                .contains("HTTP 503 on bucket audit: try later"),
            "{e}"
        );
    }
}
