//! Streaming ingest of one NDJSON input of any size (CLI `ingest FILE|-`): all or nothing
//! per input, with memory bounded by a few chunks, not by the input.
//!
//! A reader thread cuts the input into chunks of whole lines. Each chunk is parsed,
//! validated, redacted, given ids and encoded on the blocking pool by the same
//! [`Ingestor::parse_ndjson_lines`] every other road uses, several chunks at once. The
//! results go, in input order, into one [`Store::append_bulk`] load that becomes visible only
//! after the last line was read and accepted: a bad last line stores nothing.
//!
//! [`Store::append_bulk`]: auditsync_store::Store::append_bulk

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use auditsync_store::{BulkItem, EncodedEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::ingest::{Flagged, IngestError, Ingestor, Location, Parsed};

/// Bytes read per chunk (whole lines; a chunk grows to hold a line longer than this).
pub const CHUNK_BYTES: usize = 256 << 10;

/// Chunks parsed ahead of the store: bounds memory to about this many chunks.
const CHUNKS_AHEAD: usize = 4;

/// Parsed chunks queued for the store (up to about 16 MiB of encoded events): enough to
/// keep the parsers busy while the store commits a step or catches the WAL up. With 8, both
/// cores were idle about 10 % of a 1,000,000-event ingest; with 64, 2-5 %.
const STORE_QUEUE: usize = 64;

/// What a running ingest has done so far, for a progress bar.
#[derive(Debug, Default)]
pub struct IngestProgress {
    /// Input bytes read.
    pub bytes_read: AtomicU64,
    /// Events accepted and handed to the store (not yet committed).
    pub events: AtomicU64,
}

/// What a streamed ingest committed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestSummary {
    /// Events newly stored.
    pub stored: u64,
    /// Events whose id was already stored (or repeated in the input): not stored again.
    pub duplicates: u64,
    /// Events kept although they break the schema's rules (permissive validation).
    pub flagged: u64,
    /// The first of those, for the report.
    pub first_flagged: Option<Flagged>,
}

struct Chunk {
    first_line: usize,
    bytes: Vec<u8>,
}

type ParsedChunk = Result<(Vec<EncodedEvent>, Vec<Flagged>), IngestError>;

/// Reads NDJSON from `reader` and stores all of it in one transaction, or nothing.
///
/// Errors name the line and field (as [`Ingestor::parse_ndjson`] does); an input without
/// events is [`IngestError::Empty`]. Must be called inside a tokio runtime.
pub async fn ingest_reader<R>(
    ingestor: &Ingestor,
    reader: R,
    progress: Arc<IngestProgress>,
) -> Result<IngestSummary, IngestError>
where
    R: Read + Send + 'static,
{
    if !ingestor.enabled() {
        return Err(IngestError::Disabled);
    }
    let started = std::time::Instant::now();
    let (store_tx, store_rx) = mpsc::channel(STORE_QUEUE);
    let store = ingestor.store().clone();
    let commit = tokio::spawn(async move { store.append_bulk(store_rx).await });

    let (parsed_tx, mut parsed_rx) = mpsc::channel::<JoinHandle<ParsedChunk>>(CHUNKS_AHEAD);
    let runtime = tokio::runtime::Handle::current();
    let parser = ingestor.clone();
    let max_line = ingestor.max_event_bytes();
    let read_progress = progress.clone();
    let reading = tokio::task::spawn_blocking(move || {
        read_chunks(reader, max_line, &read_progress, |chunk| {
            let parser = parser.clone();
            let parsing = runtime.spawn_blocking(move || parse_chunk(&parser, chunk));
            parsed_tx.blocking_send(parsing).is_ok()
        })
    });

    let mut summary = IngestSummary::default();
    let mut failure = None;
    while let Some(parsing) = parsed_rx.recv().await {
        let (events, flagged) = match parsing.await {
            Ok(Ok(parsed)) => parsed,
            Ok(Err(e)) => {
                failure = Some(e);
                break;
            }
            Err(e) => {
                failure = Some(task_failed(e));
                break;
            }
        };
        for f in &flagged {
            tracing::warn!(at = %f.at, error = %f.error, "kept an event that breaks the schema's rules (permissive validation)");
        }
        summary.flagged += flagged.len() as u64;
        if summary.first_flagged.is_none() {
            summary.first_flagged = flagged.into_iter().next();
        }
        progress
            .events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        if events.is_empty() {
            continue;
        }
        if store_tx.send(BulkItem::Events(events)).await.is_err() {
            // The store gave up; its error is the one to report.
            break;
        }
    }
    // Stops the reader at its next chunk if we broke off early.
    drop(parsed_rx);
    let read = reading.await.map_err(task_failed)?;
    let failure = failure
        .or(read.err())
        .or_else(|| (progress.events.load(Ordering::Relaxed) == 0).then_some(IngestError::Empty));
    if let Some(failure) = failure {
        // Closing the channel without a commit rolls the transaction back.
        drop(store_tx);
        let _ = commit.await;
        return Err(failure);
    }
    // A send error means the store already failed; `commit` holds its error.
    let _ = store_tx.send(BulkItem::Commit).await;
    let committing = std::time::Instant::now();
    let outcome = commit.await.map_err(task_failed)??;
    tracing::debug!(
        events = progress.events.load(Ordering::Relaxed),
        read_and_parsed_s = started.elapsed().as_secs_f64() - committing.elapsed().as_secs_f64(),
        commit_s = committing.elapsed().as_secs_f64(),
        "bulk ingest committed"
    );
    summary.stored = outcome.stored;
    summary.duplicates = outcome.duplicates;
    Ok(summary)
}

