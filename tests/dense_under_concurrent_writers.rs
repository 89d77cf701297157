//! Sixteen threads appending at once through clones of one `Store` never break the numbering: afterwards every
//! stream's offsets are dense from 0, global positions are dense from 0 with no gap or duplicate in `read_all`,
//! every event appears exactly once, each atomic append occupies consecutive positions, and every
//! `AppendResult` a thread got back names exactly the events it appended. Threads share some streams (with
//! `ExpectedVersion::Any`), own others (with exact expected versions that must never conflict), and some
//! append atomically to a shared and an own stream at once. Segments are small so that rolls happen under the
//! load. The same state is read after a clean reopen and after a reopen that rebuilds the index.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Barrier;

use annals::{AppendResult, EventData, ExpectedVersion, Store, StreamAppend};
use support::{read_all, read_stream, remove_index, small_options, state, Owned};

const THREADS: usize = 16;
const APPENDS_PER_THREAD: usize = 40;
const SHARED_STREAMS: usize = 3;

/// What one thread appended in one call: per stream, the result and the payloads in order.
type Appended = Vec<(String, AppendResult, Vec<Vec<u8>>)>;

fn payload(thread: usize, append: usize, event: usize) -> Vec<u8> {
    format!("thread-{thread}/append-{append}/event-{event}").into_bytes()
}

fn events(thread: usize, append: usize, count: usize) -> (Vec<EventData>, Vec<Vec<u8>>) {
    let payloads: Vec<Vec<u8>> = (0..count).map(|event| payload(thread, append, event)).collect();
    let events = payloads.iter().map(|data| EventData::new(format!("Written{thread}"), data.clone())).collect();
    (events, payloads)
}

/// The body of one writer thread. Threads 0..8 append to shared streams, 8..14 to their own stream with exact
/// expected versions, 14..16 atomically to a shared stream and their own stream.
fn run_writer(store: &Store, thread: usize) -> Appended {
    let mut appended = Appended::new();
    let own = format!("own-{thread}");
    let mut own_version: Option<u64> = None;
    for append in 0..APPENDS_PER_THREAD {
        let count = 1 + (thread + append) % 3;
        let expected_own = own_version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        match thread {
            0..8 => {
                let stream = format!("shared-{}", (thread + append) % SHARED_STREAMS);
                let (events, payloads) = events(thread, append, count);
                let result = store.append(&stream, ExpectedVersion::Any, &events).unwrap();
                appended.push((stream, result, payloads));
            }
            8..14 => {
                let (events, payloads) = events(thread, append, count);
                let result = store.append(&own, expected_own, &events).unwrap();
                own_version = Some(result.last_offset);
                appended.push((own.clone(), result, payloads));
            }
            _ => {
                let shared = format!("shared-{}", append % SHARED_STREAMS);
                let (shared_events, shared_payloads) = events(thread, append, count);
                let (own_events, own_payloads) = events(thread, append + APPENDS_PER_THREAD, 1);
                let results = store
                    .append_multi(&[
                        StreamAppend { stream: shared.clone(), expected: ExpectedVersion::Any, events: shared_events },
                        StreamAppend { stream: own.clone(), expected: expected_own, events: own_events },
                    ])
                    .unwrap();
                assert_eq!(results.len(), 2);
                assert_eq!(results[0].last_position + 1, results[1].first_position, "parts are consecutive");
                own_version = Some(results[1].last_offset);
                appended.push((shared, results[0], shared_payloads));
                appended.push((own.clone(), results[1], own_payloads));
            }
        }
    }
    appended
}

fn check(store: &Store, appended: &[Appended]) {
    let all = read_all(store, 0);
    let total: usize = appended.iter().flatten().map(|(_, _, payloads)| payloads.len()).sum();
    assert_eq!(all.len(), total, "read_all holds every appended event, once");
    assert_eq!(store.head_position(), Some(total as u64 - 1));
    for (i, event) in all.iter().enumerate() {
        assert_eq!(event.position, i as u64, "positions are dense from 0, without gaps or duplicates");
    }
    let distinct: HashSet<&[u8]> = all.iter().map(|event| event.data.as_slice()).collect();
    assert_eq!(distinct.len(), total, "no event was written twice");

    // Every stream's offsets are dense from 0 and its events are in position order.
    let mut streams: BTreeMap<&str, Vec<&Owned>> = BTreeMap::new();
    for event in &all {
        streams.entry(&event.stream).or_default().push(event);
    }
    assert_eq!(store.stream_count(), streams.len());
    for (stream, events) in &streams {
        let read = read_stream(store, stream, 0);
        assert_eq!(read.len(), events.len(), "stream {stream}");
        for (offset, (from_stream, from_all)) in read.iter().zip(events).enumerate() {
            assert_eq!(from_stream.offset, offset as u64, "stream {stream}: offsets are dense from 0");
            assert_eq!(from_stream, *from_all, "stream {stream}: read_stream and read_all disagree");
        }
        assert_eq!(store.stream_version(stream), Some(events.len() as u64 - 1), "stream {stream}");
    }

    // Every result names exactly the events its append wrote, at consecutive offsets and positions.
    for (thread, calls) in appended.iter().enumerate() {
        let mut last_position = None;
        for (stream, result, payloads) in calls {
            let count = payloads.len() as u64;
            assert_eq!(result.last_offset - result.first_offset + 1, count, "thread {thread}: {result:?}");
            assert_eq!(result.last_position - result.first_position + 1, count, "thread {thread}: {result:?}");
            assert!(last_position < Some(result.first_position), "thread {thread}: its appends are in order");
            last_position = Some(result.last_position);
            for (i, data) in payloads.iter().enumerate() {
                let event = &all[(result.first_position + i as u64) as usize];
                assert_eq!(&event.stream, stream, "thread {thread}: {result:?}");
                assert_eq!(event.offset, result.first_offset + i as u64, "thread {thread}: {result:?}");
                assert_eq!(&event.data, data, "thread {thread}: {result:?}");
                assert_eq!(event.event_type, format!("Written{thread}"));
            }
        }
    }
}

#[test]
fn offsets_and_positions_stay_dense_under_sixteen_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let options = || small_options(16 << 10);
    let store = Store::open_with(dir.path(), options()).unwrap();
    let start = Barrier::new(THREADS);
    let appended: Vec<Appended> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (store, start) = (store.clone(), &start);
                scope.spawn(move || {
                    start.wait();
                    run_writer(&store, thread)
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().expect("a writer thread panicked")).collect()
    });
    assert!(support::segment_paths(dir.path()).len() > 3, "the load is meant to roll segments");
    check(&store, &appended);
    let before = state(&store, &[]);
    store.close().unwrap();

    let store = Store::open_with(dir.path(), options()).unwrap();
    assert!(support::opened_from_index(&store));
    check(&store, &appended);
    assert_eq!(state(&store, &[]), before, "state changed across a clean reopen");
    drop(store);

    remove_index(dir.path());
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert!(store.recovery_report().index_tables == 0);
    check(&store, &appended);
    assert_eq!(state(&store, &[]), before, "state changed across a rebuilt index");
}
