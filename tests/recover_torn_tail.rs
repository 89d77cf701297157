//! A transaction torn at any byte is cut whole on reopen, and nothing before it is lost. The last transaction of
//! a store with small segments is damaged from a cut point inside its frames to its end, both by zeroing (a
//! write that stopped there) and by overwriting those bytes with other bytes (a write that stopped there over
//! old content); the persistent index is either deleted or a stale copy taken before the last append. The last
//! transaction is one event (torn at every byte of its frame), three events of one stream in one `append`, or
//! an `append_multi` over two existing streams and one the store has never seen (torn in every frame: at every
//! header field, in the body, at the last bytes). Each time, reopening shows exactly the records before the
//! torn transaction (also when opened twice): none of its events, and not the new stream. The store then
//! accepts the same appends again at the torn events' offsets and positions, no byte of the torn transaction is
//! left after the new one, and reopening again finds nothing to cut and changes nothing. It is checked with the
//! torn transaction in the middle of the last segment and alone at the start of a freshly rolled segment.

mod support;

use std::path::{Path, PathBuf};

use annals::{AppendResult, EventData, ExpectedVersion, Options, Store, StreamAppend};
use support::{
    copy_dir, overwrite, raw_frames, read_all, segment_paths, small_options, state, RawFrame, Rng, State, INDEX_DIR,
};

const SEGMENT_SIZE: usize = 4096;
/// The stream the torn record belongs to.
const TORN_STREAM: &str = "s1";
/// A stream that only the torn transaction of [`Shape::Streams`] creates.
const NEW_STREAM: &str = "n";
const NAMES: [&str; 6] = ["s0", "s1", "s2", "s3", "f", NEW_STREAM];

fn options() -> Options {
    small_options(SEGMENT_SIZE as u64)
}

/// What the torn (last) transaction holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// One 256-byte event of `TORN_STREAM`.
    OneEvent,
    /// Three events of `TORN_STREAM`, one `append`.
    EventsOfOneStream,
    /// One `append_multi`: an event of `TORN_STREAM`, two of `NEW_STREAM` (which it creates), one of `s3`.
    Streams,
}

impl Shape {
    /// Each part's stream and the frame length of each of its events.
    fn parts(self) -> &'static [(&'static str, &'static [usize])] {
        match self {
            Shape::OneEvent => &[(TORN_STREAM, &[256])],
            Shape::EventsOfOneStream => &[(TORN_STREAM, &[128, 104, 120])],
            Shape::Streams => &[(TORN_STREAM, &[112]), (NEW_STREAM, &[104, 128]), ("s3", &[96])],
        }
    }

    fn frame_lens(self) -> impl Iterator<Item = usize> {
        self.parts().iter().flat_map(|(_, lens)| lens.iter().copied())
    }

    /// Bytes the transaction takes in its segment.
    fn bytes(self) -> usize {
        self.frame_lens().map(|len| len.next_multiple_of(8)).sum()
    }
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

/// A store whose last transaction is about to be torn, and what it held before that transaction.
struct Pristine {
    dir: tempfile::TempDir,
    shape: Shape,
    /// The state before the last append.
    before: State,
    /// The last transaction's frames, in order, and the segment file they are in.
    torn: Vec<RawFrame>,
    last_segment: PathBuf,
    /// The index as of the state before the last append (its `index/` directory).
    stale_index: tempfile::TempDir,
}

impl Pristine {
    /// Byte offset of the torn transaction's first frame: where the log must end after recovery.
    fn start(&self) -> usize {
        self.torn[0].at
    }

    /// Byte offset just past the last byte of the torn transaction (its padding excluded).
    fn end(&self) -> usize {
        let last = self.torn.last().unwrap();
        last.at + last.len
    }
}

