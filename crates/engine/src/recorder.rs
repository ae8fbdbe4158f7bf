//! Group commit, and the [`Recorder`] that integrators embed.
//!
//! Every accepted request (an HTTP post, a `record` call) sends its encoded events to one
//! committer task. The committer takes everything that queued while the previous commit was
//! running and commits it in one store transaction, so concurrent requests share one fsync.
//! Each request's events stay together in that transaction: a request is stored whole or
//! not at all, and its caller is answered only after the commit.

use std::sync::Arc;

use auditsync_core::{Event, Schema};
use auditsync_store::{Appended, EncodedEvent, Store, StoreError};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::ingest::{admit, IngestError, Location};
use crate::redact::Redactor;

/// Most events one group commit takes (more wait for the next).
pub const MAX_GROUP_EVENTS: usize = 50_000;

struct CommitRequest {
    events: Vec<EncodedEvent>,
    reply: oneshot::Sender<Result<Vec<Appended>, String>>,
}

/// Records events durably from inside a Rust service.
///
/// ```no_run
/// # async fn demo(store: std::sync::Arc<dyn auditsync_store::Store>) -> Result<(), Box<dyn std::error::Error>> {
/// use auditsync_core::Event;
/// let recorder = auditsync_engine::recorder::Recorder::start(store);
/// let appended = recorder
///     .record(Event { time: 1_700_000_000_000, action: "project.created".into(), ..Event::default() })
///     .await?;
/// println!("stored as {} (seq {})", appended.id, appended.seq);
/// # Ok(()) }
/// ```
///
/// Cloning is cheap; all clones share one committer. It stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<CommitRequest>,
    redactor: Arc<Redactor>,
}

impl std::fmt::Debug for CommitRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CommitRequest({} events)", self.events.len())
    }
}

impl Recorder {
    /// Starts the committer on the current tokio runtime, with the default redaction.
    pub fn start(store: Arc<dyn Store>) -> Self {
        Self::start_with(store, Redactor::default())
    }

    /// Starts the committer with `redactor` applied to every recorded event.
    pub fn start_with(store: Arc<dyn Store>, redactor: Redactor) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(commit_loop(store, rx));
        Self {
            tx,
            redactor: Arc::new(redactor),
        }
    }

    /// Records one canonical event; returns once it is durable. An empty `id` gets a
    /// UUIDv7; an empty `action` is refused.
    pub async fn record(&self, event: Event) -> Result<Appended, IngestError> {
        let mut appended = self.record_all(vec![event]).await?;
        Ok(appended.remove(0))
    }

    /// Records canonical events in one transaction; returns once they are durable.
    pub async fn record_all(&self, events: Vec<Event>) -> Result<Vec<Appended>, IngestError> {
        let mut encoded = Vec::with_capacity(events.len());
        for (i, event) in events.into_iter().enumerate() {
            let event = admit(Location::Index(i), event, &self.redactor)?;
            encoded.push(EncodedEvent::new(&event)?);
        }
        self.commit(encoded).await
    }

    /// Validates a record of `schema` (its types, then its rules: catalog and actor, as
    /// strict ingest does) and records it (redacted); returns once it is durable.
    pub async fn record_value(
        &self,
        schema: &dyn Schema,
        record: Value,
    ) -> Result<Appended, IngestError> {
        let invalid = |error| IngestError::Invalid {
            at: Location::Index(0),
            error,
        };
        let event = schema.parse(record).map_err(invalid)?;
        schema.check(&event).map_err(invalid)?;
        self.record(event).await
    }

    /// Commits already validated, redacted and encoded events as one unit of a group commit.
    pub async fn commit(&self, events: Vec<EncodedEvent>) -> Result<Vec<Appended>, IngestError> {
        if events.is_empty() {
            return Err(IngestError::Empty);
        }
        let (reply, answer) = oneshot::channel();
        let stopped = || {
            IngestError::Store(StoreError::Backend {
                operation: "append",
                source: "the committer has stopped".into(),
                retryable: true,
            })
        };
        self.tx
            .send(CommitRequest { events, reply })
            .await
            .map_err(|_| stopped())?;
        match answer.await.map_err(|_| stopped())? {
            Ok(appended) => Ok(appended),
            Err(message) => Err(IngestError::Store(StoreError::Backend {
                operation: "append",
                source: message.into(),
                retryable: true,
            })),
        }
    }
}

