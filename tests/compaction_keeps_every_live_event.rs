//! Compaction gives back the space of events that streams' lifecycles hide (soft deletion, truncation,
//! `max_count`, a tombstone) and keeps every event a read can still return, with the same position, offset,
//! id and bytes: through every read (all, stream forwards and backwards, from any offset or position,
//! category, event type), after a reopen, and after the index is rebuilt from the compacted log. A soft-deleted
//! stream's numbering goes on, and `verify` passes.

use annals::{EventData, ExpectedVersion, Options, Store, StreamMetadata};

mod support;
use support::{collect, read_all, read_stream, read_stream_backwards, Owned, Rng};

const STREAMS: [&str; 6] = ["live-a", "live-b", "gone-c", "trunc-d", "count-e", "tomb-f"];

/// 0: no background compactor (this test compacts by hand, to compare before and after), and `compact`
/// removes every hidden event.
fn options() -> Options {
    Options { segment_size_bytes: 8192, compaction_dead_percent: 0, ..Default::default() }
}

fn segment_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".seg"))
        .map(|entry| entry.metadata().unwrap().len())
        .sum()
}

/// Everything the store shows, read every way.
#[derive(Debug, PartialEq)]
struct Shown {
    all: Vec<Owned>,
    streams: Vec<(Vec<Owned>, Vec<Owned>)>,
    categories: Vec<Vec<Owned>>,
    types: Vec<Vec<Owned>>,
    versions: Vec<Option<u64>>,
}

fn shown(store: &Store) -> Shown {
    let readable = |stream: &&&str| **stream != "tomb-f";
    Shown {
        all: read_all(store, 0),
        streams: STREAMS
            .iter()
            .filter(readable)
            .map(|stream| (read_stream(store, stream, 0), read_stream_backwards(store, stream, None)))
            .collect(),
        categories: ["live", "gone", "trunc", "count", "tomb"]
            .iter()
            .map(|category| collect(store.read_category(category, 0).unwrap()))
            .collect(),
        types: ["Small", "Large"].iter().map(|kind| collect(store.read_event_type(kind, 0).unwrap())).collect(),
        versions: STREAMS.iter().map(|stream| store.stream_version(stream)).collect(),
    }
}

