//! What an exporter remembers of each destination's runs: failing or not, since when, why,
//! and when it is tried again, so that a failing destination (a tenant's deleted bucket) is
//! retried with a growing pause and never holds up the others.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use auditsync_store::DestinationFailure;

/// A destination's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationState {
    /// Its last run ended well (or it has not run yet).
    Active,
    /// Its last runs failed: since when, why, how many, and when it is tried again (as
    /// the store shares it).
    Failing(DestinationFailure),
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
            DestinationState::Failing(f) if now_ms < f.next_attempt_ms => Some(format!(
                "failing since {} ({} failed run(s)); next attempt at {}",
                rfc3339(f.since_ms),
                f.failures,
                rfc3339(f.next_attempt_ms)
            )),
            _ => None,
        }
    }

    /// Records a run that ended well at `now_ms`; true when the destination was failing
    /// until now.
    pub fn succeeded(&self, destination: &str, now_ms: i64) -> bool {
        let mut book = self.book();
        let health = book.entry(destination.to_string()).or_default();
        let recovered = match &health.state {
            DestinationState::Failing(f) => {
                tracing::info!(destination, failing_since = %rfc3339(f.since_ms), "destination recovered");
                true
            }
            DestinationState::Active => false,
        };
        health.state = DestinationState::Active;
        health.last_export_ms = Some(now_ms);
        recovered
    }

    /// Takes in the failures the store records for every process sharing it
    /// ([`Store::destination_failures`](auditsync_store::Store::destination_failures)): of
    /// the `destinations` named, one with a record is failing as it says (another process
    /// may have run it last), and one without is no longer failing (another process's run
    /// ended well). Those in `running` are left alone: their run records its own outcome.
    pub fn adopt(
        &self,
        records: &[(String, DestinationFailure)],
        destinations: &[String],
        running: &HashSet<String>,
    ) {
        let recorded: HashMap<&str, &DestinationFailure> =
            records.iter().map(|(name, f)| (name.as_str(), f)).collect();
        let mut book = self.book();
        for name in destinations.iter().filter(|n| !running.contains(*n)) {
            match recorded.get(name.as_str()) {
                Some(failure) => {
                    book.entry(name.clone()).or_default().state =
                        DestinationState::Failing((*failure).clone())
                }
                None => {
                    if let Some(health) = book.get_mut(name) {
                        health.state = DestinationState::Active;
                    }
                }
            }
        }
    }

    /// Forgets that the destination was failing (its config was just changed and
    /// verified, or it was removed); its last export time stays.
    pub fn forget_failure(&self, destination: &str) {
        if let Some(health) = self.book().get_mut(destination) {
            health.state = DestinationState::Active;
        }
    }

    /// Records a run that failed at `now_ms` with `error`; returns the failure as the
    /// destination now stands (its next attempt's time included), for the store to share.
    pub fn failed(&self, destination: &str, error: &str, now_ms: i64) -> DestinationFailure {
        let mut book = self.book();
        let health = book.entry(destination.to_string()).or_default();
        let (since_ms, failures) = match &health.state {
            DestinationState::Failing(f) => (f.since_ms, f.failures + 1),
            DestinationState::Active => (now_ms, 1),
        };
        let pause = self.backoff.pause(failures).as_millis() as i64;
        let next_attempt_ms = now_ms.saturating_add(pause);
        let failure = DestinationFailure {
            since_ms,
            last_error: error.to_string(),
            failures,
            next_attempt_ms,
        };
        health.state = DestinationState::Failing(failure.clone());
        failure
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
        assert_eq!(
            book.failed("d", "no such bucket", 1_000).next_attempt_ms,
            11_000
        );
        assert!(book.waiting("d", 10_999).unwrap().contains("1 failed run"));
        assert_eq!(book.waiting("d", 11_000), None, "its pause has passed");
        assert_eq!(
            book.failed("d", "still none", 11_000).next_attempt_ms,
            31_000,
            "20 s"
        );
        assert_eq!(
            book.failed("d", "still none", 31_000),
            DestinationFailure {
                since_ms: 1_000,
                last_error: "still none".into(),
                failures: 3,
                next_attempt_ms: 66_000,
            },
            "40 s, capped at 35"
        );
        match book.get("d").state {
            DestinationState::Failing(f) => assert_eq!(
                (f.since_ms, f.last_error.as_str(), f.failures),
                (1_000, "still none", 3)
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            book.get("other"),
            DestinationHealth::default(),
            "others untouched"
        );
        assert!(book.succeeded("d", 70_000), "it was failing");
        assert!(!book.succeeded("d", 71_000), "it was not");
        assert_eq!(
            book.get("d"),
            DestinationHealth {
                state: DestinationState::Active,
                last_export_ms: Some(71_000)
            }
        );
        assert_eq!(
            book.failed("d", "again", 80_000).next_attempt_ms,
            90_000,
            "counted from one again"
        );
    }

    #[test]
    fn adopting_the_stores_records_follows_other_processes_but_not_running_ones() {
        let book = HealthBook::new(Backoff::default());
        let failing = |since_ms| DestinationFailure {
            since_ms,
            last_error: "NoSuchBucket".into(),
            failures: 2,
            next_attempt_ms: since_ms + 20_000,
        };
        book.failed("mine", "timed out", 5);
        book.failed("running", "timed out", 5);
        book.succeeded("theirs", 7);
        let names: Vec<String> = ["mine", "theirs", "running", "unseen"]
            .map(String::from)
            .to_vec();
        let running = HashSet::from(["running".to_string()]);
        // Another process failed "theirs" and "unseen", and ran "mine" well; "gone" is no
        // longer configured here.
        let records = [
            ("gone".to_string(), failing(1)),
            ("theirs".to_string(), failing(2)),
            ("unseen".to_string(), failing(3)),
        ];
        book.adopt(&records, &names, &running);
        assert_eq!(book.get("mine").state, DestinationState::Active);
        assert_eq!(
            book.get("theirs").state,
            DestinationState::Failing(failing(2))
        );
        assert_eq!(book.get("theirs").last_export_ms, Some(7), "kept");
        assert_eq!(
            book.get("unseen").state,
            DestinationState::Failing(failing(3))
        );
        assert!(
            matches!(
                book.get("running").state,
                DestinationState::Failing(DestinationFailure { since_ms: 5, .. })
            ),
            "a running destination keeps what this process knows"
        );
        assert_eq!(
            book.get("gone"),
            DestinationHealth::default(),
            "not adopted"
        );
        assert!(
            book.waiting("theirs", 2 + 19_999).is_some(),
            "waits out their pause"
        );
    }
}
