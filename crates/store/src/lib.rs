//! The durable outbox between ingest and export.
//!
//! The engine talks only to the [`Store`] trait and never assumes it is the store's only
//! user. This crate carries no database driver: each backend is a crate of its own
//! (`auditsync-store-sqlite` is the embedded default) that registers a [`StoreFactory`] under
//! its `store.type`, and runs the conformance suite of `testkit` (feature `testkit`).

pub mod holder;
pub mod registry;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use registry::StoreFactory;

use std::collections::BTreeMap;

use async_trait::async_trait;
use auditsync_core::event_json::{self, KeptTexts};
use auditsync_core::{packed_event, Event};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

/// An event serialized for the store, ready to append.
///
/// Encoding happens wherever the event is accepted (e.g. in each HTTP request's task), so
/// that the single writer that commits a group of requests does no per-event work but the
/// insert itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEvent {
    /// The event's id.
    pub id: String,
    /// Its time, epoch ms.
    pub time: i64,
    /// Its organization (tenant), if any.
    pub tenant: Option<String>,
    /// The event as stored: its texts packed behind a checksum
    /// ([`auditsync_core::packed_event`]).
    pub body: String,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    /// The JSON form of a packed body being read ([`with_json`]).
    static JSON: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl EncodedEvent {
    /// Serializes `event` (whose id must be set).
    pub fn new(event: &Event) -> Result<Self, StoreError> {
        Ok(Self {
            id: event.id.clone(),
            time: event.time,
            tenant: event.organization.clone(),
            body: encode(|out| packed_event::write(out, event, KeptTexts::default())),
        })
    }

    /// Serializes `event` (whose id must be set), keeping its id and organization without
    /// copying them.
    pub fn from_event(event: Event) -> Self {
        Self::with_texts(event, KeptTexts::default())
    }

    /// [`EncodedEvent::from_event`] for an event whose payload or parameters are still the
    /// text they came in (see [`KeptTexts`]).
    pub fn with_texts(event: Event, kept: KeptTexts<'_>) -> Self {
        let body = encode(|out| packed_event::write(out, &event, kept));
        Self::from_parts(event, body)
    }

    fn from_parts(event: Event, body: String) -> Self {
        Self {
            id: event.id,
            time: event.time,
            tenant: event.organization,
            body,
        }
    }
}

/// What `write` writes, in a buffer of its exact length.
fn encode(write: impl FnOnce(&mut String)) -> String {
    // Written into a scratch buffer that keeps its size across events, then copied once at
    // its exact length: growing a fresh buffer costs a copy per doubling, and a buffer
    // sized up front holds its spare room for as long as the event is queued.
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.clear();
        write(scratch);
        scratch.as_str().to_owned()
    })
}

/// An event as stored, with its store-assigned sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Increasing and never reused (also not after garbage collection); there may be gaps.
    pub seq: u64,
    /// The event.
    pub event: Event,
}

/// An event read for an export ([`Store::read_for_export`]): its payload and parameters
/// may still be the JSON text they are stored as, for the export to copy into its file.
#[derive(Debug, Clone)]
pub struct ExportEvent {
    /// Its sequence number.
    pub seq: u64,
    /// The event; its `payload` is `None` when `payload_text` is set, and its `params` empty
    /// when `params_text` is.
    pub event: Event,
    /// The payload's JSON text, when the store left it unread.
    pub payload_text: Option<Box<RawValue>>,
    /// The parameters' JSON text (an object), when the store left them unread.
    pub params_text: Option<Box<RawValue>>,
}

/// A page of events read for an export ([`Store::read_page_for_export`]): decoded by the
/// store, or still their stored bodies, which the export renders from their texts where it
/// can and decodes otherwise.
#[derive(Debug)]
pub enum ExportPage {
    /// Events the store decoded.
    Events(Vec<ExportEvent>),
    /// Bodies as stored, decoded by [`ExportPage::decode`].
    Bodies(StoredBodies),
}

impl ExportPage {
    /// Number of events in it.
    pub fn len(&self) -> usize {
        match self {
            ExportPage::Events(events) => events.len(),
            ExportPage::Bodies(bodies) => bodies.len(),
        }
    }

    /// True when it holds no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sequence number of its last event.
    pub fn last_seq(&self) -> Option<u64> {
        match self {
            ExportPage::Events(events) => events.last().map(|e| e.seq),
            ExportPage::Bodies(bodies) => bodies.last_seq(),
        }
    }

    /// Its events, decoded ([`ExportEvent::from_body`]) if they are still bodies.
    pub fn decode(self) -> Result<Vec<ExportEvent>, StoreError> {
        match self {
            ExportPage::Events(events) => Ok(events),
            ExportPage::Bodies(bodies) => bodies.decode(),
        }
    }
}

