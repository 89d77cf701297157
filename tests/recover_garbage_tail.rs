//! Garbage after the last record is cut on reopen and nothing before it is lost: with random bytes of many
//! lengths written right after the last record, or further on with zeros between, and the persistent index
//! current or deleted, reopening (also twice) shows exactly the records there were, the store appends at the
//! right offset and position, no garbage byte is left after the new record, and reopening is stable. In
//! particular, intact frames left further on in the segment by an unsynced write (whose first pages were lost in
//! the crash) must never line up with later appends and come back as committed events.
//!
//! Garbage inside an unfinished transaction removes the whole transaction: the last transaction of a crash image
//! (three events of one stream in one `append`, or an `append_multi` over two streams and a new one) is garbled
//! over one of its frames (the others intact, the commit mark included), over a random span, from inside it to
//! past its end, in one byte of a frame, or by a frame-like length followed by noise. Each time none of its
//! events is shown, the new stream does not exist, and the same streams take new appends at the offsets and
//! positions the garbled events had.

mod support;

use std::path::{Path, PathBuf};

use annals::{Durability, EventData, ExpectedVersion, Options, Store, StreamAppend};
use support::{
    copy_dir, overwrite, raw_frames, read_all, remove_index, segment_paths, small_options, state, RawFrame, Rng, State,
};

const SEGMENT_SIZE: usize = 64 << 10;
/// "d" is created only by the garbled `append_multi`.
const NAMES: [&str; 4] = ["a", "b", "c", "d"];

fn options() -> Options {
    small_options(SEGMENT_SIZE as u64)
}

/// A closed store with a few events, its state, and where its last record ends.
struct Pristine {
    dir: tempfile::TempDir,
    state: State,
    segment: PathBuf,
    end: usize,
}

fn pristine() -> Pristine {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let mut rng = Rng::new(0x9a7b);
    for i in 0..25 {
        store.append(NAMES[i % 3], ExpectedVersion::Any, &[EventData::new("E", rng.bytes_below(300))]).unwrap();
    }
    let state = state(&store, &NAMES);
    store.close().unwrap();
    let segments = segment_paths(dir.path());
    assert_eq!(segments.len(), 1, "one segment holds the whole store");
    let segment = segments[0].clone();
    let end = raw_frames(&segment).last().map(RawFrame::end_aligned).unwrap();
    Pristine { dir, state, segment, end }
}

/// Opens `dir` and checks that it holds exactly `expected`, that appends (one event to each of `retry`, in one
/// transaction) continue at the right place, that the garbage is gone once the next records are written after
/// `end`, and that reopening is stable.
fn check_recovered(dir: &Path, segment: &Path, end: usize, expected: &State, retry: &[&str], context: &str) {
    let store = Store::open_with(dir, options()).unwrap_or_else(|err| panic!("{context}: open: {err}"));
    assert_eq!(&state(&store, &NAMES), expected, "{context}: records were lost or invented");
    let verified = store.verify().unwrap();
    assert!(verified.is_ok(), "{context}: {verified:?}");
    drop(store);
    // Opened again before anything is written, it finds the same end.
    let store = Store::open_with(dir, options()).unwrap();
    assert_eq!(&state(&store, &NAMES), expected, "{context}: second open");

    let head = expected.head_position.unwrap();
    let parts: Vec<StreamAppend> = retry
        .iter()
        .map(|&stream| StreamAppend {
            stream: stream.to_owned(),
            expected: expected.streams[stream].0.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact),
            events: vec![EventData::new("After", &b"after"[..])],
        })
        .collect();
    let results = store.append_multi(&parts).unwrap_or_else(|err| panic!("{context}: append after recovery: {err}"));
    let mut new_end = end;
    for (i, (part, result)) in parts.iter().zip(results).enumerate() {
        let offset = expected.streams[part.stream.as_str()].0.map_or(0, |version| version + 1);
        let position = head + 1 + i as u64;
        assert_eq!((result.first_offset, result.first_position), (offset, position), "{context}: {}", part.stream);
        new_end += (support::FRAME_HEADER_LEN + part.stream.len() + "After".len() + "after".len()).next_multiple_of(8);
    }
    let after = state(&store, &NAMES);
    store.close().unwrap();
    // The garbage is cut: every byte after the new records is zero.
    let bytes = std::fs::read(segment).unwrap();
    let left = bytes[new_end..].iter().position(|&b| b != 0).map(|at| at + new_end);
    assert_eq!(left, None, "{context}: garbage left after the new record, which ends at {new_end}");
    let store = Store::open_with(dir, options()).unwrap();
    assert_eq!(store.recovery_report().tail_bytes_cut, 0, "{context}: {:?}", store.recovery_report());
    assert_eq!(state(&store, &NAMES), after, "{context}: reopen after the append");
    drop(store);
    remove_index(dir);
    let store = Store::open_with(dir, options()).unwrap();
    assert_eq!(state(&store, &NAMES), after, "{context}: rebuild after the append");
}

