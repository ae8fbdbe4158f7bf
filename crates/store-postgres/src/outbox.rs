//! The [`Store`] operations on PostgreSQL.

use std::collections::HashMap;

use async_trait::async_trait;
use auditsync_store::{
    Appended, Batch, BulkItem, BulkOutcome, DestinationFailure, EncodedEvent, ExportEvent,
    ExportPage, GcBounds, LeaseOutcome, ManifestRecord, ScheduleRun, Store, StoreError, StoreStats,
    StoredBodies, StoredEvent, Takers,
};
use deadpool_postgres::GenericClient;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Transaction};

use crate::{backend, PostgresStore};

/// How long a writer of events waits for another one (a bulk load holds the sequencer for
/// its whole input) before it fails with a retryable error.
const WRITER_WAIT: &str = "10s";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The first 16 bytes of the id's SHA-256: how collected ids are remembered (the same as
/// `substring(sha256(convert_to(id, 'UTF8')) from 1 for 16)` in SQL).
fn id_hash(id: &str) -> Vec<u8> {
    Sha256::digest(id.as_bytes())[..16].to_vec()
}

fn read_batch(row: &Row) -> Batch {
    Batch {
        destination: row.get(0),
        first_seq: row.get::<_, i64>(1) as u64,
        last_seq: row.get::<_, i64>(2) as u64,
        key: row.get(3),
        events: row.get::<_, i64>(4) as u64,
        bytes: row.get::<_, i64>(5) as u64,
        sha256: row.get(6),
        created_ms: row.get(7),
        earliest_ms: row.get(8),
        latest_ms: row.get(9),
    }
}

const BATCH_COLUMNS: &str =
    "destination, first_seq, last_seq, object_key, events, bytes, sha256, created_ms, earliest_ms, latest_ms";

/// Serializes checks of one destination's batches and manifests across replicas. Advisory
/// locks are the database's, so the key names the schema: stores in other schemas of the
/// same database do not wait for each other.
async fn lock_destination(
    tx: &Transaction<'_>,
    what: &str,
    destination: &str,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':' || $1, 0))",
        &[&format!("{what}:{destination}")],
    )
    .await
    .map(drop)
}

/// Appends rows inside a transaction that holds the sequencer: ids already stored (or
/// remembered after GC, or repeated in `rows`) are duplicates with their old seq; new ones
/// take the next numbers. Returns what happened to each row, in order.
async fn insert_rows(
    tx: &Transaction<'_>,
    next_seq: &mut i64,
    rows: Vec<EncodedEvent>,
) -> Result<Vec<Appended>, tokio_postgres::Error> {
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let mut known: HashMap<String, u64> = tx
        .query("SELECT id, seq FROM events WHERE id = ANY($1)", &[&ids])
        .await?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
        .collect();
    let hashes: Vec<Vec<u8>> = ids.iter().map(|id| id_hash(id)).collect();
    let remembered: HashMap<Vec<u8>, u64> = tx
        .query(
            "SELECT hash, seq FROM gc_ids WHERE hash = ANY($1)",
            &[&hashes],
        )
        .await?
        .iter()
        .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, i64>(1) as u64))
        .collect();
    let mut out = Vec::with_capacity(rows.len());
    let (mut seqs, mut new_ids, mut times, mut tenants, mut bodies) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (row, hash) in rows.into_iter().zip(hashes) {
        if let Some(&seq) = known.get(&row.id).or_else(|| remembered.get(&hash)) {
            out.push(Appended {
                id: row.id,
                seq,
                duplicate: true,
            });
            continue;
        }
        *next_seq += 1;
        known.insert(row.id.clone(), *next_seq as u64);
        out.push(Appended {
            id: row.id.clone(),
            seq: *next_seq as u64,
            duplicate: false,
        });
        seqs.push(*next_seq);
        new_ids.push(row.id);
        times.push(row.time);
        tenants.push(row.tenant);
        bodies.push(row.body);
    }
    if !seqs.is_empty() {
        tx.execute(
            "INSERT INTO events (seq, id, time_ms, tenant, body)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[])",
            &[&seqs, &new_ids, &times, &tenants, &bodies],
        )
        .await?;
    }
    Ok(out)
}