fn pristine(shape: Shape, alone_in_a_new_segment: bool) -> Pristine {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let mut rng = Rng::new(0x7077);
    for i in 0..30 {
        let events = [EventData::new("Filled", rng.bytes_below(110))];
        store.append(NAMES[i % 4], ExpectedVersion::Any, &events).unwrap();
    }
    let txn_bytes = shape.bytes();
    if alone_in_a_new_segment {
        // Leave 152 free bytes: the last transaction does not fit and rolls.
        let free = remaining(dir.path());
        if free >= txn_bytes {
            store.append("f", ExpectedVersion::Any, &[event_of_frame_len("f", free - 152, 0xF1)]).unwrap();
        }
    } else {
        while remaining(dir.path()) < 2 * txn_bytes || raw_frames(&segment_paths(dir.path()).pop().unwrap()).len() < 2 {
            store.append("f", ExpectedVersion::Any, &[event_of_frame_len("f", 96, 0xF2)]).unwrap();
        }
    }
    let before = state(&store, &NAMES);
    store.close().unwrap();
    let stale_index = tempfile::tempdir().unwrap();
    copy_dir(&dir.path().join(INDEX_DIR), stale_index.path());

    let store = Store::open_with(dir.path(), options()).unwrap();
    let parts: Vec<StreamAppend> = shape
        .parts()
        .iter()
        .map(|&(stream, lens)| StreamAppend {
            stream: stream.to_owned(),
            expected: ExpectedVersion::Any,
            events: lens.iter().map(|&len| event_of_frame_len(stream, len, 0x5A)).collect(),
        })
        .collect();
    let first_position = match shape {
        Shape::OneEvent => store.append(TORN_STREAM, ExpectedVersion::Any, &parts[0].events).unwrap().first_position,
        _ => store.append_multi(&parts).unwrap()[0].first_position,
    };
    drop(store);

    let last_segment = segment_paths(dir.path()).pop().unwrap();
    let frames = raw_frames(&last_segment);
    let count = shape.frame_lens().count();
    let torn = frames[frames.len() - count..].to_vec();
    for (k, (frame, len)) in torn.iter().zip(shape.frame_lens()).enumerate() {
        assert_eq!(frame.position, first_position + k as u64, "the torn transaction ends the last segment");
        assert_eq!((frame.len, frame.txn_after as usize), (len, count - 1 - k), "frame {k} of the transaction");
    }
    if alone_in_a_new_segment {
        assert_eq!(
            (frames.len(), torn[0].at),
            (count, support::SEGMENT_HEADER_LEN),
            "the last transaction starts a segment"
        );
    } else {
        assert!(frames.len() > count + 1, "the last transaction follows others in its segment");
    }
    Pristine { dir, shape, before, torn, last_segment, stale_index }
}

#[derive(Debug, Clone, Copy)]
enum Index {
    Deleted,
    Stale,
}

#[derive(Debug, Clone, Copy)]
enum Tear {
    /// Zeros from the cut to the end of the transaction.
    Zeroed,
    /// Other bytes from the cut to the end of the transaction.
    Overwritten,
}

/// The same transaction again (same streams and event counts), with small events: what the application retries.
fn retry_parts(pristine: &Pristine) -> Vec<StreamAppend> {
    pristine
        .shape
        .parts()
        .iter()
        .map(|&(stream, lens)| StreamAppend {
            stream: stream.to_owned(),
            expected: pristine.before.streams[stream].0.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact),
            events: vec![EventData::new("Again", &b"!"[..]); lens.len()],
        })
        .collect()
}

/// Tears a copy of the pristine store at `cut` and checks recovery.
fn check_tear(pristine: &Pristine, cut: usize, tear: Tear, index: Index, rng: &mut Rng) {
    let frame_no = pristine.torn.iter().rposition(|frame| frame.at <= cut).unwrap();
    let frame_at = pristine.torn[frame_no].at;
    let context = format!(
        "{:?}: cut at byte {} of frame {frame_no} of the transaction, {tear:?}, index {index:?}",
        pristine.shape,
        cut - frame_at
    );
    let dir = tempfile::tempdir().unwrap();
    copy_dir(pristine.dir.path(), dir.path());
    let segment = dir.path().join(pristine.last_segment.file_name().unwrap());
    let end = pristine.end();
    let tail = match tear {
        Tear::Zeroed => vec![0; end - cut],
        // Never the same bytes as the data's own (so the commit mark, whose data ends the range, is always torn).
        Tear::Overwritten => rng.bytes(end - cut).into_iter().map(|b| if b == 0x5A { 0xA5 } else { b }).collect(),
    };
    overwrite(&segment, cut, &tail);
    // The index the close after the torn append wrote covers the torn records: it would vouch for them.
    support::remove_index(dir.path());
    if let Index::Stale = index {
        std::fs::create_dir(dir.path().join(INDEX_DIR)).unwrap();
        copy_dir(pristine.stale_index.path(), &dir.path().join(INDEX_DIR));
    }

    let store = Store::open_with(dir.path(), options()).unwrap_or_else(|err| panic!("{context}: open: {err}"));
    assert_eq!(state(&store, &NAMES), pristine.before, "{context}: not exactly the records before the torn ones");
    let verified = store.verify().unwrap();
    assert!(verified.is_ok(), "{context}: {verified:?}");
    drop(store);

    // Reopening before anything is written finds the same end.
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(state(&store, &NAMES), pristine.before, "{context}: second reopen");

    // The same appends again take the torn events' places: offsets and positions as if they had never been.
    let head = pristine.before.head_position.unwrap();
    let parts = retry_parts(pristine);
    let results = match pristine.shape {
        Shape::OneEvent => vec![store.append(TORN_STREAM, parts[0].expected, &parts[0].events)],
        _ => store
            .append_multi(&parts)
            .map_or_else(|err| vec![Err(err)], |results| results.into_iter().map(Ok).collect()),
    };
    let mut position = head + 1;
    let mut new_end = pristine.start();
    assert_eq!(results.len(), parts.len(), "{context}: {results:?}");
    for (part, result) in parts.iter().zip(results) {
        let first_offset = pristine.before.streams[part.stream.as_str()].0.map_or(0, |version| version + 1);
        let count = part.events.len() as u64;
        let expected = AppendResult {
            first_offset,
            last_offset: first_offset + count - 1,
            first_position: position,
            last_position: position + count - 1,
        };
        assert_eq!(result.unwrap(), expected, "{context}: append to {:?} after recovery", part.stream);
        position += count;
        new_end +=
            part.events.len() * (support::FRAME_HEADER_LEN + part.stream.len() + "Again".len() + 1).next_multiple_of(8);
    }
    let after = state(&store, &NAMES);
    let retried = (position - head - 1) as usize;
    assert_eq!(after.all[..after.all.len() - retried], pristine.before.all[..], "{context}");
    store.close().unwrap();

    // Nothing of the torn transaction is left after the new one, and reopening finds nothing more to cut.
    let left = std::fs::read(&segment).unwrap()[new_end..].iter().position(|&b| b != 0);
    assert_eq!(left, None, "{context}: torn bytes left {left:?} bytes after the new records");
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.recovery_report().tail_bytes_cut, 0, "{context}: {:?}", store.recovery_report());
    assert_eq!(state(&store, &NAMES), after, "{context}: reopen after the new append");
    assert!(read_all(&store, head + 1).iter().all(|event| event.data == b"!"), "{context}");
}

