//! Snapshot files on disk: a stream's state as of an offset, trusted only when it checks out. Proves that the
//! latest snapshot is the highest offset and survives a reopen; that retention keeps the last K; that a write
//! interrupted before its rename (a leftover temporary file, or an injected failure) leaves the previous
//! snapshot in force; that a snapshot with a bad CRC, beyond the stream's head, taken at an event the stream
//! does not hold, of another stream, of an unknown format or under the wrong file name is skipped with its
//! reason and the next older one is used;
//! and that no stream name, however hostile (`../../etc/passwd`, `a/b`, `/abs`), puts a file outside the
//! store's `snapshots/` directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use annals::{
    Error, EventData, ExpectedVersion, FaultInjector, IoOp, Options, SkipReason, SnapshotOptions, Store,
    SNAPSHOTS_KEPT_DEFAULT,
};

fn store_with(dir: &Path, stream: &str, events: u64) -> Store {
    let store = Store::open(dir).unwrap();
    append(&store, stream, events);
    store
}

fn append(store: &Store, stream: &str, events: u64) {
    for n in 0..events {
        store.append(stream, ExpectedVersion::Any, &[EventData::new("Counted", n.to_le_bytes().to_vec())]).unwrap();
    }
}

fn offsets(store: &Store, stream: &str) -> Vec<u64> {
    store
        .snapshot_paths(stream)
        .unwrap()
        .iter()
        .map(|path| path.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect()
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn the_latest_snapshot_is_the_highest_offset_and_retention_keeps_the_last_k() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), "s", 20);
    assert_eq!(store.latest_snapshot("s").unwrap(), None);

    for offset in (0..20).step_by(2) {
        store.write_snapshot("s", offset, format!("state {offset}").as_bytes()).unwrap();
    }
    assert_eq!(SNAPSHOTS_KEPT_DEFAULT, 3);
    assert_eq!(offsets(&store, "s"), [18, 16, 14]);
    let latest = store.latest_snapshot("s").unwrap().unwrap();
    assert_eq!((latest.stream(), latest.offset(), latest.state()), ("s", 18, &b"state 18"[..]));
    assert_eq!(latest.schema_version(), 0);

    store.write_snapshot_with("s", 19, b"", SnapshotOptions { schema_version: 7, keep_last: 5 }).unwrap();
    assert_eq!(offsets(&store, "s"), [19, 18, 16, 14]);
    store.write_snapshot_with("s", 17, b"x", SnapshotOptions { schema_version: 7, keep_last: 1 }).unwrap();
    assert_eq!(offsets(&store, "s"), [19], "keep_last counts from the highest offset");
    let zero = store.write_snapshot_with("s", 19, b"", SnapshotOptions { schema_version: 0, keep_last: 0 });
    assert!(matches!(zero, Err(Error::InvalidOptions { .. })), "{zero:?}");

    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let latest = store.latest_snapshot("s").unwrap().unwrap();
    assert_eq!((latest.offset(), latest.schema_version(), latest.state()), (19, 7, &b""[..]));
}

#[test]
fn an_interrupted_write_leaves_the_previous_snapshot_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Arc::new(AtomicBool::new(false));
    let test_thread = std::thread::current().id();
    let flag = failing.clone();
    // Fails file creation, syncs and renames, on this thread only (the writer thread is left alone).
    let injector = FaultInjector::new(move |op| {
        (op == IoOp::CreateFile && flag.load(Ordering::SeqCst) && std::thread::current().id() == test_thread)
            .then(|| std::io::Error::other("injected"))
    });
    let store = Store::open_with(dir.path(), Options { fault_injector: Some(injector), ..Default::default() }).unwrap();
    append(&store, "s", 10);
    store.write_snapshot("s", 4, b"four").unwrap();

    failing.store(true, Ordering::SeqCst);
    let failed = store.write_snapshot("s", 9, b"nine");
    failing.store(false, Ordering::SeqCst);
    assert!(matches!(failed, Err(Error::Io { .. })), "{failed:?}");
    assert_eq!(store.latest_snapshot("s").unwrap().unwrap().state(), b"four");
    assert_eq!(offsets(&store, "s"), [4]);

    // A crash between writing the temporary file and renaming it leaves a `.tmp` beside the snapshots.
    let snapshot_dir = store.snapshot_paths("s").unwrap()[0].parent().unwrap().to_owned();
    let leftover = snapshot_dir.join("00000000000000000009.tmp");
    std::fs::write(&leftover, b"half a snapshot").unwrap();
    let search = store.find_latest_snapshot("s").unwrap();
    assert_eq!(search.snapshot().unwrap().offset(), 4);
    assert!(search.skipped().is_empty(), "a temporary file is not a snapshot: {:?}", search.skipped());

    store.write_snapshot("s", 9, b"nine").unwrap();
    assert!(!leftover.exists(), "the next write removes the leftover");
    assert_eq!(store.latest_snapshot("s").unwrap().unwrap().state(), b"nine");
}

