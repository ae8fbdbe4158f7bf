//! The volume sink against a real directory.

use std::sync::Arc;

use auditsync_core::{ErrorKind, ObjectKey, PutOutcome, Sink};
use auditsync_pv::{PvConfig, PvSink};
use bytes::Bytes;

fn sink(root: &std::path::Path) -> PvSink {
    PvSink::new(PvConfig {
        root: root.to_path_buf(),
        stale_temp_secs: 0,
    })
}

#[tokio::test]
async fn conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let sink: Arc<dyn Sink> = Arc::new(sink(&dir.path().join("root")));
    auditsync_core::testkit::run_conformance(sink, "conformance").await;
    // and nothing but empty directories is left, no temp files
    let mut files = Vec::new();
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    assert!(files.is_empty(), "{files:?}");
}

#[tokio::test]
async fn symlinks_below_the_root_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "x").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    let sink = sink(&root);
    let key = ObjectKey::new("link/new.ndjson").unwrap();
    let err = sink.put(&key, Bytes::from("y")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    assert!(!outside.join("new.ndjson").exists());
    let err = sink
        .get(&ObjectKey::new("link/secret").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
}

#[tokio::test]
async fn stale_temp_files_are_hidden_and_swept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("a")).unwrap();
    // a crashed writer (another pid) left this behind
    let stale = root.join("a/.auditsync-tmp-999999999-0");
    std::fs::write(&stale, "partial").unwrap();
    let sink = sink(&root);
    assert!(sink.list("").await.unwrap().is_empty());
    let outcome = sink
        .put(&ObjectKey::new("a/b.ndjson").unwrap(), Bytes::from("z"))
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Created);
    assert!(
        !stale.exists(),
        "a put into the directory sweeps stale temp files"
    );
    let keys: Vec<String> = sink
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.to_string())
        .collect();
    assert_eq!(keys, ["a/b.ndjson"]);
}

#[tokio::test]
async fn a_file_in_place_of_the_root_is_an_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::write(&root, "not a dir").unwrap();
    let err = sink(&root)
        .put(&ObjectKey::new("a/b").unwrap(), Bytes::from("z"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("put `a/b` failed"), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn verify_reports_the_failing_step() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::write(&root, "not a dir").unwrap();
    let err = sink(&root).verify("p").await.unwrap_err();
    assert_eq!(err.op, auditsync_core::SinkOp::Put, "{err}");
    assert!(err.to_string().contains("verify-test-"), "{err}");
}

#[test]
fn registered_with_typed_options() {
    use serde_json::json;
    let names = auditsync_core::registry::sink_names();
    assert!(names.contains(&"pv"), "{names:?}");
    let options = json!({"rooot": "/x"});
    let err = auditsync_core::registry::build_sink("pv", options.as_object().unwrap()).unwrap_err();
    assert!(err.to_string().contains("`rooot`"), "{err}");
}

/// Large bodies go past the page cache in whole blocks and the rest through it: every byte
/// must land where it belongs, whatever the length, and a second put of the key must still
/// find it there.
#[tokio::test]
async fn large_bodies_are_written_whole_at_any_length() {
    // The temporary directory is on the disk's filesystem (direct writes, on Linux).
    large_bodies_round_trip(tempfile::tempdir().unwrap()).await;
}

/// On tmpfs large bodies go through the page cache like the rest.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn large_bodies_are_written_whole_on_tmpfs_too() {
    large_bodies_round_trip(tempfile::tempdir_in("/dev/shm").unwrap()).await;
}

async fn large_bodies_round_trip(dir: tempfile::TempDir) {
    let sink = sink(&dir.path().join("root"));
    // Below the direct threshold, a whole number of blocks, a partial last block, and more
    // than one direct chunk with a partial block; each from a body that starts on a block
    // boundary (written from where it is) and from one that does not (copied).
    let lengths = [(1 << 20) - 1, 2 << 20, (1 << 20) + 1234, (9 << 20) + 4095];
    let starts = [0, 1];
    let cases = lengths
        .iter()
        .flat_map(|&len| starts.map(|shift| (len, shift)));
    for (i, (len, shift)) in cases.enumerate() {
        let body: Vec<u8> = (0..len as u64)
            .map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut room = vec![0u8; len + 2 * 4096];
        let start = room.as_ptr().align_offset(4096) + shift;
        room[start..start + len].copy_from_slice(&body);
        let placed = Bytes::from(room).slice(start..start + len);
        assert_eq!(placed.as_ptr() as usize % 4096, shift);
        let key = ObjectKey::new(format!("big/{i}.ndjson")).unwrap();
        let outcome = sink.put(&key, placed).await.unwrap();
        assert_eq!(outcome, PutOutcome::Created, "{len} bytes");
        let back = sink.get(&key).await.unwrap();
        assert_eq!(back.len(), len, "{len} bytes");
        assert!(back[..] == body[..], "{len} bytes read back differ");
        let again = sink.put(&key, Bytes::from(body)).await.unwrap();
        assert_eq!(again, PutOutcome::AlreadyExists, "{len} bytes");
    }
    let listed = sink.list("big/").await.unwrap();
    assert_eq!(listed.len(), 8, "{listed:?}");
    let left: Vec<_> = std::fs::read_dir(dir.path().join("root/big"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".auditsync-tmp-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
