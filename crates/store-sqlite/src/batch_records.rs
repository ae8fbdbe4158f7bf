//! Beginning batch records in groups. A batch is recorded durably before its file is put
//! (so that a crash replays it under the same key), which costs an fsync. Exports running at
//! once share one: each begin joins a queue, and whichever begin reaches the connection
//! first records every batch waiting then, in one transaction.

use std::sync::Mutex;

use auditsync_store::{Batch, StoreError};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::oneshot;

use crate::{backend, cached_execute, cached_row, cursor_of, lock, BATCH_COLUMNS};

/// A batch waiting to be recorded, and where its outcome goes.
#[derive(Debug)]
pub(crate) struct Waiting {
    batch: Batch,
    answer: oneshot::Sender<Result<(), StoreError>>,
}

/// The batches waiting to be recorded.
#[derive(Debug, Default)]
pub(crate) struct BeginQueue(Mutex<Vec<Waiting>>);

impl BeginQueue {
    /// Queues `batch`; its outcome arrives on the receiver once some begin has recorded it.
    pub(crate) fn push(&self, batch: Batch) -> oneshot::Receiver<Result<(), StoreError>> {
        let (answer, outcome) = oneshot::channel();
        lock(&self.0).push(Waiting { batch, answer });
        outcome
    }

    /// Records every batch waiting now (none if another begin took them first).
    pub(crate) fn record_waiting(&self, conn: &mut Connection) {
        let waiting = std::mem::take(&mut *lock(&self.0));
        if waiting.is_empty() {
            return;
        }
        let batches: Vec<&Batch> = waiting.iter().map(|w| &w.batch).collect();
        let outcomes = match begin_group(conn, &batches) {
            Ok(outcomes) => outcomes,
            Err(e) if waiting.len() == 1 => vec![Err(e)],
            // The group failed as a whole (not one batch's conflict): each is tried alone,
            // so that each gets its own error and the others are still recorded.
            Err(_) => batches
                .iter()
                .map(|batch| begin_group(conn, &[batch]).and_then(|mut one| one.remove(0)))
                .collect(),
        };
        for (one, outcome) in waiting.into_iter().zip(outcomes) {
            // A begin that stopped waiting (its task was cancelled) needs no answer.
            let _ = one.answer.send(outcome);
        }
    }
}

/// Records `batches` in one transaction: each gets its own outcome (a batch that does not
/// follow its destination's cursor, or whose destination has a pending batch, is a
/// conflict and is not recorded); an error of the transaction itself fails them all.
fn begin_group(
    conn: &mut Connection,
    batches: &[&Batch],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let err = backend("begin batch");
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    let mut outcomes = Vec::with_capacity(batches.len());
    for batch in batches {
        let outcome = match conflict_of(&tx, batch).map_err(&err)? {
            Some(message) => Err(StoreError::Conflict {
                operation: "begin batch",
                message,
            }),
            None => {
                insert(&tx, batch).map_err(&err)?;
                Ok(())
            }
        };
        outcomes.push(outcome);
    }
    tx.commit().map_err(&err)?;
    Ok(outcomes)
}

/// Why `batch` cannot be begun, if it cannot.
fn conflict_of(conn: &Connection, batch: &Batch) -> rusqlite::Result<Option<String>> {
    let pending: Option<u64> = cached_row(
        conn,
        "SELECT first_seq FROM batches WHERE destination = ?1 AND completed_ms IS NULL",
        [&batch.destination],
        |r| r.get(0),
    )
    .optional()?;
    if let Some(first) = pending {
        return Ok(Some(format!(
            "destination `{}` already has a pending batch starting at {first}",
            batch.destination
        )));
    }
    let cursor = cursor_of(conn, &batch.destination)?;
    if batch.first_seq <= cursor || batch.last_seq < batch.first_seq {
        return Ok(Some(format!(
            "batch {}..={} of `{}` does not follow its cursor {cursor}",
            batch.first_seq, batch.last_seq, batch.destination
        )));
    }
    Ok(None)
}

fn insert(conn: &Connection, batch: &Batch) -> rusqlite::Result<usize> {
    cached_execute(
        conn,
        &format!(
            "INSERT INTO batches ({BATCH_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ),
        params![
            batch.destination,
            batch.first_seq,
            batch.last_seq,
            batch.key,
            batch.events,
            batch.bytes,
            batch.sha256,
            batch.created_ms,
            batch.earliest_ms,
            batch.latest_ms
        ],
    )
}
