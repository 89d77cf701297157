//! Compaction replaces a segment file the way segments are made: the new file written under a temporary
//! name, synced, renamed over the old one, the directory synced. These tests hold it to that at every step:
//!
//! - the order of its system calls (every write and the sync of the temporary file before the rename, the
//!   directory sync after it);
//! - a crash at each of those calls: the store directory as it stands then (the temporary file unfinished, or
//!   torn, or whole; the old segment or the new one) opens and shows exactly what it showed before, and
//!   `verify` passes;
//! - a failure of each of those calls: `compact` returns `Io`, the store is not poisoned, no temporary file
//!   is left, reads show the same, appends go on, and the next compaction succeeds.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use annals::{Error, EventData, ExpectedVersion, FaultInjector, IoOp, Options, Store};

mod support;
use support::{copy_dir, read_all, Owned, Rng};

fn options() -> Options {
    // Compaction by hand only, of any hidden share.
    Options { segment_size_bytes: 8192, compaction_dead_percent: 0, ..Default::default() }
}

/// A closed store with hidden events in its sealed segments; returns what reads show.
fn build(dir: &Path) -> Vec<Owned> {
    let store = Store::open_with(dir, options()).unwrap();
    let mut rng = Rng(3);
    for i in 0..240u64 {
        let stream = ["keep-a", "gone-b", "keep-c"][rng.range(0, 3) as usize];
        store.append(stream, ExpectedVersion::Any, &[EventData::new("E", vec![i as u8; 150])]).unwrap();
    }
    store.delete_stream("gone-b", ExpectedVersion::Any).unwrap();
    store.append("keep-a", ExpectedVersion::Any, &[EventData::new("E", vec![0; 4000])]).unwrap();
    store.flush_index().unwrap();
    let shown = read_all(&store, 0);
    store.close().unwrap();
    shown
}

/// Compaction's own calls: not reads, not the index's files.
fn compaction_call(op: IoOp, path: &Path) -> bool {
    op != IoOp::Read && !path.components().any(|part| part.as_os_str() == "index")
}

fn check_image(dir: &Path, expected: &[Owned], what: &str) {
    let store = Store::open_with(dir, options()).unwrap_or_else(|err| panic!("{what}: the open failed: {err}"));
    assert_eq!(read_all(&store, 0), expected, "{what}");
    let verified = store.verify().unwrap();
    assert!(verified.is_ok(), "{what}: {:?}", verified.problem);
    store.append("keep-a", ExpectedVersion::Any, &[EventData::new("E", vec![9])]).unwrap();
    store.close().unwrap();
}

