//! Garbage after the last record is cut on reopen and nothing before it is lost: with random bytes of many
//! lengths written right after the last record, or further on with zeros between, and the index checkpoint
//! current or deleted, reopening (also twice) shows exactly the records there were, the store appends at the
//! right offset and position, no garbage byte is left after the new record, and reopening is stable. In particular, intact frames left further on in the segment by an unsynced write (whose first
//! pages were lost in the crash) must never line up with later appends and come back as committed events.

mod support;

use std::path::{Path, PathBuf};

use annals::{Durability, EventData, ExpectedVersion, Options, Store};
use support::{
    copy_dir, overwrite, raw_frames, read_all, remove_checkpoint, segment_paths, small_options, state, RawFrame, Rng,
    State,
};

const SEGMENT_SIZE: usize = 64 << 10;
const NAMES: [&str; 3] = ["a", "b", "c"];

fn options() -> Options {
    small_options(SEGMENT_SIZE as u64, 4)
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

/// Opens `dir` and checks that it holds exactly `expected`, that appends continue at the right place, that
/// the garbage is gone once the next record is written after `end`, and that reopening is stable.
fn check_recovered(dir: &Path, segment: &Path, end: usize, expected: &State, context: &str) {
    let store = Store::open_with(dir, options()).unwrap_or_else(|err| panic!("{context}: open: {err}"));
    assert_eq!(&state(&store, &NAMES), expected, "{context}: records were lost or invented");
    let verified = store.verify().unwrap();
    assert!(verified.is_ok(), "{context}: {verified:?}");
    drop(store);
    // Opened again before anything is written, it finds the same end.
    let store = Store::open_with(dir, options()).unwrap();
    assert_eq!(&state(&store, &NAMES), expected, "{context}: second open");

    let head = expected.head_position.unwrap();
    let version = expected.streams["a"].0.unwrap();
    let result = store.append("a", ExpectedVersion::Exact(version), &[EventData::new("After", &b"after"[..])]).unwrap();
    assert_eq!((result.first_offset, result.first_position), (version + 1, head + 1), "{context}");
    let after = state(&store, &NAMES);
    store.close().unwrap();
    // The garbage is cut: every byte after the new record is zero.
    let new_end = end + (support::FRAME_HEADER_LEN + "a".len() + "After".len() + "after".len()).next_multiple_of(8);
    let bytes = std::fs::read(segment).unwrap();
    let left = bytes[new_end..].iter().position(|&b| b != 0).map(|at| at + new_end);
    assert_eq!(left, None, "{context}: garbage left after the new record, which ends at {new_end}");
    let store = Store::open_with(dir, options()).unwrap();
    assert_eq!(store.recovery_report().tail_bytes_cut, 0, "{context}: {:?}", store.recovery_report());
    assert_eq!(state(&store, &NAMES), after, "{context}: reopen after the append");
    drop(store);
    remove_checkpoint(dir);
    let store = Store::open_with(dir, options()).unwrap();
    assert_eq!(state(&store, &NAMES), after, "{context}: rebuild after the append");
}

/// Writes `garbage` at `end + gap` in a copy of the pristine store and checks recovery.
fn check_garbage(pristine: &Pristine, gap: usize, garbage: &[u8], keep_checkpoint: bool) {
    let context =
        format!("{} bytes of garbage {gap} bytes after the end, checkpoint kept: {keep_checkpoint}", garbage.len());
    let dir = tempfile::tempdir().unwrap();
    copy_dir(pristine.dir.path(), dir.path());
    let segment = dir.path().join(pristine.segment.file_name().unwrap());
    overwrite(&segment, pristine.end + gap, garbage);
    if !keep_checkpoint {
        remove_checkpoint(dir.path());
    }
    check_recovered(dir.path(), &segment, pristine.end, &pristine.state, &context);
}

#[test]
fn garbage_right_after_the_last_record_is_cut() {
    let pristine = pristine();
    let mut rng = Rng::new(0x6a5b);
    let rest = SEGMENT_SIZE - pristine.end;
    for len in [1, 3, 4, 7, 8, 9, 87, 88, 89, 100, 1000, 4096, rest] {
        for keep_checkpoint in [true, false] {
            let mut garbage = rng.bytes(len);
            // A zero first byte would read as "end of log" only by chance; test both a nonzero and a zero start.
            garbage[0] |= 1;
            check_garbage(&pristine, 0, &garbage, keep_checkpoint);
            if len > 4 {
                garbage[..4].fill(0);
                garbage[4] |= 1;
                check_garbage(&pristine, 0, &garbage, keep_checkpoint);
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
        for keep_checkpoint in [true, false] {
            let mut garbage = rng.bytes(100);
            garbage[0] |= 1;
            check_garbage(&pristine, gap, &garbage, keep_checkpoint);
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

    for keep_checkpoint in [true, false] {
        let context = format!("checkpoint kept: {keep_checkpoint}");
        let dir = tempfile::tempdir().unwrap();
        copy_dir(pristine.dir.path(), dir.path());
        let segment = dir.path().join(pristine.segment.file_name().unwrap());
        overwrite(&segment, survived.at, &future_bytes[survived.at..survived_end]);
        if !keep_checkpoint {
            remove_checkpoint(dir.path());
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
