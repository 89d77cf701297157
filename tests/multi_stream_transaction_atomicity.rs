//! `append_multi` is one atomic transaction over several streams. Through the API: results come in the order
//! of the parts at consecutive positions; one conflicting part (whichever it is) fails the whole transaction
//! with nothing written; a stream named twice is `DuplicateStream`, no parts or a part without events is
//! `EmptyAppend`, and both write nothing; a concurrent reader of the whole log sees only whole transactions,
//! each exactly as appended (its events' streams, offsets, order and payloads, checked against the payloads
//! the test computes for each position).
//! Across a crash: when any of the transaction's later frames is cut off, zeroed or garbled in the last
//! segment (store dropped, persistent index deleted), reopening shows none of the transaction, exactly the
//! state before it, and the store accepts appends at the right offsets and positions and reopens stably.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use annals::{Error, EventData, ExpectedVersion, Options, Store, StreamAppend};
use support::{copy_dir, overwrite, raw_frames, read_all, remove_index, segment_paths, small_options, state, Rng};

fn events(tag: &str, count: usize) -> Vec<EventData> {
    (0..count).map(|i| EventData::new("Moved", format!("{tag}-{i}-{}", "x".repeat(60)).into_bytes())).collect()
}

fn part(stream: &str, expected: ExpectedVersion, events: Vec<EventData>) -> StreamAppend {
    StreamAppend { stream: stream.into(), expected, events }
}

/// A store where `a` has offsets 0..=1 and `b` offset 0; `c` does not exist.
fn prepared(dir: &Path, options: Options) -> Store {
    let store = Store::open_with(dir, options).unwrap();
    store.append("a", ExpectedVersion::NoStream, &events("a", 2)).unwrap();
    store.append("b", ExpectedVersion::NoStream, &events("b", 1)).unwrap();
    store
}

#[test]
fn a_transaction_over_three_streams_commits_in_order_at_consecutive_positions() {
    let dir = tempfile::tempdir().unwrap();
    let store = prepared(dir.path(), Options::default());
    let results = store
        .append_multi(&[
            part("c", ExpectedVersion::NoStream, events("c", 2)),
            part("a", ExpectedVersion::Exact(1), events("a2", 3)),
            part("b", ExpectedVersion::StreamExists, events("b2", 1)),
        ])
        .unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!((results[0].first_offset, results[0].last_offset), (0, 1));
    assert_eq!((results[1].first_offset, results[1].last_offset), (2, 4));
    assert_eq!((results[2].first_offset, results[2].last_offset), (1, 1));
    assert_eq!((results[0].first_position, results[2].last_position), (3, 8));
    for pair in results.windows(2) {
        assert_eq!(pair[0].last_position + 1, pair[1].first_position, "parts are at consecutive positions");
    }
    let all = read_all(&store, 3);
    let order: Vec<(&str, u64)> = all.iter().map(|event| (event.stream.as_str(), event.offset)).collect();
    assert_eq!(order, [("c", 0), ("c", 1), ("a", 2), ("a", 3), ("a", 4), ("b", 1)]);
    assert_eq!(all[2].data, b"a2-0-".iter().chain(&[b'x'; 60]).copied().collect::<Vec<_>>());
}

#[test]
fn one_conflicting_part_fails_the_whole_transaction() {
    for conflicting in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let store = prepared(dir.path(), Options::default());
        let before = state(&store, &["a", "b", "c"]);
        let mut parts = vec![
            part("c", ExpectedVersion::NoStream, events("c", 2)),
            part("a", ExpectedVersion::Exact(1), events("a", 3)),
            part("b", ExpectedVersion::Exact(0), events("b", 1)),
        ];
        // Break one expectation: c exists-check, a too high, b missing-check.
        parts[conflicting].expected =
            [ExpectedVersion::StreamExists, ExpectedVersion::Exact(2), ExpectedVersion::NoStream][conflicting];
        let actual = [None, Some(1), Some(0)][conflicting];
        let result = store.append_multi(&parts);
        match &result {
            Err(Error::WrongExpectedVersion { stream, expected, actual: found }) => {
                assert_eq!(stream, &parts[conflicting].stream);
                assert_eq!(*expected, parts[conflicting].expected);
                assert_eq!(*found, actual);
            }
            other => panic!("part {conflicting} conflicts: expected WrongExpectedVersion, got {other:?}"),
        }
        assert_eq!(state(&store, &["a", "b", "c"]), before, "part {conflicting}: a failed transaction wrote");
        // The same transaction with the expectation fixed commits at the positions the failed one would have had.
        parts[conflicting].expected = ExpectedVersion::Any;
        let results = store.append_multi(&parts).unwrap();
        assert_eq!(results[0].first_position, 3);
    }
}

