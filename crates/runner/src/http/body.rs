//! Reading a request body within its limit, and draining what a refused request still sends.
//!
//! A server that answers 413 (or 401, 415) and closes the connection while the client is
//! still sending makes the client's kernel see a reset: curl, reqwest and browsers then
//! report a broken pipe and never show the answer. So a refused body is read on and thrown
//! away, up to a bound, before the answer goes out; only a body longer than the bound has the
//! connection closed after the answer.

use axum::body::{Body, Bytes};
use futures_util::StreamExt;

/// The most bytes read and thrown away after a request was refused; a client that sends
/// more than this still sees its connection closed mid-send.
pub(super) const DRAIN_LIMIT: u64 = 64 << 20;

/// Why a body could not be read whole.
pub(super) enum BodyError {
    /// It is longer than the limit (it was drained, up to [`DRAIN_LIMIT`]).
    TooLarge {
        /// The limit.
        max: usize,
        /// Whether the drain reached the end of the body (else the connection must close).
        drained: bool,
    },
    /// The connection failed while reading it.
    Read(String),
}

/// Reads `body` whole if it is at most `max` bytes; `expected` (the Content-Length, if
/// any) sizes the buffer once.
pub(super) async fn read_limited(
    body: Body,
    max: usize,
    expected: Option<usize>,
) -> Result<Bytes, BodyError> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::with_capacity(expected.unwrap_or(0).min(max));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        if buf.len() + chunk.len() > max {
            let drained = drain_stream(stream, (buf.len() + chunk.len()) as u64).await;
            return Err(BodyError::TooLarge { max, drained });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// Reads and discards a refused request's body, up to [`DRAIN_LIMIT`]; true if it reached
/// the end.
pub(super) async fn drain(body: Body) -> bool {
    drain_stream(body.into_data_stream(), 0).await
}

async fn drain_stream(mut stream: axum::body::BodyDataStream, mut read: u64) -> bool {
    while read <= DRAIN_LIMIT {
        match stream.next().await {
            Some(Ok(chunk)) => read += chunk.len() as u64,
            Some(Err(_)) => return false,
            None => return true,
        }
    }
    false
}