/// Takes the sequencer for the transaction: the last number handed out.
async fn take_sequencer(tx: &Transaction<'_>) -> Result<i64, tokio_postgres::Error> {
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{WRITER_WAIT}'"))
        .await?;
    Ok(tx
        .query_one("SELECT last_seq FROM sequencer FOR UPDATE", &[])
        .await?
        .get(0))
}

async fn release_sequencer(tx: &Transaction<'_>, last: i64) -> Result<(), tokio_postgres::Error> {
    tx.execute("UPDATE sequencer SET last_seq = $1", &[&last])
        .await
        .map(drop)
}

impl PostgresStore {
    /// Up to `limit` stored bodies with `after < seq <= up_to`, in sequence order, each
    /// decoded by `decode`.
    async fn read_bodies<T>(
        &self,
        tenant: Option<&str>,
        after: u64,
        up_to: u64,
        limit: usize,
        mut decode: impl FnMut(u64, &str) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let client = self.client("read").await?;
        let (after, up_to, limit) = (
            after.min(i64::MAX as u64) as i64,
            up_to.min(i64::MAX as u64) as i64,
            limit.min(i64::MAX as usize) as i64,
        );
        let rows =
            match tenant {
                Some(tenant) => client
                    .query(
                        "SELECT seq, body FROM events WHERE tenant = $4 AND seq > $1 AND seq <= $2
                         ORDER BY seq LIMIT $3",
                        &[&after, &up_to, &limit, &tenant],
                    )
                    .await,
                None => {
                    client
                        .query(
                            "SELECT seq, body FROM events WHERE seq > $1 AND seq <= $2
                         ORDER BY seq LIMIT $3",
                            &[&after, &up_to, &limit],
                        )
                        .await
                }
            }
            .map_err(backend("read"))?;
        rows.iter()
            .map(|row| decode(row.get::<_, i64>(0) as u64, row.get(1)))
            .collect()
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn append(&self, events: Vec<EncodedEvent>) -> Result<Vec<Appended>, StoreError> {
        let err = backend("append");
        let mut client = self.client("append").await?;
        let tx = client.transaction().await.map_err(&err)?;
        let mut next = take_sequencer(&tx).await.map_err(&err)?;
        let out = insert_rows(&tx, &mut next, events).await.map_err(&err)?;
        release_sequencer(&tx, next).await.map_err(&err)?;
        tx.commit().await.map_err(&err)?;
        Ok(out)
    }

    /// One transaction that holds the sequencer from the first chunk to the commit: nothing
    /// is visible before the end, a dropped input rolls everything back, and memory holds
    /// one chunk at a time. Other writers wait (up to 10 s, then fail retryably).
    async fn append_bulk(
        &self,
        mut items: mpsc::Receiver<BulkItem>,
    ) -> Result<BulkOutcome, StoreError> {
        let err = backend("bulk append");
        let mut client = self.client("bulk append").await?;
        let tx = client.transaction().await.map_err(&err)?;
        let mut next = take_sequencer(&tx).await.map_err(&err)?;
        let mut outcome = BulkOutcome::default();
        loop {
            match items.recv().await {
                Some(BulkItem::Events(events)) => {
                    for appended in insert_rows(&tx, &mut next, events).await.map_err(&err)? {
                        outcome.count(&appended);
                    }
                }
                Some(BulkItem::Commit) => break,
                // Dropping the transaction rolls it back.
                None => return Err(StoreError::Abandoned),
            }
        }
        release_sequencer(&tx, next).await.map_err(&err)?;
        tx.commit().await.map_err(&err)?;
        Ok(outcome)
    }

    async fn read_after(
        &self,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.read_bodies(None, after, up_to, limit, StoredEvent::from_body)
            .await
    }

    async fn read_for_export(
        &self,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<ExportEvent>, StoreError> {
        self.read_bodies(None, after, up_to, limit, ExportEvent::from_body)
            .await
    }

    async fn read_tenant_for_export(
        &self,
        tenant: &str,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<ExportEvent>, StoreError> {
        self.read_bodies(Some(tenant), after, up_to, limit, ExportEvent::from_body)
            .await
    }

    async fn read_page_for_export(
        &self,
        tenant: Option<&str>,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<ExportPage, StoreError> {
        let mut bodies = StoredBodies::default();
        self.read_bodies(tenant, after, up_to, limit, |seq, body| {
            bodies.push(seq, body);
            Ok(())
        })
        .await?;
        Ok(ExportPage::Bodies(bodies))
    }

    async fn count_tenant_after(&self, tenant: &str, after: u64) -> Result<u64, StoreError> {
        let client = self.client("count").await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM events WHERE tenant = $1 AND seq > $2",
                &[&tenant, &(after.min(i64::MAX as u64) as i64)],
            )
            .await
            .map_err(backend("count"))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn cursor(&self, destination: &str) -> Result<u64, StoreError> {
        let client = self.client("cursor").await?;
        cursor_of(&client, destination)
            .await
            .map_err(backend("cursor"))
    }

    async fn pending_batch(&self, destination: &str) -> Result<Option<Batch>, StoreError> {
        let client = self.client("pending batch").await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {BATCH_COLUMNS} FROM batches WHERE destination = $1 AND completed_ms IS NULL"
                ),
                &[&destination],
            )
            .await
            .map_err(backend("pending batch"))?;
        Ok(row.as_ref().map(read_batch))
    }

    async fn begin_batch(&self, batch: &Batch) -> Result<(), StoreError> {
        let err = backend("begin batch");
        let mut client = self.client("begin batch").await?;
        let tx = client.transaction().await.map_err(&err)?;
        lock_destination(&tx, "batch", &batch.destination)
            .await
            .map_err(&err)?;
        let pending = tx
            .query_opt(
                "SELECT first_seq FROM batches WHERE destination = $1 AND completed_ms IS NULL",
                &[&batch.destination],
            )
            .await
            .map_err(&err)?;
        if let Some(row) = pending {
            return Err(StoreError::Conflict {
                operation: "begin batch",
                message: format!(
                    "destination `{}` already has a pending batch starting at {}",
                    batch.destination,
                    row.get::<_, i64>(0)
                ),
            });
        }
        let cursor = cursor_of(&tx, &batch.destination).await.map_err(&err)?;
        if batch.first_seq <= cursor || batch.last_seq < batch.first_seq {
            return Err(StoreError::Conflict {
                operation: "begin batch",
                message: format!(
                    "batch {}..={} of `{}` does not follow its cursor {cursor}",
                    batch.first_seq, batch.last_seq, batch.destination
                ),
            });
        }
        tx.execute(
            &format!(
                "INSERT INTO batches ({BATCH_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ),
            &[
                &batch.destination,
                &(batch.first_seq as i64),
                &(batch.last_seq as i64),
                &batch.key,
                &(batch.events as i64),
                &(batch.bytes as i64),
                &batch.sha256,
                &batch.created_ms,
                &batch.earliest_ms,
                &batch.latest_ms,
            ],
        )
        .await
        .map_err(&err)?;
        tx.commit().await.map_err(&err)
    }

    async fn complete_batch(&self, destination: &str, first_seq: u64) -> Result<(), StoreError> {
        let err = backend("complete batch");
        let mut client = self.client("complete batch").await?;
        let tx = client.transaction().await.map_err(&err)?;
        lock_destination(&tx, "batch", destination)
            .await
            .map_err(&err)?;
        let last = tx
            .query_opt(
                "UPDATE batches SET completed_ms = $3
                 WHERE destination = $1 AND first_seq = $2 AND completed_ms IS NULL
                 RETURNING last_seq",
                &[&destination, &(first_seq as i64), &now_ms()],
            )
            .await
            .map_err(&err)?;
        let Some(last) = last else {
            return Err(StoreError::Conflict {
                operation: "complete batch",
                message: format!("`{destination}` has no pending batch starting at {first_seq}"),
            });
        };
        let last: i64 = last.get(0);
        tx.execute(
            "INSERT INTO cursors (destination, seq) VALUES ($1, $2)
             ON CONFLICT (destination) DO UPDATE SET seq = excluded.seq",
            &[&destination, &last],
        )
        .await
        .map_err(&err)?;
        tx.commit().await.map_err(&err)
    }

    async fn seq_of(&self, id: &str) -> Result<Option<u64>, StoreError> {
        let client = self.client("seq of").await?;
        let row = client
            .query_opt(
                "SELECT seq FROM events WHERE id = $1
                 UNION ALL SELECT seq FROM gc_ids WHERE hash = $2 LIMIT 1",
                &[&id, &id_hash(id)],
            )
            .await
            .map_err(backend("seq of"))?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64))
    }

    async fn completed_batches(
        &self,
        destination: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Batch>, StoreError> {
        let client = self.client("completed batches").await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {BATCH_COLUMNS} FROM batches
                     WHERE destination = $1 AND first_seq > $2 AND completed_ms IS NOT NULL
                     ORDER BY first_seq LIMIT $3"
                ),
                &[
                    &destination,
                    &(after_seq.min(i64::MAX as u64) as i64),
                    &(limit.min(i64::MAX as usize) as i64),
                ],
            )
            .await
            .map_err(backend("completed batches"))?;
        Ok(rows.iter().map(read_batch).collect())
    }

