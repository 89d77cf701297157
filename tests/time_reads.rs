//! Commit times never go backwards along positions, so time reads need no scan. `position_at(t)` is the first
//! position committed at or after `t` (or `None`), and `read_stream_between(stream, from, to)` is the stream's
//! events committed between `from` and `to`, both included, in offset order: the audit log of a period. Both
//! are compared with a scan of every event, at every event's own commit time and between them, across segment
//! rolls and index tables, before and after a reopen.

mod support;

use std::time::{Duration, SystemTime};

use annals::{EventData, ExpectedVersion, Store};
use support::{read_all, read_stream, small_options, Owned};

const STREAMS: [&str; 3] = ["account-1", "account-2", "audit"];

fn at(nanos: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos)
}

fn check(store: &Store, context: &str) {
    let all = read_all(store, 0);
    assert!(all.windows(2).all(|pair| pair[0].timestamp_nanos <= pair[1].timestamp_nanos), "{context}");
    // Every commit time, one nanosecond either side of it, and the extremes.
    let mut instants: Vec<u64> = all
        .iter()
        .flat_map(|event| {
            let t = event.timestamp_nanos;
            [t.saturating_sub(1), t, t + 1]
        })
        .collect();
    instants.extend([0, u64::MAX / 2]);
    instants.sort_unstable();
    instants.dedup();
    for &t in &instants {
        let expected = all.iter().find(|event| event.timestamp_nanos >= t).map(|event| event.position);
        assert_eq!(store.position_at(at(t)), expected, "{context}: position_at({t})");
    }
    // Periods: between pairs of instants, per stream.
    let step = (instants.len() / 12).max(1);
    for stream in STREAMS {
        let events = read_stream(store, stream, 0);
        for from in instants.iter().step_by(step) {
            for to in instants.iter().step_by(step) {
                let read: Vec<Owned> = store
                    .read_stream_between(stream, at(*from), at(*to))
                    .unwrap()
                    .map(|event| Owned::from(&event.unwrap()))
                    .collect();
                let expected: Vec<Owned> =
                    events.iter().filter(|event| (*from..=*to).contains(&event.timestamp_nanos)).cloned().collect();
                assert_eq!(read, expected, "{context}: read_stream_between({stream}, {from}, {to})");
            }
        }
    }
    assert_eq!(store.read_stream_between("nobody", at(0), at(u64::MAX / 2)).unwrap().count(), 0);
}

#[test]
fn time_reads_match_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small_options(4096)).unwrap();
    for i in 0..400u64 {
        let stream = STREAMS[(i % 7 % 3) as usize];
        let events: Vec<EventData> = (0..1 + i % 3).map(|_| EventData::new("Happened", vec![i as u8; 60])).collect();
        store.append(stream, ExpectedVersion::Any, &events).unwrap();
        if i % 40 == 0 {
            // Commit times far apart as well as close together.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    assert!(support::segment_paths(dir.path()).len() > 20);
    check(&store, "live");
    store.close().unwrap();
    let store = Store::open_with(dir.path(), small_options(4096)).unwrap();
    check(&store, "reopened");
}

#[test]
fn an_empty_store_has_no_position_at_any_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.position_at(SystemTime::UNIX_EPOCH), None);
    assert_eq!(store.position_at(SystemTime::now()), None);
    assert_eq!(store.read_stream_between("s", SystemTime::UNIX_EPOCH, SystemTime::now()).unwrap().count(), 0);
    // `from` after `to`: nothing.
    store.append("s", ExpectedVersion::Any, &[EventData::new("E", &b"x"[..])]).unwrap();
    let later = SystemTime::now() + Duration::from_secs(3600);
    assert_eq!(store.read_stream_between("s", later, SystemTime::UNIX_EPOCH).unwrap().count(), 0);
    assert_eq!(store.read_stream_between("s", SystemTime::UNIX_EPOCH, later).unwrap().count(), 1);
}
