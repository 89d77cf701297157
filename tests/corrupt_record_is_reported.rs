//! Damage to a record that was synced is reported, never skipped and never a panic. A byte is flipped in a
//! record in the middle of a sealed segment, in each field of the frame in turn. With the persistent index
//! deleted, `Store::open` scans the log and returns `Error::Corrupt` naming that segment file and the frame's
//! byte offset. With the index present the store opens (the damage lies in the part the index covers, which
//! the open does not read), but reading the damaged event through `read_all`, `read_stream` or
//! `read_stream_backwards` yields `Error::Corrupt` with the file and offset, every event read before it is
//! intact, `Store::verify` reports it, and every other read either returns the right events or a `Corrupt`
//! error.

mod support;

use std::path::{Path, PathBuf};

use annals::{Error, EventData, ExpectedVersion, Options, RecordedEvent, Store};
use support::{
    assert_corrupt_at, copy_dir, flip_byte, raw_frames, remove_index, segment_paths, small_options, state, Owned,
    RawFrame, Rng, State,
};

const NAMES: [&str; 3] = ["red", "green", "blue"];

fn options() -> Options {
    small_options(4096)
}

struct Pristine {
    dir: tempfile::TempDir,
    state: State,
    /// The sealed segment holding the damaged records, and the records damaged in turn.
    segment: PathBuf,
    frames: Vec<RawFrame>,
}

fn pristine() -> Pristine {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let mut rng = Rng::new(0xc0);
    for i in 0..80 {
        let len = 60 + rng.below(90) as usize;
        let event = EventData::new("Painted", rng.bytes(len)).with_metadata(rng.bytes(10));
        store.append(NAMES[i % 3], ExpectedVersion::Any, &[event]).unwrap();
    }
    let state = state(&store, &NAMES);
    store.close().unwrap();
    let segments = segment_paths(dir.path());
    assert!(segments.len() >= 4, "the damaged segment must be sealed, with segments after it");
    let segment = segments[1].clone();
    let frames = raw_frames(&segment);
    assert!(frames.len() >= 5);
    // Records in the middle of the segment (neither its first nor its last), at stream offsets of every
    // remainder modulo 4: a spread of places in their streams.
    let mut chosen: Vec<RawFrame> = Vec::new();
    for frame in &frames[1..frames.len() - 1] {
        if chosen.iter().all(|other| other.offset % 4 != frame.offset % 4) {
            chosen.push(*frame);
        }
    }
    assert_eq!(chosen.len(), 4, "records at every remainder modulo 4");
    let frames = chosen;
    Pristine { dir, state, segment, frames }
}

/// Frame fields to damage: (name, byte offset within the frame).
fn fields(frame: &RawFrame) -> Vec<(&'static str, usize)> {
    vec![
        ("length", 0),
        ("length, high byte", 3),
        ("crc", 4),
        ("position", 8),
        ("offset", 16),
        ("prev", 24),
        ("prev, segment ordinal", 28),
        ("synced_before", 32),
        ("timestamp", 40),
        ("event id", 48),
        ("txn_after", 64),
        ("stream name length", 68),
        ("event type length", 70),
        ("metadata length", 72),
        ("data length", 76),
        ("codec", 80),
        ("reserved", 84),
        ("stream name", 88),
        ("event type", 89 + 2),
        ("data, last byte", frame.len - 1),
    ]
}

/// A copy of the pristine store with one byte flipped, and the damaged segment's path in the copy.
fn damaged(
    pristine: &Pristine,
    frame: &RawFrame,
    at_in_frame: usize,
    keep_index: bool,
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(pristine.dir.path(), dir.path());
    let segment = dir.path().join(pristine.segment.file_name().unwrap());
    flip_byte(&segment, frame.at + at_in_frame, 0x04);
    if !keep_index {
        remove_index(dir.path());
    }
    (dir, segment)
}

/// Reads until the first error (of creating the iterator, or of an item): the intact events before it, and
/// the error (if any).
fn read_until_error<I>(events: annals::Result<I>) -> (Vec<Owned>, Option<Error>)
where
    I: Iterator<Item = annals::Result<RecordedEvent>>,
{
    let mut read = Vec::new();
    let mut events = match events {
        Ok(events) => events,
        Err(err) => return (read, Some(err)),
    };
    for event in events.by_ref() {
        match event {
            Ok(event) => read.push(Owned::from(&event)),
            Err(err) => {
                assert!(events.next().is_none(), "an iterator ends after its first error");
                return (read, Some(err));
            }
        }
    }
    (read, None)
}

#[test]
fn open_without_the_index_reports_the_damaged_record() {
    let pristine = pristine();
    for frame in &pristine.frames {
        for (field, at) in fields(frame) {
            let (dir, segment) = damaged(&pristine, frame, at, false);
            let result = Store::open_with(dir.path(), options());
            let context = format!("{field} of position {} damaged, no index", frame.position);
            assert_corrupt_at(&result.map(|_| ()), &segment, frame.at, &context);
        }
    }
}

