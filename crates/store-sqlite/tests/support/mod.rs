//! What the SQLite store's integration tests share: events to load, raw reads of the file.

use std::path::Path;
use std::time::Duration;

use auditsync_store::testkit::event;
use auditsync_store::EncodedEvent;

/// Events with bodies of about 1 KiB, so that a few thousand span several steps.
pub fn chunk(ids: std::ops::Range<usize>) -> Vec<EncodedEvent> {
    ids.map(|i| {
        let mut e = event(&format!("e{i}"), i as i64);
        e.payload = Some("x".repeat(1000).into());
        EncodedEvent::new(&e).unwrap()
    })
    .collect()
}

pub fn raw_count(path: &Path, sql: &str) -> u64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Waits until the load has committed at least one step (seen by a raw reader).
pub async fn wait_for_a_committed_step(path: &Path, above: u64) {
    for _ in 0..200 {
        if raw_count(path, "SELECT count(*) FROM events") > above {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no step of the bulk load was committed within 10 s");
}
