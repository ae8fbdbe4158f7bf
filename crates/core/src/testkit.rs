//! A conformance suite any [`Sink`] can run against its real backend.
//!
//! ```text
//! #[tokio::test]
//! async fn conforms() {
//!     let sink: Arc<dyn Sink> = Arc::new(MySink::new(/* a real, empty bucket */));
//!     auditsync_core::testkit::run_conformance(sink, "conformance").await;
//! }
//! ```
//!
//! Each check panics with a message naming the property that failed. `prefix` isolates the
//! run's objects; the suite deletes what it wrote.

use std::sync::Arc;

use bytes::Bytes;

use crate::{ErrorKind, ObjectKey, PutOutcome, Sink};

/// The value of a test backend's environment variable (set by `cargo xtask test`, which
/// starts the emulators).
///
/// Missing under `CI=true`: panics, so a test whose backend is absent fails instead of
/// passing unnoticed. Missing elsewhere: returns `None` after saying so on stderr, so that a
/// plain `cargo test` without emulators still runs everything else.
pub fn backend_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => panic!(
            "{var} is not set and CI=true: this test needs its emulator; run `cargo xtask test`"
        ),
        _ => {
            eprintln!("NOT RUN: {var} is not set; `cargo xtask test` starts the emulators");
            None
        }
    }
}

/// A bucket or container name no earlier test run used (emulators may outlive a run):
/// `<prefix>-<pid>-<nanoseconds>`, lower case, valid for S3, Azure and GCS.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Size of the large-body check.
pub const LARGE_BODY: usize = 50 * 1024 * 1024;

fn key(prefix: &str, rest: &str) -> ObjectKey {
    ObjectKey::join(prefix, rest).expect("conformance keys are valid")
}

fn under(prefix: &str, rest: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        rest.to_string()
    } else {
        format!("{prefix}/{rest}")
    }
}

