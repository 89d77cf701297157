//! `Store::scan`, the borrowed visitor, visits exactly the events `read_all` yields, from any position: across
//! segments, with lifecycles hiding events, and over compacted segments with gaps in their positions. It
//! stops where the visitor says and returns where to go on; a damaged record is `Corrupt` after every event
//! before it was visited, as `read_all` yields them.

use std::ops::ControlFlow;

use annals::{Error, EventData, ExpectedVersion, Options, Store};

mod support;
use support::{find_frame, flip_byte, read_all, Owned, Rng};

fn scanned(store: &Store, from: u64) -> (Vec<Owned>, u64) {
    let mut seen = Vec::new();
    let next = store
        .scan(from, |event| {
            seen.push(Owned::from(event));
            ControlFlow::Continue(())
        })
        .unwrap();
    (seen, next)
}

fn options() -> Options {
    Options { segment_size_bytes: 8192, compaction_dead_percent: 0, ..Default::default() }
}

#[test]
fn scan_visits_exactly_what_read_all_yields_from_every_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let mut rng = Rng(23);
    for i in 0..300u64 {
        let stream = ["acct-1", "acct-2", "gone-3", "trunc-4"][rng.range(0, 4) as usize];
        let event = EventData::new("E", vec![i as u8; rng.range(0, 300) as usize]).with_metadata(vec![1, 2]);
        store.append(stream, ExpectedVersion::Any, &[event.with_codec((i % 3) as u8)]).unwrap();
    }
    let check = |store: &Store, what: &str| {
        let end = store.head_position().map_or(0, |head| head + 1);
        for from in (0..=end + 1).step_by(7).chain([end, end + 1]) {
            let expected = read_all(store, from);
            let (seen, next) = scanned(store, from);
            assert_eq!(seen, expected, "{what}: scan({from})");
            assert_eq!(next, from.max(end), "{what}: scan({from}) goes on from the committed end");
        }
    };
    check(&store, "plain");
    store.delete_stream("gone-3", ExpectedVersion::Any).unwrap();
    store.truncate_before("trunc-4", 20).unwrap();
    check(&store, "lifecycles hiding events");
    store.flush_index().unwrap();
    assert!(store.compact().unwrap().segments > 0);
    check(&store, "compacted");
}

#[test]
fn a_visitor_stops_the_scan_and_a_later_scan_goes_on_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    for i in 0..100u8 {
        store.append("acct-1", ExpectedVersion::Any, &[EventData::new("E", vec![i; 100])]).unwrap();
    }
    let mut positions = Vec::new();
    let mut from = 0;
    loop {
        // Ten events a call, as a projection catching up in batches would.
        let mut batch = 0;
        let next = store
            .scan(from, |event| {
                positions.push(event.position());
                batch += 1;
                if batch == 10 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        if batch == 0 {
            assert_eq!(next, 100);
            break;
        }
        from = next;
    }
    assert_eq!(positions, (0..100).collect::<Vec<_>>());
}

#[test]
fn a_damaged_record_is_corrupt_after_every_event_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    for i in 0..120u8 {
        store.append("acct-1", ExpectedVersion::Any, &[EventData::new("E", vec![i; 100])]).unwrap();
    }
    store.close().unwrap();
    let (path, frame) = find_frame(dir.path(), 77);
    flip_byte(&path, frame.at + frame.len - 1, 0x40);
    let store = Store::open_with(dir.path(), options()).unwrap();
    let mut seen = Vec::new();
    let result = store.scan(0, |event| {
        seen.push(event.position());
        ControlFlow::Continue(())
    });
    assert!(
        matches!(result, Err(Error::Corrupt { ref file, offset, .. }) if *file == path && offset == frame.at as u64),
        "{result:?}"
    );
    assert_eq!(seen, (0..77).collect::<Vec<_>>());
}