#[test]
fn a_snapshot_with_a_bad_crc_is_skipped_for_the_next_older() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), "s", 10);
    store.write_snapshot("s", 5, b"five").unwrap();
    store.write_snapshot("s", 9, b"nine").unwrap();
    let newest = store.snapshot_paths("s").unwrap()[0].clone();
    let mut bytes = std::fs::read(&newest).unwrap();
    let state_at = bytes.len() - 4 - 4; // the state, "nine", is the 4 bytes before the 4-byte CRC
    bytes[state_at] ^= 0x20; // "nine" -> "Nine": one flipped bit
    std::fs::write(&newest, &bytes).unwrap();

    let search = store.find_latest_snapshot("s").unwrap();
    assert_eq!(search.snapshot().unwrap().state(), b"five");
    assert_eq!(search.skipped().len(), 1);
    assert_eq!(search.skipped()[0].path, newest);
    assert!(
        matches!(&search.skipped()[0].reason, SkipReason::Corrupt(reason) if reason.contains("CRC")),
        "{:?}",
        search.skipped()
    );
    // Truncated to nothing: skipped too.
    std::fs::write(&newest, b"").unwrap();
    assert_eq!(store.latest_snapshot("s").unwrap().unwrap().offset(), 5);
}

#[test]
fn a_snapshot_beyond_the_streams_head_is_never_trusted() {
    // Store A's stream reached offset 9; store B's, of the same name, only offset 5: B's directory then holds
    // a snapshot for events it does not have, as after a crash that lost buffered appends.
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = store_with(dir_a.path(), "s", 10);
    a.write_snapshot("s", 9, b"nine").unwrap();
    let b = store_with(dir_b.path(), "s", 6);
    b.write_snapshot("s", 3, b"three").unwrap();
    let b_dir = b.snapshot_paths("s").unwrap()[0].parent().unwrap().to_owned();
    let from_a = a.snapshot_paths("s").unwrap()[0].clone();
    std::fs::copy(&from_a, b_dir.join(from_a.file_name().unwrap())).unwrap();

    let search = b.find_latest_snapshot("s").unwrap();
    assert_eq!(search.snapshot().unwrap().offset(), 3);
    assert_eq!(search.skipped()[0].reason, SkipReason::BeyondHead { offset: 9, head: Some(5) });

    // Once the stream reaches offset 9 with its own events, the file (taken at another event) is still never
    // trusted: only the event it was taken at, at its offset, vouches for it.
    append(&b, "s", 4);
    let search = b.find_latest_snapshot("s").unwrap();
    assert_eq!(search.snapshot().unwrap().state(), b"three");
    assert!(
        matches!(search.skipped()[0].reason, SkipReason::EventReplaced { offset: 9, .. }),
        "{:?}",
        search.skipped()
    );

    // Writing beyond the head is refused outright.
    let refused = b.write_snapshot("s", 10, b"ten");
    assert!(matches!(refused, Err(Error::SnapshotBeyondHead { offset: 10, head: Some(9), .. })), "{refused:?}");
    let missing = b.write_snapshot("nobody", 0, b"");
    assert!(matches!(missing, Err(Error::SnapshotBeyondHead { head: None, .. })), "{missing:?}");
}

