//! One store directory is open in at most one `Store` at a time. A second open of the same directory while
//! the first is open, from this process (also through another spelling of the path, also with other options)
//! or from another process, is `Error::Locked` naming the directory, and changes nothing. The lock is
//! released by `close`, by dropping the last handle (not before), and by the death of the process holding it;
//! then the directory opens again with everything in it.

mod support;

use std::path::Path;
use std::process::Command;

use annals::{Error, EventData, ExpectedVersion, Options, Store};
use support::{read_all, segment_paths, small_options};

/// Set in a child process: the store directory it must try to open.
const CHILD_DIR: &str = "ANNALS_LOCK_TEST_DIR";
/// Set in a child process: what it must do and expect (`locked`, `opens`, `open-then-abort`).
const CHILD_MODE: &str = "ANNALS_LOCK_TEST_MODE";
/// Name of the file a child writes once it has checked what it was asked to: proof that it ran the check.
const CHILD_DONE: &str = "child-done";

fn one_event() -> [EventData; 1] {
    [EventData::new("Locked", &b"{}"[..])]
}

fn assert_locked(result: annals::Result<Store>, dir: &Path) {
    match result {
        Err(Error::Locked { dir: locked }) => assert_eq!(locked, dir, "Locked names the directory"),
        Err(other) => panic!("expected Locked, got {other:?}"),
        Ok(_) => panic!("a second open of {} succeeded", dir.display()),
    }
}

/// The bytes of every file in `dir`, to show that a refused open changed nothing.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().unwrap().is_file())
        .map(|entry| (entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path()).unwrap()))
        .filter(|(name, _)| !name.ends_with(".tmp"))
        .collect();
    files.sort();
    files
}

#[test]
fn a_second_open_in_the_same_process_is_locked_until_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("s", ExpectedVersion::NoStream, &one_event()).unwrap();
    let before = files(dir.path());

    assert_locked(Store::open(dir.path()), dir.path());
    assert_locked(Store::open_with(dir.path(), small_options(4096)), dir.path());
    // Another spelling of the same directory.
    let other_spelling = dir.path().join(".");
    assert_locked(Store::open(&other_spelling), &other_spelling);
    let link = tempfile::tempdir().unwrap();
    let linked = link.path().join("link");
    std::os::unix::fs::symlink(dir.path(), &linked).unwrap();
    assert_locked(Store::open(&linked), &linked);
    assert_eq!(files(dir.path()), before, "a refused open changed the directory");

    // The first store is unaffected.
    store.append("s", ExpectedVersion::Exact(0), &one_event()).unwrap();
    store.close().unwrap();

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.stream_version("s"), Some(1));
    assert_locked(Store::open(dir.path()), dir.path());
}

#[test]
fn the_lock_is_released_when_the_last_handle_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let clone = store.clone();
    store.append("s", ExpectedVersion::NoStream, &one_event()).unwrap();
    drop(store);
    // A clone still holds the store open.
    assert_locked(Store::open(dir.path()), dir.path());
    clone.append("s", ExpectedVersion::Exact(0), &one_event()).unwrap();
    drop(clone);

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.stream_version("s"), Some(1));
}

#[test]
fn close_releases_the_lock_even_while_other_handles_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let clone = store.clone();
    store.append("s", ExpectedVersion::NoStream, &one_event()).unwrap();
    store.close().unwrap();

    let reopened = Store::open(dir.path()).unwrap();
    // The old handle is closed: it must not write into the directory the new store now owns.
    let late = clone.append("s", ExpectedVersion::Any, &one_event());
    assert!(matches!(late, Err(Error::Closed)), "{late:?}");
    drop(clone);
    assert_eq!(reopened.stream_version("s"), Some(0));
    reopened.append("s", ExpectedVersion::Exact(0), &one_event()).unwrap();
    reopened.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(read_all(&store, 0).len(), 2);
}

#[test]
fn reopening_many_times_in_a_row_always_gets_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options { segment_size_bytes: 4096, ..Default::default() };
    for round in 0..30u64 {
        let store = Store::open_with(dir.path(), options()).unwrap();
        assert_eq!(store.head_position(), round.checked_sub(1));
        store.append("s", ExpectedVersion::Any, &one_event()).unwrap();
        if round % 2 == 0 {
            store.close().unwrap();
        } else {
            drop(store);
        }
    }
    assert!(!segment_paths(dir.path()).is_empty());
}

/// Runs this test binary again, as a child running only `another_process_is_locked_out` in `mode`; returns
/// whether it exited successfully, and what it printed.
fn run_child(dir: &Path, mode: &str) -> (bool, String) {
    let _ = std::fs::remove_file(dir.join(CHILD_DONE));
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "another_process_is_locked_out", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_MODE, mode)
        .output()
        .unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(dir.join(CHILD_DONE).exists(), "the child ({mode}) did not run its check: {printed}");
    (output.status.success(), printed)
}

/// The child's side: does what `CHILD_MODE` says in `CHILD_DIR`.
fn child(dir: &Path, mode: &str) {
    let done = || std::fs::write(dir.join(CHILD_DONE), mode).unwrap();
    match mode {
        "locked" => {
            assert_locked(Store::open(dir), dir);
            done();
        }
        "opens" => {
            let store = Store::open(dir).unwrap();
            store.append("from-child", ExpectedVersion::Any, &one_event()).unwrap();
            store.close().unwrap();
            done();
        }
        "open-then-abort" => {
            let store = Store::open(dir).unwrap();
            store.append("from-child", ExpectedVersion::Any, &one_event()).unwrap();
            done();
            // Dies holding the lock, without closing.
            std::process::abort();
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[test]
fn another_process_is_locked_out() {
    if let (Some(dir), Ok(mode)) = (std::env::var_os(CHILD_DIR), std::env::var(CHILD_MODE)) {
        child(Path::new(&dir), &mode);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("from-parent", ExpectedVersion::NoStream, &one_event()).unwrap();
    let (success, printed) = run_child(dir.path(), "locked");
    assert!(success, "the child was not locked out: {printed}");
    store.close().unwrap();

    let (success, printed) = run_child(dir.path(), "opens");
    assert!(success, "the child could not open after close: {printed}");
    let (success, printed) = run_child(dir.path(), "open-then-abort");
    assert!(!success, "the child was meant to die: {printed}");

    // The dead child's lock is gone with it; its synced append is there.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.stream_version("from-parent"), Some(0));
    assert_eq!(store.stream_version("from-child"), Some(1));
    assert_locked(Store::open(dir.path()), dir.path());
}