/// Stored event bodies (as [`EncodedEvent`] wrote them) with their sequence numbers, in
/// one buffer: a page costs two allocations, not one per event.
#[derive(Debug, Default)]
pub struct StoredBodies {
    text: String,
    /// Each body's sequence number and where it ends in `text`.
    ends: Vec<(u64, usize)>,
}

impl StoredBodies {
    /// An empty page with room for `events` bodies of `bytes` in all.
    pub fn with_capacity(events: usize, bytes: usize) -> Self {
        Self {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(events),
        }
    }

    /// Appends the body of event `seq`.
    pub fn push(&mut self, seq: u64, body: &str) {
        self.text.push_str(body);
        self.ends.push((seq, self.text.len()));
    }

    /// Number of bodies.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when it holds no body.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Sequence number of the last body.
    pub fn last_seq(&self) -> Option<u64> {
        self.ends.last().map(|(seq, _)| *seq)
    }

    /// Each `(seq, body)` in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &str)> {
        let starts = std::iter::once(0).chain(self.ends.iter().map(|(_, end)| *end));
        self.ends
            .iter()
            .zip(starts)
            .map(|((seq, end), start)| (*seq, &self.text[start..*end]))
    }

    /// The events, each read by [`ExportEvent::from_body`].
    pub fn decode(&self) -> Result<Vec<ExportEvent>, StoreError> {
        self.iter()
            .map(|(seq, body)| ExportEvent::from_body(seq, body))
            .collect()
    }
}

impl StoredEvent {
    /// Reads a stored body (as [`EncodedEvent`] wrote it); one that does not read is
    /// [`StoreError::Corrupt`].
    pub fn from_body(seq: u64, body: &str) -> Result<Self, StoreError> {
        with_json(seq, body, |json| {
            let event = serde_json::from_str(json).map_err(|e| corrupt(seq, &e))?;
            Ok(Self { seq, event })
        })
    }
}

impl ExportEvent {
    /// Reads a stored body leaving its payload and parameters as text
    /// ([`event_json::read_event_for_export`]); one that does not read is
    /// [`StoreError::Corrupt`].
    pub fn from_body(seq: u64, body: &str) -> Result<Self, StoreError> {
        with_json(seq, body, |json| {
            let read = event_json::read_event_for_export(json).map_err(|e| corrupt(seq, &e))?;
            Ok(Self {
                seq,
                event: read.event,
                payload_text: read.payload.map(ToOwned::to_owned),
                params_text: read.params.map(ToOwned::to_owned),
            })
        })
    }

    /// The whole event, its payload and parameter texts (if any) read back into it.
    pub fn into_event(self) -> Result<Event, serde_json::Error> {
        let mut event = self.event;
        if let Some(text) = &self.payload_text {
            event.payload = Self::payload_of(text)?;
        }
        if let Some(text) = &self.params_text {
            event.params = Self::params_of(text)?;
        }
        Ok(event)
    }

    /// The payload a payload text stands for (`null` is none).
    pub fn payload_of(text: &RawValue) -> Result<Option<serde_json::Value>, serde_json::Error> {
        Ok(Some(serde_json::from_str(text.get())?).filter(|v: &serde_json::Value| !v.is_null()))
    }

    /// The parameters a parameters text stands for.
    pub fn params_of(
        text: &RawValue,
    ) -> Result<serde_json::Map<String, serde_json::Value>, serde_json::Error> {
        serde_json::from_str(text.get())
    }
}

/// Hands `read` the JSON form of a stored body: the body itself, or the JSON a packed one
/// stands for. That is only read, so one buffer serves every event of the thread.
fn with_json<T>(
    seq: u64,
    body: &str,
    read: impl FnOnce(&str) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    if !packed_event::is_packed(body) {
        return read(body);
    }
    JSON.with_borrow_mut(|json| {
        json.clear();
        packed_event::write_json(json, body).map_err(|e| corrupt(seq, &e))?;
        read(json)
    })
}

fn corrupt(seq: u64, e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        seq,
        message: e.to_string(),
    }
}

impl From<StoredEvent> for ExportEvent {
    fn from(stored: StoredEvent) -> Self {
        Self {
            seq: stored.seq,
            event: stored.event,
            payload_text: None,
            params_text: None,
        }
    }
}

/// What [`Store::append`] did with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The event's id.
    pub id: String,
    /// Its sequence number (the existing one for a duplicate).
    pub seq: u64,
    /// True when an event with this id was already stored; nothing new was written.
    pub duplicate: bool,
}

