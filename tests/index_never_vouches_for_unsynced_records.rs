//! The persistent index never covers records that may not be on stable storage. A store whose last group was
//! written but never synced (a failing sync here; a process that died between the write and the `fdatasync`
//! leaves the same) keeps those records readable in the page cache only. The next store to open the directory
//! sees them; when it closes it writes the index out as a table, which must not vouch for them unless they are
//! durable. Otherwise a power cut that loses those pages leaves a table pointing at zeros, and the store
//! refuses to open with `Corrupt` although no synced byte was damaged.
//!
//! A [`DiskModel`] keeps what the disk holds (the segments as synced, every table as written), for both kernel
//! behaviours after a failed sync: the pages kept dirty, or marked clean and dropped.

mod support;

use annals::{Error, EventData, ExpectedVersion, Options, Store};
use support::disk::{DiskModel, FailedSync};
use support::{small_options, state};

const NAMES: [&str; 2] = ["s", "t"];

fn scenario(mode: FailedSync) {
    let dir = tempfile::tempdir().unwrap();
    let model = DiskModel::new(mode);
    let options = || Options { fault_injector: Some(model.injector()), ..small_options(64 << 10) };
    let store = Store::open_with(dir.path(), options()).unwrap();
    for i in 0..10u8 {
        store
            .append(NAMES[usize::from(i % 2)], ExpectedVersion::Any, &[EventData::new("Synced", vec![i; 100])])
            .unwrap();
    }
    // The next group is written but its sync fails: it is not acknowledged, and may not be on disk.
    model.fail_next_syncs(1);
    let lost = store.append("s", ExpectedVersion::Any, &[EventData::new("Unsynced", vec![0xEE; 100])]);
    assert!(matches!(lost, Err(Error::Poisoned { .. })), "{lost:?}");
    drop(store);

    // A second store opens the directory (the unsynced group is readable from the page cache), appends nothing
    // and closes: its index table covers everything it saw.
    let store = Store::open_with(dir.path(), options()).unwrap();
    let seen = state(&store, &NAMES);
    store.close().unwrap();
    assert!(!support::index_tables(dir.path()).is_empty(), "the close wrote the index out");

    // The power cut.
    let image = model.power_cut(dir.path());
    let store = Store::open_with(image.path(), small_options(64 << 10)).unwrap_or_else(|err| {
        panic!("{mode:?}: a power cut after a read-only session left an unopenable store: {err}")
    });
    assert!(support::opened_from_index(&store), "{mode:?}: the table is trusted: {:?}", store.recovery_report());
    assert_eq!(state(&store, &NAMES), seen, "{mode:?}: what the second store showed is what the disk holds");
    let head = store.head_position().unwrap();
    let result = store.append("t", ExpectedVersion::Any, &[EventData::new("After", &b"after"[..])]).unwrap();
    assert_eq!(result.first_position, head + 1);
}

#[test]
fn a_table_written_without_appending_does_not_vouch_for_unsynced_records() {
    scenario(FailedSync::KeepsDirty);
}

#[test]
fn a_table_written_after_a_failed_sync_covers_only_rewritten_records() {
    scenario(FailedSync::DropsPages);
}
