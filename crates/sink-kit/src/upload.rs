//! Drives an upload made of parts (S3 multipart parts, GCS resumable chunks, Azure blocks):
//! cuts the body, sends up to `concurrency` parts at once, and returns each part's result
//! in part order. The first failure stops the rest; the caller aborts the upload.

use std::future::Future;
use std::ops::Range;

use auditsync_core::SinkError;
use bytes::Bytes;
use futures_util::stream::{self, StreamExt, TryStreamExt};

/// One part to send: its 1-based number, where it sits in the whole body, and its bytes.
#[derive(Debug, Clone)]
pub struct Part {
    /// 1-based part number.
    pub number: u32,
    /// Its byte range in the whole body.
    pub range: Range<u64>,
    /// Its bytes (a cheap slice of the body).
    pub body: Bytes,
}

/// The byte ranges of `len` bytes cut into parts of `part_size` (the last may be shorter;
/// an empty body is one empty part).
pub fn part_ranges(len: usize, part_size: usize) -> Vec<Range<usize>> {
    let part_size = part_size.max(1);
    if len == 0 {
        return std::iter::once(0..0).collect();
    }
    (0..len)
        .step_by(part_size)
        .map(|start| start..(start + part_size).min(len))
        .collect()
}

/// Sends every part of `body` through `send`, at most `concurrency` at once, and returns
/// their results in part order.
pub async fn upload_parts<T, F, Fut>(
    body: &Bytes,
    part_size: usize,
    concurrency: usize,
    send: F,
) -> Result<Vec<T>, SinkError>
where
    F: Fn(Part) -> Fut,
    Fut: Future<Output = Result<T, SinkError>>,
{
    let parts = part_ranges(body.len(), part_size)
        .into_iter()
        .enumerate()
        .map(|(i, r)| Part {
            number: i as u32 + 1,
            range: r.start as u64..r.end as u64,
            body: body.slice(r),
        });
    stream::iter(parts)
        .map(send)
        .buffered(concurrency.max(1))
        .try_collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn ranges_cover_the_body_once() {
        assert_eq!(part_ranges(10, 4), vec![0..4, 4..8, 8..10]);
        assert_eq!(part_ranges(8, 4), vec![0..4, 4..8]);
        assert_eq!(part_ranges(0, 4), vec![0..0]);
    }

    #[tokio::test]
    async fn parts_go_up_concurrently_within_the_bound_and_come_back_in_order() {
        let body = Bytes::from((0..100u8).collect::<Vec<_>>());
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let results = upload_parts(&body, 10, 3, |part| {
            let (running, most) = (running.clone(), most.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // Later parts finish first: order must still come back by number.
                tokio::time::sleep(Duration::from_millis(50 - 4 * u64::from(part.number))).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, SinkError>((part.number, part.range.start, part.body[0]))
            }
        })
        .await
        .unwrap();
        assert_eq!(results.len(), 10);
        for (i, (number, start, first)) in results.iter().enumerate() {
            assert_eq!(*number as usize, i + 1);
            assert_eq!(*start as usize, i * 10);
            assert_eq!(*first as usize, i * 10);
        }
        assert_eq!(most.load(Ordering::SeqCst), 3, "bounded, and concurrent");
    }

    #[tokio::test]
    async fn the_first_failure_is_returned() {
        let body = Bytes::from(vec![0u8; 50]);
        let err = upload_parts(&body, 10, 2, |part| async move {
            if part.number == 3 {
                Err(SinkError::new(
                    auditsync_core::SinkOp::Put,
                    auditsync_core::ErrorKind::Transient,
                    "part 3 failed",
                ))
            } else {
                Ok(())
            }
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("part 3 failed"), "{err}");
    }
}
