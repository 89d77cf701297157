//! Stream lifecycle with KurrentDB's meanings, honoured by every read and subscription: `truncate_before`
//! hides earlier offsets; `delete_stream` (soft, checked against its expected version atomically) hides
//! everything so far and the numbering goes on; `tombstone` retires the name (reads and appends fail with
//! `StreamDeleted`, multi-stream reads skip it); `max_count` and `max_age` keep the last events or the young
//! ones. All of it survives a reopen, and positions show gaps where hidden events are.

use std::time::Duration;

use annals::{Error, EventData, ExpectedVersion, Filter, Store, StreamMetadata, SubscribeFrom, SubscriptionMessage};

fn put(store: &Store, stream: &str, n: u64) {
    for i in 0..n {
        store.append(stream, ExpectedVersion::Any, &[EventData::new("Added", i.to_le_bytes().to_vec())]).unwrap();
    }
}

fn offsets(store: &Store, stream: &str) -> Vec<u64> {
    store.read_stream(stream, 0).unwrap().map(|event| event.unwrap().offset()).collect()
}

fn backwards(store: &Store, stream: &str) -> Vec<u64> {
    store.read_stream_backwards(stream, None).unwrap().map(|event| event.unwrap().offset()).collect()
}

/// (stream, offset) of every event a multi-stream read shows, in position order.
fn everything(events: impl Iterator<Item = annals::Result<annals::RecordedEvent>>) -> Vec<(String, u64)> {
    events.map(|event| event.unwrap()).map(|event| (event.stream().to_owned(), event.offset())).collect()
}

fn subscribed(store: &Store, filter: Filter) -> Vec<(String, u64)> {
    let mut seen = Vec::new();
    for message in store.subscribe(SubscribeFrom::Start, filter).unwrap() {
        match message.unwrap() {
            SubscriptionMessage::Event(event) => seen.push((event.stream().to_owned(), event.offset())),
            SubscriptionMessage::CaughtUp => return seen,
            _ => {}
        }
    }
    unreachable!("a subscription ends only with an error")
}

#[test]
fn truncate_and_soft_delete_hide_events_from_every_read_and_numbering_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    put(&store, "cart-1", 5);
    put(&store, "cart-2", 3);
    store.truncate_before("cart-1", 3).unwrap();
    assert_eq!(offsets(&store, "cart-1"), [3, 4]);
    assert_eq!(backwards(&store, "cart-1"), [4, 3]);
    assert_eq!(store.read_stream("cart-1", 4).unwrap().count(), 1);
    let visible = vec![
        ("cart-1".to_owned(), 3),
        ("cart-1".to_owned(), 4),
        ("cart-2".to_owned(), 0),
        ("cart-2".to_owned(), 1),
        ("cart-2".to_owned(), 2),
    ];
    let carts =
        |events: Vec<(String, u64)>| events.into_iter().filter(|(s, _)| s.starts_with("cart")).collect::<Vec<_>>();
    assert_eq!(carts(everything(store.read_all(0).unwrap())), visible);
    assert_eq!(everything(store.read_category("cart", 0).unwrap()), visible);
    assert_eq!(everything(store.read_event_type("Added", 0).unwrap()), visible);
    assert_eq!(subscribed(&store, Filter::Category("cart".into())), visible);
    assert_eq!(subscribed(&store, Filter::Stream("cart-1".into())), visible[..2]);
    assert_eq!(store.stream_version("cart-1"), Some(4), "the version is not hidden");
    assert_eq!(store.stream_metadata("cart-1").unwrap().truncate_before, Some(3));

    // Soft delete, checked against the expected version.
    let conflict = store.delete_stream("cart-2", ExpectedVersion::Exact(0));
    assert!(matches!(conflict, Err(Error::WrongExpectedVersion { actual: Some(2), .. })), "{conflict:?}");
    assert_eq!(offsets(&store, "cart-2"), [0, 1, 2]);
    store.delete_stream("cart-2", ExpectedVersion::Exact(2)).unwrap();
    assert!(offsets(&store, "cart-2").is_empty());
    let next = store.append("cart-2", ExpectedVersion::Exact(2), &[EventData::new("Added", vec![9])]).unwrap();
    assert_eq!(next.first_offset, 3, "the numbering goes on after a soft delete");
    assert_eq!(offsets(&store, "cart-2"), [3]);
    // Positions have gaps where hidden events are.
    let positions: Vec<u64> = store.read_category("cart", 0).unwrap().map(|e| e.unwrap().position()).collect();
    assert!(positions.windows(2).any(|pair| pair[1] > pair[0] + 1), "{positions:?}");

    // After a reopen, the same.
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(offsets(&store, "cart-1"), [3, 4]);
    assert_eq!(offsets(&store, "cart-2"), [3]);
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn a_tombstone_retires_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    put(&store, "user-9", 2);
    put(&store, "user-10", 1);
    assert!(matches!(store.tombstone("user-9", ExpectedVersion::Exact(0)), Err(Error::WrongExpectedVersion { .. })));
    store.tombstone("user-9", ExpectedVersion::Exact(1)).unwrap();
    for result in [
        store.append("user-9", ExpectedVersion::Any, &[EventData::new("Added", vec![1])]).map(|_| ()),
        store.read_stream("user-9", 0).map(|_| ()),
        store.read_stream_backwards("user-9", None).map(|_| ()),
        store.tombstone("user-9", ExpectedVersion::Any).map(|_| ()),
    ] {
        assert!(matches!(result, Err(Error::StreamDeleted { ref stream }) if stream == "user-9"), "{result:?}");
    }
    assert_eq!(everything(store.read_category("user", 0).unwrap()), [("user-10".to_owned(), 0)]);
    assert_eq!(subscribed(&store, Filter::Category("user".into())), [("user-10".to_owned(), 0)]);
    assert!(subscribed(&store, Filter::Stream("user-9".into())).is_empty());
    // Also in a multi-stream append, and after a reopen.
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let parts = [
        annals::StreamAppend {
            stream: "user-10".into(),
            expected: ExpectedVersion::Any,
            events: vec![EventData::new("Added", vec![1])],
        },
        annals::StreamAppend {
            stream: "user-9".into(),
            expected: ExpectedVersion::Any,
            events: vec![EventData::new("Added", vec![1])],
        },
    ];
    assert!(matches!(store.append_multi(&parts), Err(Error::StreamDeleted { .. })));
    assert_eq!(store.stream_version("user-10"), Some(0), "nothing of the refused transaction was written");
}

