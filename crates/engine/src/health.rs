//! What an exporter remembers of each destination's runs: failing or not, since when, why,
//! and when it is tried again, so that a failing destination (a tenant's deleted bucket) is
//! retried with a growing pause and never holds up the others.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// A destination's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationState {
    /// Its last run ended well (or it has not run yet).
    Active,
    /// Its last runs failed.
    Failing {
        /// When the first of them failed, epoch ms.
        since_ms: i64,
        /// Why the last one failed.
        last_error: String,
        /// Runs that failed in a row.
        failures: u32,
        /// Not tried again before this, epoch ms.
        next_attempt_ms: i64,
    },
}

/// A destination's state and the time of its last good run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationHealth {
    /// Active or failing.
    pub state: DestinationState,
    /// When its last run that ended well finished, epoch ms.
    pub last_export_ms: Option<i64>,
}

impl Default for DestinationHealth {
    fn default() -> Self {
        Self {
            state: DestinationState::Active,
            last_export_ms: None,
        }
    }
}

/// How long a failing destination waits before its next run: `first` after one failure,
/// doubling with each further one, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The pause after the first failure.
    pub first: Duration,
    /// The longest pause.
    pub max: Duration,
}

impl Default for Backoff {
    /// 10 s, doubling, at most 10 minutes.
    fn default() -> Self {
        Self {
            first: Duration::from_secs(10),
            max: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// The pause after `failures` failed runs in a row (at least 1).
    pub fn pause(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.first.saturating_mul(1u32 << doublings).min(self.max)
    }
}

/// Every destination's health, shared by the runs of one exporter.
#[derive(Debug, Default)]
pub struct HealthBook {
    backoff: Backoff,
    by_destination: Mutex<HashMap<String, DestinationHealth>>,
}

impl HealthBook {
    /// An empty book with this backoff.
    pub fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            by_destination: Mutex::default(),
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, HashMap<String, DestinationHealth>> {
        self.by_destination
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The destination's health (active and never exported when unknown).
    pub fn get(&self, destination: &str) -> DestinationHealth {
        self.book().get(destination).cloned().unwrap_or_default()
    }

    /// Why the destination must wait at `now_ms`, if it is failing and its pause has not
    /// passed.
    pub fn waiting(&self, destination: &str, now_ms: i64) -> Option<String> {
        match self.get(destination).state {
            DestinationState::Failing {
                since_ms,
                failures,
                next_attempt_ms,
                ..
            } if now_ms < next_attempt_ms => Some(format!(
                "failing since {} ({failures} failed run(s)); next attempt at {}",
                rfc3339(since_ms),
                rfc3339(next_attempt_ms)
            )),
            _ => None,
        }
    }

    /// Records a run that ended well at `now_ms`.
    pub fn succeeded(&self, destination: &str, now_ms: i64) {
        let mut book = self.book();
        let health = book.entry(destination.to_string()).or_default();
        if let DestinationState::Failing { since_ms, .. } = health.state {
            tracing::info!(destination, failing_since = %rfc3339(since_ms), "destination recovered");
        }
        health.state = DestinationState::Active;
        health.last_export_ms = Some(now_ms);
    }

    /// Records a run that failed at `now_ms` with `error`; returns the next attempt's time.
    pub fn failed(&self, destination: &str, error: &str, now_ms: i64) -> i64 {
        let mut book = self.book();
        let health = book.entry(destination.to_string()).or_default();
        let (since_ms, failures) = match &health.state {
            DestinationState::Failing {
                since_ms, failures, ..
            } => (*since_ms, failures + 1),
            DestinationState::Active => (now_ms, 1),
        };
        let pause = self.backoff.pause(failures).as_millis() as i64;
        let next_attempt_ms = now_ms.saturating_add(pause);
        health.state = DestinationState::Failing {
            since_ms,
            last_error: error.to_string(),
            failures,
            next_attempt_ms,
        };
        next_attempt_ms
    }
}

/// Epoch ms as RFC 3339 UTC to the second.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_destination_waits_longer_after_each_failure_and_recovers_at_once() {
        let book = HealthBook::new(Backoff {
            first: Duration::from_secs(10),
            max: Duration::from_secs(35),
        });
        assert_eq!(book.waiting("d", 0), None, "unknown: active");
        assert_eq!(book.failed("d", "no such bucket", 1_000), 11_000);
        assert!(book.waiting("d", 10_999).unwrap().contains("1 failed run"));
        assert_eq!(book.waiting("d", 11_000), None, "its pause has passed");
        assert_eq!(book.failed("d", "still none", 11_000), 31_000, "20 s");
        assert_eq!(
            book.failed("d", "still none", 31_000),
            66_000,
            "40 s, capped at 35"
        );
        match book.get("d").state {
            DestinationState::Failing {
                since_ms,
                last_error,
                failures,
                ..
            } => assert_eq!(
                (since_ms, last_error.as_str(), failures),
                (1_000, "still none", 3)
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            book.get("other"),
            DestinationHealth::default(),
            "others untouched"
        );
        book.succeeded("d", 70_000);
        assert_eq!(
            book.get("d"),
            DestinationHealth {
                state: DestinationState::Active,
                last_export_ms: Some(70_000)
            }
        );
        assert_eq!(
            book.failed("d", "again", 80_000),
            90_000,
            "counted from one again"
        );
    }
}
