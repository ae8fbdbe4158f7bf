//! Turns stored events into the bytes of one export file: the destination's schema renders
//! each event, its formatter writes the record, and the compressor squeezes the stream.
//!
//! Encoding runs on a blocking thread fed page by page from the store, so reading and
//! encoding overlap and no batch is ever held as a list of events.

use std::cell::Cell;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use auditsync_core::canonical_json::{self, CanonicalJson};
use auditsync_core::event_json;
use auditsync_core::{ConfigError, Formatter, RecordWriter, Schema};
use auditsync_store::{ExportEvent, ExportPage, Store, StoreError};
use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// Compression applied to a whole file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain bytes.
    None,
    /// gzip (RFC 1952) at a level 0-9; the header carries no time stamp, so equal input
    /// gives equal bytes.
    Gzip(u32),
    /// Zstandard at a level 1-22.
    Zstd(i32),
}

impl Compression {
    /// Parses `none`, `gzip` or `zstd`, with an optional level (default gzip 6, zstd 3).
    pub fn parse(name: &str, level: Option<i64>) -> Result<Self, ConfigError> {
        let out_of_range = |range: &str| {
            ConfigError::invalid(
                "compression_level",
                format!("{level:?} is outside {range} for {name}"),
            )
        };
        match name {
            "none" => match level {
                None => Ok(Compression::None),
                Some(_) => Err(ConfigError::invalid(
                    "compression_level",
                    "set without a compression",
                )),
            },
            "gzip" => match level.unwrap_or(6) {
                l @ 0..=9 => Ok(Compression::Gzip(l as u32)),
                _ => Err(out_of_range("0-9")),
            },
            "zstd" => match level.unwrap_or(3) {
                l @ 1..=22 => Ok(Compression::Zstd(l as i32)),
                _ => Err(out_of_range("1-22")),
            },
            other => Err(ConfigError::UnknownName {
                key: "compression".into(),
                kind: "compression",
                name: other.into(),
                known: vec!["gzip".into(), "none".into(), "zstd".into()],
            }),
        }
    }

    /// The file-name suffix it adds, with its dot (empty for none).
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip(_) => ".gz",
            Compression::Zstd(_) => ".zst",
        }
    }

    /// Reads an export file's bytes decompressed by its name's suffix (`.gz`, `.zst`, or
    /// none); returns the name without that suffix (`….ndjson`) and the reader.
    pub fn reader_for<'a>(
        name: &'a str,
        body: &'a [u8],
    ) -> io::Result<(&'a str, Box<dyn io::Read + 'a>)> {
        let name = name.rsplit('/').next().unwrap_or(name);
        if let Some(stem) = name.strip_suffix(".gz") {
            Ok((stem, Box::new(flate2::read::GzDecoder::new(body))))
        } else if let Some(stem) = name.strip_suffix(".zst") {
            Ok((stem, Box::new(zstd::stream::read::Decoder::new(body)?)))
        } else {
            Ok((name, Box::new(body)))
        }
    }

    /// Its config name.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip(_) => "gzip",
            Compression::Zstd(_) => "zstd",
        }
    }

    /// A writer that compresses into `inner`.
    pub(crate) fn writer<W: Write>(self, inner: W) -> io::Result<Compressed<W>> {
        Ok(match self {
            Compression::None => Compressed::Plain(inner),
            Compression::Gzip(level) => Compressed::Gzip(flate2::write::GzEncoder::new(
                inner,
                flate2::Compression::new(level),
            )),
            Compression::Zstd(level) => Compressed::Zstd(zstd::Encoder::new(inner, level)?),
        })
    }
}

/// A compressor over any writer; `finish` ends the stream and returns the writer.
pub(crate) enum Compressed<W: Write> {
    Plain(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::Encoder<'static, W>),
}

impl<W: Write> Compressed<W> {
    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Compressed::Plain(w) => Ok(w),
            Compressed::Gzip(e) => e.finish(),
            Compressed::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Compressed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressed::Plain(w) => w.write(buf),
            Compressed::Gzip(e) => e.write(buf),
            Compressed::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressed::Plain(w) => w.flush(),
            Compressed::Gzip(e) => e.flush(),
            Compressed::Zstd(e) => e.flush(),
        }
    }
}

/// Size of the chunks handed to the output thread.
const CHUNK: usize = 256 * 1024;

