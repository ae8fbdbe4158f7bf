use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{ErrorKind, ObjectKey, SinkError, SinkOp};

/// Key prefix of the objects [`verify_sink`] writes.
pub const VERIFY_PREFIX: &str = "verify-test-";

/// What a [`Sink::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was written.
    Created,
    /// An object already had this key; it was left as it was.
    AlreadyExists,
}

/// How to write an object, beside its key and bytes. Sinks that cannot store a setting
/// ignore it (a directory has no content type); the bytes are always stored as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutOptions {
    /// MIME type of the stored bytes (e.g. `application/x-ndjson`, or `application/gzip`
    /// for a compressed file: the bytes are served as stored, never decoded on the way).
    pub content_type: Option<String>,
    /// User metadata (S3 `x-amz-meta-*`, Azure and GCS metadata), e.g. the batch's range or
    /// a retention hint. Keys are lowercase ASCII letters, digits and `-`, starting with a
    /// letter (a sink whose backend forbids `-`, like Azure, stores it as `_`).
    pub metadata: std::collections::BTreeMap<String, String>,
}

impl PutOptions {
    /// Options with a content type.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Adds one metadata entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Its key, relative to the sink's root.
    pub key: ObjectKey,
    /// Its size in bytes.
    pub size: u64,
}

/// An object store that auditsync writes export files into.
///
/// Required behaviour, checked by the conformance suite:
/// - [`Sink::put`] is atomic: a reader sees the whole object or none.
/// - [`Sink::put`] is create-if-absent: an existing key is not overwritten and the call
///   returns [`PutOutcome::AlreadyExists`], so a retried batch cannot clobber a good object.
/// - Errors say whether a retry can help ([`SinkError::is_retryable`]).
#[async_trait]
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// A short description for logs and errors, without secrets, e.g. `pv:/data/export`.
    fn describe(&self) -> String;

    /// `key` as the backend names it, for messages an operator compares with what the
    /// bucket shows. A layer that roots its sink at a prefix adds the prefix; layers that
    /// wrap another sink forward this. Defaults to the key itself.
    fn backend_key(&self, key: &ObjectKey) -> String {
        key.to_string()
    }

    /// Writes `body` at `key` unless an object is already there.
    async fn put(&self, key: &ObjectKey, body: Bytes) -> Result<PutOutcome, SinkError>;

    /// [`Sink::put`] with options (content type, metadata). The default ignores the
    /// options; a backend that can store them overrides this, and layers forward it.
    async fn put_opts(
        &self,
        key: &ObjectKey,
        body: Bytes,
        options: &PutOptions,
    ) -> Result<PutOutcome, SinkError> {
        let _ = options;
        self.put(key, body).await
    }

    /// Reads a whole object.
    async fn get(&self, key: &ObjectKey) -> Result<Bytes, SinkError>;

    /// Lists objects whose key starts with `prefix` (a plain string prefix), sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, SinkError>;

    /// Deletes an object; deleting a missing key is not an error.
    async fn delete(&self, key: &ObjectKey) -> Result<(), SinkError>;

    /// Checks that the sink can put, get and delete under `prefix`. The default writes a
    /// `verify-test-<timestamp>` object, reads it back and deletes it ([`verify_sink`]).
    async fn verify(&self, prefix: &str) -> Result<(), SinkError> {
        verify_sink(self, prefix).await
    }
}

/// Writes `<prefix>/verify-test-<millis>`, reads it back, compares, and deletes it.
///
/// The error names the step that failed (`put`, `get` or `delete`) and the backend's reason.
pub async fn verify_sink<S: Sink + ?Sized>(sink: &S, prefix: &str) -> Result<(), SinkError> {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let key = ObjectKey::join(prefix, &format!("{VERIFY_PREFIX}{millis}"))
        .map_err(|e| SinkError::new(SinkOp::Setup, ErrorKind::InvalidInput, e.to_string()))?;
    let body = Bytes::from(format!("auditsync verify {millis}\n"));
    match sink.put(&key, body.clone()).await? {
        PutOutcome::Created => {}
        PutOutcome::AlreadyExists => {
            return Err(SinkError::new(
                SinkOp::Put,
                ErrorKind::Conflict,
                "a verify-test object with this timestamp already exists",
            )
            .with_key(key.as_str()))
        }
    }
    let read = sink.get(&key).await?;
    if read != body {
        return Err(SinkError::new(
            SinkOp::Get,
            ErrorKind::Conflict,
            format!(
                "read back {} bytes that differ from the {} written",
                read.len(),
                body.len()
            ),
        )
        .with_key(key.as_str()));
    }
    sink.delete(&key).await
}