/// A reader, parser or store task that panicked or was cancelled: nothing was committed.
fn task_failed(e: tokio::task::JoinError) -> IngestError {
    IngestError::Read(std::io::Error::other(format!("ingest task failed: {e}")))
}

fn parse_chunk(ingestor: &Ingestor, chunk: Chunk) -> ParsedChunk {
    let mut parsed = Parsed::default();
    ingestor.parse_ndjson_lines(chunk.first_line, &chunk.bytes, &mut parsed)?;
    Ok((parsed.events, parsed.flagged))
}

fn newlines(bytes: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', bytes).count()
}

/// Reads `reader` to its end in chunks of whole lines, handing each to `emit` until it
/// returns false. A line longer than `max_line` is refused before it is fully read, so
/// memory stays bounded whatever the input.
fn read_chunks<R: Read>(
    mut reader: R,
    max_line: usize,
    progress: &IngestProgress,
    mut emit: impl FnMut(Chunk) -> bool,
) -> Result<(), IngestError> {
    let mut line = 1;
    let mut carry = Vec::new();
    loop {
        let mut buf = std::mem::take(&mut carry);
        buf.reserve(CHUNK_BYTES);
        let n = fill(&mut reader, &mut buf, CHUNK_BYTES).map_err(IngestError::Read)?;
        progress.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
        if n == 0 {
            if buf.is_empty() {
                return Ok(());
            }
            check_line(line, buf.len(), max_line)?;
            emit(Chunk {
                first_line: line,
                bytes: buf,
            });
            return Ok(());
        }
        let Some(last_newline) = memchr::memrchr(b'\n', &buf) else {
            // One line so far, still without its end.
            check_line(line, buf.len(), max_line)?;
            carry = buf;
            continue;
        };
        carry = buf[last_newline + 1..].to_vec();
        buf.truncate(last_newline);
        let lines = newlines(&buf) + 1;
        check_line(line + lines, carry.len(), max_line)?;
        if !emit(Chunk {
            first_line: line,
            bytes: buf,
        }) {
            return Ok(());
        }
        line += lines;
    }
}

/// A partial line already over the limit is refused (its full size is at least `size`).
fn check_line(line: usize, size: usize, max: usize) -> Result<(), IngestError> {
    // `\r\n` endings: the `\r` does not count.
    if size > max + 1 {
        return Err(IngestError::TooLarge {
            at: Location::Line(line),
            size,
            max,
        });
    }
    Ok(())
}

/// Appends up to `limit` bytes of `reader` to `buf` (fewer only at the input's end);
/// returns how many. (`read_to_end` fills spare capacity without zeroing it first.)
fn fill<R: Read>(reader: &mut R, buf: &mut Vec<u8>, limit: usize) -> std::io::Result<usize> {
    reader.take(limit as u64).read_to_end(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(input: &[u8], max_line: usize) -> Result<Vec<(usize, String)>, IngestError> {
        let mut out = Vec::new();
        read_chunks(input, max_line, &IngestProgress::default(), |c| {
            out.push((c.first_line, String::from_utf8(c.bytes).unwrap()));
            true
        })?;
        Ok(out)
    }

    #[test]
    fn chunks_hold_whole_lines_and_know_their_first_line_number() {
        let line = format!("{}\n", "x".repeat(999));
        let input = line.repeat(3000); // ~2.9 chunks
        let got = chunks(input.as_bytes(), 2000).unwrap();
        assert!(got.len() >= 3, "{} chunks", got.len());
        let mut expected_line = 1;
        let mut total = 0;
        for (first, text) in &got {
            assert_eq!(*first, expected_line);
            let lines = text.split('\n').filter(|l| !l.is_empty()).count();
            assert!(text.split('\n').all(|l| l.is_empty() || l.len() == 999));
            expected_line += text.matches('\n').count() + 1;
            total += lines;
        }
        assert_eq!(total, 3000);
    }

    #[test]
    fn a_line_over_the_limit_is_refused_with_its_number_before_it_is_read_whole() {
        let mut input = b"{}\n{}\n".to_vec();
        input.extend(vec![b'x'; 5 * CHUNK_BYTES]);
        let err = chunks(&input, 1000).unwrap_err();
        assert!(
            matches!(err, IngestError::TooLarge { at: Location::Line(3), size, .. } if size <= 2 * CHUNK_BYTES),
            "{err:?}"
        );
    }
}