/// The output of a file. Its bytes are made on a thread of their own, fed in chunks:
/// compressed (if the format says so), appended to the body and hashed, so that rendering
/// and the rest use two cores.
struct Output {
    chunk: Vec<u8>,
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    worker: std::thread::JoinHandle<io::Result<Hashed>>,
}

/// A file's bytes and the SHA-256 of what has been written to them so far.
struct Hashed {
    body: Vec<u8>,
    hasher: Sha256,
}

impl Write for Hashed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.body.extend_from_slice(buf);
        self.hasher.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Output {
    /// `body` is a buffer to write into (its contents are dropped), grown to `capacity`.
    fn new(compression: Compression, capacity: usize, mut body: Vec<u8>) -> io::Result<Self> {
        body.clear();
        body.reserve(capacity);
        let hashed = Hashed {
            body,
            hasher: Sha256::new(),
        };
        let compressor = compression.writer(hashed)?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let worker = std::thread::Builder::new()
            .name("auditsync-output".into())
            .spawn(move || {
                let mut compressor = compressor;
                while let Ok(chunk) = rx.recv() {
                    compressor.write_all(&chunk)?;
                }
                compressor.finish()
            })?;
        Ok(Output {
            chunk: Vec::with_capacity(CHUNK),
            tx,
            worker,
        })
    }

    /// Hands the chunk gathered so far to the output thread.
    fn send_chunk(&mut self) -> io::Result<()> {
        let full = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        self.tx
            .send(full)
            .map_err(|_| io::Error::other("output thread stopped"))
    }

    /// The file's bytes and their SHA-256, in lowercase hex.
    fn finish(self) -> io::Result<(Vec<u8>, String)> {
        let Output { chunk, tx, worker } = self;
        // A send fails only if the worker stopped on an error, which join reports.
        if !chunk.is_empty() {
            let _ = tx.send(chunk);
        }
        drop(tx);
        let hashed = worker
            .join()
            .map_err(|_| io::Error::other("output thread panicked"))??;
        Ok((hashed.body, hex::encode(hashed.hasher.finalize())))
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Sent before it would overflow: growing a full chunk copies it all once more.
        if !self.chunk.is_empty() && self.chunk.len() + buf.len() > CHUNK {
            self.send_chunk()?;
        }
        self.chunk.extend_from_slice(buf);
        if self.chunk.len() >= CHUNK {
            self.send_chunk()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Counts the bytes written through it (the uncompressed size), readable while a record
/// writer holds the writer itself.
struct Counting<'c, W> {
    inner: W,
    count: &'c Cell<u64>,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// How to encode a destination's files.
#[derive(Debug, Clone)]
pub struct FileFormat {
    /// Renders events into records.
    pub schema: Arc<dyn Schema>,
    /// Writes records.
    pub formatter: Arc<dyn Formatter>,
    /// Compresses the file.
    pub compression: Compression,
}

impl FileFormat {
    /// The MIME type of the stored bytes: the format's, or the compressor's when the file
    /// is compressed (the bytes are stored and served compressed, never transcoded).
    pub fn content_type(&self) -> &'static str {
        match self.compression {
            Compression::None => self.formatter.content_type(),
            Compression::Gzip(_) => "application/gzip",
            Compression::Zstd(_) => "application/zstd",
        }
    }

    /// The file extension without a leading dot, e.g. `ndjson.gz`.
    pub fn extension(&self) -> String {
        format!(
            "{}{}",
            self.formatter.extension(),
            self.compression.suffix()
        )
    }
}

/// Where a file's events stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimits {
    /// At most this many events.
    pub max_events: u64,
    /// Stop adding events once the uncompressed size reaches this many bytes.
    pub max_bytes: u64,
}

/// One encoded export file.
#[derive(Debug, Clone)]
pub struct EncodedFile {
    /// The file's bytes.
    pub body: Vec<u8>,
    /// First sequence number in it.
    pub first_seq: u64,
    /// Last sequence number in it.
    pub last_seq: u64,
    /// Time of its earliest event, epoch ms (the key's date: no event in the file is older).
    pub earliest_time: i64,
    /// Time of its latest event, epoch ms.
    pub latest_time: i64,
    /// Number of events.
    pub events: u64,
    /// Size before compression.
    pub raw_bytes: u64,
    /// Lowercase hex SHA-256 of `body`.
    pub sha256: String,
    /// True when no stored event in the range follows it: the last read came up short and
    /// the file holds everything read. The export then needs no further read to know.
    pub exhausted: bool,
}

/// Why a file could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// Reading events failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The formatter or compressor failed.
    #[error("encoding failed: {0}")]
    Io(#[from] io::Error),
}

/// Events read from the store per page.
pub const PAGE: usize = 2_000;

/// The buffers of files already delivered, for the next files to write into.
///
/// A fresh buffer is memory the kernel maps page by page as it is first written: for an
/// uncompressed file of 64 MiB that is 16,000 page faults, about a tenth of the export's
/// CPU. One export run keeps this between its files and drops it when it ends, so that a
/// buffer lives no longer than the files did.
#[derive(Debug, Default)]
pub struct SpareBodies(Mutex<Vec<Vec<u8>>>);

impl SpareBodies {
    /// At most this many are kept: two files are in flight at once (one delivered while the
    /// next is encoded).
    const KEPT: usize = 2;

    /// A buffer to write a file into: a spare one, or a new empty one.
    pub fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }

    /// Keeps a delivered body's buffer, if nothing else holds it any more (a sink may keep
    /// a body it was given, which then stays its own).
    pub fn give_back(&self, body: Bytes) {
        let Ok(body) = body.try_into_mut() else {
            return;
        };
        let body = Vec::from(body);
        let mut spare = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if spare.len() < Self::KEPT {
            spare.push(body);
        }
    }
}