    async fn manifest_head(&self, destination: &str) -> Result<Option<ManifestRecord>, StoreError> {
        let client = self.client("manifest head").await?;
        let row = client
            .query_opt(
                "SELECT destination, number, object_key, sha256, last_seq, created_ms
                 FROM manifests WHERE destination = $1 ORDER BY number DESC LIMIT 1",
                &[&destination],
            )
            .await
            .map_err(backend("manifest head"))?;
        Ok(row.map(|r| ManifestRecord {
            destination: r.get(0),
            number: r.get::<_, i64>(1) as u64,
            key: r.get(2),
            sha256: r.get(3),
            last_seq: r.get::<_, i64>(4) as u64,
            created_ms: r.get(5),
        }))
    }

    async fn record_manifest(&self, record: &ManifestRecord) -> Result<(), StoreError> {
        let err = backend("record manifest");
        let mut client = self.client("record manifest").await?;
        let tx = client.transaction().await.map_err(&err)?;
        lock_destination(&tx, "manifest", &record.destination)
            .await
            .map_err(&err)?;
        let head: Option<i64> = tx
            .query_one(
                "SELECT max(number) FROM manifests WHERE destination = $1",
                &[&record.destination],
            )
            .await
            .map_err(&err)?
            .get(0);
        let expected = head.unwrap_or(0) as u64 + 1;
        if record.number != expected {
            return Err(StoreError::Conflict {
                operation: "record manifest",
                message: format!(
                    "manifest {} of `{}` does not follow its head (the next is {expected})",
                    record.number, record.destination
                ),
            });
        }
        tx.execute(
            "INSERT INTO manifests (destination, number, object_key, sha256, last_seq, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &record.destination,
                &(record.number as i64),
                &record.key,
                &record.sha256,
                &(record.last_seq as i64),
                &record.created_ms,
            ],
        )
        .await
        .map_err(&err)?;
        tx.commit().await.map_err(&err)
    }

    /// In steps of [`PostgresStore::gc_step_events`] events, each a transaction of its own
    /// under an advisory lock: a GC that finds another one running stops and leaves the rest
    /// to it (at its first step: deletes nothing and returns 0).
    async fn gc(&self, destinations: &[String]) -> Result<u64, StoreError> {
        self.gc_takers(&Takers::all(destinations)).await
    }

    async fn gc_takers(&self, takers: &Takers) -> Result<u64, StoreError> {
        if takers.all.is_empty() && takers.by_tenant.is_empty() {
            return Ok(0);
        }
        let err = backend("gc");
        let mut client = self.client("gc").await?;
        let (mut deleted, mut after) = (0u64, 0i64);
        loop {
            let tx = client.transaction().await.map_err(&err)?;
            let step = gc_step(&tx, takers, self.retention, after, self.gc_step_events)
                .await
                .map_err(&err)?;
            tx.commit().await.map_err(&err)?;
            match step {
                GcStep::LeftToAnother => {
                    tracing::info!("another replica is collecting; this GC leaves it to it");
                    break;
                }
                GcStep::Done => break,
                GcStep::Deleted { events, last_seq } => {
                    if auditsync_store::gc_progress_due(deleted, events) {
                        tracing::info!(deleted = deleted + events, "garbage collection goes on");
                    }
                    deleted += events;
                    after = last_seq;
                }
            }
        }
        if deleted > 0 {
            forget_old_ids(&mut client, self.retention)
                .await
                .map_err(&err)?;
        }
        Ok(deleted)
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let client = self.client("stats").await?;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM events), (SELECT min(seq) FROM events),
                        (SELECT last_seq FROM sequencer)",
                &[],
            )
            .await
            .map_err(backend("stats"))?;
        Ok(StoreStats {
            events: row.get::<_, i64>(0) as u64,
            first_seq: row.get::<_, Option<i64>>(1).map(|s| s as u64),
            last_seq: row.get::<_, i64>(2) as u64,
        })
    }

    async fn last_seq(&self) -> Result<u64, StoreError> {
        let client = self.client("stats").await?;
        let row = client
            .query_one("SELECT last_seq FROM sequencer", &[])
            .await
            .map_err(backend("stats"))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn count_after(&self, after: u64) -> Result<u64, StoreError> {
        let client = self.client("count").await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM events WHERE seq > $1",
                &[&(after.min(i64::MAX as u64) as i64)],
            )
            .await
            .map_err(backend("count"))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        let client = self.client("write check").await?;
        client
            .execute(
                "INSERT INTO store_meta (key, value) VALUES ('last_write_check', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&now_ms().to_string()],
            )
            .await
            .map(drop)
            .map_err(backend("write check"))
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<LeaseOutcome, StoreError> {
        let err = backend("acquire lease");
        let client = self.client("acquire lease").await?;
        let now = now_ms();
        let expires_ms = now.saturating_add(ttl_ms.max(1));
        // One statement: taken when free, expired or already ours; otherwise untouched.
        let taken = client
            .query_opt(
                "INSERT INTO leases (name, holder, expires_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                     expires_ms = excluded.expires_ms
                 WHERE leases.holder = excluded.holder OR leases.expires_ms <= $4
                 RETURNING expires_ms",
                &[&name, &holder, &expires_ms, &now],
            )
            .await
            .map_err(&err)?;
        if taken.is_some() {
            return Ok(LeaseOutcome::Acquired { expires_ms });
        }
        let row = client
            .query_opt(
                "SELECT holder, expires_ms FROM leases WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(&err)?;
        match row {
            Some(row) => Ok(LeaseOutcome::HeldBy {
                holder: row.get(0),
                expires_ms: row.get(1),
            }),
            // Released in between: try once more.
            None => Box::pin(self.acquire_lease(name, holder, ttl_ms)).await,
        }
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let client = self.client("release lease").await?;
        client
            .execute(
                "DELETE FROM leases WHERE name = $1 AND holder = $2",
                &[&name, &holder],
            )
            .await
            .map(drop)
            .map_err(backend("release lease"))
    }

    async fn record_schedule_run(&self, run: &ScheduleRun) -> Result<(), StoreError> {
        let client = self.client("record schedule run").await?;
        client
            .execute(
                "INSERT INTO schedule_runs (schedule, started_ms, finished_ms, ok)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (schedule) DO UPDATE SET started_ms = excluded.started_ms,
                     finished_ms = excluded.finished_ms, ok = excluded.ok",
                &[&run.schedule, &run.started_ms, &run.finished_ms, &run.ok],
            )
            .await
            .map(drop)
            .map_err(backend("record schedule run"))
    }

    async fn record_destination_failure(
        &self,
        destination: &str,
        failure: Option<&DestinationFailure>,
    ) -> Result<(), StoreError> {
        let client = self.client("record destination failure").await?;
        match failure {
            Some(f) => {
                client
                    .execute(
                        "INSERT INTO destination_failures
                             (destination, since_ms, last_error, failures, next_attempt_ms)
                         VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (destination) DO UPDATE SET since_ms = excluded.since_ms,
                             last_error = excluded.last_error, failures = excluded.failures,
                             next_attempt_ms = excluded.next_attempt_ms",
                        &[
                            &destination,
                            &f.since_ms,
                            &f.last_error,
                            &i64::from(f.failures),
                            &f.next_attempt_ms,
                        ],
                    )
                    .await
            }
            None => {
                client
                    .execute(
                        "DELETE FROM destination_failures WHERE destination = $1",
                        &[&destination],
                    )
                    .await
            }
        }
        .map(drop)
        .map_err(backend("record destination failure"))
    }

    async fn destination_failures(
        &self,
    ) -> Result<Option<Vec<(String, DestinationFailure)>>, StoreError> {
        let client = self.client("read destination failures").await?;
        let rows = client
            .query(
                "SELECT destination, since_ms, last_error, failures, next_attempt_ms
                 FROM destination_failures ORDER BY destination",
                &[],
            )
            .await
            .map_err(backend("read destination failures"))?;
        Ok(Some(
            rows.iter()
                .map(|r| {
                    let failures: i64 = r.get(3);
                    (
                        r.get(0),
                        DestinationFailure {
                            since_ms: r.get(1),
                            last_error: r.get(2),
                            failures: u32::try_from(failures).unwrap_or(u32::MAX),
                            next_attempt_ms: r.get(4),
                        },
                    )
                })
                .collect(),
        ))
    }

    async fn schedule_runs(&self) -> Result<Vec<ScheduleRun>, StoreError> {
        let client = self.client("read schedule runs").await?;
        let rows = client
            .query(
                "SELECT schedule, started_ms, finished_ms, ok FROM schedule_runs ORDER BY schedule",
                &[],
            )
            .await
            .map_err(backend("read schedule runs"))?;
        Ok(rows
            .iter()
            .map(|r| ScheduleRun {
                schedule: r.get(0),
                started_ms: r.get(1),
                finished_ms: r.get(2),
                ok: r.get(3),
            })
            .collect())
    }
}

async fn cursor_of<C: GenericClient>(
    client: &C,
    destination: &str,
) -> Result<u64, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT seq FROM cursors WHERE destination = $1",
            &[&destination],
        )
        .await?
        .map_or(0, |r| r.get::<_, i64>(0) as u64))
}

