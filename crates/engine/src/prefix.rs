//! A sink layer that puts everything under a key prefix, as if the prefix were the root.

use std::sync::Arc;

use async_trait::async_trait;
use auditsync_core::{
    ErrorKind, ObjectKey, ObjectMeta, PutOptions, PutOutcome, Sink, SinkError, SinkOp,
};
use bytes::Bytes;

/// A [`Sink`] seen from below a prefix: key `k` is the inner sink's `<prefix>/k`, and
/// listings strip the prefix again.
#[derive(Debug)]
pub struct PrefixedSink {
    inner: Arc<dyn Sink>,
    /// The prefix with its trailing `/`, or empty.
    prefix: String,
}

impl PrefixedSink {
    /// Wraps `inner`; an empty prefix (or `/`) leaves keys as they are.
    pub fn new(inner: Arc<dyn Sink>, prefix: &str) -> Result<Self, SinkError> {
        let trimmed = prefix.trim_matches('/');
        if !trimmed.is_empty() {
            ObjectKey::new(trimmed).map_err(|e| {
                SinkError::new(
                    SinkOp::Setup,
                    ErrorKind::InvalidInput,
                    format!("prefix: {e}"),
                )
            })?;
        }
        Ok(Self {
            inner,
            prefix: if trimmed.is_empty() {
                String::new()
            } else {
                format!("{trimmed}/")
            },
        })
    }

    fn full(&self, key: &ObjectKey) -> Result<ObjectKey, SinkError> {
        if self.prefix.is_empty() {
            return Ok(key.clone());
        }
        ObjectKey::new(format!("{}{}", self.prefix, key.as_str())).map_err(|e| {
            SinkError::new(SinkOp::Setup, ErrorKind::InvalidInput, e.to_string())
                .with_key(key.as_str())
        })
    }
}

#[async_trait]
impl Sink for PrefixedSink {
    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            self.inner.describe()
        } else {
            format!(
                "{}/{}",
                self.inner.describe(),
                self.prefix.trim_end_matches('/')
            )
        }
    }

    fn backend_key(&self, key: &ObjectKey) -> String {
        match self.full(key) {
            Ok(full) => self.inner.backend_key(&full),
            Err(_) => format!("{}{key}", self.prefix),
        }
    }

    async fn put(&self, key: &ObjectKey, body: Bytes) -> Result<PutOutcome, SinkError> {
        self.inner.put(&self.full(key)?, body).await
    }

    async fn put_opts(
        &self,
        key: &ObjectKey,
        body: Bytes,
        options: &PutOptions,
    ) -> Result<PutOutcome, SinkError> {
        self.inner.put_opts(&self.full(key)?, body, options).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes, SinkError> {
        self.inner.get(&self.full(key)?).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, SinkError> {
        let listed = self.inner.list(&format!("{}{prefix}", self.prefix)).await?;
        listed
            .into_iter()
            .map(|meta| {
                let rest = meta.key.as_str()[self.prefix.len()..].to_string();
                let key = ObjectKey::new(rest).map_err(|e| {
                    SinkError::new(SinkOp::List, ErrorKind::InvalidInput, e.to_string())
                        .with_key(meta.key.as_str())
                })?;
                Ok(ObjectMeta {
                    key,
                    size: meta.size,
                })
            })
            .collect()
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), SinkError> {
        self.inner.delete(&self.full(key)?).await
    }

    async fn verify(&self, prefix: &str) -> Result<(), SinkError> {
        let joined = format!("{}{}", self.prefix, prefix.trim_matches('/'));
        self.inner.verify(joined.trim_end_matches('/')).await
    }
}