#[test]
fn a_crash_at_any_step_leaves_the_old_segment_or_the_new_one() {
    let pristine = tempfile::tempdir().unwrap();
    let expected = build(pristine.path());
    let work = tempfile::tempdir().unwrap();
    copy_dir(pristine.path(), work.path());

    // At each of compaction's calls, before it runs: the call and a copy of the directory as it stands.
    let images = tempfile::tempdir().unwrap();
    let calls: Arc<Mutex<Vec<(IoOp, PathBuf, PathBuf)>>> = Arc::default();
    let (record, root, store_dir) = (calls.clone(), images.path().to_owned(), work.path().to_owned());
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let on = armed.clone();
    let injector = FaultInjector::observing(move |call| {
        if on.load(std::sync::atomic::Ordering::SeqCst) && compaction_call(call.op, call.path) {
            let mut calls = record.lock().unwrap();
            let image = root.join(calls.len().to_string());
            std::fs::create_dir(&image).unwrap();
            copy_dir(&store_dir, &image);
            calls.push((call.op, call.path.to_owned(), image));
        }
        None
    });
    let store = Store::open_with(work.path(), Options { fault_injector: Some(injector), ..options() }).unwrap();
    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let report = store.compact().unwrap();
    armed.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(report.segments >= 2, "{report:?}");
    assert_eq!(read_all(&store, 0), expected);
    store.close().unwrap();

    let calls = calls.lock().unwrap().clone();
    // The order, segment by segment: writes to the temporary file, its sync, the rename, the directory sync.
    let mut renames = 0;
    for (i, (op, path, _)) in calls.iter().enumerate() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if *op == IoOp::CreateFile && name.ends_with(".seg") {
            renames += 1;
            let (before, after) = (&calls[i - 1], calls.get(i + 1).expect("a directory sync follows"));
            assert!(
                before.0 == IoOp::CreateFile && before.1.to_string_lossy().ends_with(".compact.seg.tmp"),
                "the temporary file is synced right before its rename: {before:?}"
            );
            assert!(after.0 == IoOp::CreateFile && after.1 == work.path(), "the directory is synced after: {after:?}");
        } else if *op == IoOp::Write {
            assert!(name.ends_with(".compact.seg.tmp"), "compaction writes only its temporary file: {name}");
        }
    }
    assert_eq!(renames, report.segments, "one rename per compacted segment");

    // Every image opens and shows exactly the same; so does each with its unfinished file torn at random.
    let mut rng = Rng(17);
    for (i, (op, path, image)) in calls.iter().enumerate() {
        let what = format!("crash before call {i} ({op:?} {})", path.display());
        let scratch = tempfile::tempdir().unwrap();
        copy_dir(image, scratch.path());
        for entry in std::fs::read_dir(scratch.path()).unwrap() {
            let tmp = entry.unwrap().path();
            if tmp.to_string_lossy().ends_with(".compact.seg.tmp") {
                let mut bytes = std::fs::read(&tmp).unwrap();
                let cut = rng.range(0, bytes.len() as u64 + 1) as usize;
                bytes.truncate(cut);
                bytes.extend((0..rng.range(0, 300)).map(|_| rng.next() as u8));
                std::fs::write(&tmp, bytes).unwrap();
            }
        }
        check_image(image, &expected, &what);
        check_image(scratch.path(), &expected, &format!("{what}, its temporary file torn"));
    }
    assert!(!calls.is_empty());
}

#[test]
fn a_failure_at_any_step_is_an_error_and_harms_nothing() {
    let pristine = tempfile::tempdir().unwrap();
    let expected = build(pristine.path());
    // How many calls one compaction makes.
    let count = {
        let work = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), work.path());
        let seen = Arc::new(Mutex::new(0usize));
        let counter = seen.clone();
        let injector = FaultInjector::observing(move |call| {
            if compaction_call(call.op, call.path) {
                *counter.lock().unwrap() += 1;
            }
            None
        });
        let store = Store::open_with(work.path(), Options { fault_injector: Some(injector), ..options() }).unwrap();
        *seen.lock().unwrap() = 0;
        store.compact().unwrap();
        store.close().unwrap();
        let calls = *seen.lock().unwrap();
        calls
    };
    assert!(count >= 4);
    for failing in 0..count {
        let work = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), work.path());
        let seen = Arc::new(Mutex::new(None::<usize>));
        let counter = seen.clone();
        let injector = FaultInjector::observing(move |call| {
            let mut seen = counter.lock().unwrap();
            match seen.as_mut() {
                Some(n) if compaction_call(call.op, call.path) => {
                    *n += 1;
                    (*n - 1 == failing).then(|| std::io::Error::other("injected"))
                }
                _ => None,
            }
        });
        let store = Store::open_with(work.path(), Options { fault_injector: Some(injector), ..options() }).unwrap();
        *seen.lock().unwrap() = Some(0);
        let what = format!("failing call {failing} of {count}");
        match store.compact() {
            Err(Error::Io { .. }) => {}
            other => panic!("{what}: compact returned {other:?}"),
        }
        *seen.lock().unwrap() = None;
        let leftovers: Vec<_> = std::fs::read_dir(work.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{what}: left {leftovers:?}");
        assert_eq!(read_all(&store, 0), expected, "{what}");
        store.append("keep-a", ExpectedVersion::Any, &[EventData::new("E", vec![9])]).expect("not poisoned");
        store.compact().unwrap_or_else(|err| panic!("{what}: the next compaction failed: {err}"));
        assert!(store.verify().unwrap().is_ok(), "{what}");
        store.close().unwrap();
    }
}