/// Encodes the events with `after < seq <= up_to` (of `tenant` only, when given) into one
/// file, stopping at `limits`, written into `body`: a buffer to reuse (see [`SpareBodies`];
/// what it holds is dropped), or `Vec::new()`.
/// Returns `None` when there is no such event.
pub async fn encode_file(
    store: &dyn Store,
    format: &FileFormat,
    tenant: Option<&str>,
    after: u64,
    up_to: u64,
    limits: FileLimits,
    body: Vec<u8>,
) -> Result<Option<EncodedFile>, EncodeError> {
    let (tx, rx) = mpsc::channel::<ExportPage>(2);
    let format = format.clone();
    let encoder = tokio::task::spawn_blocking(move || encode_pages(rx, &format, limits, body));
    let mut cursor = after;
    let mut wanted = limits.max_events;
    let mut came_up_short = false;
    while wanted > 0 {
        let limit = PAGE.min(wanted as usize);
        let page = store
            .read_page_for_export(tenant, cursor, up_to, limit)
            .await?;
        came_up_short = page.len() < limit;
        let Some(last) = page.last_seq() else { break };
        cursor = last;
        wanted = wanted.saturating_sub(page.len() as u64);
        let short = page.len() < PAGE;
        if tx.send(page).await.is_err() || short {
            // The encoder stopped at the byte limit, or the store has no more.
            break;
        }
    }
    drop(tx);
    let file = encoder
        .await
        .map_err(|e| io::Error::other(format!("encoder task failed: {e}")))??;
    Ok(file.map(|file| EncodedFile {
        exhausted: came_up_short && file.last_seq == cursor,
        ..file
    }))
}

/// The schema's columns that take a stored JSON text as it is.
#[derive(Debug, Clone, Copy)]
struct TextColumns {
    payload: Option<usize>,
    params: Option<usize>,
}

impl TextColumns {
    fn of(schema: &dyn Schema) -> Self {
        Self {
            payload: schema.payload_column(),
            params: schema.params_column(),
        }
    }
}

/// The column and the text to write in it as it is, if the schema has the column and the
/// text is in serde_json's form.
fn as_is(column: Option<usize>, text: Option<&RawValue>) -> Option<(usize, CanonicalJson<'_>)> {
    let column = column?;
    Some((column, canonical_json::check(text?, &mut |_| true)?))
}