#[test]
fn compaction_removes_what_lifecycles_hide_and_keeps_the_rest_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let mut rng = Rng(7);
    for i in 0..600u64 {
        let stream = STREAMS[rng.range(0, STREAMS.len() as u64) as usize];
        let (kind, len) = if i % 7 == 0 { ("Large", 700) } else { ("Small", rng.range(1, 200) as usize) };
        let data: Vec<u8> = (0..len).map(|k| (i as usize + k) as u8).collect();
        store.append(stream, ExpectedVersion::Any, &[EventData::new(kind, data)]).unwrap();
    }
    let gone_version = store.stream_version("gone-c").unwrap();
    store.delete_stream("gone-c", ExpectedVersion::Exact(gone_version)).unwrap();
    store.truncate_before("trunc-d", 60).unwrap();
    store.set_stream_metadata("count-e", StreamMetadata { max_count: Some(5), ..Default::default() }).unwrap();
    store.tombstone("tomb-f", ExpectedVersion::Any).unwrap();
    // A few more, so that the segments holding the deletions are sealed.
    for i in 0..40u64 {
        store.append("live-a", ExpectedVersion::Any, &[EventData::new("Small", vec![i as u8; 150])]).unwrap();
    }
    store.flush_index().unwrap();
    let before = shown(&store);
    let bytes_before = segment_bytes(dir.path());
    // A read from a position whose event compaction will remove.
    let hidden_position = {
        let mut raw = store.read_stream("live-a", 0).unwrap().map(|event| event.unwrap().position());
        let first_live = raw.next().unwrap();
        (0..first_live).find(|position| !before.all.iter().any(|event| event.position == *position)).unwrap()
    };
    let from_hidden = read_all(&store, hidden_position);

    let report = store.compact().unwrap();
    assert!(report.segments > 0 && report.events_removed > 0, "{report:?}");
    let bytes_after = segment_bytes(dir.path());
    assert_eq!(bytes_before - bytes_after, report.bytes_reclaimed, "{report:?}");
    assert!(bytes_after * 10 < bytes_before * 8, "only {bytes_before} → {bytes_after} bytes");
    assert_eq!(store.metrics().compactions, report.segments);
    assert_eq!(shown(&store), before, "compaction changed what reads show");
    assert_eq!(read_all(&store, hidden_position), from_hidden, "read_all from a removed position");
    for (stream, (forward, _)) in STREAMS.iter().filter(|s| **s != "tomb-f").zip(&before.streams) {
        for from in [0, 1, 30, 59, 60, 61] {
            let expected: Vec<Owned> = forward.iter().filter(|event| event.offset >= from).cloned().collect();
            assert_eq!(read_stream(&store, stream, from), expected, "read_stream({stream}, {from})");
        }
    }
    let verified = store.verify().unwrap();
    assert!(verified.is_ok(), "{:?}", verified.problem);
    assert!(verified.compacted_segments > 0);
    // Nothing more to remove: a second run leaves every segment alone.
    assert_eq!(store.compact().unwrap().segments, 0);

    // The soft-deleted stream's numbering goes on.
    let again = store.append("gone-c", ExpectedVersion::Exact(gone_version), &[EventData::new("Small", vec![1])]);
    assert_eq!(again.unwrap().first_offset, gone_version + 1);
    let after = shown(&store);
    store.close().unwrap();

    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(shown(&store), after, "after a reopen");
    assert!(store.verify().unwrap().is_ok());
    store.close().unwrap();

    // The index rebuilt from the compacted log.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(shown(&store), after, "after the index was rebuilt from the compacted log");
    let verified = store.verify().unwrap();
    assert!(verified.is_ok(), "{:?}", verified.problem);
    let expected: Vec<Owned> = after.all.iter().filter(|event| event.position >= hidden_position).cloned().collect();
    assert_eq!(read_all(&store, hidden_position), expected, "read_all from a removed position, index rebuilt");
    store.close().unwrap();
}

#[test]
fn a_store_without_lifecycle_metadata_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    for i in 0..200u64 {
        store.append("live-a", ExpectedVersion::Any, &[EventData::new("Small", vec![i as u8; 100])]).unwrap();
    }
    store.flush_index().unwrap();
    let before = segment_bytes(dir.path());
    assert_eq!(store.compact().unwrap(), annals::CompactionReport::default());
    assert_eq!(segment_bytes(dir.path()), before);
}

#[test]
fn the_background_compactor_gives_space_back_after_a_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_size_bytes: 8192, ..Default::default() };
    let store = Store::open_with(dir.path(), options.clone()).unwrap();
    for i in 0..300u64 {
        let stream = if i % 4 == 0 { "live-a" } else { "gone-c" };
        store.append(stream, ExpectedVersion::Any, &[EventData::new("Small", vec![i as u8; 150])]).unwrap();
    }
    store.flush_index().unwrap();
    let before = segment_bytes(dir.path());
    let live = read_stream(&store, "live-a", 0);
    store.delete_stream("gone-c", ExpectedVersion::Any).unwrap();
    // Nobody calls `compact`: the deletion wakes the compactor.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while store.metrics().compactions == 0 {
        assert!(std::time::Instant::now() < deadline, "the background compactor did nothing in a minute");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let metrics = store.metrics();
    assert!(metrics.bytes_reclaimed > 0);
    assert!(segment_bytes(dir.path()) < before);
    assert_eq!(read_stream(&store, "live-a", 0), live);
    store.close().unwrap();
    let store = Store::open_with(dir.path(), options).unwrap();
    assert_eq!(read_stream(&store, "live-a", 0), live);
    assert!(store.verify().unwrap().is_ok());
}

