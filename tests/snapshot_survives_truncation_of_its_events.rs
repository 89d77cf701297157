//! The usual way to keep a long stream short: snapshot at offset N, then truncate before N + 1 (KurrentDB's
//! pattern). The snapshot must stay trusted although its event is now hidden from reads, and after compaction
//! (which removes hidden events) too: else a load would ignore it and replay only the visible suffix, and
//! rebuild a wrong state without any error.

use annals::{EventData, ExpectedVersion, Options, Store};

fn options() -> Options {
    // No background compactor (0): this test compacts by hand.
    Options { segment_size_bytes: 8192, compaction_dead_percent: 0, ..Default::default() }
}

fn append(store: &Store, n: u64) {
    for i in 0..n {
        store.append("acct-1", ExpectedVersion::Any, &[EventData::new("Deposited", vec![i as u8; 200])]).unwrap();
        store.append("other-2", ExpectedVersion::Any, &[EventData::new("Noise", vec![i as u8; 200])]).unwrap();
    }
}

#[test]
fn a_snapshot_at_the_truncation_point_stays_trusted_through_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    append(&store, 100);
    store.write_snapshot("acct-1", 99, b"balance after 100").unwrap();
    store.truncate_before("acct-1", 100).unwrap();
    append(&store, 50);
    let trusted = |store: &Store| store.latest_snapshot("acct-1").unwrap().map(|snapshot| snapshot.offset());
    assert_eq!(trusted(&store), Some(99), "the snapshot of a truncated prefix");
    assert_eq!(store.read_stream("acct-1", 0).unwrap().next().unwrap().unwrap().offset(), 100);

    store.flush_index().unwrap();
    let report = store.compact().unwrap();
    assert!(report.events_removed > 0, "{report:?}");
    assert_eq!(trusted(&store), Some(99), "after compaction removed the hidden events");
    store.close().unwrap();
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(trusted(&store), Some(99), "after a reopen with the index rebuilt");
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn a_snapshot_of_an_event_written_after_truncation_names_that_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    append(&store, 20);
    store.truncate_before("acct-1", 15).unwrap();
    // Offset 10 is hidden: a snapshot there must still describe the event at offset 10, not the first visible.
    store.write_snapshot("acct-1", 10, b"state at 10").unwrap();
    let snapshot = store.latest_snapshot("acct-1").unwrap().expect("trusted");
    assert_eq!(snapshot.offset(), 10);
    let raw_position = 20; // acct-1's offset 10 is the 21st event (two appends per round).
    assert_eq!(snapshot.position(), raw_position, "the snapshot names the event at its own offset");
}
