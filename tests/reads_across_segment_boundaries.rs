//! Every read path returns exactly the right events when streams are interleaved over many tiny segments
//! (4 KiB) with a sparse index: `read_stream` from every offset, `read_stream_backwards` from every offset and
//! from the end, and `read_all` from every position are compared with an in-memory model, event by event and
//! field by field. Events of many sizes make segment boundaries fall everywhere, including an event that fills
//! a segment exactly. Offsets and positions past the end yield nothing, as do streams that do not exist. The
//! same holds after a clean reopen and after a reopen that rebuilds the index.

mod support;

use annals::{EventData, ExpectedVersion, Store};
use support::{
    assert_store_matches_model, read_all, read_stream, read_stream_backwards, remove_index, segment_paths,
    small_options, Model, Rng,
};
use uuid::Uuid;

const STREAMS: u64 = 7;

/// Appends a few hundred events of varied sizes to interleaved streams, mirroring them in a model.
fn fill(store: &Store, model: &mut Model, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut id = u128::from(seed) << 64;
    // Large events come alone: three of them would not fit into one segment together.
    let mut event = |rng: &mut Rng, alone: bool| {
        id += 1;
        let size = match rng.below(10) {
            0 => 0,
            7..=9 if alone => 500 + rng.below(1500) as usize,
            _ => rng.below(120) as usize,
        };
        let event_type = format!("Type{}", rng.below(5));
        let metadata_len = rng.below(3) as usize * 7;
        EventData::new(event_type, rng.bytes(size)).with_metadata(rng.bytes(metadata_len)).with_id(Uuid::from_u128(id))
    };
    for _ in 0..220 {
        // Skewed choice: stream 0 is busy, the last one is rare.
        let stream = format!("stream-{}", rng.below(STREAMS).min(rng.below(STREAMS)));
        let count = 1 + rng.below(3) as usize;
        let events: Vec<EventData> = (0..count).map(|_| event(&mut rng, count == 1)).collect();
        let result = store.append(&stream, ExpectedVersion::Any, &events).unwrap();
        assert_eq!(result, model.append(&stream, &events));
    }
    // An event of exactly one segment's capacity (4096 − 64 bytes): it gets a segment to itself.
    let data = vec![0xAB; 4032 - 88 - "big".len() - "Big".len()];
    let big = [EventData::new("Big", data).with_id(Uuid::from_u128(id + 1))];
    let result = store.append("big", ExpectedVersion::NoStream, &big).unwrap();
    assert_eq!(result, model.append("big", &big));
    let after = [EventData::new("After", &b"small"[..]).with_id(Uuid::from_u128(id + 2))];
    let result = store.append("stream-1", ExpectedVersion::Any, &after).unwrap();
    assert_eq!(result, model.append("stream-1", &after));
}

/// Reads that must yield nothing: past the end, and of streams that do not exist.
fn assert_nothing_past_the_end(store: &Store, model: &Model) {
    let total = model.all.len() as u64;
    for from in [total, total + 1, total + 1000, u64::MAX] {
        assert!(read_all(store, from).is_empty(), "read_all({from})");
    }
    for stream in model.streams.keys() {
        let len = model.version(stream).unwrap() + 1;
        for from in [len, len + 1, len + 100, u64::MAX] {
            assert!(read_stream(store, stream, from).is_empty(), "read_stream({stream}, {from})");
        }
        // Backwards from past the end starts at the last event.
        let from_far = read_stream_backwards(store, stream, Some(u64::MAX));
        assert_eq!(from_far, read_stream_backwards(store, stream, None), "{stream}");
        assert_eq!(from_far.len() as u64, len);
    }
    for unknown in ["unknown", "stream-", "stream-10", "Stream-0", "stream-0 ", "big2"] {
        assert_eq!(store.stream_version(unknown), None);
        assert!(read_stream(store, unknown, 0).is_empty(), "{unknown}");
        assert!(read_stream_backwards(store, unknown, None).is_empty(), "{unknown}");
        assert!(read_stream_backwards(store, unknown, Some(0)).is_empty(), "{unknown}");
    }
}

fn run(index_interval_events: u32) {
    let dir = tempfile::tempdir().unwrap();
    let options = || small_options(4096);
    let store = Store::open_with(dir.path(), options()).unwrap();
    let mut model = Model::default();
    fill(&store, &mut model, u64::from(index_interval_events));
    let segments = segment_paths(dir.path()).len();
    assert!(segments > 20, "only {segments} segments: the test needs many boundaries");
    let big_position = model.streams["big"][0];
    let (big_segment, big_frame) = support::find_frame(dir.path(), big_position);
    assert_eq!((big_frame.at, big_frame.len), (64, 4032), "the big event fills its segment");
    assert_eq!(support::raw_frames(&big_segment).len(), 1);
    let context = format!("interval {index_interval_events}");
    assert_store_matches_model(&store, &model, &context);
    assert_nothing_past_the_end(&store, &model);
    store.close().unwrap();

    let store = Store::open_with(dir.path(), options()).unwrap();
    assert!(support::opened_from_index(&store));
    assert_store_matches_model(&store, &model, &format!("{context}, reopened"));
    assert_nothing_past_the_end(&store, &model);
    drop(store);

    remove_index(dir.path());
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert!(store.recovery_report().index_tables == 0);
    assert_store_matches_model(&store, &model, &format!("{context}, rebuilt"));
    assert_nothing_past_the_end(&store, &model);
}

#[test]
fn every_read_from_every_start_matches_the_model_with_index_interval_4() {
    run(4);
}

#[test]
fn every_read_from_every_start_matches_the_model_with_index_interval_1() {
    run(1);
}

#[test]
fn every_read_from_every_start_matches_the_model_with_index_interval_7() {
    run(7);
}

#[test]
fn an_empty_store_reads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small_options(4096)).unwrap();
    assert_eq!(store.head_position(), None);
    assert_eq!(store.stream_count(), 0);
    assert_nothing_past_the_end(&store, &Model::default());
    assert!(read_all(&store, 0).is_empty());
}