/// Tears the pristine store at every given cut (byte offsets in the segment), each way.
fn check_cuts(pristine: &Pristine, cuts: impl IntoIterator<Item = usize>) {
    let mut rng = Rng::new(0x7ea2);
    for cut in cuts {
        check_tear(pristine, cut, Tear::Zeroed, Index::Deleted, &mut rng);
        check_tear(pristine, cut, Tear::Zeroed, Index::Stale, &mut rng);
        // Overwritten tails alternate between the index variants: every cut is still torn both ways.
        let index = if cut % 2 == 0 { Index::Deleted } else { Index::Stale };
        check_tear(pristine, cut, Tear::Overwritten, index, &mut rng);
    }
}

fn check_every_cut(alone_in_a_new_segment: bool) {
    let pristine = pristine(Shape::OneEvent, alone_in_a_new_segment);
    check_cuts(&pristine, pristine.start()..pristine.end());
}

/// Cuts in every frame of a multi-event transaction: at each header field's bytes (length, CRC, position, the
/// other numbers, `txn_after`, the name lengths, the reserved bytes), in the names and the data, and at the last
/// bytes; a cut at a frame's first byte leaves the frames before it intact and pending.
fn check_cuts_in_every_frame(shape: Shape, alone_in_a_new_segment: bool) {
    const IN_FRAME: [usize; 22] = [0, 1, 2, 3, 4, 5, 7, 8, 12, 16, 24, 32, 40, 48, 63, 64, 66, 68, 72, 80, 87, 88];
    let pristine = pristine(shape, alone_in_a_new_segment);
    assert!(pristine.torn.len() > 1, "{shape:?} is a multi-event transaction");
    let cuts: Vec<usize> = pristine
        .torn
        .iter()
        .flat_map(|frame| {
            IN_FRAME.into_iter().chain([frame.len / 2, frame.len - 2, frame.len - 1]).map(move |byte| frame.at + byte)
        })
        .collect();
    check_cuts(&pristine, cuts);
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
fn a_torn_append_of_several_events_is_cut_whole_in_the_middle_of_a_segment() {
    check_cuts_in_every_frame(Shape::EventsOfOneStream, false);
}

#[test]
fn a_torn_append_of_several_events_is_cut_whole_at_the_start_of_a_new_segment() {
    check_cuts_in_every_frame(Shape::EventsOfOneStream, true);
}

#[test]
fn a_torn_append_multi_is_cut_whole_in_the_middle_of_a_segment() {
    check_cuts_in_every_frame(Shape::Streams, false);
}

#[test]
fn a_torn_append_multi_is_cut_whole_at_the_start_of_a_new_segment() {
    check_cuts_in_every_frame(Shape::Streams, true);
}

#[test]
fn the_recovery_report_counts_the_bytes_of_a_torn_record() {
    // A torn record whose length field survived is cut; the report must say that bytes were cut.
    let pristine = pristine(Shape::OneEvent, false);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(pristine.dir.path(), dir.path());
    let segment = dir.path().join(pristine.last_segment.file_name().unwrap());
    let last = pristine.torn[0];
    let half = last.len / 2;
    overwrite(&segment, last.at + half, &vec![0; last.len - half]);
    support::remove_index(dir.path());
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(state(&store, &NAMES), pristine.before);
    let report = store.recovery_report();
    assert!(report.tail_bytes_cut >= half as u64, "half of a {}-byte record was cut: {report:?}", last.len);
}