#[test]
fn max_count_and_max_age_keep_the_last_and_the_young() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    put(&store, "sensor-1", 10);
    store.set_stream_metadata("sensor-1", StreamMetadata { max_count: Some(3), ..Default::default() }).unwrap();
    assert_eq!(offsets(&store, "sensor-1"), [7, 8, 9]);
    put(&store, "sensor-1", 2);
    assert_eq!(offsets(&store, "sensor-1"), [9, 10, 11], "the window moves with the stream");
    store.set_stream_metadata("sensor-1", StreamMetadata { max_count: Some(0), ..Default::default() }).unwrap();
    assert!(offsets(&store, "sensor-1").is_empty());

    put(&store, "sensor-2", 4);
    // Everything is older than a second (the smallest age, ages being kept in whole seconds) after 1.1 s;
    // nothing is older than an hour; Duration::MAX keeps all.
    store
        .set_stream_metadata("sensor-2", StreamMetadata { max_age: Some(Duration::from_secs(1)), ..Default::default() })
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert!(offsets(&store, "sensor-2").is_empty());
    assert!(everything(store.read_category("sensor", 0).unwrap()).iter().all(|(s, _)| s != "sensor-2"));
    store
        .set_stream_metadata(
            "sensor-2",
            StreamMetadata { max_age: Some(Duration::from_secs(3600)), ..Default::default() },
        )
        .unwrap();
    assert_eq!(offsets(&store, "sensor-2"), [0, 1, 2, 3]);
    store
        .set_stream_metadata(
            "sensor-2",
            StreamMetadata { max_age: Some(Duration::MAX), max_count: Some(u64::MAX), truncate_before: Some(1) },
        )
        .unwrap();
    assert_eq!(offsets(&store, "sensor-2"), [1, 2, 3]);
    // Metadata of a stream that does not exist yet applies once it does.
    store.truncate_before("later-1", 2).unwrap();
    put(&store, "later-1", 4);
    assert_eq!(offsets(&store, "later-1"), [2, 3]);
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn a_store_without_lifecycle_metadata_reads_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    put(&store, "a-1", 3);
    assert_eq!(offsets(&store, "a-1"), [0, 1, 2]);
    assert_eq!(store.stream_metadata("a-1").unwrap(), StreamMetadata::default());
    assert!(matches!(store.truncate_before("", 1), Err(Error::InvalidStreamName { .. })));
}

#[test]
fn a_max_age_below_a_second_is_rounded_up_not_down_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    put(&store, "sensor-3", 3);
    // Kept in whole seconds: 500 ms must not become 0 s, which would hide every event at once.
    let metadata = StreamMetadata { max_age: Some(Duration::from_millis(500)), ..Default::default() };
    store.set_stream_metadata("sensor-3", metadata).unwrap();
    assert_eq!(offsets(&store, "sensor-3"), [0, 1, 2]);
    assert_eq!(store.stream_metadata("sensor-3").unwrap().max_age, Some(Duration::from_secs(1)));
    for (given, kept) in [(Duration::from_nanos(1), 1), (Duration::from_secs(2), 2), (Duration::MAX, u64::MAX)] {
        let metadata = StreamMetadata { max_age: Some(given), ..Default::default() };
        store.set_stream_metadata("sensor-4", metadata).unwrap();
        assert_eq!(store.stream_metadata("sensor-4").unwrap().max_age, Some(Duration::from_secs(kept)), "{given:?}");
    }
}
