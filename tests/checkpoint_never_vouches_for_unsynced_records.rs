//! An index checkpoint never covers records that may not be on stable storage. A store whose last group was
//! written but never synced (its process died between the write and the `fdatasync`, simulated here by a
//! failing sync) leaves those records readable in the page cache only. The next store to open the directory
//! sees them; if it closes without appending, the checkpoint it writes must not vouch for them unless it has
//! synced them first. Otherwise a power cut that loses those pages leaves a checkpoint pointing at zeros,
//! and the store refuses to open with `Corrupt` although no synced byte was damaged.
//!
//! The durable image after the power cut is built by hand: the segment files as of the last completed sync,
//! plus every file the second store synced (its checkpoint), plus its segment bytes if it synced them.

mod support;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use annals::{Error, EventData, ExpectedVersion, FaultInjector, IoOp, Options, Store};
use support::{copy_dir, segment_paths, small_options, state, CHECKPOINT};

const NAMES: [&str; 2] = ["s", "t"];

fn options() -> Options {
    small_options(64 << 10, 4)
}

#[test]
fn a_checkpoint_written_without_appending_does_not_vouch_for_unsynced_records() {
    let dir = tempfile::tempdir().unwrap();
    let fail_syncs = Arc::new(AtomicBool::new(false));
    let injector = {
        let fail_syncs = fail_syncs.clone();
        FaultInjector::new(move |op| {
            (op == IoOp::SyncData && fail_syncs.load(Ordering::SeqCst)).then(|| io::Error::other("simulated crash"))
        })
    };
    let store = Store::open_with(dir.path(), Options { fault_injector: Some(injector), ..options() }).unwrap();
    for i in 0..10u8 {
        store
            .append(NAMES[usize::from(i % 2)], ExpectedVersion::Any, &[EventData::new("Synced", vec![i; 100])])
            .unwrap();
    }
    let acknowledged = state(&store, &NAMES);
    // What is on stable storage: every append so far was synced before it returned.
    let durable = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), durable.path());
    std::fs::remove_file(durable.path().join(CHECKPOINT)).ok();

    // The next group is written but its sync fails: it is not acknowledged, and may not be on disk.
    fail_syncs.store(true, Ordering::SeqCst);
    let lost = store.append("s", ExpectedVersion::Any, &[EventData::new("Unsynced", vec![0xEE; 100])]);
    assert!(matches!(lost, Err(Error::Poisoned { .. })), "{lost:?}");
    drop(store);

    // A second store opens the directory (the unsynced group is readable from the page cache), appends nothing
    // and closes. The injector fails nothing; it counts the segment syncs the store makes.
    let segment_syncs = Arc::new(AtomicUsize::new(0));
    let injector = {
        let segment_syncs = segment_syncs.clone();
        FaultInjector::new(move |op| {
            if op == IoOp::SyncData {
                segment_syncs.fetch_add(1, Ordering::SeqCst);
            }
            None
        })
    };
    let store = Store::open_with(dir.path(), Options { fault_injector: Some(injector), ..options() }).unwrap();
    let seen = state(&store, &NAMES);
    store.close().unwrap();

    // The power cut: the segments as last synced (the second store's view, if it synced them), and the
    // checkpoint the second store wrote (it was synced and renamed into place).
    let image = tempfile::tempdir().unwrap();
    if segment_syncs.load(Ordering::SeqCst) > 0 {
        copy_dir(dir.path(), image.path());
    } else {
        copy_dir(durable.path(), image.path());
        std::fs::copy(dir.path().join(CHECKPOINT), image.path().join(CHECKPOINT)).unwrap();
    }
    assert_eq!(segment_paths(image.path()).len(), segment_paths(dir.path()).len());
    let store = Store::open_with(image.path(), options())
        .unwrap_or_else(|err| panic!("a power cut after a read-only session left an unopenable store: {err}"));
    let recovered = state(&store, &NAMES);
    // Either the unsynced event was made durable by the second store, or it is gone; nothing else differs.
    assert!(
        recovered == seen || recovered == acknowledged,
        "recovered head {:?}; the second store saw {:?}, {:?} was acknowledged",
        recovered.head_position,
        seen.head_position,
        acknowledged.head_position
    );
    check_appends(&store, image.path());
}

fn check_appends(store: &Store, dir: &Path) {
    let head = store.head_position().unwrap();
    let result = store.append("t", ExpectedVersion::Any, &[EventData::new("After", &b"after"[..])]).unwrap();
    assert_eq!(result.first_position, head + 1, "in {}", dir.display());
}