#[test]
fn duplicate_streams_and_empty_transactions_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = prepared(dir.path(), Options::default());
    let before = state(&store, &["a", "b", "c"]);

    let duplicate = store.append_multi(&[
        part("c", ExpectedVersion::NoStream, events("c", 1)),
        part("a", ExpectedVersion::Any, events("a", 1)),
        part("c", ExpectedVersion::Any, events("c", 1)),
    ]);
    assert!(matches!(&duplicate, Err(Error::DuplicateStream { stream }) if stream == "c"), "{duplicate:?}");
    assert!(matches!(store.append_multi(&[]), Err(Error::EmptyAppend)));
    let empty_part = store
        .append_multi(&[part("a", ExpectedVersion::Any, events("a", 1)), part("b", ExpectedVersion::Any, Vec::new())]);
    assert!(matches!(empty_part, Err(Error::EmptyAppend)), "{empty_part:?}");
    assert_eq!(state(&store, &["a", "b", "c"]), before);

    let results = store.append_multi(&[part("c", ExpectedVersion::NoStream, events("c", 1))]).unwrap();
    assert_eq!((results[0].first_offset, results[0].first_position), (0, 3));
}

/// Sets the flag when dropped: a writer that panics still stops the reader it is waiting for.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

#[test]
fn readers_never_see_part_of_a_transaction() {
    const ROUNDS: usize = 100;
    const PARTS: usize = 3;
    const PER_PART: usize = 2;
    const TXN_EVENTS: usize = PARTS * PER_PART;
    // Round `round` appends one transaction: `PER_PART` events to each of the streams s0, s1, s2, in that order,
    // each payload naming its round, part and index. The log a reader may see is therefore known without asking
    // the store: the event at position `round * TXN_EVENTS + part * PER_PART + i`.
    let payload = |round: usize, part: usize, i: usize| format!("r{round}-p{part}-{i}-{}", "x".repeat(60)).into_bytes();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small_options(8192)).unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let reader = {
            let (store, done) = (store.clone(), &done);
            scope.spawn(move || {
                let (mut observed, mut seen) = (0, 0);
                while !done.load(Ordering::Acquire) || observed == 0 {
                    let all = read_all(&store, 0);
                    assert_eq!(all.len() % TXN_EVENTS, 0, "a reader saw {} events: part of a transaction", all.len());
                    assert!(all.len() >= seen, "a reader saw {} events after {seen}", all.len());
                    for (position, event) in all.iter().enumerate() {
                        let (round, index) = (position / TXN_EVENTS, position % TXN_EVENTS);
                        let (part, i) = (index / PER_PART, index % PER_PART);
                        let expected = (format!("s{part}"), (round * PER_PART + i) as u64, payload(round, part, i));
                        let found = (event.stream.clone(), event.offset, event.data.clone());
                        assert_eq!(event.position, position as u64, "position {position}");
                        assert!(
                            found == expected,
                            "position {position}: expected event {i} of part {part} of round {round} {:?}, read {:?}",
                            (&expected.0, expected.1, String::from_utf8_lossy(&expected.2)),
                            (&found.0, found.1, String::from_utf8_lossy(&found.2)),
                        );
                    }
                    seen = all.len();
                    observed += 1;
                }
            })
        };
        let _stop_reader = SetOnDrop(&done);
        for round in 0..ROUNDS {
            let parts: Vec<StreamAppend> = (0..PARTS)
                .map(|p| {
                    let events = (0..PER_PART).map(|i| EventData::new("Moved", payload(round, p, i))).collect();
                    part(&format!("s{p}"), ExpectedVersion::Any, events)
                })
                .collect();
            store.append_multi(&parts).unwrap();
        }
        done.store(true, Ordering::Release);
        reader.join().unwrap();
    });
    assert_eq!(read_all(&store, 0).len(), ROUNDS * TXN_EVENTS);
}

/// How the transaction's bytes are damaged.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Zero from this byte to the end of the transaction (a write that stopped here).
    CutAt(usize),
    /// XOR one byte (a garbled sector), leaving the bytes after it intact.
    Flip(usize),
    /// Overwrite this range with random bytes.
    Garbage(usize, usize),
}