/// What one step of GC did.
enum GcStep {
    /// Another GC holds the lock: this one stops.
    LeftToAnother,
    /// Nothing (more) to delete.
    Done,
    /// Deleted `events`, the last of them `last_seq`; the next step starts after it.
    Deleted { events: u64, last_seq: i64 },
}

/// One step of GC in `tx`: the first `step_events` events above `after` that every
/// destination taking them has, deleted, their ids remembered with them. The bounds are
/// read again at each step (cursors only move forward).
async fn gc_step(
    tx: &deadpool_postgres::Transaction<'_>,
    takers: &Takers,
    retention: auditsync_store::IdRetention,
    after: i64,
    step_events: i64,
) -> Result<GcStep, tokio_postgres::Error> {
    // One GC at a time across replicas. Advisory locks are the database's: the key names
    // the schema, so that a store in another schema of the database collects beside this.
    let mine: bool = tx
        .query_one(
            "SELECT pg_try_advisory_xact_lock(hashtextextended('gc:' || current_schema(), 0))",
            &[],
        )
        .await?
        .get(0);
    if !mine {
        return Ok(GcStep::LeftToAnother);
    }
    let mut cursors = HashMap::new();
    for destination in takers.names() {
        let seq = cursor_of(tx, &destination).await?;
        cursors.insert(destination, seq);
    }
    // Rows appear only when their writer commits: every committed seq is visible.
    let bounds = GcBounds::of(takers, u64::MAX, |d| cursors[d]);
    if bounds.is_nothing() {
        return Ok(GcStep::Done);
    }
    // Each row's bound is its tenant's, if listed, else the bound of everything else.
    let (tenants, tenant_bounds): (Vec<&str>, Vec<i64>) = bounds
        .by_tenant
        .iter()
        .map(|(t, b)| (t.as_str(), *b as i64))
        .unzip();
    let (highest, others) = (bounds.highest() as i64, bounds.others as i64);
    // Without tenant destinations, a range of the primary key.
    let (doomed, mut args): (&str, Vec<&(dyn ToSql + Sync)>) = if tenants.is_empty() {
        ("e.seq <= $1", vec![&highest])
    } else {
        (
            "e.seq <= $1 AND e.seq <= coalesce(
                (SELECT b.up_to FROM unnest($2::text[], $3::bigint[]) AS b(tenant, up_to)
                 WHERE b.tenant = e.tenant), $4)",
            vec![&highest, &tenants, &tenant_bounds, &others],
        )
    };
    let now = now_ms();
    let (after_at, limit_at) = (args.len() + 1, args.len() + 2);
    args.extend([&after as &(dyn ToSql + Sync), &step_events]);
    // The ids are remembered in the statement that deletes their events.
    let remember = if retention.window_ms > 0 && retention.max_ids > 0 {
        args.push(&now);
        format!(
            ", remembered AS (
                 INSERT INTO gc_ids (hash, seq, deleted_ms)
                 SELECT substring(sha256(convert_to(id, 'UTF8')) from 1 for 16), seq, ${}
                 FROM step
                 ON CONFLICT (hash) DO UPDATE SET seq = excluded.seq, deleted_ms = excluded.deleted_ms)",
            args.len()
        )
    } else {
        String::new()
    };
    let row = tx
        .query_one(
            &format!(
                "WITH step AS (
                     SELECT e.seq, e.id FROM events e
                     WHERE e.seq > ${after_at} AND {doomed}
                     ORDER BY e.seq LIMIT ${limit_at}){remember},
                 gone AS (DELETE FROM events d USING step WHERE d.seq = step.seq RETURNING d.seq)
                 SELECT count(*), max(seq) FROM gone"
            ),
            &args,
        )
        .await?;
    let (events, last_seq): (i64, Option<i64>) = (row.get(0), row.get(1));
    Ok(match last_seq {
        Some(last_seq) if events > 0 => GcStep::Deleted {
            events: events as u64,
            last_seq,
        },
        _ => GcStep::Done,
    })
}

