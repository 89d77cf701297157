//! `Store::open_read_only`: beside a running writer (or with none) it shows exactly what the writer has made
//! durable, follows what it syncs next (reads, `head_position` and subscriptions move on by themselves), never
//! writes, creates or deletes a byte, takes no lock (the writer opens and closes as usual around it), refuses
//! writes with `Error::ReadOnly`, keeps its memory bounded by taking the writer's index tables as they appear,
//! and can be killed at any moment without harm to the store.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use annals::{
    Durability, Error, EventData, ExpectedVersion, Filter, Options, Store, SubscribeFrom, SubscriptionMessage,
};

const PATIENCE: Duration = Duration::from_secs(60);

fn deposit(i: u64) -> EventData {
    EventData::new("Deposited", i.to_le_bytes().to_vec())
}

/// Waits until `condition` holds, failing the test after the patience instead of hanging.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Every file below `dir` with its bytes (the lock file included if present).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            for (inner, bytes) in files(&entry.path()) {
                all.insert(format!("{name}/{inner}"), bytes);
            }
        } else {
            all.insert(name, std::fs::read(entry.path()).unwrap());
        }
    }
    all
}

fn positions(events: impl Iterator<Item = annals::Result<annals::RecordedEvent>>) -> Vec<u64> {
    events.map(|event| event.unwrap().position()).collect()
}

#[test]
fn beside_a_writer_it_shows_what_is_durable_and_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open_with(dir.path(), support::small_options(8 << 10)).unwrap();
    for i in 0..50 {
        writer.append(&format!("account-{}", i % 5), ExpectedVersion::Any, &[deposit(i)]).unwrap();
    }
    let reader = Store::open_read_only_with(dir.path(), support::small_options(8 << 10)).unwrap();
    assert!(reader.is_read_only() && !writer.is_read_only());
    assert_eq!(reader.head_position(), Some(49));
    let mut live = reader.subscribe(SubscribeFrom::Start, Filter::Category("account".into())).unwrap();
    for i in 50..400 {
        writer.append(&format!("account-{}", i % 5), ExpectedVersion::Any, &[deposit(i)]).unwrap();
    }
    eventually("the reader follows the writer", || reader.head_position() == Some(399));
    for stream in ["account-0", "account-3"] {
        assert_eq!(
            positions(reader.read_stream(stream, 0).unwrap()),
            positions(writer.read_stream(stream, 0).unwrap())
        );
        assert_eq!(reader.stream_version(stream), writer.stream_version(stream));
    }
    assert_eq!(positions(reader.read_category("account", 0).unwrap()), (0..400).collect::<Vec<_>>());
    assert_eq!(positions(reader.read_all(0).unwrap()), (0..400).collect::<Vec<_>>());
    // The subscription on the reader delivered every event once, in order, then caught up.
    let mut delivered = Vec::new();
    while delivered.len() < 400 {
        match live.next().unwrap().unwrap() {
            SubscriptionMessage::Event(event) => delivered.push(event.position()),
            _ => continue,
        }
    }
    assert_eq!(delivered, (0..400).collect::<Vec<_>>());
    assert!(reader.verify().unwrap().is_ok());
    // The writer rolled dozens of times: the reader took its tables instead of keeping every record in memory.
    eventually("the reader adopts the writer's tables", || {
        writer.append("account-9", ExpectedVersion::Any, &[deposit(0)]).unwrap();
        let (tables, memtables) = reader.index_shape();
        tables > 0 && memtables <= 4
    });
}

#[test]
fn writes_are_refused_and_the_writer_opens_and_closes_around_readers() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path()).unwrap().append("a-1", ExpectedVersion::Any, &[deposit(1)]).unwrap();
    // No writer now: a reader, then the writer opens beside it (the reader took no lock).
    let reader = Store::open_read_only(dir.path()).unwrap();
    let writer = Store::open(dir.path()).unwrap();
    assert!(matches!(reader.append("a-1", ExpectedVersion::Any, &[deposit(2)]), Err(Error::ReadOnly)));
    assert!(matches!(reader.append_multi(&[]), Err(Error::EmptyAppend) | Err(Error::ReadOnly)));
    assert!(matches!(reader.flush(), Err(Error::ReadOnly)));
    assert!(matches!(reader.write_snapshot("a-1", 0, b"state"), Err(Error::ReadOnly)));
    let async_append = futures::executor::block_on(reader.append_async("a-1", ExpectedVersion::Any, &[deposit(3)]));
    assert!(matches!(async_append, Err(Error::ReadOnly)));
    writer.append("a-1", ExpectedVersion::Any, &[deposit(4)]).unwrap();
    eventually("the reader sees the new writer's append", || reader.stream_version("a-1") == Some(1));
    writer.close().unwrap();
    let second = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(second.stream_version("a-1"), Some(1));
    reader.close().unwrap();
    second.close().unwrap();
    // Errors: no store here.
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(Store::open_read_only(empty.path()), Err(Error::NoStore { .. })));
    assert!(matches!(Store::open_read_only(empty.path().join("missing")), Err(Error::Io { .. })));
    assert!(!empty.path().join("missing").exists(), "a read-only open creates nothing");
}