#[test]
fn a_file_of_another_stream_or_format_or_offset_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), "a", 3);
    append(&store, "b", 3);
    store.write_snapshot("a", 2, b"of a").unwrap();
    store.write_snapshot("b", 0, b"of b").unwrap();
    let a_file = store.snapshot_paths("a").unwrap()[0].clone();
    let b_dir = store.snapshot_paths("b").unwrap()[0].parent().unwrap().to_owned();

    // As if "a" and "b" had the same name hash: a's file in b's directory.
    std::fs::copy(&a_file, b_dir.join("00000000000000000002.snap")).unwrap();
    let search = store.find_latest_snapshot("b").unwrap();
    assert_eq!(search.snapshot().unwrap().state(), b"of b");
    assert_eq!(search.skipped()[0].reason, SkipReason::OtherStream { found: "a".into() });
    std::fs::remove_file(b_dir.join("00000000000000000002.snap")).unwrap();

    // A file renamed to another offset.
    let renamed = b_dir.join("00000000000000000001.snap");
    std::fs::copy(store.snapshot_paths("b").unwrap()[0].clone(), &renamed).unwrap();
    let search = store.find_latest_snapshot("b").unwrap();
    assert!(matches!(&search.skipped()[0].reason, SkipReason::Corrupt(reason) if reason.contains("named for offset")));
    assert_eq!(search.snapshot().unwrap().offset(), 0);
    std::fs::remove_file(&renamed).unwrap();

    // A newer format version (with a valid CRC, so that only the version can be the reason).
    let mut bytes = std::fs::read(&a_file).unwrap();
    bytes[8..12].copy_from_slice(&3u32.to_le_bytes());
    let crc_at = bytes.len() - 4;
    let crc = crc32fast::hash(&bytes[..crc_at]);
    bytes[crc_at..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&a_file, &bytes).unwrap();
    let search = store.find_latest_snapshot("a").unwrap();
    assert!(search.snapshot().is_none());
    assert_eq!(search.skipped()[0].reason, SkipReason::UnsupportedFormat { found: 3 });
}

#[test]
fn no_stream_name_escapes_the_snapshot_directory() {
    let root = tempfile::tempdir().unwrap();
    let store_dir = root.path().join("store");
    let store = Store::open(&store_dir).unwrap();
    let long = "x/".repeat(512);
    let names = ["../../etc/passwd", "a/b", "/abs", "..", ".", "a\\b", "snapshots", "../store/LOCK", long.as_str()];
    for (n, name) in names.iter().enumerate() {
        append(&store, name, 1);
        store.write_snapshot(name, 0, format!("state of {n}").as_bytes()).unwrap();
    }
    for (n, name) in names.iter().enumerate() {
        let snapshot = store.latest_snapshot(name).unwrap().unwrap();
        assert_eq!((snapshot.stream(), snapshot.state()), (*name, format!("state of {n}").as_bytes()));
    }

    let snapshots = store_dir.join("snapshots");
    let files = files_under(&snapshots);
    assert_eq!(files.len(), names.len(), "{files:?}");
    for file in &files {
        let relative = file.strip_prefix(&snapshots).unwrap();
        let parts: Vec<&str> = relative.iter().map(|part| part.to_str().unwrap()).collect();
        assert_eq!(parts.len(), 2, "{relative:?}");
        assert!(parts[0].len() == 32 && parts[0].bytes().all(|byte| byte.is_ascii_hexdigit()), "{relative:?}");
        assert_eq!(parts[1], "00000000000000000000.snap");
    }
    let outside: Vec<_> = std::fs::read_dir(root.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
    assert_eq!(outside, ["store"], "nothing was written beside the store directory");
}

#[test]
fn a_closed_store_writes_no_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), "s", 1);
    let handle = store.clone();
    store.close().unwrap();
    assert!(matches!(handle.write_snapshot("s", 0, b""), Err(Error::Closed)));
}