/// Writes `garbage` at `end + gap` in a copy of the pristine store and checks recovery.
fn check_garbage(pristine: &Pristine, gap: usize, garbage: &[u8], keep_index: bool) {
    let context = format!("{} bytes of garbage {gap} bytes after the end, index kept: {keep_index}", garbage.len());
    let dir = tempfile::tempdir().unwrap();
    copy_dir(pristine.dir.path(), dir.path());
    let segment = dir.path().join(pristine.segment.file_name().unwrap());
    overwrite(&segment, pristine.end + gap, garbage);
    if !keep_index {
        remove_index(dir.path());
    }
    check_recovered(dir.path(), &segment, pristine.end, &pristine.state, &["a"], &context);
}

#[test]
fn garbage_right_after_the_last_record_is_cut() {
    let pristine = pristine();
    let mut rng = Rng::new(0x6a5b);
    let rest = SEGMENT_SIZE - pristine.end;
    for len in [1, 3, 4, 7, 8, 9, 87, 88, 89, 100, 1000, 4096, rest] {
        for keep_index in [true, false] {
            let mut garbage = rng.bytes(len);
            // A zero first byte would read as "end of log" only by chance; test both a nonzero and a zero start.
            garbage[0] |= 1;
            check_garbage(&pristine, 0, &garbage, keep_index);
            if len > 4 {
                garbage[..4].fill(0);
                garbage[4] |= 1;
                check_garbage(&pristine, 0, &garbage, keep_index);
            }
        }
    }
    // Garbage that starts like a frame: a plausible length, then noise.
    for len in [88u32, 96, 200, 4000] {
        let mut garbage = len.to_le_bytes().to_vec();
        garbage.extend(rng.bytes(len as usize));
        check_garbage(&pristine, 0, &garbage, true);
        check_garbage(&pristine, 0, &garbage, false);
    }
}

#[test]
fn garbage_further_after_the_last_record_is_cut_too() {
    let pristine = pristine();
    let mut rng = Rng::new(0x6a5c);
    for gap in [8, 512, 4088, 4096, 4104, 8192, 20_000] {
        for keep_index in [true, false] {
            let mut garbage = rng.bytes(100);
            garbage[0] |= 1;
            check_garbage(&pristine, gap, &garbage, keep_index);
        }
    }
}

