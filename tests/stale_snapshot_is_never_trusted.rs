//! A snapshot is trusted only while the stream still holds the very event it was taken at. A crash can take
//! events away (under `Durability::Buffer`, or a log restored from an older copy) and leave their snapshot
//! behind; once new, different events reach the same offsets, an offset check alone would trust the stale
//! snapshot and load a state that includes the lost events. A snapshot records the id and position of its
//! event, and a snapshot whose event the stream no longer holds is skipped with its own reason, never returned
//! by `latest_snapshot` or used by `Repository::load`; retention deletes it rather than a fresh one. And no
//! snapshot is written for an event that is not yet durable: a power cut can not leave the snapshot without its
//! events.

#[path = "../examples/bank/account.rs"]
mod account;
mod support;

use std::time::Duration;

use account::Account;
use annals::{
    Durability, EventData, ExpectedVersion, Loaded, Options, Repository, SkipReason, SnapshotOptions, SnapshotPolicy,
    Store,
};
use support::disk::{DiskModel, FailedSync};
use support::{copy_dir, segment_paths};

fn counted(n: u64) -> EventData {
    EventData::new("Counted", n.to_le_bytes().to_vec())
}

/// Copies the `snapshots/` directory of `from` over `to`'s.
fn copy_snapshots(from: &std::path::Path, to: &std::path::Path) {
    fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                copy_tree(&entry.path(), &to.join(entry.file_name()));
            } else {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }
    copy_tree(&from.join("snapshots"), &to.join("snapshots"));
}

#[test]
fn a_snapshot_of_lost_events_is_not_trusted_when_new_events_reach_its_offset() {
    // The log as it stood before five appends; the snapshot files as they stood after them.
    let (dir, before) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = Store::open(dir.path()).unwrap();
    for n in 0..5 {
        store.append("s", ExpectedVersion::Any, &[counted(n)]).unwrap();
    }
    store.write_snapshot("s", 4, b"state after 0..=4").unwrap();
    store.close().unwrap();
    copy_dir(dir.path(), before.path());
    let store = Store::open(dir.path()).unwrap();
    for n in 5..10 {
        store.append("s", ExpectedVersion::Any, &[counted(n)]).unwrap();
    }
    store.write_snapshot("s", 9, b"state after 0..=9").unwrap();
    store.close().unwrap();
    copy_snapshots(dir.path(), before.path());

    let store = Store::open(before.path()).unwrap();
    assert_eq!(store.stream_version("s"), Some(4));
    let search = store.find_latest_snapshot("s").unwrap();
    assert_eq!(search.snapshot().unwrap().state(), b"state after 0..=4");
    assert!(matches!(search.skipped()[0].reason, SkipReason::BeyondHead { offset: 9, .. }), "{:?}", search.skipped());

    // Five different events reach offsets 5 to 9.
    for n in 100..105 {
        store.append("s", ExpectedVersion::Any, &[counted(n)]).unwrap();
    }
    let search = store.find_latest_snapshot("s").unwrap();
    assert_eq!(search.snapshot().unwrap().state(), b"state after 0..=4", "the stale snapshot must not be trusted");
    assert!(
        matches!(search.skipped()[0].reason, SkipReason::EventReplaced { offset: 9, .. }),
        "{:?}",
        search.skipped()
    );
    assert_eq!(store.latest_snapshot("s").unwrap().unwrap().offset(), 4);

    // Retention keeps the fresh snapshot and deletes the stale one, even when it keeps only one.
    store.write_snapshot_with("s", 7, b"fresh 7", SnapshotOptions { keep_last: 1, ..Default::default() }).unwrap();
    let offsets: Vec<String> = store
        .snapshot_paths("s")
        .unwrap()
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(offsets, ["00000000000000000007.snap"]);
    assert_eq!(store.latest_snapshot("s").unwrap().unwrap().state(), b"fresh 7");
}

#[test]
fn a_repository_never_loads_a_state_that_includes_lost_events() {
    // Under Buffer, a save writes a snapshot; a machine crash then takes its events away.
    let (dir, crashed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let policy = SnapshotPolicy { every_events: 10, keep_last: 3 };
    let options = Options { durability: Durability::Buffer { flush_interval: Duration::MAX }, ..Default::default() };
    let repository =
        Repository::<Account>::new(Store::open_with(dir.path(), options.clone()).unwrap()).with_snapshot_policy(policy);
    let mut account = Loaded::<Account>::new(1);
    let events = account.state().open(1, "Ada", 0).unwrap();
    repository.save(&mut account, events).unwrap();
    for _ in 0..14 {
        let events = account.state().deposit(1).unwrap();
        repository.save(&mut account, events).unwrap();
    }
    copy_dir(dir.path(), crashed.path()); // the log with offsets 0..=14 (balance 14)
    for _ in 0..15 {
        let events = account.state().deposit(1000).unwrap();
        repository.save(&mut account, events).unwrap(); // offsets 15..=29, snapshots at 19 and 29
    }
    drop(repository);
    copy_snapshots(dir.path(), crashed.path());

    let repository = Repository::<Account>::new(Store::open_with(crashed.path(), options).unwrap());
    let mut account = repository.load(1).unwrap();
    assert_eq!(account.state().balance, 14);
    // New, different events reach offsets 15..=29 again.
    for _ in 0..15 {
        let events = account.state().deposit(1).unwrap();
        repository.save(&mut account, events).unwrap();
    }
    let loaded = repository.load(1).unwrap();
    assert_eq!(loaded.state().balance, 29, "the state must not include the lost deposits of 1000");
    assert_eq!(loaded.state(), repository.load_from_events(1).unwrap().state());
}

#[test]
fn no_snapshot_is_written_for_events_that_are_not_durable() {
    let dir = tempfile::tempdir().unwrap();
    let model = DiskModel::new(FailedSync::KeepsDirty);
    let options = Options {
        durability: Durability::Buffer { flush_interval: Duration::MAX },
        fault_injector: Some(model.injector()),
        ..Default::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    for n in 0..10 {
        store.append("s", ExpectedVersion::Any, &[counted(n)]).unwrap();
    }
    store.write_snapshot("s", 9, b"state after 0..=9").unwrap();
    // A power cut now: the snapshot file is durable, so its event must be too.
    let image = model.power_cut(dir.path());
    copy_snapshots(dir.path(), image.path());
    let store = Store::open(image.path()).unwrap();
    assert_eq!(store.stream_version("s"), Some(9), "the snapshot's events were synced before it was written");
    assert_eq!(store.latest_snapshot("s").unwrap().unwrap().offset(), 9);
    assert!(!segment_paths(image.path()).is_empty());
}