/// Renders and appends one event. A payload or parameters the store left as text are
/// copied into the schema's column for them when they are in serde_json's form (the store
/// wrote them so; the check costs little next to reading them), and read back into the
/// event otherwise.
fn append_event(
    writer: &mut dyn RecordWriter,
    schema: &dyn Schema,
    columns: TextColumns,
    stored: ExportEvent,
    record: &mut Vec<Value>,
) -> io::Result<()> {
    let ExportEvent {
        mut event,
        payload_text,
        params_text,
        ..
    } = stored;
    let payload = as_is(columns.payload, payload_text.as_deref());
    let params = as_is(columns.params, params_text.as_deref());
    // What is not copied as text is read back into the event.
    if let (None, Some(text)) = (&payload, &payload_text) {
        event.payload = ExportEvent::payload_of(text).map_err(io::Error::other)?;
    }
    if let (None, Some(text)) = (&params, &params_text) {
        event.params = ExportEvent::params_of(text).map_err(io::Error::other)?;
    }
    schema.render(event, record);
    match (payload, params) {
        (None, None) => writer.append(record),
        (Some(one), None) | (None, Some(one)) => writer.append_with_texts(record, &[one]),
        (Some(payload), Some(params)) => writer.append_with_texts(record, &[payload, params]),
    }
}

/// What a file holds so far.
struct Tally {
    first_seq: Option<u64>,
    last_seq: u64,
    earliest_time: i64,
    latest_time: i64,
    events: u64,
}

impl Tally {
    fn add(&mut self, seq: u64, time: i64) {
        self.first_seq.get_or_insert(seq);
        self.last_seq = seq;
        self.earliest_time = self.earliest_time.min(time);
        self.latest_time = self.latest_time.max(time);
        self.events += 1;
    }
}

/// Appends a stored body: from its texts, without decoding it, when the writer copies
/// texts and the schema can render it so ([`Schema::render_texts`]), else decoded
/// ([`append_event`]). Returns the event's time. `record` and `texts` may hold anything;
/// they are cleared first.
fn append_body<'t>(
    writer: &mut dyn RecordWriter,
    schema: &dyn Schema,
    columns: TextColumns,
    seq: u64,
    body: &'t str,
    record: &mut Vec<Value>,
    texts: &mut Vec<(usize, CanonicalJson<'t>)>,
) -> Result<i64, EncodeError> {
    record.clear();
    texts.clear();
    // Rendering from the stored texts saves decoding only where they are copied.
    if writer.copies_texts() {
        if let Some(stored) = event_json::read_stored_texts(body) {
            if schema.render_texts(&stored, record, texts) {
                writer.append_with_texts(record, texts)?;
                return Ok(stored.time);
            }
            // What it rendered before it gave up is not used.
            record.clear();
        }
    }
    let stored = ExportEvent::from_body(seq, body)?;
    let time = stored.event.time;
    append_event(writer, schema, columns, stored, record)?;
    Ok(time)
}

