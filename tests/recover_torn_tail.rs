//! A record torn at any byte is cut on reopen, and nothing before it is lost. The last record of a store with
//! small segments is damaged at every byte cut point inside its frame, both by zeroing from the cut to the end
//! of the frame (a write that stopped there) and by overwriting those bytes with other bytes (a write that
//! stopped there over old content); the index checkpoint is either deleted or a stale copy taken before the
//! last append. Each time, reopening shows exactly the records before the last one (also when opened twice),
//! the store accepts a new append at the torn record's offset and position, no byte of the torn record is
//! left after the new one, and reopening again finds nothing to cut and changes nothing. It is checked with
//! the torn record in the middle of the last segment and alone at the start of a freshly rolled segment.

mod support;

use std::path::{Path, PathBuf};

use annals::{AppendResult, EventData, ExpectedVersion, Options, Store};
use support::{
    copy_dir, overwrite, raw_frames, read_all, segment_paths, small_options, state, RawFrame, Rng, State, CHECKPOINT,
};

const SEGMENT_SIZE: usize = 4096;
/// The stream the torn record belongs to.
const TORN_STREAM: &str = "s1";
const NAMES: [&str; 5] = ["s0", "s1", "s2", "s3", "f"];

fn options() -> Options {
    small_options(SEGMENT_SIZE as u64, 3)
}

/// Free bytes at the end of the last segment.
fn remaining(dir: &Path) -> usize {
    let last = segment_paths(dir).pop().unwrap();
    SEGMENT_SIZE - raw_frames(&last).last().map_or(support::SEGMENT_HEADER_LEN, RawFrame::end_aligned)
}

/// An event whose frame is exactly `frame_len` bytes (a multiple of 8) in stream `stream`.
fn event_of_frame_len(stream: &str, frame_len: usize, fill: u8) -> EventData {
    let data_len = frame_len - support::FRAME_HEADER_LEN - stream.len() - "Sized".len();
    EventData::new("Sized", vec![fill; data_len])
}

/// A store whose last record (in `TORN_STREAM`) is about to be torn, and what it held before that record.
struct Pristine {
    dir: tempfile::TempDir,
    /// The state before the last append.
    before: State,
    /// The last record's frame, and the segment file it is in.
    last: RawFrame,
    last_segment: PathBuf,
    /// The index checkpoint as of the state before the last append.
    stale_checkpoint: Vec<u8>,
}

fn pristine(alone_in_a_new_segment: bool) -> Pristine {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let mut rng = Rng::new(0x7077);
    for i in 0..30 {
        let events = [EventData::new("Filled", rng.bytes_below(110))];
        store.append(NAMES[i % 4], ExpectedVersion::Any, &events).unwrap();
    }
    let last_frame_len = 256;
    if alone_in_a_new_segment {
        // Leave 152 free bytes: the 256-byte last record does not fit and rolls.
        let free = remaining(dir.path());
        if free >= last_frame_len {
            store.append("f", ExpectedVersion::Any, &[event_of_frame_len("f", free - 152, 0xF1)]).unwrap();
        }
    } else {
        while remaining(dir.path()) < 2 * last_frame_len
            || raw_frames(&segment_paths(dir.path()).pop().unwrap()).len() < 2
        {
            store.append("f", ExpectedVersion::Any, &[event_of_frame_len("f", 96, 0xF2)]).unwrap();
        }
    }
    let before = state(&store, &NAMES);
    store.close().unwrap();
    let stale_checkpoint = std::fs::read(dir.path().join(CHECKPOINT)).unwrap();

    let store = Store::open_with(dir.path(), options()).unwrap();
    let result =
        store.append(TORN_STREAM, ExpectedVersion::Any, &[event_of_frame_len(TORN_STREAM, 256, 0x5A)]).unwrap();
    drop(store);

    let last_segment = segment_paths(dir.path()).pop().unwrap();
    let frames = raw_frames(&last_segment);
    let last = *frames.last().unwrap();
    assert_eq!(last.position, result.first_position, "the last record is the last frame of the last segment");
    assert_eq!(last.len, last_frame_len);
    if alone_in_a_new_segment {
        assert_eq!((frames.len(), last.at), (1, support::SEGMENT_HEADER_LEN), "the last record starts a segment");
    } else {
        assert!(frames.len() > 2, "the last record follows others in its segment");
    }
    Pristine { dir, before, last, last_segment, stale_checkpoint }
}

#[derive(Debug, Clone, Copy)]
enum Checkpoint {
    Deleted,
    Stale,
}

#[derive(Debug, Clone, Copy)]
enum Tear {
    /// Zeros from the cut to the end of the frame.
    Zeroed,
    /// Other bytes from the cut to the end of the frame.
    Overwritten,
}