/// One export file of one destination: defined (range and key) before its upload, so that a
/// retry after a crash writes the same key with the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The destination's name.
    pub destination: String,
    /// First sequence number in the file.
    pub first_seq: u64,
    /// Last sequence number in the file.
    pub last_seq: u64,
    /// The object key.
    pub key: String,
    /// Number of events in the file.
    pub events: u64,
    /// Size of the file in bytes (after compression).
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the file.
    pub sha256: String,
    /// When the batch was recorded, in epoch milliseconds.
    pub created_ms: i64,
    /// The earliest event time in the file, epoch ms (`None` for batches recorded by a
    /// version that did not keep it).
    pub earliest_ms: Option<i64>,
    /// The latest event time in the file, epoch ms (`None` as for `earliest_ms`).
    pub latest_ms: Option<i64>,
}

/// The last manifest written for a destination: the head of its chain (see
/// `auditsync-manifest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    /// The destination's name.
    pub destination: String,
    /// Its position in the chain, from 1.
    pub number: u64,
    /// Its key, relative to the destination's root.
    pub key: String,
    /// Lowercase hex SHA-256 of its bytes: the next manifest links to it.
    pub sha256: String,
    /// The last sequence number it covers.
    pub last_seq: u64,
    /// When it was written, in epoch milliseconds.
    pub created_ms: i64,
}

/// Which destinations take which events, for GC: an event is deleted once every destination
/// that takes it has it, and an event that no destination takes is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Takers {
    /// Destinations that take every event.
    pub all: Vec<String>,
    /// Destinations that take only one tenant's events, by tenant.
    pub by_tenant: BTreeMap<String, Vec<String>>,
}

impl Takers {
    /// Destinations that each take every event.
    pub fn all(destinations: &[String]) -> Self {
        Self {
            all: destinations.to_vec(),
            by_tenant: BTreeMap::new(),
        }
    }

    /// Every destination named, global ones first.
    pub fn names(&self) -> Vec<String> {
        let mut names = self.all.clone();
        names.extend(self.by_tenant.values().flatten().cloned());
        names
    }
}

/// How far GC may delete, from the destinations' cursors ([`GcBounds::of`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcBounds {
    /// Events of a tenant listed here may go up to its sequence number.
    pub by_tenant: BTreeMap<String, u64>,
    /// Every other event (another tenant's, or none) may go up to this one (0 when no
    /// destination takes every event: such events are kept).
    pub others: u64,
}

impl GcBounds {
    /// The bounds for `takers`, given each destination's cursor and the highest sequence
    /// number readers may see (`visible`, below any open bulk load).
    pub fn of(takers: &Takers, visible: u64, cursor: impl Fn(&str) -> u64) -> Self {
        let all = takers
            .all
            .iter()
            .map(|d| cursor(d))
            .min()
            .map(|lowest| lowest.min(visible));
        let by_tenant = takers
            .by_tenant
            .iter()
            .filter(|(_, destinations)| !destinations.is_empty())
            .map(|(tenant, destinations)| {
                let own = destinations.iter().map(|d| cursor(d)).min().unwrap_or(0);
                let bound = own.min(all.unwrap_or(u64::MAX)).min(visible);
                (tenant.clone(), bound)
            })
            .collect();
        Self {
            by_tenant,
            others: all.unwrap_or(0),
        }
    }

    /// The highest sequence number any event may be deleted up to.
    pub fn highest(&self) -> u64 {
        self.by_tenant.values().copied().fold(self.others, u64::max)
    }

    /// Whether nothing at all may be deleted.
    pub fn is_nothing(&self) -> bool {
        self.highest() == 0
    }
}

/// Events a store's GC deletes per transaction. One transaction for a whole backlog held
/// SQLite's appends back until it ended (6.9 s for 1,000,000 events) and grew either
/// store's log with the backlog.
pub const GC_STEP_EVENTS: u64 = 50_000;

/// GC logs how far it has come after each this many events.
pub const GC_PROGRESS_EVENTS: u64 = 1_000_000;

/// Whether a step of `step` events, after `before` deleted, passes a multiple of
/// [`GC_PROGRESS_EVENTS`]: GC then logs its progress.
pub fn gc_progress_due(before: u64, step: u64) -> bool {
    before / GC_PROGRESS_EVENTS != (before + step) / GC_PROGRESS_EVENTS
}

/// Counts for operators and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Events currently held.
    pub events: u64,
    /// Lowest sequence number held, if any.
    pub first_seq: Option<u64>,
    /// Highest sequence number ever assigned (0 if none).
    pub last_seq: u64,
}