#[test]
fn stale_frames_past_the_first_page_after_the_end_never_come_back() {
    // A crash during unsynced writes: their first pages were lost, later pages reached the disk. Here the pages
    // that survived come from a copy of the store that went on appending the same-sized events without syncing
    // (so that, as in a lost group, none of them claims that anything after the end was synced).
    const LOST: u64 = 20;
    const WRITTEN: u64 = 40;
    let pristine = pristine();
    let future = tempfile::tempdir().unwrap();
    copy_dir(pristine.dir.path(), future.path());
    let event = |tag: &str| [EventData::new("Same", format!("{tag:>200}").into_bytes())];
    let unsynced = Options {
        durability: Durability::Buffer { flush_interval: std::time::Duration::from_secs(24 * 3600) },
        ..options()
    };
    let store = Store::open_with(future.path(), unsynced).unwrap();
    for i in 0..WRITTEN {
        store.append("a", ExpectedVersion::Any, &event(&format!("unsynced {i}"))).unwrap();
    }
    drop(store);
    let future_frames = raw_frames(&future.path().join(pristine.segment.file_name().unwrap()));
    let first_lost = pristine.state.head_position.unwrap() + 1;
    let survived = future_frames.iter().find(|frame| frame.position == first_lost + LOST).unwrap();
    let survived_end = future_frames.last().unwrap().end_aligned();
    assert!(survived.at - pristine.end > 4096, "the surviving pages start beyond the first page after the end");
    let future_bytes = std::fs::read(future.path().join(pristine.segment.file_name().unwrap())).unwrap();

    for keep_index in [true, false] {
        let context = format!("index kept: {keep_index}");
        let dir = tempfile::tempdir().unwrap();
        copy_dir(pristine.dir.path(), dir.path());
        let segment = dir.path().join(pristine.segment.file_name().unwrap());
        overwrite(&segment, survived.at, &future_bytes[survived.at..survived_end]);
        if !keep_index {
            remove_index(dir.path());
        }
        let store = Store::open_with(dir.path(), options()).unwrap();
        assert_eq!(state(&store, &NAMES), pristine.state, "{context}: the unsynced events are not there");
        // The application appends again: the same-sized events land where the lost ones were.
        for i in 0..LOST {
            store.append("a", ExpectedVersion::Any, &event(&format!("acknowledged {i}"))).unwrap();
        }
        let expected = state(&store, &NAMES);
        store.close().unwrap();
        let store = Store::open_with(dir.path(), options()).unwrap();
        assert_eq!(
            store.head_position(),
            Some(first_lost + LOST - 1),
            "{context}: events that were never acknowledged came back after the reopen"
        );
        assert_eq!(state(&store, &NAMES), expected, "{context}");
        assert!(read_all(&store, 0).iter().all(|event| !event.data.ends_with(b"unsynced 30")), "{context}");
    }
}

/// The last transaction of a crash image.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Three events of "a" in one `append`.
    EventsOfOneStream,
    /// One `append_multi`: two events of "a", one of the new stream "d", two of "b".
    Streams,
}

impl Shape {
    fn parts(self) -> &'static [(&'static str, usize)] {
        match self {
            Shape::EventsOfOneStream => &[("a", 3)],
            Shape::Streams => &[("a", 2), ("d", 1), ("b", 2)],
        }
    }

    fn streams(self) -> Vec<&'static str> {
        self.parts().iter().map(|&(stream, _)| stream).collect()
    }
}

/// A crash image whose last transaction is acknowledged but that nothing proves synced: the files copied while
/// the store was open, after the transaction (no later record, and the index tables are the ones the pristine
/// store's clean close wrote, before it).
struct WithTransaction {
    image: tempfile::TempDir,
    shape: Shape,
    /// The transaction's frames, in order.
    frames: Vec<RawFrame>,
}

impl WithTransaction {
    fn new(pristine: &Pristine, shape: Shape) -> Self {
        let live = tempfile::tempdir().unwrap();
        copy_dir(pristine.dir.path(), live.path());
        let store = Store::open_with(live.path(), options()).unwrap();
        let mut rng = Rng::new(0x7a1e);
        let parts: Vec<StreamAppend> = shape
            .parts()
            .iter()
            .map(|&(stream, count)| StreamAppend {
                stream: stream.to_owned(),
                expected: ExpectedVersion::Any,
                // Never empty data: the last byte of each frame is then data, which garbage changes.
                events: (0..count)
                    .map(|_| {
                        let len = rng.range_usize(1, 300);
                        EventData::new("InTxn", rng.bytes(len))
                    })
                    .collect(),
            })
            .collect();
        store.append_multi(&parts).unwrap();
        let image = tempfile::tempdir().unwrap();
        copy_dir(live.path(), image.path());
        drop(store);
        let frames: Vec<RawFrame> = raw_frames(&image.path().join(pristine.segment.file_name().unwrap()))
            .into_iter()
            .filter(|frame| frame.position > pristine.state.head_position.unwrap())
            .collect();
        let count: usize = shape.parts().iter().map(|&(_, count)| count).sum();
        assert_eq!(frames.len(), count, "the transaction's frames follow the pristine records");
        assert_eq!(frames[0].at, pristine.end, "the transaction starts where the pristine log ended");
        WithTransaction { image, shape, frames }
    }