/// Fills a store with a deleted stream interleaved with a live one, deletes it, compacts, and returns the
/// live stream's events.
fn compacted_store(dir: &std::path::Path) -> Vec<Owned> {
    let store = Store::open_with(dir, options()).unwrap();
    for i in 0..300u64 {
        let stream = if i % 3 == 0 { "live-a" } else { "gone-c" };
        store.append(stream, ExpectedVersion::Any, &[EventData::new("Small", vec![i as u8; 150])]).unwrap();
    }
    store.delete_stream("gone-c", ExpectedVersion::Any).unwrap();
    for i in 0..60u64 {
        store.append("live-a", ExpectedVersion::Any, &[EventData::new("Small", vec![i as u8; 150])]).unwrap();
    }
    store.flush_index().unwrap();
    assert!(store.compact().unwrap().segments > 0);
    let live = read_stream(&store, "live-a", 0);
    store.close().unwrap();
    live
}

#[test]
fn max_age_reads_find_their_start_among_removed_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    for i in 0..200u64 {
        store.append("sensor-1", ExpectedVersion::Any, &[EventData::new("Small", vec![i as u8; 150])]).unwrap();
    }
    // `max_age` is kept in whole seconds (format-spec §15.3); the young events have 3 s to be read in.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let metadata = StreamMetadata { max_age: Some(std::time::Duration::from_secs(3)), ..Default::default() };
    store.set_stream_metadata("sensor-1", metadata).unwrap();
    for i in 0..100u64 {
        store.append("sensor-1", ExpectedVersion::Any, &[EventData::new("Small", vec![i as u8; 150])]).unwrap();
    }
    store.flush_index().unwrap();
    let young = read_stream(&store, "sensor-1", 0);
    assert!(
        !young.is_empty() && young[0].offset >= 200,
        "the old events are hidden: {:?}",
        young.first().map(|e| e.offset)
    );
    assert!(store.compact().unwrap().events_removed > 0);
    // The young events may have aged meanwhile on a slow machine: what is shown now is a suffix of before.
    let after = read_stream(&store, "sensor-1", 0);
    assert!(!after.is_empty() && young.ends_with(&after), "reads after compaction show a suffix of before");
    let backwards = read_stream_backwards(&store, "sensor-1", None);
    assert_eq!(backwards.into_iter().rev().collect::<Vec<_>>(), after);
}

#[test]
fn a_backup_of_a_compacted_store_opens_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let live = compacted_store(dir.path());
    let store = Store::open_with(dir.path(), options()).unwrap();
    let copy = tempfile::tempdir().unwrap();
    let target = copy.path().join("copy");
    store.backup(&target).unwrap();
    store.close().unwrap();
    let restored = Store::open_with(&target, options()).unwrap();
    assert_eq!(read_stream(&restored, "live-a", 0), live);
    assert!(restored.verify().unwrap().is_ok());
}

#[test]
fn a_read_only_store_follows_a_writer_that_compacts() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open_with(dir.path(), options()).unwrap();
    let reader = Store::open_read_only_with(dir.path(), options()).unwrap();
    for i in 0..300u64 {
        let stream = if i % 3 == 0 { "live-a" } else { "gone-c" };
        writer.append(stream, ExpectedVersion::Any, &[EventData::new("Small", vec![i as u8; 150])]).unwrap();
    }
    writer.delete_stream("gone-c", ExpectedVersion::Any).unwrap();
    writer.flush_index().unwrap();
    let before = read_stream(&writer, "live-a", 0);
    assert!(writer.compact().unwrap().segments > 0);
    for i in 0..60u64 {
        writer.append("live-a", ExpectedVersion::Any, &[EventData::new("Small", vec![i as u8; 150])]).unwrap();
    }
    let expected = read_stream(&writer, "live-a", 0);
    assert!(expected.starts_with(&before));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while reader.stream_version("live-a") != writer.stream_version("live-a") {
        assert!(std::time::Instant::now() < deadline, "the reader did not follow");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(read_stream(&reader, "live-a", 0), expected);
    assert_eq!(read_all(&reader, 0), read_all(&writer, 0));
    // A reader opened after the compaction reads the compacted segments from the start.
    let late = Store::open_read_only_with(dir.path(), options()).unwrap();
    assert_eq!(read_stream(&late, "live-a", 0), expected);
}