/// Where a destination stands ([`Store::backlog_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DestinationBacklog {
    /// Its cursor ([`Store::cursor`]).
    pub cursor: u64,
    /// The events after the cursor it has yet to export: its tenant's only, for a tenant
    /// destination.
    pub events: u64,
    /// The time of the first of them (epoch milliseconds); `None` when there is none.
    pub oldest_ms: Option<i64>,
}

/// One message of a [`Store::append_bulk`] stream.
#[derive(Debug)]
pub enum BulkItem {
    /// Events to add to the open load, in input order.
    Events(Vec<EncodedEvent>),
    /// The input ended well: commit everything sent so far.
    Commit,
}

/// What a [`Store::append_bulk`] committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BulkOutcome {
    /// Events newly stored.
    pub stored: u64,
    /// Events whose id was already stored (or repeated in the input): not stored again.
    pub duplicates: u64,
    /// Lowest and highest sequence number assigned, if anything was stored.
    pub seqs: Option<(u64, u64)>,
}

impl BulkOutcome {
    /// Counts one appended event: stored (widening the range of sequence numbers) or a
    /// duplicate.
    pub fn count(&mut self, appended: &Appended) {
        if appended.duplicate {
            self.duplicates += 1;
        } else {
            self.stored += 1;
            let (lo, hi) = self.seqs.unwrap_or((appended.seq, appended.seq));
            self.seqs = Some((lo.min(appended.seq), hi.max(appended.seq)));
        }
    }
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed (I/O, locking, corruption).
    #[error("store {operation} failed: {source}")]
    Backend {
        /// What the store was doing.
        operation: &'static str,
        /// The database's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
        /// Whether retrying may help (e.g. the database was busy).
        retryable: bool,
    },
    /// Stored data could not be decoded.
    #[error("stored event seq {seq} is unreadable: {message}")]
    Corrupt {
        /// Its sequence number.
        seq: u64,
        /// Why.
        message: String,
    },
    /// The store's database is damaged. It refuses writes from the moment it is found
    /// (when the store opens, or when any read or write meets it): an acknowledged event
    /// must be one that can be exported.
    #[error("the store {store} is corrupted ({detail}); it refuses writes until it is restored (see docs/operations.md, \"A corrupted store\")")]
    Corrupted {
        /// Which store (its file or database).
        store: String,
        /// What the database reported.
        detail: String,
    },
    /// The caller broke the protocol (e.g. a second pending batch for one destination).
    #[error("store {operation}: {message}")]
    Conflict {
        /// What the store was doing.
        operation: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A bulk append's input stopped without [`BulkItem::Commit`]: nothing was stored.
    #[error("bulk append abandoned before its commit: nothing was stored")]
    Abandoned,
}

impl StoreError {
    /// Whether retrying may help.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Backend {
                retryable: true,
                ..
            }
        )
    }
}

