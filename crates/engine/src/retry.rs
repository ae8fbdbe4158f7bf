//! A sink layer that retries what a retry can fix.
//!
//! Wrapped around every sink by the runner, so no sink carries its own retry loop. Only
//! errors whose [`auditsync_core::ErrorKind`] is retryable (timeouts, throttling, server
//! errors) are retried, with exponential backoff and full jitter; a permission or not-found
//! error fails at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use auditsync_core::{ObjectKey, ObjectMeta, PutOptions, PutOutcome, Sink, SinkError};
use bytes::Bytes;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Delay cap before the second attempt; doubles each time.
    pub initial_delay: Duration,
    /// Upper bound of any delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` (`attempt` counts from 1): a uniformly random
    /// fraction of `min(max_delay, initial_delay * 2^(attempt-1))`.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let cap = self
            .initial_delay
            .saturating_mul(
                1u32.checked_shl(attempt.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max_delay);
        cap.mul_f64(random.clamp(0.0, 1.0))
    }
}

/// A [`Sink`] that retries the inner sink's retryable failures.
#[derive(Debug)]
pub struct RetryingSink {
    inner: Arc<dyn Sink>,
    policy: RetryPolicy,
    seed: AtomicU64,
}

impl RetryingSink {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Sink>, policy: RetryPolicy) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15)
            | 1;
        Self {
            inner,
            policy,
            seed: AtomicU64::new(seed),
        }
    }

    /// A number in [0, 1) for jitter (xorshift; jitter needs spread, not secrecy).
    fn random(&self) -> f64 {
        let mut x = self.seed.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed.store(x, Ordering::Relaxed);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    async fn run<T, F, Fut>(&self, mut op: F) -> Result<T, SinkError>
    where
        F: FnMut() -> Fut + Send,
        Fut: std::future::Future<Output = Result<T, SinkError>> + Send,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Err(err) if err.is_retryable() && attempt < self.policy.max_attempts => {
                    let delay = self.policy.delay(attempt, self.random());
                    tracing::warn!(
                        sink = %self.inner.describe(),
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        error = %err,
                        "retrying sink operation"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                // Say so when the attempts ran out on an error a retry could still fix.
                Err(mut err) if attempt > 1 => {
                    err.attempts = attempt;
                    return Err(err);
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl Sink for RetryingSink {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn backend_key(&self, key: &ObjectKey) -> String {
        self.inner.backend_key(key)
    }

    async fn put(&self, key: &ObjectKey, body: Bytes) -> Result<PutOutcome, SinkError> {
        self.run(|| self.inner.put(key, body.clone())).await
    }

    async fn put_opts(
        &self,
        key: &ObjectKey,
        body: Bytes,
        options: &PutOptions,
    ) -> Result<PutOutcome, SinkError> {
        self.run(|| self.inner.put_opts(key, body.clone(), options))
            .await
    }

    async fn get(&self, key: &ObjectKey) -> Result<Bytes, SinkError> {
        self.run(|| self.inner.get(key)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, SinkError> {
        self.run(|| self.inner.list(prefix)).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), SinkError> {
        self.run(|| self.inner.delete(key)).await
    }

    async fn verify(&self, prefix: &str) -> Result<(), SinkError> {
        // verify is itself put + get + delete; retry inside each step, not around all three.
        auditsync_core::verify_sink(self, prefix).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditsync_core::{ErrorKind, SinkOp};
    use std::sync::atomic::AtomicU32;

    /// Fails `failures` times with `kind`, then succeeds. Pure logic under test: the retry
    /// loop, not a backend.
    #[derive(Debug)]
    struct Flaky {
        failures: u32,
        kind: ErrorKind,
        calls: AtomicU32,
    }

    #[async_trait]
    impl Sink for Flaky {
        fn describe(&self) -> String {
            "flaky".into()
        }
        async fn put(&self, _: &ObjectKey, _: Bytes) -> Result<PutOutcome, SinkError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.failures {
                Err(SinkError::new(SinkOp::Put, self.kind, "boom"))
            } else {
                Ok(PutOutcome::Created)
            }
        }
        async fn get(&self, _: &ObjectKey) -> Result<Bytes, SinkError> {
            unreachable!()
        }
        async fn list(&self, _: &str) -> Result<Vec<ObjectMeta>, SinkError> {
            unreachable!()
        }
        async fn delete(&self, _: &ObjectKey) -> Result<(), SinkError> {
            unreachable!()
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    async fn attempts(failures: u32, kind: ErrorKind) -> (bool, u32) {
        let flaky = Arc::new(Flaky {
            failures,
            kind,
            calls: AtomicU32::new(0),
        });
        let sink = RetryingSink::new(flaky.clone(), policy());
        let ok = sink
            .put(&ObjectKey::new("k").unwrap(), Bytes::new())
            .await
            .is_ok();
        (ok, flaky.calls.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn retries_transient_errors_up_to_the_limit() {
        assert_eq!(attempts(2, ErrorKind::Transient).await, (true, 3));
        assert_eq!(attempts(3, ErrorKind::Transient).await, (false, 3));
    }

    #[tokio::test]
    async fn an_error_that_used_up_its_retries_says_so() {
        let flaky = Arc::new(Flaky {
            failures: 10,
            kind: ErrorKind::Transient,
            calls: AtomicU32::new(0),
        });
        let sink = RetryingSink::new(flaky, policy());
        let err = sink
            .put(&ObjectKey::new("k").unwrap(), Bytes::new())
            .await
            .unwrap_err();
        assert_eq!(err.attempts, 3);
        assert!(err.is_retryable(), "the kind is kept: {err}");
        assert!(
            err.to_string().ends_with("(gave up after 3 attempts)"),
            "{err}"
        );
        // A permanent error is tried once and says nothing of attempts.
        let once = Arc::new(Flaky {
            failures: 1,
            kind: ErrorKind::PermissionDenied,
            calls: AtomicU32::new(0),
        });
        let err = RetryingSink::new(once, policy())
            .put(&ObjectKey::new("k").unwrap(), Bytes::new())
            .await
            .unwrap_err();
        assert_eq!(err.attempts, 1);
        assert!(!err.to_string().contains("attempts"), "{err}");
    }

    #[tokio::test]
    async fn does_not_retry_permanent_errors() {
        assert_eq!(attempts(1, ErrorKind::PermissionDenied).await, (false, 1));
        assert_eq!(attempts(1, ErrorKind::NotFound).await, (false, 1));
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        assert_eq!(p.delay(1, 1.0), Duration::from_millis(100));
        assert_eq!(p.delay(3, 1.0), Duration::from_millis(400));
        assert_eq!(p.delay(9, 1.0), Duration::from_secs(1));
        assert_eq!(p.delay(40, 1.0), Duration::from_secs(1));
        assert_eq!(p.delay(3, 0.5), Duration::from_millis(200));
    }
}