#[test]
fn under_buffer_the_reader_sees_events_only_once_they_are_synced() {
    let dir = tempfile::tempdir().unwrap();
    let buffered =
        Options { durability: Durability::Buffer { flush_interval: Duration::from_secs(3600) }, ..Default::default() };
    let writer = Store::open_with(dir.path(), buffered).unwrap();
    writer.append("a-1", ExpectedVersion::Any, &[deposit(1)]).unwrap();
    writer.flush().unwrap();
    let reader = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.head_position(), Some(0));
    for i in 0..10 {
        writer.append("a-1", ExpectedVersion::Any, &[deposit(i)]).unwrap();
    }
    assert_eq!(writer.head_position(), Some(10), "the writer's own readers see the buffered events");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(reader.head_position(), Some(0), "not synced: not shown to a read-only opener");
    writer.flush().unwrap();
    eventually("synced events appear", || reader.head_position() == Some(10));
}

#[test]
fn a_read_only_open_changes_no_byte_of_a_stopped_store() {
    // A store with every kind of file: segments, index tables, snapshots, HEAD; and one of an older build
    // (no HEAD, an index checkpoint): nothing is created, deleted or changed, not even LOCK.
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open_with(dir.path(), support::small_options(8 << 10)).unwrap();
        for i in 0..300 {
            store.append(&format!("order-{}", i % 7), ExpectedVersion::Any, &[deposit(i)]).unwrap();
        }
        store.write_snapshot("order-1", 10, b"state").unwrap();
        store.close().unwrap();
    }
    std::fs::remove_file(dir.path().join("LOCK")).unwrap();
    let old = tempfile::tempdir().unwrap();
    support::copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1/torn-tail"), old.path());
    for (dir, events) in [(dir.path(), 300), (old.path(), 97 - 3)] {
        let before = files(dir);
        let reader = Store::open_read_only(dir).unwrap();
        assert_eq!(reader.head_position(), Some(events - 1), "{}", dir.display());
        assert_eq!(positions(reader.read_all(0).unwrap()).len() as u64, events);
        assert!(reader.verify().unwrap().is_ok());
        let _ = reader.latest_snapshot("order-1");
        reader.close().unwrap();
        assert_eq!(files(dir), before, "{}: the read-only open changed the directory", dir.display());
    }
}

// ---------------------------------------------------------------------------------------------------------
// A read-only process killed while the writer runs.

const CHILD_DIR_ENV: &str = "ANNALS_READ_ONLY_CHILD_DIR";

#[test]
#[ignore = "the child process of a_killed_reader_does_no_harm; idle unless ANNALS_READ_ONLY_CHILD_DIR is set"]
fn child_entry() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else { return };
    let reader = Store::open_read_only(&dir).unwrap();
    let mut subscription = reader.subscribe(SubscribeFrom::Start, Filter::All).unwrap();
    loop {
        let _ = subscription.next();
        let _ = reader.read_stream("account-1", 0).map(Iterator::count);
    }
}

#[test]
fn a_killed_reader_does_no_harm() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open_with(dir.path(), support::small_options(16 << 10)).unwrap();
    writer.append("account-1", ExpectedVersion::Any, &[deposit(0)]).unwrap();
    let mut rng = support::Rng::new(0x4ead_0417);
    let mut appended = 1;
    for _ in 0..4 {
        let mut child = support::spawn_child("child_entry", CHILD_DIR_ENV, dir.path());
        let until = Instant::now() + Duration::from_millis(rng.range(50, 250));
        while Instant::now() < until {
            writer.append(&format!("account-{}", appended % 3), ExpectedVersion::Any, &[deposit(appended)]).unwrap();
            appended += 1;
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    writer.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let report = store.recovery_report();
    assert_eq!((report.tail_bytes_cut, report.records_resynced), (0, 0), "{report:?}");
    assert_eq!(store.head_position(), Some(appended - 1));
    assert!(store.verify().unwrap().is_ok());
}