    fn end(&self) -> usize {
        let last = self.frames.last().unwrap();
        last.at + last.len
    }

    /// Copies the image, writes `garbage` at `at` (never leaving a byte as it was), and checks that recovery
    /// drops the whole transaction.
    fn check(&self, pristine: &Pristine, at: usize, garbage: &[u8], keep_index: bool, what: &str) {
        let context =
            format!("{:?}: {what} (bytes {at}..{}), index kept: {keep_index}", self.shape, at + garbage.len());
        let dir = tempfile::tempdir().unwrap();
        copy_dir(self.image.path(), dir.path());
        let segment = dir.path().join(pristine.segment.file_name().unwrap());
        let old = std::fs::read(&segment).unwrap();
        let garbage: Vec<u8> =
            garbage.iter().zip(&old[at..]).map(|(&new, &old)| if new == old { !old } else { new }).collect();
        overwrite(&segment, at, &garbage);
        if !keep_index {
            remove_index(dir.path());
        }
        check_recovered(dir.path(), &segment, pristine.end, &pristine.state, &self.shape.streams(), &context);
    }
}

fn check_garbage_inside_a_transaction(shape: Shape) {
    let pristine = pristine();
    let txn = WithTransaction::new(&pristine, shape);
    let mut rng = Rng::new(0x6a5d);
    let (start, end) = (pristine.end, txn.end());
    for keep_index in [true, false] {
        for (k, frame) in txn.frames.iter().enumerate() {
            // One whole frame garbled, the frames before and after it intact (the commit mark too, unless it is
            // the one garbled): the write of the group's middle pages was lost, and garbage landed there.
            let what = format!("frame {k} of {} garbled", txn.frames.len());
            txn.check(&pristine, frame.at, &rng.bytes(frame.len), keep_index, &what);
            // One byte of the frame changed: in its header (length, CRC, position, txn_after) or its body.
            for byte in [0, 5, 9, 64, frame.len - 1] {
                let what = format!("byte {byte} of frame {k} changed");
                txn.check(&pristine, frame.at + byte, &rng.bytes(1), keep_index, &what);
            }
            // A length that fits, then noise.
            let mut fake = (frame.len as u32).to_le_bytes().to_vec();
            fake.extend(rng.bytes(frame.len - 4));
            txn.check(
                &pristine,
                frame.at,
                &fake,
                keep_index,
                &format!("frame {k} replaced by a frame-like length and noise"),
            );
        }
        for _ in 0..6 {
            let from = rng.range_usize(start, end - 1);
            let to = rng.range_usize(from + 1, end + 1);
            txn.check(&pristine, from, &rng.bytes(to - from), keep_index, "a random span garbled");
        }
        for past in [1, 8, 1000] {
            let from = rng.range_usize(start, end);
            let what = format!("garbled from inside to {past} bytes past the end");
            txn.check(&pristine, from, &rng.bytes(end + past - from), keep_index, &what);
        }
    }
}

#[test]
fn garbage_inside_an_unfinished_append_of_several_events_removes_all_of_it() {
    check_garbage_inside_a_transaction(Shape::EventsOfOneStream);
}

#[test]
fn garbage_inside_an_unfinished_append_multi_removes_all_of_it() {
    check_garbage_inside_a_transaction(Shape::Streams);
}
