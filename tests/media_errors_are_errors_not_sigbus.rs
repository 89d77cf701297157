//! An unreadable sector is an `Error::Io` that names the file and the byte offset, never a SIGBUS: recovery
//! (the scan of the log, the checkpoint's checks) and `Store::verify` read every byte with `pread`, so that
//! the kernel's EIO reaches annals as an error. (A read through the mapping would kill the process, on every
//! open.) The fault injector fails the reads (`IoOp::Read`) of one segment file with EIO, as a media error
//! would.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use annals::{Error, EventData, ExpectedVersion, FaultInjector, IoOp, Options, Store};
use support::segment_paths;

const EIO: i32 = 5;

/// Fails every read of `file` while `armed` is set.
fn unreadable(file: PathBuf, armed: Arc<AtomicBool>) -> FaultInjector {
    FaultInjector::observing(move |call| {
        (call.op == IoOp::Read && call.path == file && armed.load(Ordering::SeqCst))
            .then(|| std::io::Error::from_raw_os_error(EIO))
    })
}

fn options(injector: Option<FaultInjector>) -> Options {
    Options { segment_size_bytes: 8192, fault_injector: injector, ..Default::default() }
}

/// A store of several segments; returns its segment files, oldest first.
fn fill(dir: &Path) -> Vec<PathBuf> {
    let store = Store::open_with(dir, options(None)).unwrap();
    for n in 0..200u64 {
        let stream = format!("account-{}", n % 7);
        store.append(&stream, ExpectedVersion::Any, &[EventData::new("MoneyDeposited", vec![n as u8; 40])]).unwrap();
    }
    store.close().unwrap();
    let segments = segment_paths(dir);
    assert!(segments.len() >= 3, "small segments roll: {segments:?}");
    segments
}

fn assert_io_naming(result: Result<impl std::fmt::Debug, Error>, file: &Path, context: &str) {
    match result {
        Err(Error::Io { context: what, source }) => {
            assert_eq!(source.raw_os_error(), Some(EIO), "{context}: {what}");
            assert!(what.contains(&file.display().to_string()), "{context}: {what:?} names the file");
            assert!(what.contains("at byte"), "{context}: {what:?} names the offset");
        }
        other => panic!("{context}: expected Err(Io) naming {}, got {other:?}", file.display()),
    }
}

#[test]
fn an_unreadable_last_segment_fails_the_open_with_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let last = fill(dir.path()).pop().unwrap();
    // Without the index, recovery scans every segment; with it, only the last one's record that the last
    // index table names.
    for remove_index in [false, true] {
        if remove_index {
            support::remove_index(dir.path());
        }
        let armed = Arc::new(AtomicBool::new(true));
        let opened = Store::open_with(dir.path(), options(Some(unreadable(last.clone(), armed))));
        assert_io_naming(opened.map(|_| ()), &last, &format!("index removed: {remove_index}"));
    }
}

#[test]
fn an_unreadable_sealed_segment_fails_a_full_replay_with_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let first = fill(dir.path()).remove(0);
    support::remove_index(dir.path());
    let armed = Arc::new(AtomicBool::new(true));
    let opened = Store::open_with(dir.path(), options(Some(unreadable(first.clone(), armed))));
    assert_io_naming(opened.map(|_| ()), &first, "full replay");
}

#[test]
fn verify_reports_an_unreadable_segment_as_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let segments = fill(dir.path());
    let armed = Arc::new(AtomicBool::new(false));
    let store = Store::open_with(dir.path(), options(Some(unreadable(segments[1].clone(), armed.clone())))).unwrap();
    assert!(store.verify().unwrap().is_ok());
    armed.store(true, Ordering::SeqCst);
    assert_io_naming(store.verify(), &segments[1], "verify");
    // The store itself is unharmed: reads through the mapping still work, and so do appends.
    store.append("account-1", ExpectedVersion::Any, &[EventData::new("MoneyDeposited", &b"x"[..])]).unwrap();
    armed.store(false, Ordering::SeqCst);
    assert!(store.verify().unwrap().is_ok());
}