#[test]
fn a_transaction_damaged_in_its_later_frames_vanishes_whole_after_a_crash() {
    let options = || small_options(4096);
    let pristine = tempfile::tempdir().unwrap();
    let store = prepared(pristine.path(), options());
    // Fill the first segment past its middle, so the transaction sits after a segment boundary.
    for i in 0..12 {
        store.append(&format!("filler-{}", i % 2), ExpectedVersion::Any, &events("f", 1)).unwrap();
    }
    let names = ["a", "b", "c", "filler-0", "filler-1"];
    let before = state(&store, &names);
    let first = before.head_position.unwrap() + 1;
    let results = store
        .append_multi(&[
            part("a", ExpectedVersion::Exact(1), events("ta", 2)),
            part("c", ExpectedVersion::NoStream, events("tc", 2)),
            part("b", ExpectedVersion::Exact(0), events("tb", 2)),
        ])
        .unwrap();
    assert_eq!((results[0].first_position, results[2].last_position), (first, first + 5));
    drop(store);
    remove_index(pristine.path());

    let last_segment = segment_paths(pristine.path()).pop().unwrap();
    let frames: Vec<_> = raw_frames(&last_segment).into_iter().filter(|frame| frame.position >= first).collect();
    assert_eq!(frames.len(), 6, "the whole transaction is in the last segment");
    assert_eq!(frames.iter().map(|frame| frame.txn_after).collect::<Vec<_>>(), [5, 4, 3, 2, 1, 0]);
    let txn_end = frames[5].end_aligned();

    let mut damages = Vec::new();
    let mut rng = Rng::new(0x7a11);
    for frame in &frames[1..] {
        // Every cut point on an 8-byte grid, and a few off it, inside each later frame.
        damages.extend((frame.at..frame.end_aligned()).step_by(8).map(Damage::CutAt));
        damages.extend([frame.at + 1, frame.at + 5, frame.at + 87, frame.at + frame.len - 1].map(Damage::CutAt));
        // A flipped byte in the length, the CRC, the header, the names and the payload.
        damages.extend([0, 4, 9, 30, 64, 70, 88, frame.len - 1].map(|at| Damage::Flip(frame.at + at)));
        let start = frame.at + rng.below(frame.len as u64) as usize;
        damages.push(Damage::Garbage(start, frame.end_aligned()));
        damages.push(Damage::Garbage(frame.at, txn_end));
    }

    for damage in damages {
        let context = format!("{damage:?}");
        let dir = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), dir.path());
        let segment = dir.path().join(last_segment.file_name().unwrap());
        match damage {
            Damage::CutAt(at) => overwrite(&segment, at, &vec![0; txn_end - at]),
            Damage::Flip(at) => support::flip_byte(&segment, at, 0x20),
            Damage::Garbage(from, to) => overwrite(&segment, from, &rng.bytes(to - from)),
        }
        let store = Store::open_with(dir.path(), options()).unwrap_or_else(|err| panic!("{context}: open: {err}"));
        assert_eq!(state(&store, &names), before, "{context}: part of the transaction survived");
        assert!(store.recovery_report().tail_bytes_cut > 0, "{context}: {:?}", store.recovery_report());

        // The store goes on from the state before the transaction.
        let result = store.append("c", ExpectedVersion::NoStream, &events("after", 1)).unwrap();
        assert_eq!((result.first_offset, result.first_position), (0, first), "{context}");
        let result = store.append("a", ExpectedVersion::Exact(1), &events("after", 1)).unwrap();
        assert_eq!((result.first_offset, result.first_position), (2, first + 1), "{context}");
        let after = state(&store, &names);
        drop(store);
        let store = Store::open_with(dir.path(), options()).unwrap();
        assert_eq!(state(&store, &names), after, "{context}: the second reopen differs");
        drop(store);
        remove_index(dir.path());
        let store = Store::open_with(dir.path(), options()).unwrap();
        assert_eq!(state(&store, &names), after, "{context}: a rebuild after recovery differs");
    }

    // Undamaged, the transaction is there in full: the damage is what removed it.
    let store = Store::open_with(pristine.path(), options()).unwrap();
    assert_eq!(store.head_position(), Some(first + 5));
    assert_eq!(store.stream_version("c"), Some(1));
}