/// Fails unless `read` is exactly `expected`, naming the positions (not the payloads) when it is not.
fn assert_same(read: &[Owned], expected: &[Owned], context: &str) {
    let positions = |events: &[Owned]| events.iter().map(|event| (event.position, event.offset)).collect::<Vec<_>>();
    assert!(
        read == expected,
        "{context}: read (position, offset) {:?}, expected {:?}",
        positions(read),
        positions(expected)
    );
}

/// Checks what a store opened over the damage returns for the damaged event and for every other read.
fn check_reads(store: &Store, pristine: &Pristine, segment: &Path, frame: &RawFrame, field: &str) {
    let context = |what: &str| format!("{field} of position {} damaged, index kept: {what}", frame.position);
    let damaged_event = &pristine.state.all[frame.position as usize];
    let stream = damaged_event.stream.as_str();
    let stream_events = &pristine.state.streams[stream].1;
    let offset = damaged_event.offset;
    let error_at = |result: Option<Error>, what: &str| {
        assert_corrupt_at(&result.map_or(Ok(()), Err), segment, frame.at, &context(what));
    };

    // Reads that reach the damaged event name it, after intact events before it.
    let (read, error) = read_until_error(store.read_all(0));
    assert_same(&read, &pristine.state.all[..frame.position as usize], &context("read_all(0)"));
    error_at(error, "read_all(0)");
    let (read, error) = read_until_error(store.read_all(frame.position));
    assert!(read.is_empty());
    error_at(error, "read_all(position)");
    // A stream read stops at the damaged record and names it.
    let (read, error) = read_until_error(store.read_stream(stream, 0));
    assert_same(&read, &stream_events[..read.len().min(offset as usize)], &context("read_stream(0)"));
    error_at(error, "read_stream(0)");
    let (read, error) = read_until_error(store.read_stream(stream, offset));
    assert!(read.is_empty());
    error_at(error, "read_stream(offset)");
    let (read, error) = read_until_error(store.read_stream_backwards(stream, None));
    let newer: Vec<Owned> = stream_events[offset as usize + 1..].iter().rev().cloned().collect();
    assert_same(&read, &newer, &context("read_stream_backwards(None)"));
    error_at(error, "read_stream_backwards(None)");
    let verified = store.verify().unwrap();
    error_at(verified.problem, "verify");

    // Every other read returns the right events, or stops with Corrupt naming the one damaged record; never a
    // panic, a wrong event, or an error that blames intact bytes.
    let check_prefix = |read: &[Owned], error: Option<Error>, expected: &[Owned], what: String| {
        assert_same(read, &expected[..read.len().min(expected.len())], &context(&what));
        match error {
            None => assert_eq!(read.len(), expected.len(), "{}", context(&what)),
            Some(error) => error_at(Some(error), &what),
        }
    };
    let total = pristine.state.all.len() as u64;
    for from in 0..=total {
        let (read, error) = read_until_error(store.read_all(from));
        check_prefix(&read, error, &pristine.state.all[from as usize..], format!("read_all({from})"));
    }
    for name in NAMES {
        let events = &pristine.state.streams[name].1;
        for from in 0..=events.len() as u64 {
            let (read, error) = read_until_error(store.read_stream(name, from));
            check_prefix(&read, error, &events[from as usize..], format!("read_stream({name}, {from})"));
            let (read, error) = read_until_error(store.read_stream_backwards(name, Some(from)));
            let expected: Vec<Owned> = events[..=(from as usize).min(events.len() - 1)].iter().rev().cloned().collect();
            check_prefix(&read, error, &expected, format!("read_stream_backwards({name}, {from})"));
        }
    }
}

/// Opens each damaged copy with its index and checks the reads, for the fields `pick` selects.
fn check_behind_the_index(pick: impl Fn(&str) -> bool) {
    let pristine = pristine();
    for frame in &pristine.frames {
        for (field, at) in fields(frame).into_iter().filter(|(field, _)| pick(field)) {
            let (dir, segment) = damaged(&pristine, frame, at, true);
            match Store::open_with(dir.path(), options()) {
                // Refusing to open is also right, if it names the damage.
                Err(err) => assert_corrupt_at(&Err::<(), _>(err), &segment, frame.at, field),
                Ok(store) => {
                    check_reads(&store, &pristine, &segment, frame, field);
                    // Appends still work: the damage is in the past, not at the end of the log.
                    let late = [EventData::new("Late", &b"!"[..])];
                    let result = store.append("red", ExpectedVersion::Any, &late).unwrap();
                    assert_eq!(result.first_position, pristine.state.all.len() as u64);
                }
            }
        }
    }
}

#[test]
fn reading_the_damaged_record_behind_the_index_reports_it() {
    check_behind_the_index(|field| !field.starts_with("prev") && !field.starts_with("length"));
}

#[test]
fn reading_past_a_record_with_a_damaged_length_behind_the_index_reports_it() {
    // The length is what `read_all` steps by to reach a later start position in the same segment.
    check_behind_the_index(|field| field.starts_with("length"));
}

#[test]
fn reading_a_record_with_a_damaged_back_link_behind_the_index_reports_it() {
    // The back-link (`prev`) is covered by the CRC: a read of the record, by any reader, reports it.
    check_behind_the_index(|field| field.starts_with("prev"));
}
