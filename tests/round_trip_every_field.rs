//! Every field of a `RecordedEvent` reads back as it was appended: stream, offset, position, event type, the
//! event id (given, or a fresh UUIDv7 assigned by the store), the commit timestamp (never going backwards and
//! near the time of the append), data, metadata and codec. It holds straight after the append, after a clean
//! close and reopen (index from the checkpoint), and after a reopen that rebuilds the index from the log; also
//! for empty data and metadata, for names of the maximum length (1024 bytes, also of multi-byte characters),
//! and for payloads holding every byte value.

mod support;

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use annals::{EventData, ExpectedVersion, Options, Store, EVENT_TYPE_BYTES_MAX, STREAM_NAME_BYTES_MAX};
use support::{read_all, read_stream, read_stream_backwards, remove_index, Owned};
use uuid::Uuid;

/// How far a timestamp may lie outside the span of the append call: generous, so that only a broken
/// timestamp (zero, wrong unit, wrong epoch) fails, never a slow machine or a clock adjustment.
const CLOCK_SLACK: Duration = Duration::from_secs(600);

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).expect("the clock is after 1970").as_nanos() as u64
}

/// An event as appended, and the fields it must come back with.
struct Case {
    stream: String,
    event: EventData,
    given_id: Option<Uuid>,
    codec: u8,
}

fn cases() -> Vec<Case> {
    let every_byte: Vec<u8> = (0..=255u8).cycle().take(3 * 256 + 7).collect();
    let long_ascii_stream = "s".repeat(STREAM_NAME_BYTES_MAX);
    let long_ascii_type = "T".repeat(EVENT_TYPE_BYTES_MAX);
    // 'é' is two bytes in UTF-8, '€' three (1023 + 1 = 1024 bytes).
    let long_wide_stream = "é".repeat(STREAM_NAME_BYTES_MAX / 2);
    let long_wide_type = format!("{}x", "€".repeat(EVENT_TYPE_BYTES_MAX / 3));
    assert_eq!((long_wide_stream.len(), long_wide_type.len()), (STREAM_NAME_BYTES_MAX, EVENT_TYPE_BYTES_MAX));

    let id_given = Uuid::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
    let mut cases = vec![
        Case {
            stream: "account-42".into(),
            event: EventData::new("AccountOpened", &b"{\"owner\":\"Ada\"}"[..])
                .with_metadata(&b"{\"correlation\":\"7f3a\"}"[..])
                .with_id(id_given),
            given_id: Some(id_given),
            codec: 3,
        },
        Case { stream: "account-42".into(), event: EventData::new("Empty", Vec::new()), given_id: None, codec: 0 },
        Case {
            stream: "account-42".into(),
            event: EventData::new("OnlyMetadata", Vec::new()).with_metadata(every_byte.clone()),
            given_id: None,
            codec: 255,
        },
        Case {
            stream: "binary".into(),
            event: EventData::new("EveryByte", every_byte.clone()).with_metadata(every_byte.clone()),
            given_id: None,
            codec: 1,
        },
        Case {
            stream: "binary".into(),
            event: EventData::new("NilId", &b"x"[..]).with_id(Uuid::nil()),
            given_id: Some(Uuid::nil()),
            codec: 0,
        },
        Case {
            stream: "binary".into(),
            event: EventData::new("MaxId", &b"y"[..]).with_id(Uuid::max()),
            given_id: Some(Uuid::max()),
            codec: 0,
        },
        Case {
            stream: long_ascii_stream.clone(),
            event: EventData::new(long_ascii_type.clone(), &b"long names"[..]),
            given_id: None,
            codec: 0,
        },
        Case { stream: long_ascii_stream, event: EventData::new(long_wide_type, Vec::new()), given_id: None, codec: 0 },
        Case {
            stream: long_wide_stream,
            event: EventData::new(long_ascii_type, vec![0u8; 100_000]).with_metadata(vec![0xFFu8; 5_000]),
            given_id: None,
            codec: 0,
        },
        Case { stream: "a".into(), event: EventData::new("b", &b"\0"[..]), given_id: None, codec: 0 },
    ];
    for case in &mut cases {
        // EventData has no getter for the codec: the case keeps it, and it is applied here.
        case.event = case.event.clone().with_codec(case.codec);
    }
    cases
}

/// What an appended event must read back as, with the bounds its timestamp must lie in.
struct Appended {
    stream: String,
    offset: u64,
    position: u64,
    event_type: String,
    given_id: Option<Uuid>,
    data: Vec<u8>,
    metadata: Vec<u8>,
    codec: u8,
    not_before: u64,
    not_after: u64,
}

fn append_all(store: &Store) -> Vec<Appended> {
    let mut appended = Vec::new();
    for case in cases() {
        let before = nanos(SystemTime::now());
        let result = store.append(&case.stream, ExpectedVersion::Any, std::slice::from_ref(&case.event)).unwrap();
        let after = nanos(SystemTime::now());
        assert_eq!(result.first_offset, result.last_offset);
        assert_eq!(result.first_position, result.last_position);
        let expected_offset = appended.iter().filter(|a: &&Appended| a.stream == case.stream).count() as u64;
        assert_eq!(result.first_offset, expected_offset, "offset of an append to {:.20}", case.stream);
        assert_eq!(result.first_position, appended.len() as u64);
        appended.push(Appended {
            stream: case.stream,
            offset: result.first_offset,
            position: result.first_position,
            event_type: case.event.event_type().to_owned(),
            given_id: case.given_id,
            data: case.event.data().to_vec(),
            metadata: case.event.metadata().to_vec(),
            codec: case.codec,
            not_before: before.saturating_sub(CLOCK_SLACK.as_nanos() as u64),
            not_after: after + CLOCK_SLACK.as_nanos() as u64,
        });
    }
    appended
}