/// The durable outbox.
///
/// Every method is atomic: it commits whole or not at all.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// A short description for logs and `verify`, without secrets, e.g. `sqlite:/data/a.db`.
    fn describe(&self) -> String;

    /// Stores events in one transaction and returns once they are durable. An event whose
    /// id is already stored (or repeated within `events`) is not stored again.
    async fn append(&self, events: Vec<EncodedEvent>) -> Result<Vec<Appended>, StoreError>;

    /// Encodes and appends events (a convenience over [`Store::append`]).
    async fn append_events(&self, events: Vec<Event>) -> Result<Vec<Appended>, StoreError> {
        let encoded = events
            .iter()
            .map(EncodedEvent::new)
            .collect::<Result<Vec<_>, _>>()?;
        self.append(encoded).await
    }

    /// Appends a stream of event chunks as **one** unit, all or nothing, with memory bounded
    /// by the channel rather than by the input (CLI `ingest` of a large file).
    ///
    /// Everything becomes visible when [`BulkItem::Commit`] arrives, at once; if the channel
    /// closes first (the producer met a bad line, or was dropped), nothing is stored and the
    /// result is [`StoreError::Abandoned`]. Ids already stored, or repeated in the input,
    /// are skipped as in [`Store::append`]. A store may commit in steps (the SQLite store
    /// does) as long as readers see none of them before the end and a load cut off by a
    /// crash is undone.
    ///
    /// The default collects the chunks and makes one [`Store::append`] call (correct, but
    /// memory grows with the input); stores that can do better override it.
    async fn append_bulk(
        &self,
        mut items: mpsc::Receiver<BulkItem>,
    ) -> Result<BulkOutcome, StoreError> {
        let mut all = Vec::new();
        loop {
            match items.recv().await {
                Some(BulkItem::Events(events)) => all.extend(events),
                Some(BulkItem::Commit) => break,
                None => return Err(StoreError::Abandoned),
            }
        }
        let mut outcome = BulkOutcome::default();
        if all.is_empty() {
            return Ok(outcome);
        }
        for appended in self.append(all).await? {
            outcome.count(&appended);
        }
        Ok(outcome)
    }

    /// Up to `limit` events with `after < seq <= up_to`, in sequence order.
    async fn read_after(
        &self,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// [`Store::read_after`] for an export, which may leave each payload and parameters as
    /// their stored JSON text (see [`auditsync_core::event_json::read_event_for_export`]).
    /// The default reads whole events.
    async fn read_for_export(
        &self,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<ExportEvent>, StoreError> {
        let events = self.read_after(after, up_to, limit).await?;
        Ok(events.into_iter().map(ExportEvent::from).collect())
    }

    /// [`Store::read_for_export`] of one tenant's events only: up to `limit` events of
    /// `tenant` with `after < seq <= up_to`, in sequence order. A store should answer from
    /// an index on (tenant, seq), so that a tenant's destination never walks the other
    /// tenants' events; the default does walk them (correct, but slow).
    async fn read_tenant_for_export(
        &self,
        tenant: &str,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Vec<ExportEvent>, StoreError> {
        let mut found = Vec::new();
        let mut from = after;
        while found.len() < limit {
            let page = self.read_for_export(from, up_to, 4096).await?;
            let Some(last) = page.last() else { break };
            from = last.seq;
            found.extend(
                page.into_iter()
                    .filter(|e| e.event.organization.as_deref() == Some(tenant)),
            );
        }
        found.truncate(limit);
        Ok(found)
    }

    /// One page of an export's events: up to `limit` events with `after < seq <= up_to`,
    /// of `tenant` only when given ([`Store::read_tenant_for_export`]) or of all
    /// ([`Store::read_for_export`]), in sequence order. A store that can should answer with
    /// the bodies as stored ([`ExportPage::Bodies`]): the export then renders most of them
    /// from their texts without decoding them. The default gives the events those two
    /// methods decode.
    async fn read_page_for_export(
        &self,
        tenant: Option<&str>,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<ExportPage, StoreError> {
        Ok(ExportPage::Events(match tenant {
            Some(tenant) => {
                self.read_tenant_for_export(tenant, after, up_to, limit)
                    .await?
            }
            None => self.read_for_export(after, up_to, limit).await?,
        }))
    }

    /// Number of `tenant`'s events held with `seq > after` (a tenant destination's
    /// backlog). The default walks them with [`Store::read_tenant_for_export`].
    async fn count_tenant_after(&self, tenant: &str, after: u64) -> Result<u64, StoreError> {
        let mut count = 0;
        let mut from = after;
        loop {
            let page = self
                .read_tenant_for_export(tenant, from, u64::MAX, 4096)
                .await?;
            let Some(last) = page.last() else {
                return Ok(count);
            };
            from = last.seq;
            count += page.len() as u64;
        }
    }

    /// The destination's cursor: every event with `seq <= cursor` is in its files (0 if
    /// the destination has exported nothing).
    async fn cursor(&self, destination: &str) -> Result<u64, StoreError>;

    /// Where `destination` stands ([`DestinationBacklog`]), of `tenant`'s events only when
    /// given: what `/metrics` and the status pages show for every destination. The default
    /// asks [`Store::cursor`], [`Store::count_after`] or [`Store::count_tenant_after`], and
    /// reads the first event after the cursor; a store may answer all three in one trip.
    async fn backlog_of(
        &self,
        destination: &str,
        tenant: Option<&str>,
    ) -> Result<DestinationBacklog, StoreError> {
        let cursor = self.cursor(destination).await?;
        let (events, first) = match tenant {
            Some(tenant) => (
                self.count_tenant_after(tenant, cursor).await?,
                self.read_tenant_for_export(tenant, cursor, u64::MAX, 1)
                    .await?
                    .first()
                    .map(|e| e.event.time),
            ),
            None => (
                self.count_after(cursor).await?,
                self.read_after(cursor, u64::MAX, 1)
                    .await?
                    .first()
                    .map(|e| e.event.time),
            ),
        };
        Ok(DestinationBacklog {
            cursor,
            events,
            oldest_ms: first,
        })
    }

    /// The destination's batch that was recorded but not completed, if any.
    async fn pending_batch(&self, destination: &str) -> Result<Option<Batch>, StoreError>;

    /// Records a batch before its upload. Fails if the destination has a pending batch or
    /// if the batch does not start right after the destination's cursor.
    async fn begin_batch(&self, batch: &Batch) -> Result<(), StoreError>;

    /// Marks the destination's pending batch done and moves its cursor to the batch's last
    /// sequence number, in one transaction.
    async fn complete_batch(&self, destination: &str, first_seq: u64) -> Result<(), StoreError>;

    /// The sequence number of the event with this id, if the store holds it or still
    /// remembers it after GC (see [`IdRetention`]).
    async fn seq_of(&self, id: &str) -> Result<Option<u64>, StoreError>;

    /// Up to `limit` completed batches of the destination with `first_seq > after_seq`, in
    /// sequence order: what its next manifest lists. Batches are kept after GC.
    async fn completed_batches(
        &self,
        destination: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Batch>, StoreError>;

    /// The destination's last recorded manifest, if any.
    async fn manifest_head(&self, destination: &str) -> Result<Option<ManifestRecord>, StoreError>;

    /// Records a written manifest as the destination's new head. Fails with
    /// [`StoreError::Conflict`] unless its number follows the head's (1 for the first), so
    /// two writers never fork one chain.
    async fn record_manifest(&self, record: &ManifestRecord) -> Result<(), StoreError>;

    /// Deletes events that every listed destination has (seq at or below the lowest of
    /// their cursors; a destination that never exported has cursor 0). Returns the count.
    /// The deleted events' ids are remembered for the store's [`IdRetention`]: within it,
    /// [`Store::append`] reports a replayed id as a duplicate (with its old sequence number).
    async fn gc(&self, destinations: &[String]) -> Result<u64, StoreError>;

    /// GC with tenant destinations: deletes the events every destination that takes them
    /// has (see [`Takers`] and [`GcBounds`]), remembering their ids as [`Store::gc`] does.
    /// The default is [`Store::gc`] over every named destination, which never deletes too
    /// much but keeps everything until the slowest tenant has it (and, with no destination
    /// that takes every event, deletes nothing).
    async fn gc_takers(&self, takers: &Takers) -> Result<u64, StoreError> {
        if takers.all.is_empty() && !takers.by_tenant.is_empty() {
            return Ok(0);
        }
        self.gc(&takers.names()).await
    }

    /// Current counts.
    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// The highest sequence number readers may see ([`StoreStats::last_seq`]): where an
    /// export of everything stored now stops. Asked at every export, so a store whose
    /// [`Store::stats`] counts its events (a walk over all of them) should answer it
    /// without; the default asks `stats`.
    async fn last_seq(&self) -> Result<u64, StoreError> {
        Ok(self.stats().await?.last_seq)
    }

    /// Number of events held with `seq > after` (a destination's backlog).
    async fn count_after(&self, after: u64) -> Result<u64, StoreError>;

    /// Checks that the store can commit a write (for health checks and `verify`).
    async fn check_writable(&self) -> Result<(), StoreError>;

    /// Takes the lease `name` (such as `export:<destination>`) for `holder` for `ttl_ms`
    /// milliseconds, unless another holder has it and it has not expired; a holder renews
    /// its own lease by taking it again. Atomic across processes sharing the store, so that
    /// two exports of one destination never run at once.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<LeaseOutcome, StoreError>;

    /// Gives the lease up if `holder` has it (otherwise does nothing).
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;

    /// Starts an export of one destination in one step: takes its lease (as
    /// [`Store::acquire_lease`]) and reads its pending batch and cursor under it. When the
    /// destination has nothing to do up to `claim.up_to` (no pending batch, and no event it
    /// takes after its cursor), the answer is [`ExportStart::Idle`] and the lease is not held
    /// afterwards: an export tick over many idle tenants then costs one read each.
    ///
    /// The default is made of the other methods (it takes the lease, and gives it back when
    /// idle); a store should answer in one round trip.
    async fn start_export(&self, claim: &ExportClaim<'_>) -> Result<ExportStart, StoreError> {
        match self
            .acquire_lease(claim.lease, claim.holder, claim.ttl_ms)
            .await?
        {
            LeaseOutcome::HeldBy { holder, expires_ms } => {
                return Ok(ExportStart::HeldBy { holder, expires_ms })
            }
            LeaseOutcome::Acquired { .. } => {}
        }
        let pending = self.pending_batch(claim.destination).await?;
        let cursor = self.cursor(claim.destination).await?;
        let idle = pending.is_none()
            && (cursor >= claim.up_to
                || self
                    .read_page_for_export(claim.tenant, cursor, claim.up_to, 1)
                    .await?
                    .is_empty());
        if idle {
            self.release_lease(claim.lease, claim.holder).await?;
            return Ok(ExportStart::Idle);
        }
        Ok(ExportStart::Started { pending, cursor })
    }

    /// Whether writes are held back, for now, by something reads need not wait for (SQLite's
    /// integrity check at open): an export then reads its first file while it waits to
    /// take its lease ([`Store::stats`], [`Store::last_seq`], [`Store::destination_failures`],
    /// [`Store::cursor`] and [`Store::read_page_for_export`] of every event go ahead). `false`
    /// by default.
    fn holds_writes(&self) -> bool {
        false
    }

    /// The damage found in the store's database so far, if any (see
    /// [`StoreError::Corrupted`]); `/healthz` and `/metrics` report it. It does not wait:
    /// while a check at open runs ([`Store::holds_writes`]) it knows only what was found
    /// before; await [`Store::checked`] first for the check's verdict. A store that cannot
    /// detect damage reports none.
    fn corruption(&self) -> Option<String> {
        None
    }

    /// Returns once the store's check at open (if it makes one) has given its verdict, which
    /// [`Store::corruption`] then includes. At once by default.
    async fn checked(&self) {}

    /// Records a scheduled run (export, GC, a sync), replacing that schedule's previous
    /// record, so that `auditsync schedule` and `status` can show when it last ran.
    async fn record_schedule_run(&self, run: &ScheduleRun) -> Result<(), StoreError>;

    /// The last recorded run of each schedule, in name order.
    async fn schedule_runs(&self) -> Result<Vec<ScheduleRun>, StoreError>;

    /// Records that `destination` is failing (`Some`) or no longer is (`None`), so that
    /// every process sharing the store (replicas, `auditsync status`) shows it and waits out
    /// its pause. The default keeps nothing ([`Store::destination_failures`] answers `None`).
    async fn record_destination_failure(
        &self,
        destination: &str,
        failure: Option<&DestinationFailure>,
    ) -> Result<(), StoreError> {
        let _ = (destination, failure);
        Ok(())
    }

    /// Every failing destination's record, in name order; `None` when the store keeps no
    /// such records (each process then knows only its own runs).
    async fn destination_failures(
        &self,
    ) -> Result<Option<Vec<(String, DestinationFailure)>>, StoreError> {
        Ok(None)
    }
}

/// How long a store remembers the ids of garbage-collected events, so that a producer that
/// replays an event after its first copy was collected (outboxes retry after outages) is
/// still told it is a duplicate instead of having it stored and exported twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRetention {
    /// How long after GC an id is remembered (zero: not at all).
    pub window_ms: i64,
    /// At most this many ids are remembered; past it, the oldest are forgotten first.
    pub max_ids: u64,
}

impl Default for IdRetention {
    /// 7 days, at most 10,000,000 ids.
    fn default() -> Self {
        Self {
            window_ms: 7 * 24 * 3600 * 1000,
            max_ids: 10_000_000,
        }
    }
}

/// What [`Store::acquire_lease`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// The caller holds the lease until the given Unix milliseconds.
    Acquired {
        /// When it expires unless renewed.
        expires_ms: i64,
    },
    /// Another holder has it.
    HeldBy {
        /// Who (as it named itself, e.g. `pid 4711 on host-a`).
        holder: String,
        /// Until when, unless renewed.
        expires_ms: i64,
    },
}

/// What [`Store::start_export`] is asked: which destination, under which lease.
#[derive(Debug, Clone, Copy)]
pub struct ExportClaim<'a> {
    /// The destination's name.
    pub destination: &'a str,
    /// Its tenant, if it takes one tenant's events only.
    pub tenant: Option<&'a str>,
    /// The last sequence number this export goes up to.
    pub up_to: u64,
    /// The lease's name (`export:<destination>`).
    pub lease: &'a str,
    /// Who takes it.
    pub holder: &'a str,
    /// For how long, in milliseconds.
    pub ttl_ms: i64,
}

/// What [`Store::start_export`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportStart {
    /// Another holder has the lease (see [`LeaseOutcome::HeldBy`]).
    HeldBy {
        /// Who.
        holder: String,
        /// Until when, unless renewed.
        expires_ms: i64,
    },
    /// Nothing to export; the lease was not taken.
    Idle,
    /// The caller holds the lease, and this is where the destination stands.
    Started {
        /// Its batch recorded but not completed, if any.
        pending: Option<Batch>,
        /// Its cursor.
        cursor: u64,
    },
}