fn pattern(len: usize) -> Bytes {
    // Not all-zero, not periodic in any small power of two: a truncated or shifted body
    // cannot compare equal.
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Runs every check against `sink` under `prefix`.
pub async fn run_conformance(sink: Arc<dyn Sink>, prefix: &str) {
    put_get_list_delete(sink.as_ref(), prefix).await;
    create_if_absent(sink.as_ref(), prefix).await;
    awkward_keys(sink.as_ref(), prefix).await;
    body_sizes(sink.as_ref(), prefix).await;
    concurrent_puts_of_one_key(Arc::clone(&sink), prefix).await;
    sink.verify(prefix)
        .await
        .unwrap_or_else(|e| panic!("verify() failed: {e}"));
    let left = sink.list(prefix).await.expect("list after verify");
    assert!(
        left.iter()
            .all(|m| !m.key.as_str().contains(crate::VERIFY_PREFIX)),
        "verify() left its test object behind: {left:?}"
    );
}

/// put, get, list (sorted, by prefix, with sizes), delete, get after delete.
pub async fn put_get_list_delete(sink: &dyn Sink, prefix: &str) {
    let a = key(prefix, "basic/a.ndjson");
    let b = key(prefix, "basic/sub/b.ndjson");
    let other = key(prefix, "basicother/c.ndjson");
    for (k, body) in [(&a, "aaa"), (&b, "bb"), (&other, "c")] {
        let outcome = sink.put(k, Bytes::from(body)).await.expect("put");
        assert_eq!(outcome, PutOutcome::Created, "first put of {k}");
    }
    assert_eq!(sink.get(&a).await.expect("get"), Bytes::from("aaa"));
    let listed = sink.list(&under(prefix, "basic/")).await.expect("list");
    let keys: Vec<(&str, u64)> = listed.iter().map(|m| (m.key.as_str(), m.size)).collect();
    assert_eq!(
        keys,
        vec![(a.as_str(), 3), (b.as_str(), 2)],
        "list(prefix) must return exactly the keys under the prefix, sorted, with sizes"
    );
    for k in [&a, &b, &other] {
        sink.delete(k).await.expect("delete");
    }
    let err = sink.get(&a).await.expect_err("get after delete must fail");
    assert_eq!(err.kind, ErrorKind::NotFound, "get of a deleted key: {err}");
    sink.delete(&a)
        .await
        .expect("deleting a missing key is not an error");
    assert!(sink
        .list(&under(prefix, "basic/"))
        .await
        .expect("list")
        .is_empty());
}

/// A second put of a key reports [`PutOutcome::AlreadyExists`] and leaves the first body.
pub async fn create_if_absent(sink: &dyn Sink, prefix: &str) {
    let k = key(prefix, "cia/once.csv");
    assert_eq!(
        sink.put(&k, Bytes::from("first")).await.expect("put"),
        PutOutcome::Created
    );
    assert_eq!(
        sink.put(&k, Bytes::from("second"))
            .await
            .expect("second put"),
        PutOutcome::AlreadyExists,
        "a put over an existing key must report AlreadyExists"
    );
    assert_eq!(
        sink.get(&k).await.expect("get"),
        Bytes::from("first"),
        "a put over an existing key must not overwrite it"
    );
    sink.delete(&k).await.expect("delete");
}

/// Keys with spaces, unicode, and characters URLs must escape.
pub async fn awkward_keys(sink: &dyn Sink, prefix: &str) {
    let names = [
        "keys/with space.ndjson",
        "keys/ünïcødé-日本語.csv",
        "keys/plus+percent%20and&amp=?.txt",
    ];
    for name in names {
        let k = key(prefix, name);
        sink.put(&k, Bytes::from(name.to_string()))
            .await
            .unwrap_or_else(|e| panic!("put {name:?}: {e}"));
        assert_eq!(
            sink.get(&k).await.expect("get"),
            Bytes::from(name.to_string()),
            "{name:?}"
        );
    }
    let listed = sink.list(&under(prefix, "keys/")).await.expect("list");
    let mut expected: Vec<String> = names.iter().map(|n| key(prefix, n).to_string()).collect();
    expected.sort();
    let got: Vec<String> = listed.iter().map(|m| m.key.to_string()).collect();
    assert_eq!(
        got, expected,
        "list must return awkward keys as they were put"
    );
    for name in names {
        sink.delete(&key(prefix, name)).await.expect("delete");
    }
}

/// An empty body and a [`LARGE_BODY`] one come back byte for byte.
pub async fn body_sizes(sink: &dyn Sink, prefix: &str) {
    for (name, body) in [
        ("sizes/empty", Bytes::new()),
        ("sizes/large", pattern(LARGE_BODY)),
    ] {
        let k = key(prefix, name);
        sink.put(&k, body.clone())
            .await
            .unwrap_or_else(|e| panic!("put {name}: {e}"));
        let read = sink.get(&k).await.expect("get");
        assert!(
            read == body,
            "{name}: read {} bytes back for {} written, or different bytes",
            read.len(),
            body.len()
        );
        sink.delete(&k).await.expect("delete");
    }
}

/// Eight concurrent puts of one key with different bodies: exactly one is created, and the
/// object holds that one's body, whole.
pub async fn concurrent_puts_of_one_key(sink: Arc<dyn Sink>, prefix: &str) {
    let k = key(prefix, "race/one-key");
    let tasks: Vec<_> = (0..8u8)
        .map(|i| {
            let sink = Arc::clone(&sink);
            let k = k.clone();
            tokio::spawn(async move {
                let body = Bytes::from(vec![i; 64 * 1024]);
                (i, sink.put(&k, body).await)
            })
        })
        .collect();
    let mut created = Vec::new();
    for task in tasks {
        let (i, result) = task.await.expect("task");
        if result.expect("concurrent put") == PutOutcome::Created {
            created.push(i);
        }
    }
    assert_eq!(
        created.len(),
        1,
        "exactly one concurrent put may create the key: {created:?}"
    );
    let read = sink.get(&k).await.expect("get");
    assert_eq!(
        read,
        Bytes::from(vec![created[0]; 64 * 1024]),
        "the winner's body, whole"
    );
    sink.delete(&k).await.expect("delete");
}