/// Checks the events read against what was appended.
fn check(read: &[Owned], appended: &[Appended], context: &str) {
    assert_eq!(read.len(), appended.len(), "{context}: number of events");
    let mut ids = HashSet::new();
    let mut previous_timestamp = 0;
    for (event, expected) in read.iter().zip(appended) {
        let what = format!("{context}: position {}", expected.position);
        assert_eq!(event.stream, expected.stream, "{what}: stream");
        assert_eq!(event.offset, expected.offset, "{what}: offset");
        assert_eq!(event.position, expected.position, "{what}: position");
        assert_eq!(event.event_type, expected.event_type, "{what}: event type");
        assert_eq!(event.data, expected.data, "{what}: data");
        assert_eq!(event.metadata, expected.metadata, "{what}: metadata");
        assert_eq!(event.codec, expected.codec, "{what}: codec");
        match expected.given_id {
            Some(id) => assert_eq!(event.event_id, id, "{what}: given id"),
            None => {
                assert_eq!(
                    event.event_id.get_version_num(),
                    7,
                    "{what}: assigned id {} is not a UUIDv7",
                    event.event_id
                );
                let (seconds, _) = event.event_id.get_timestamp().expect("a UUIDv7 has a timestamp").to_unix();
                let id_nanos = seconds * 1_000_000_000;
                assert!(
                    (expected.not_before.saturating_sub(1_000_000_000)..=expected.not_after).contains(&id_nanos),
                    "{what}: assigned id {} carries a time far from the append",
                    event.event_id
                );
            }
        }
        assert!(ids.insert(event.event_id), "{what}: id {} appears twice", event.event_id);
        assert!(
            (expected.not_before..=expected.not_after).contains(&event.timestamp_nanos),
            "{what}: timestamp {} is far from the time of the append",
            event.timestamp_nanos
        );
        assert!(event.timestamp_nanos >= previous_timestamp, "{what}: timestamp went backwards");
        previous_timestamp = event.timestamp_nanos;
    }
}

/// Reads everything back through every read path and checks it; returns what read_all gave.
fn check_every_read_path(store: &Store, appended: &[Appended], context: &str) -> Vec<Owned> {
    let all = read_all(store, 0);
    check(&all, appended, &format!("{context}, read_all"));
    let mut streams: Vec<&str> = appended.iter().map(|a| a.stream.as_str()).collect();
    streams.dedup();
    for stream in streams {
        let expected: Vec<&Appended> = appended.iter().filter(|a| a.stream == stream).collect();
        let forwards = read_stream(store, stream, 0);
        let backwards = read_stream_backwards(store, stream, None);
        assert_eq!(forwards.len(), expected.len(), "{context}: read_stream({stream:.20})");
        assert_eq!(backwards.iter().rev().cloned().collect::<Vec<_>>(), forwards, "{context}: backwards");
        for event in forwards {
            assert_eq!(all[event.position as usize], event, "{context}: read_stream and read_all disagree");
        }
        assert_eq!(store.stream_version(stream), Some(expected.len() as u64 - 1), "{context}: version");
    }
    all
}

#[test]
fn every_field_round_trips_through_append_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let appended = append_all(&store);
    let first_read = check_every_read_path(&store, &appended, "before close");
    // A RecordedEvent's payload is a slice of the mapping; it stays valid after the store is closed.
    let held = store.read_all(0).unwrap().next().unwrap().unwrap();
    store.close().unwrap();
    assert_eq!(Owned::from(&held), first_read[0], "an event held across close changed");

    let store = Store::open(dir.path()).unwrap();
    assert!(support::opened_from_index(&store), "{:?}", store.recovery_report());
    let reopened = check_every_read_path(&store, &appended, "after reopen");
    assert_eq!(reopened, first_read, "ids or timestamps changed across close and reopen");
    drop(store);

    remove_index(dir.path());
    let store = Store::open(dir.path()).unwrap();
    assert!(store.recovery_report().index_tables == 0);
    let rebuilt = check_every_read_path(&store, &appended, "after rebuild");
    assert_eq!(rebuilt, first_read, "ids or timestamps changed across a rebuilt index");
}

#[test]
fn timestamps_never_go_backwards_and_assigned_ids_are_distinct() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), Options { segment_size_bytes: 8192, ..Default::default() }).unwrap();
    let batch: Vec<EventData> = (0..20).map(|i| EventData::new("Tick", vec![i as u8; 100])).collect();
    for round in 0..10 {
        store.append(&format!("clock-{}", round % 3), ExpectedVersion::Any, &batch).unwrap();
    }
    let all = read_all(&store, 0);
    assert_eq!(all.len(), 200);
    let ids: HashSet<Uuid> = all.iter().map(|event| event.event_id).collect();
    assert_eq!(ids.len(), all.len(), "assigned ids repeat");
    assert!(all.iter().all(|event| event.event_id.get_version_num() == 7));
    for pair in all.windows(2) {
        assert!(pair[0].timestamp_nanos <= pair[1].timestamp_nanos, "timestamp went backwards: {pair:?}");
    }
    store.close().unwrap();
    let store = Store::open_with(dir.path(), Options { segment_size_bytes: 8192, ..Default::default() }).unwrap();
    let last = all.last().unwrap().timestamp_nanos;
    store.append("clock-0", ExpectedVersion::Any, &batch[..1]).unwrap();
    let after_reopen = read_all(&store, 200);
    assert!(after_reopen[0].timestamp_nanos >= last, "timestamp went backwards across a reopen");
}