/// Tears a copy of the pristine store at `cut` and checks recovery.
fn check_tear(pristine: &Pristine, cut: usize, tear: Tear, checkpoint: Checkpoint, rng: &mut Rng) {
    let context = format!("cut at byte {} of the frame, {tear:?}, checkpoint {checkpoint:?}", cut - pristine.last.at);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(pristine.dir.path(), dir.path());
    let segment = dir.path().join(pristine.last_segment.file_name().unwrap());
    let frame_end = pristine.last.at + pristine.last.len;
    let tail = match tear {
        Tear::Zeroed => vec![0; frame_end - cut],
        // Never the same bytes as the record's own (which would leave it intact).
        Tear::Overwritten => rng.bytes(frame_end - cut).into_iter().map(|b| if b == 0x5A { 0xA5 } else { b }).collect(),
    };
    overwrite(&segment, cut, &tail);
    match checkpoint {
        Checkpoint::Deleted => std::fs::remove_file(dir.path().join(CHECKPOINT)).unwrap(),
        Checkpoint::Stale => std::fs::write(dir.path().join(CHECKPOINT), &pristine.stale_checkpoint).unwrap(),
    }

    let store = Store::open_with(dir.path(), options()).unwrap_or_else(|err| panic!("{context}: open: {err}"));
    assert_eq!(state(&store, &NAMES), pristine.before, "{context}: not exactly the records before the torn one");
    let verified = store.verify().unwrap();
    assert!(verified.is_ok(), "{context}: {verified:?}");
    drop(store);

    // Reopening before anything is written finds the same end. (The torn bytes are zeroed before the first
    // write, not at open: until then each open cuts them again.)
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(state(&store, &NAMES), pristine.before, "{context}: second reopen");

    // The next append takes the torn record's place.
    let version = pristine.before.streams[TORN_STREAM].0.unwrap();
    let head = pristine.before.head_position.unwrap();
    let result = store.append(TORN_STREAM, ExpectedVersion::Exact(version), &[EventData::new("Again", &b"!"[..])]);
    let expected = AppendResult {
        first_offset: version + 1,
        last_offset: version + 1,
        first_position: head + 1,
        last_position: head + 1,
    };
    assert_eq!(result.unwrap(), expected, "{context}");
    let after = state(&store, &NAMES);
    assert_eq!(after.all[..after.all.len() - 1], pristine.before.all[..], "{context}");
    store.close().unwrap();

    // Nothing of the torn record is left after the new one, and reopening finds nothing more to cut.
    let new_end =
        pristine.last.at + (support::FRAME_HEADER_LEN + TORN_STREAM.len() + "Again".len() + 1).next_multiple_of(8);
    let left = std::fs::read(&segment).unwrap()[new_end..].iter().position(|&b| b != 0);
    assert_eq!(left, None, "{context}: torn bytes left {left:?} bytes after the new record");
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.recovery_report().tail_bytes_cut, 0, "{context}: {:?}", store.recovery_report());
    assert_eq!(state(&store, &NAMES), after, "{context}: reopen after the new append");
    assert_eq!(read_all(&store, head + 1)[0].data, b"!", "{context}");
}

fn check_every_cut(alone_in_a_new_segment: bool) {
    let pristine = pristine(alone_in_a_new_segment);
    let mut rng = Rng::new(0x7ea2);
    let frame = pristine.last;
    for cut in frame.at..frame.at + frame.len {
        check_tear(&pristine, cut, Tear::Zeroed, Checkpoint::Deleted, &mut rng);
        check_tear(&pristine, cut, Tear::Zeroed, Checkpoint::Stale, &mut rng);
        // Overwritten tails alternate between the checkpoint variants: every cut is still torn both ways.
        let checkpoint = if cut % 2 == 0 { Checkpoint::Deleted } else { Checkpoint::Stale };
        check_tear(&pristine, cut, Tear::Overwritten, checkpoint, &mut rng);
    }
}

#[test]
fn a_last_record_torn_at_any_byte_is_cut_in_the_middle_of_a_segment() {
    check_every_cut(false);
}

#[test]
fn a_last_record_torn_at_any_byte_is_cut_at_the_start_of_a_new_segment() {
    check_every_cut(true);
}

#[test]
fn the_recovery_report_counts_the_bytes_of_a_torn_record() {
    // A torn record whose length field survived is cut; the report must say that bytes were cut.
    let pristine = pristine(false);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(pristine.dir.path(), dir.path());
    let segment = dir.path().join(pristine.last_segment.file_name().unwrap());
    let half = pristine.last.len / 2;
    overwrite(&segment, pristine.last.at + half, &vec![0; pristine.last.len - half]);
    std::fs::remove_file(dir.path().join(CHECKPOINT)).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(state(&store, &NAMES), pristine.before);
    let report = store.recovery_report();
    assert!(report.tail_bytes_cut >= half as u64, "half of a {}-byte record was cut: {report:?}", pristine.last.len);
}