/// Why and since when a destination's exports fail, as recorded by the process whose run
/// failed last ([`Store::record_destination_failure`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationFailure {
    /// When the first of the failed runs in a row failed, epoch ms.
    pub since_ms: i64,
    /// Why the last one failed.
    pub last_error: String,
    /// Failed runs in a row.
    pub failures: u32,
    /// No run before this, epoch ms.
    pub next_attempt_ms: i64,
}

/// One run of a schedule, as the scheduler records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRun {
    /// The schedule's name: `export`, `gc` or `sync:<name>`.
    pub schedule: String,
    /// When the run started, in Unix milliseconds.
    pub started_ms: i64,
    /// When it finished.
    pub finished_ms: i64,
    /// Whether it did all it had to (an export with no failing destination, a GC that
    /// committed, a sync that left the target complete).
    pub ok: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        let mut event: Event = serde_json::from_value(serde_json::json!({
            "id": "e-1", "time": 1_690_000_000_000_i64, "action": "user.login",
            "actor": {"user_email": "a@example.com"}, "organization": "acme",
            "params": {"n": 1}, "payload": "[\"_id\"]", "extra": {"opType": "Query"}
        }))
        .unwrap();
        event.outcome.code = Some(200);
        event
    }

    /// Stores written before the packed form hold JSON bodies: both read as the same event.
    #[test]
    fn packed_and_json_bodies_read_as_the_same_event() {
        let event = event();
        let packed = EncodedEvent::new(&event).unwrap().body;
        assert!(packed_event::is_packed(&packed));
        let mut json = String::new();
        event_json::write_event(&mut json, &event);
        let (a, b) = (
            StoredEvent::from_body(7, &packed).unwrap(),
            StoredEvent::from_body(7, &json).unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(a.event, event);
        let (a, b) = (
            ExportEvent::from_body(7, &packed).unwrap(),
            ExportEvent::from_body(7, &json).unwrap(),
        );
        assert_eq!(a.event, b.event);
        assert_eq!(a.payload_text.unwrap().get(), b.payload_text.unwrap().get());
        assert_eq!(a.params_text.unwrap().get(), b.params_text.unwrap().get());
    }

    #[test]
    fn a_damaged_packed_body_is_corrupt_naming_its_sequence_number() {
        let packed = EncodedEvent::new(&event()).unwrap().body;
        let damaged = packed.replace("acme", "acne");
        for err in [
            StoredEvent::from_body(9, &damaged).unwrap_err(),
            ExportEvent::from_body(9, &damaged).unwrap_err(),
        ] {
            assert!(
                matches!(&err, StoreError::Corrupt { seq: 9, message } if message.contains("checksum")),
                "{err}"
            );
        }
    }

    fn takers(all: &[&str], by_tenant: &[(&str, &[&str])]) -> Takers {
        Takers {
            all: all.iter().map(|s| s.to_string()).collect(),
            by_tenant: by_tenant
                .iter()
                .map(|(t, ds)| (t.to_string(), ds.iter().map(|s| s.to_string()).collect()))
                .collect(),
        }
    }

    fn cursors(pairs: &[(&str, u64)]) -> impl Fn(&str) -> u64 {
        let map: BTreeMap<String, u64> = pairs.iter().map(|(d, c)| (d.to_string(), *c)).collect();
        move |d| map.get(d).copied().unwrap_or(0)
    }

    #[test]
    fn gc_bounds_take_the_lowest_cursor_of_every_destination_that_takes_an_event() {
        let t = takers(
            &["g1", "g2"],
            &[("a", &["a1", "a2"]), ("b", &["b1"]), ("c", &[])],
        );
        let c = cursors(&[("g1", 50), ("g2", 40), ("a1", 30), ("a2", 60), ("b1", 90)]);
        let bounds = GcBounds::of(&t, 1_000, &c);
        assert_eq!(bounds.others, 40, "the slower global one");
        assert_eq!(bounds.by_tenant["a"], 30, "a's slower one");
        assert_eq!(bounds.by_tenant["b"], 40, "b's is ahead of a global one");
        assert!(
            !bounds.by_tenant.contains_key("c"),
            "no destination: as others"
        );
        assert_eq!(bounds.highest(), 40);
        // Never past what readers may see.
        let low = GcBounds::of(&t, 35, &c);
        assert_eq!(
            (low.others, low.by_tenant["a"], low.by_tenant["b"]),
            (35, 30, 35)
        );
    }

    #[test]
    fn without_a_global_destination_only_tenant_events_may_go() {
        let t = takers(&[], &[("a", &["a1"])]);
        let bounds = GcBounds::of(&t, 1_000, cursors(&[("a1", 7)]));
        assert_eq!(bounds.others, 0);
        assert_eq!(bounds.by_tenant["a"], 7);
        assert!(!bounds.is_nothing());
        assert!(GcBounds::of(&Takers::default(), 1_000, cursors(&[])).is_nothing());
        assert_eq!(t.names(), ["a1"]);
    }
}