#[test]
fn a_damaged_relocation_section_is_corrupt_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    compacted_store(dir.path());
    let compacted = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            path.extension().is_some_and(|ext| ext == "seg")
                && std::fs::read(path).unwrap()[8..12] == annals::COMPACTED_FORMAT_VERSION.to_le_bytes()
        })
        .expect("a compacted segment");
    let mut bytes = std::fs::read(&compacted).unwrap();
    let relocation_at = u32::from_le_bytes(bytes[40..44].try_into().unwrap()) as usize;
    bytes[relocation_at + 5] ^= 0x10;
    std::fs::write(&compacted, &bytes).unwrap();
    // The index no longer covers it without a read of the segment: open, then read everything.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    match Store::open_with(dir.path(), options()) {
        Err(annals::Error::Corrupt { file, .. }) => assert_eq!(file, compacted),
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("a damaged relocation section was trusted"),
    }
}

/// An event an earlier compaction kept (just below a truncation point) stays when a later compaction, under a
/// later truncation, removes the events after it in other segments but leaves its segment alone (too little
/// hidden there). Once the metadata hides less, reads show the kept events on both sides of the gap, the same
/// forwards and backwards, before and after the index is rebuilt from the log.
#[test]
fn reads_step_over_gaps_that_later_compactions_leave_between_kept_events() {
    let dir = tempfile::tempdir().unwrap();
    let by_hand = Options { segment_size_bytes: 8192, compaction_dead_percent: 0, ..Default::default() };
    let store = Store::open_with(dir.path(), by_hand.clone()).unwrap();
    let append = |store: &Store, stream: &str, n: u64| {
        for i in 0..n {
            store.append(stream, ExpectedVersion::Any, &[EventData::new("E", vec![i as u8; 200])]).unwrap();
        }
    };
    for _ in 0..40 {
        append(&store, "sensor-s", 1);
        append(&store, "live-l", 3);
    }
    append(&store, "sensor-s", 100);
    append(&store, "live-l", 60);
    store.truncate_before("sensor-s", 20).unwrap();
    store.flush_index().unwrap();
    assert!(store.compact().unwrap().segments > 0);
    store.close().unwrap();

    // The second compaction leaves segments where little is hidden alone: offset 19, kept by the first (just
    // below its truncation point), sits among live-l's events.
    let by_share = Options { compaction_dead_percent: 50, compaction_interval: std::time::Duration::MAX, ..by_hand };
    let store = Store::open_with(dir.path(), by_share).unwrap();
    store.truncate_before("sensor-s", 130).unwrap();
    store.flush_index().unwrap();
    store.compact().unwrap();
    store.set_stream_metadata("sensor-s", StreamMetadata::default()).unwrap();
    let forward = read_stream(&store, "sensor-s", 0);
    let offsets: Vec<u64> = forward.iter().map(|event| event.offset).collect();
    assert!(offsets.contains(&19) && offsets.contains(&129), "{offsets:?}");
    assert!(offsets.windows(2).any(|pair| pair[1] > pair[0] + 1), "a gap between kept events: {offsets:?}");
    let mut backward = read_stream_backwards(&store, "sensor-s", None);
    backward.reverse();
    assert_eq!(backward, forward);
    assert_eq!(
        read_stream(&store, "sensor-s", 25),
        forward.iter().filter(|e| e.offset >= 25).cloned().collect::<Vec<_>>()
    );
    assert!(store.verify().unwrap().is_ok());
    store.close().unwrap();

    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(read_stream(&store, "sensor-s", 0), forward, "index rebuilt from the compacted log");
    let mut backward = read_stream_backwards(&store, "sensor-s", None);
    backward.reverse();
    assert_eq!(backward, forward);
    assert!(store.verify().unwrap().is_ok());
}