async fn commit_loop(store: Arc<dyn Store>, mut rx: mpsc::Receiver<CommitRequest>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        let mut total = group[0].events.len();
        while total < MAX_GROUP_EVENTS {
            match rx.try_recv() {
                Ok(next) => {
                    total += next.events.len();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        let mut sizes = Vec::with_capacity(group.len());
        let mut events = Vec::with_capacity(total);
        let mut replies = Vec::with_capacity(group.len());
        for request in group {
            sizes.push(request.events.len());
            events.extend(request.events);
            replies.push(request.reply);
        }
        match store.append(events).await {
            Ok(appended) => {
                let mut rest = appended.into_iter();
                for (size, reply) in sizes.into_iter().zip(replies) {
                    // A caller that went away (client disconnected) still had its events
                    // committed; nothing to undo.
                    let _ = reply.send(Ok(rest.by_ref().take(size).collect()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, requests = replies.len(), "group commit failed");
                let message = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(message.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditsync_store_sqlite::SqliteStore;

    #[tokio::test]
    async fn record_value_checks_types_and_the_catalog_before_storing() {
        auditsync_catalog::link();
        let schema = auditsync_core::registry::build_schema("uevents").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path().join("a.db")).unwrap());
        let recorder = Recorder::start(store.clone());
        let record = |hint: &str, params: Value| {
            serde_json::json!({"opType": "Query", "createdAt": 1, "nameHints": [hint],
                               "requestParams": params})
        };
        let ok = recorder
            .record_value(
                schema.as_ref(),
                record("User", serde_json::json!({"email": "x"})),
            )
            .await;
        assert!(ok.is_ok(), "{ok:?}");
        for (bad, field) in [
            (record("getUsr", serde_json::json!({})), "nameHints"),
            (
                record("getUser", serde_json::json!({})),
                "requestParams.email",
            ),
        ] {
            match recorder.record_value(schema.as_ref(), bad).await {
                Err(IngestError::Invalid { error, .. }) => assert_eq!(error.field, field),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(store.stats().await.unwrap().events, 1);
    }

    #[tokio::test]
    async fn a_control_character_in_any_string_is_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path().join("a.db")).unwrap());
        let recorder = Recorder::start(store.clone());
        let clean = || Event {
            time: 1,
            action: "user.updated".into(),
            ..Event::default()
        };
        let mut in_org = clean();
        in_org.organization = Some("exa\u{0}mple.com".into());
        let mut in_params = clean();
        in_params.params.insert(
            "note".into(),
            serde_json::json!({"lines": ["ok", "bell\u{7}"]}),
        );
        let mut in_key = clean();
        in_key.params.insert("k\u{1b}".into(), Value::Null);
        let mut in_actor = clean();
        in_actor.actor.user_agent = Some("curl\u{85}".into());
        for (event, field, code) in [
            (in_org, "organization", "U+0000"),
            (in_params, "params.note.lines[1]", "U+0007"),
            (in_key, "params.k\u{1b}", "U+001B"),
            (in_actor, "actor.user_agent", "U+0085"),
        ] {
            match recorder.record(event).await {
                Err(IngestError::Invalid { error, .. }) => {
                    assert_eq!(error.field, field);
                    assert!(error.problem.contains(code), "{error}");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
        // Tab, line feed and carriage return are text, not control.
        let mut fine = clean();
        fine.params.insert("text".into(), "a\tb\r\nc".into());
        recorder.record(fine).await.unwrap();
        assert_eq!(store.stats().await.unwrap().events, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_records_are_all_durable_with_distinct_seqs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path().join("a.db")).unwrap());
        let recorder = Recorder::start(store.clone());
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let recorder = recorder.clone();
                tokio::spawn(async move {
                    recorder
                        .record(Event {
                            id: format!("e{i}"),
                            time: i,
                            action: "x".into(),
                            ..Event::default()
                        })
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap().seq);
        }
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), 200);
        assert_eq!(store.stats().await.unwrap().events, 200);
        let err = recorder
            .record(Event {
                time: 1,
                ..Event::default()
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("action"), "{err}");
    }
}
