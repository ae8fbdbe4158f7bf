//! Reading a request body within its limit, and draining what a refused request still sends.
//!
//! A server that answers 413 (or 401, 415) and closes the connection while the client is
//! still sending makes the client's kernel see a reset: curl, reqwest and browsers then
//! report a broken pipe and never show the answer. So a refused body is read on and thrown
//! away, up to a bound, before the answer goes out with `Connection: close`.

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
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
    },
    /// The connection failed while reading it.
    Read(String),
}

/// Reads `body` whole if it is at most `max` bytes.
pub(super) async fn read_limited(body: Body, max: usize) -> Result<Bytes, BodyError> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        if buf.len() + chunk.len() > max {
            drain_stream(stream, (buf.len() + chunk.len()) as u64).await;
            return Err(BodyError::TooLarge { max });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// Reads and discards a refused request's body, up to [`DRAIN_LIMIT`].
pub(super) async fn drain(body: Body) {
    drain_stream(body.into_data_stream(), 0).await;
}

async fn drain_stream(mut stream: axum::body::BodyDataStream, mut read: u64) {
    while read <= DRAIN_LIMIT {
        match stream.next().await {
            Some(Ok(chunk)) => read += chunk.len() as u64,
            _ => return,
        }
    }
}

/// Marks a refusal's response so that the connection closes after it.
pub(super) fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}