fn encode_pages(
    mut rx: mpsc::Receiver<ExportPage>,
    format: &FileFormat,
    limits: FileLimits,
    body: Vec<u8>,
) -> Result<Option<EncodedFile>, EncodeError> {
    // A plain file's body gets room for all of it from the start (memory the allocator
    // maps is only taken when written): that saves copying it as it grows. A compressed
    // one starts smaller.
    let capacity = match format.compression {
        Compression::None => limits.max_bytes.saturating_add(1 << 20).min(128 << 20),
        _ => limits.max_bytes.min(8 << 20),
    } as usize;
    let mut output = Output::new(format.compression, capacity, body)?;
    let mut tally = Tally {
        first_seq: None,
        last_seq: 0,
        earliest_time: i64::MAX,
        latest_time: i64::MIN,
        events: 0,
    };
    let raw_bytes = Cell::new(0u64);
    {
        let mut counted = Counting {
            // No buffer between: the output gathers its chunks itself.
            inner: &mut output,
            count: &raw_bytes,
        };
        let columns = format.schema.columns().to_vec();
        let text_columns = TextColumns::of(&*format.schema);
        let schema = &*format.schema;
        {
            let mut writer = format.formatter.begin(&columns, &mut counted)?;
            let mut record: Vec<Value> = Vec::with_capacity(columns.len());
            // Checked after each event: a file holds at least one, however small the limit.
            let full = |tally: &Tally| {
                tally.events >= limits.max_events || raw_bytes.get() >= limits.max_bytes
            };
            'pages: while let Some(page) = rx.blocking_recv() {
                match page {
                    ExportPage::Events(page) => {
                        for stored in page {
                            record.clear();
                            let (seq, time) = (stored.seq, stored.event.time);
                            append_event(&mut *writer, schema, text_columns, stored, &mut record)?;
                            tally.add(seq, time);
                            if full(&tally) {
                                // Dropping the receiver (below) stops the reader.
                                break 'pages;
                            }
                        }
                    }
                    ExportPage::Bodies(bodies) => {
                        let mut texts = Vec::with_capacity(columns.len());
                        for (seq, body) in bodies.iter() {
                            let time = append_body(
                                &mut *writer,
                                schema,
                                text_columns,
                                seq,
                                body,
                                &mut record,
                                &mut texts,
                            )?;
                            tally.add(seq, time);
                            if full(&tally) {
                                break 'pages;
                            }
                        }
                    }
                }
            }
            // Dropping the receiver tells the reader to stop.
            drop(rx);
            writer.finish()?;
        }
        counted.flush()?;
    }
    let (body, sha256) = output.finish()?;
    let Some(first_seq) = tally.first_seq else {
        return Ok(None);
    };
    Ok(Some(EncodedFile {
        body,
        first_seq,
        last_seq: tally.last_seq,
        earliest_time: tally.earliest_time,
        latest_time: tally.latest_time,
        events: tally.events,
        raw_bytes: raw_bytes.get(),
        sha256,
        exhausted: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditsync_catalog::{CanonicalSchema, UeventsSchema};
    use auditsync_core::Event;
    use auditsync_ndjson::NdjsonFormatter;
    use serde_json::json;

    fn events() -> Vec<Event> {
        [
            Some(json!("[\"_id\",\"teams{_id name}\"]")),
            Some(json!({"query": "q", "n": [1, null]})),
            None,
        ]
        .into_iter()
        .enumerate()
        .map(|(i, payload)| Event {
            id: format!("e{i}"),
            time: 1_690_610_557_857 + i as i64,
            action: "getUser".into(),
            payload,
            // The first event has none.
            params: json!({"n": i, "email": "\"q\"@x", "tags": ["a", {"b": null}]})
                .as_object()
                .filter(|_| i > 0)
                .cloned()
                .unwrap_or_default(),
            extra: json!({"opType": "Query"}).as_object().unwrap().clone(),
            ..Event::default()
        })
        .collect()
    }

    /// The file `schema` and NDJSON make of `events`, each as the store gives it for export:
    /// its payload and parameters left as their stored text, or read.
    fn file(schema: Arc<dyn Schema>, as_text: bool) -> String {
        let text_of = |v: String| RawValue::from_string(v).unwrap();
        let page = events()
            .into_iter()
            .enumerate()
            .map(|(i, mut event)| {
                let payload_text = event
                    .payload
                    .take()
                    .filter(|_| as_text)
                    .map(|v| text_of(v.to_string()));
                let params = std::mem::take(&mut event.params);
                let params_text = (as_text && !params.is_empty())
                    .then(|| text_of(Value::Object(params).to_string()));
                if !as_text {
                    event = events().swap_remove(i);
                }
                ExportEvent {
                    seq: i as u64 + 1,
                    event,
                    payload_text,
                    params_text,
                }
            })
            .collect();
        let file = ndjson_file_of(schema, ExportPage::Events(page));
        assert_eq!((file.first_seq, file.last_seq, file.events), (1, 3, 3));
        String::from_utf8(file.body).unwrap()
    }

    /// The uncompressed NDJSON file `schema` makes of one page.
    fn ndjson_file_of(schema: Arc<dyn Schema>, page: ExportPage) -> EncodedFile {
        let limits = FileLimits {
            max_events: 1_000,
            max_bytes: 1 << 20,
        };
        compressed_ndjson_file_of(schema, page, Compression::None, limits)
    }

    /// The NDJSON file `schema` makes of one page, in `compression`, within `limits`.
    fn compressed_ndjson_file_of(
        schema: Arc<dyn Schema>,
        page: ExportPage,
        compression: Compression,
        limits: FileLimits,
    ) -> EncodedFile {
        let (tx, rx) = mpsc::channel(1);
        tx.try_send(page).unwrap();
        drop(tx);
        let format = FileFormat {
            schema,
            formatter: Arc::new(NdjsonFormatter),
            compression,
        };
        encode_pages(rx, &format, limits, Vec::new())
            .unwrap()
            .unwrap()
    }

    /// Events of every shape a stored body can have: each field present or not, strings
    /// with escapes and non-ASCII text, nested parameters, payloads of each JSON type, the
    /// extra fields `uevents` takes columns from (or not).
    fn varied_events() -> Vec<Event> {
        use auditsync_core::{Actor, Entity, Outcome};
        let text = |i: usize| ["plain", "q\"uote\\d", "tab\tnl\n", "é ü 🙂", "\u{2028}</x>"][i % 5];
        (0..40)
            .map(|i| {
                let mut extra = serde_json::Map::new();
                if i % 3 != 0 {
                    extra.insert("opType".into(), json!(["Query", "Mutation"][i % 2]));
                }
                if i % 4 != 0 {
                    extra.insert("nameHints".into(), json!(["User", text(i)]));
                }
                if i % 7 == 0 {
                    extra.insert(format!("k{}", text(i)), json!({"n": i, "s": text(i + 1)}));
                }
                Event {
                    id: format!("id-{i}-{}", text(i + 2)),
                    time: 1_690_610_557_857 + (i as i64) * 3_600_000,
                    actor: Actor {
                        user_email: (i % 2 == 0).then(|| format!("u{i}@{}", text(i))),
                        user_id: (i % 3 == 0).then(|| format!("{i}")),
                        ip: (i % 5 == 0).then(|| "10.0.0.1".into()),
                        ..Actor::default()
                    },
                    action: format!("act{}", text(i + 3)),
                    entity: (i % 4 == 1).then(|| Entity {
                        kind: text(i).into(),
                        id: (i % 8 == 1).then(|| "e1".into()),
                    }),
                    organization: (i % 6 != 5).then(|| format!("org {}", text(i + 4))),
                    outcome: Outcome {
                        code: (i % 3 != 2).then_some([200, 500, -1, 0][i % 4]),
                        latency_ms: (i % 5 != 4).then_some(i as u64 * 7),
                    },
                    params: json!({"n": i, "email": format!("\"{}\"", text(i)), "deep": [1, {"a": null}]})
                        .as_object()
                        .filter(|_| i % 5 != 1)
                        .cloned()
                        .unwrap_or_default(),
                    payload: match i % 6 {
                        0 => None,
                        1 => Some(json!(format!("[\"_id\",\"{}\"]", text(i)))),
                        2 => Some(json!({"query": text(i), "n": [1.5, -2, true]})),
                        3 => Some(json!([1, "two", null])),
                        4 => Some(json!(42)),
                        _ => Some(json!(text(i))),
                    },
                    previous: (i % 9 == 0).then(|| json!({"name": text(i)})),
                    next: (i % 9 == 0).then(|| json!({"name": text(i + 1)})),
                    extra,
                }
            })
            .collect()
    }

    /// How the events of a page reach the encoder.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Route {
        /// Bodies as stored now (packed).
        Bodies,
        /// Bodies in the JSON form of stores written before the packed form.
        JsonBodies,
        /// Events the store decoded.
        Decoded,
    }

    /// The file NDJSON makes of `events` as the store gives them: one page of stored
    /// bodies, packed or in the JSON form, or one of events it decoded (`route`).
    fn file_of_page(schema: Arc<dyn Schema>, events: &[Event], route: Route) -> String {
        let page = if route != Route::Decoded {
            let mut bodies = auditsync_store::StoredBodies::default();
            for (i, event) in events.iter().enumerate() {
                let mut body = auditsync_store::EncodedEvent::new(event).unwrap().body;
                if route == Route::JsonBodies {
                    body.clear();
                    event_json::write_event(&mut body, event);
                }
                bodies.push(i as u64 + 1, &body);
            }
            ExportPage::Bodies(bodies)
        } else {
            ExportPage::Events(
                events
                    .iter()
                    .enumerate()
                    .map(|(i, event)| {
                        let encoded = auditsync_store::EncodedEvent::new(event).unwrap();
                        ExportEvent::from_body(i as u64 + 1, &encoded.body).unwrap()
                    })
                    .collect(),
            )
        };
        let file = ndjson_file_of(schema, page);
        assert_eq!(file.events, events.len() as u64);
        String::from_utf8(file.body).unwrap()
    }

    /// The hash is taken of the bytes as they are made, chunk by chunk, on the output's
    /// thread: it must be that of the whole body, for files of many chunks, compressed or
    /// not, and the compressed ones must hold the plain one.
    #[test]
    fn a_files_hash_is_that_of_its_bytes_for_every_compression() {
        let events = varied_events();
        let stored: Vec<String> = (0..6_000)
            .map(|i| {
                let event = &events[i % events.len()];
                auditsync_store::EncodedEvent::new(event).unwrap().body
            })
            .collect();
        let file_of = |compression: Compression| {
            let mut bodies = auditsync_store::StoredBodies::default();
            for (i, body) in stored.iter().enumerate() {
                bodies.push(i as u64 + 1, body);
            }
            let whole = FileLimits {
                max_events: u64::MAX,
                max_bytes: u64::MAX,
            };
            let uevents = Arc::new(UeventsSchema::new());
            compressed_ndjson_file_of(uevents, ExportPage::Bodies(bodies), compression, whole)
        };
        let plain = file_of(Compression::None);
        assert!(plain.body.len() > 4 * CHUNK, "{} bytes", plain.body.len());
        assert_eq!(plain.raw_bytes, plain.body.len() as u64);
        for compression in [
            Compression::None,
            Compression::Gzip(6),
            Compression::Zstd(3),
        ] {
            let file = file_of(compression);
            assert_eq!(file.events, 6_000);
            assert_eq!(file.sha256, hex::encode(Sha256::digest(&file.body)));
            let mut text = Vec::new();
            match compression {
                Compression::None => text.clone_from(&file.body),
                Compression::Gzip(_) => {
                    io::Read::read_to_end(
                        &mut flate2::read::GzDecoder::new(&file.body[..]),
                        &mut text,
                    )
                    .unwrap();
                }
                Compression::Zstd(_) => text = zstd::decode_all(&file.body[..]).unwrap(),
            }
            assert!(text == plain.body, "{compression:?}");
        }
    }

    /// A delivered file's buffer is handed to the next file only when nothing else holds
    /// it, at most two are kept, and what a reused buffer held does not reach the new file.
    #[test]
    fn a_file_written_into_a_spare_buffer_is_the_file_a_fresh_one_makes() {
        let events = varied_events();
        let page = || {
            let mut bodies = auditsync_store::StoredBodies::default();
            for (i, event) in events.iter().enumerate() {
                bodies.push(
                    i as u64 + 1,
                    &auditsync_store::EncodedEvent::new(event).unwrap().body,
                );
            }
            ExportPage::Bodies(bodies)
        };
        let format = |compression| FileFormat {
            schema: Arc::new(UeventsSchema::new()),
            formatter: Arc::new(NdjsonFormatter),
            compression,
        };
        let limits = FileLimits {
            max_events: 1_000,
            max_bytes: 1 << 20,
        };
        let encode = |compression, body: Vec<u8>| {
            let (tx, rx) = mpsc::channel(1);
            tx.try_send(page()).unwrap();
            drop(tx);
            encode_pages(rx, &format(compression), limits, body)
                .unwrap()
                .unwrap()
        };

        let spare = SpareBodies::default();
        // A body someone else still holds stays theirs.
        let held = Bytes::from(vec![b'x'; 4096]);
        spare.give_back(held.clone());
        assert_eq!(spare.take().capacity(), 0, "a shared body was kept");
        drop(held);

        for compression in [
            Compression::None,
            Compression::Gzip(6),
            Compression::Zstd(3),
        ] {
            let fresh = encode(compression, Vec::new());
            // A delivered body, longer than the next file and full of other bytes, with room
            // for a whole plain file (so that it is not grown, which would move it).
            let mut old = vec![b'#'; fresh.body.len() * 3];
            old.reserve(limits.max_bytes as usize + (1 << 20));
            let old_at = old.as_ptr();
            spare.give_back(Bytes::from(old));
            let reused = spare.take();
            assert_eq!(reused.as_ptr(), old_at, "the buffer was not handed on");
            let file = encode(compression, reused);
            assert!(file.body == fresh.body, "{compression:?}");
            assert_eq!(file.sha256, fresh.sha256, "{compression:?}");
            assert_eq!(
                file.body.as_ptr(),
                old_at,
                "{compression:?}: not written in place"
            );
        }

        for _ in 0..3 {
            spare.give_back(Bytes::from(vec![0u8; 1024]));
        }
        let kept = std::iter::from_fn(|| Some(spare.take()))
            .take_while(|b| b.capacity() > 0)
            .count();
        assert_eq!(kept, SpareBodies::KEPT);
    }

    #[test]
    fn stored_bodies_rendered_from_their_texts_make_the_same_file_as_decoded_events() {
        let events = varied_events();
        let uevents: Arc<dyn Schema> = Arc::new(UeventsSchema::new());
        // The texts route is taken for every packed body, and for most JSON ones (stores
        // written before the packed form) but those with a fraction in the payload (a text
        // serde_json might write otherwise). An event with an extra key that has an escape
        // in it is stored as JSON, whose reader leaves it to be decoded.
        let mut rendered_from_texts = [0, 0];
        for (i, event) in events.iter().enumerate() {
            let packed = auditsync_store::EncodedEvent::new(event).unwrap().body;
            let mut json = String::new();
            event_json::write_event(&mut json, event);
            for (form, body) in [packed, json].iter().enumerate() {
                let (mut record, mut texts) = (Vec::new(), Vec::new());
                let rendered = event_json::read_stored_texts(body)
                    .is_some_and(|stored| uevents.render_texts(&stored, &mut record, &mut texts));
                let escaped_key = event.extra.keys().any(|k| k.contains(['"', '\\', '\t']));
                match form {
                    0 => assert_eq!(rendered, !escaped_key, "{body}"),
                    _ if i % 6 == 2 || escaped_key => assert!(!rendered, "{body}"),
                    _ => {}
                }
                if rendered {
                    assert_eq!(record.len(), uevents.columns().len());
                    rendered_from_texts[form] += 1;
                }
            }
        }
        assert!(
            rendered_from_texts[0] >= 36,
            "{rendered_from_texts:?} of 40"
        );
        assert!(
            rendered_from_texts[1] >= 30,
            "{rendered_from_texts:?} of 40"
        );
        let defined = |columns: Value| -> Arc<dyn Schema> {
            let definition = json!({"name": "t", "version": 1, "columns": columns});
            Arc::new(
                auditsync_catalog::DefinedSchema::new(
                    auditsync_catalog::SchemaDefinition::from_json(&definition.to_string())
                        .unwrap(),
                )
                .unwrap(),
            )
        };
        let column = |name: &str, ty: &str, field: &str| {
            let mut c = json!({"name": name, "type": ty});
            if let Some(derive) = field.strip_prefix("derive:") {
                c["derive"] = json!(derive);
            } else if !field.is_empty() {
                c["field"] = json!(field);
            }
            c
        };
        // Every field in a column of its own (a definition maps a field to one column at
        // most), and the columns derived from the time.
        let every_field = defined(json!([
            column("ID", "string", "id"),
            column("AT", "timestamp", "time"),
            column("YEAR", "integer", "derive:year"),
            column("DAY", "date", "derive:date"),
            column("ACTION", "string", "action"),
            column("ORG", "string", "organization"),
            column("UID", "string", "actor.user_id"),
            column("EMAIL", "string", "actor.user_email"),
            column("IP", "string", "actor.ip"),
            column("KIND", "string", "entity.kind"),
            column("EID", "string", "entity.id"),
            column("CODE", "integer", "outcome.code"),
            column("MS", "integer", "outcome.latency_ms"),
            column("PARAMS", "json", "params"),
            column("PAYLOAD", "json", "payload"),
            column("BEFORE", "json", "previous"),
            column("AFTER", "json", "next"),
            column("opType", "string", ""),
        ]));
        for schema in [
            uevents,
            every_field,
            // no render_texts at all
            Arc::new(CanonicalSchema::new()),
        ] {
            let from_texts = file_of_page(schema.clone(), &events, Route::Bodies);
            assert_eq!(
                from_texts,
                file_of_page(schema.clone(), &events, Route::JsonBodies)
            );
            assert_eq!(from_texts, file_of_page(schema, &events, Route::Decoded));
            assert_eq!(from_texts.lines().count(), events.len());
        }
    }

    #[test]
    fn a_payload_and_params_copied_as_text_make_the_same_file_as_when_read() {
        for schema in [
            Arc::new(UeventsSchema::new()) as Arc<dyn Schema>,
            // no payload or params column: the texts are read back into the event
            Arc::new(CanonicalSchema::new()),
        ] {
            let copied = file(schema.clone(), true);
            assert_eq!(copied, file(schema, false));
            assert!(copied.contains("teams{_id name}"), "{copied}");
            assert!(copied.contains(r#"\"q\"@x"#), "{copied}");
        }
    }
}