/// Forgets remembered ids past the retention window, then the oldest past its cap.
async fn forget_old_ids(
    client: &mut deadpool_postgres::Object,
    retention: auditsync_store::IdRetention,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute(
        "DELETE FROM gc_ids WHERE deleted_ms < $1",
        &[&now_ms().saturating_sub(retention.window_ms)],
    )
    .await?;
    let held: i64 = tx
        .query_one("SELECT count(*) FROM gc_ids", &[])
        .await?
        .get(0);
    if held as u64 > retention.max_ids {
        tx.execute(
            "DELETE FROM gc_ids WHERE hash IN
                 (SELECT hash FROM gc_ids ORDER BY deleted_ms, seq LIMIT $1)",
            &[&(held - retention.max_ids as i64)],
        )
        .await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use auditsync_core::testkit::{backend_env, unique_name};
    use auditsync_store::testkit::{self, batch, event};

    use super::*;
    use crate::{PostgresConfig, TlsMode};

    /// A store in a schema of its own, collecting in steps of `step_events`.
    fn fresh(url: &str, step_events: i64) -> PostgresStore {
        let mut store = PostgresStore::new(PostgresConfig {
            url: url.to_string(),
            password_env: None,
            password_file: None,
            tls: TlsMode::Off,
            ca_file: None,
            schema: unique_name("gc").replace('-', "_"),
            pool_size: 4,
            dedupe_window_days: 7,
            dedupe_max_ids: 10_000_000,
        })
        .unwrap();
        store.gc_step_events = step_events;
        store
    }

    /// The store's GC checks, with steps so small that every GC takes several (tenant
    /// bounds included, where the events a step skips lie between those it deletes).
    #[tokio::test]
    async fn gc_in_steps_of_one_or_two_events_passes_the_gc_checks() {
        let Some(url) = backend_env("EMULATOR_POSTGRES_URL") else {
            return;
        };
        for step_events in [1, 2] {
            let fresh = || Arc::new(fresh(&url, step_events)) as Arc<dyn Store>;
            testkit::batches_move_cursors_and_gc_keeps_what_a_destination_lacks(fresh()).await;
            testkit::an_id_replayed_after_gc_is_still_a_duplicate(fresh()).await;
            testkit::gc_keeps_what_a_tenant_destination_lacks(fresh()).await;
        }
    }

    /// Each step of GC commits on its own: while a step waits (for a row another
    /// transaction holds), the steps before it are visible to everyone, and nothing of the
    /// waiting one. Every id deleted, at step borders too, is still a duplicate after.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gc_commits_step_by_step_and_remembers_every_id() {
        let Some(url) = backend_env("EMULATOR_POSTGRES_URL") else {
            return;
        };
        let store = Arc::new(fresh(&url, 100));
        let n = 1_000;
        let appended = store
            .append_events((0..n).map(|i| event(&format!("e{i}"), i as i64)).collect())
            .await
            .unwrap();
        let (first, last) = (appended[0].seq, appended[n - 1].seq);
        store.begin_batch(&batch(first, last)).await.unwrap();
        store.complete_batch("d", first).await.unwrap();

        // Holds the 551st event: the sixth step waits for it.
        let mut holder = store.client("test").await.unwrap();
        let hold = holder.transaction().await.unwrap();
        hold.execute(
            "SELECT seq FROM events WHERE seq = $1 FOR UPDATE",
            &[&((first + 550) as i64)],
        )
        .await
        .unwrap();
        let gc = tokio::spawn({
            let store = Arc::clone(&store);
            async move { store.gc(&["d".into()]).await }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let held = store.stats().await.unwrap().events;
            if held == n as u64 - 500 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the five steps before the held event are not seen: {held} events held"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!gc.is_finished(), "GC went past the held event");
        hold.rollback().await.unwrap();
        drop(holder);
        assert_eq!(gc.await.unwrap().unwrap(), n as u64);
        assert_eq!(store.stats().await.unwrap().events, 0);
        testkit::assert_collected_ids_are_remembered(store.as_ref(), &[0, 99, 100, 550, n - 1])
            .await;
    }

    /// One GC at a time per store: while another holds the GC lock of this store's schema,
    /// a GC deletes nothing and returns 0; a store in another schema of the same database
    /// collects meanwhile.
    #[tokio::test]
    async fn gc_leaves_a_store_to_the_gc_running_on_it_and_only_to_that() {
        let Some(url) = backend_env("EMULATOR_POSTGRES_URL") else {
            return;
        };
        let exported = |store: Arc<PostgresStore>| async move {
            let appended = store
                .append_events((0..10).map(|i| event(&format!("e{i}"), i)).collect())
                .await
                .unwrap();
            store
                .begin_batch(&batch(appended[0].seq, appended[9].seq))
                .await
                .unwrap();
            store.complete_batch("d", appended[0].seq).await.unwrap();
            store
        };
        let (mine, other) = (
            exported(Arc::new(fresh(&url, 4))).await,
            exported(Arc::new(fresh(&url, 4))).await,
        );
        let mut holder = mine.client("test").await.unwrap();
        let running = holder.transaction().await.unwrap();
        running
            .execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('gc:' || current_schema(), 0))",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(mine.gc(&["d".into()]).await.unwrap(), 0);
        assert_eq!(mine.stats().await.unwrap().events, 10);
        assert_eq!(
            other.gc(&["d".into()]).await.unwrap(),
            10,
            "another schema's GC waited"
        );
        running.rollback().await.unwrap();
        assert_eq!(mine.gc(&["d".into()]).await.unwrap(), 10);
    }
}