/// `compaction_dead_percent` is "at least": a segment whose hidden share is exactly the threshold is compacted.
#[test]
fn a_segment_hidden_at_exactly_the_threshold_is_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_size_bytes: 8192, compaction_dead_percent: 50, ..Default::default() };
    let store = Store::open_with(dir.path(), options).unwrap();
    // Frames of 88 + 6 + 1 + 105 = 200 bytes (a multiple of 8): 40 fill the first segment's 8,128 bytes.
    for _ in 0..20 {
        for stream in ["aaaa-1", "bbbb-1"] {
            store.append(stream, ExpectedVersion::Any, &[EventData::new("E", vec![7u8; 105])]).unwrap();
        }
    }
    // bbbb-1's last event (kept) and more of aaaa-1 go to the next segments.
    store.append("bbbb-1", ExpectedVersion::Any, &[EventData::new("E", vec![7u8; 105])]).unwrap();
    for _ in 0..45 {
        store.append("aaaa-1", ExpectedVersion::Any, &[EventData::new("E", vec![7u8; 105])]).unwrap();
    }
    let first = support::segment_paths(dir.path())[0].clone();
    let frames = support::raw_frames(&first);
    assert_eq!((frames.len(), frames.iter().all(|frame| frame.len == 200)), (40, true), "the layout assumed");
    store.delete_stream("bbbb-1", ExpectedVersion::Any).unwrap();
    store.flush_index().unwrap();
    // The deletion woke the background compactor; this call does whatever it has not done yet.
    store.compact().unwrap();
    let version = u32::from_le_bytes(std::fs::read(&first).unwrap()[8..12].try_into().unwrap());
    assert_eq!(version, annals::COMPACTED_FORMAT_VERSION, "half of the segment hidden, the threshold 50%");
    assert_eq!(read_stream(&store, "aaaa-1", 0).len(), 65);
}

/// A segment with more than a megabyte of kept frames (the compactor writes its new file a megabyte at a
/// time): every live event comes back exactly, after a reopen with the index rebuilt from the log too.
#[test]
fn a_segment_with_megabytes_of_live_events_compacts_whole() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_size_bytes: 4 << 20, compaction_dead_percent: 0, ..Default::default() };
    let store = Store::open_with(dir.path(), options.clone()).unwrap();
    let events: Vec<Vec<EventData>> = (0..5_000u32)
        .map(|i| vec![EventData::new("E", (0..1_000u32).map(|k| (i.wrapping_mul(31) ^ k) as u8).collect::<Vec<u8>>())])
        .collect();
    for (i, event) in events.iter().enumerate() {
        let stream = if i % 3 == 0 { "gone-c" } else { "live-a" };
        store.append(stream, ExpectedVersion::Any, event).unwrap();
    }
    store.delete_stream("gone-c", ExpectedVersion::Any).unwrap();
    store.flush_index().unwrap();
    let before = read_all(&store, 0);
    let report = store.compact().unwrap();
    assert!(report.segments >= 1 && report.bytes_reclaimed > 1 << 20, "{report:?}");
    assert_eq!(read_all(&store, 0), before);
    assert!(store.verify().unwrap().is_ok());
    store.close().unwrap();
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let store = Store::open_with(dir.path(), options).unwrap();
    assert_eq!(read_all(&store, 0), before, "index rebuilt from the compacted log");
    assert!(store.verify().unwrap().is_ok());
}
