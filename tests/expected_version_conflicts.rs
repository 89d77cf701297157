//! Optimistic concurrency: every `ExpectedVersion` variant (`Any`, `NoStream`, `StreamExists`, `Exact` right,
//! wrong and too high) is admitted or refused correctly on an existing and on a missing stream. A refusal is
//! `Error::WrongExpectedVersion` carrying the stream, the expectation and the stream's actual last offset, and
//! writes nothing: the head position, every stream and the whole log are unchanged, and the store keeps
//! accepting appends. The same holds inside `append_multi`, and across a reopen.

mod support;

use annals::{Error, EventData, ExpectedVersion, Store, StreamAppend};
use support::state;

const EXISTING: &str = "existing";
const MISSING: &str = "missing";

fn event(n: u32) -> Vec<EventData> {
    vec![EventData::new("Happened", format!("event {n}").into_bytes())]
}

/// A store whose stream `EXISTING` has offsets 0..=2 (and another stream, so positions and offsets differ).
fn prepared() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("other", ExpectedVersion::NoStream, &event(0)).unwrap();
    store.append(EXISTING, ExpectedVersion::NoStream, &event(1)).unwrap();
    store.append(EXISTING, ExpectedVersion::Exact(0), &[event(2), event(3)].concat()).unwrap();
    assert_eq!(store.stream_version(EXISTING), Some(2));
    (dir, store)
}

/// Whether `expected` must be admitted against a stream whose last offset is `actual`.
fn admitted(expected: ExpectedVersion, actual: Option<u64>) -> bool {
    match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => actual.is_none(),
        ExpectedVersion::StreamExists => actual.is_some(),
        ExpectedVersion::Exact(offset) => actual == Some(offset),
    }
}

fn variants() -> Vec<ExpectedVersion> {
    vec![
        ExpectedVersion::Any,
        ExpectedVersion::NoStream,
        ExpectedVersion::StreamExists,
        ExpectedVersion::Exact(2),        // right for EXISTING
        ExpectedVersion::Exact(1),        // wrong: too low
        ExpectedVersion::Exact(0),        // wrong: the first offset
        ExpectedVersion::Exact(3),        // too high by one
        ExpectedVersion::Exact(u64::MAX), // far too high
    ]
}

/// Appends with `expected` to `stream` (last offset `actual`) and checks the outcome and its effect.
fn check_one(store: &Store, stream: &str, actual: Option<u64>, expected: ExpectedVersion) {
    let context = format!("{expected:?} on {stream} (actual {actual:?})");
    let before = state(store, &[EXISTING, MISSING]);
    let result = store.append(stream, expected, &event(99));
    if admitted(expected, actual) {
        let result = result.unwrap_or_else(|err| panic!("{context}: refused: {err}"));
        let offset = actual.map_or(0, |last| last + 1);
        assert_eq!((result.first_offset, result.last_offset), (offset, offset), "{context}");
        let position = before.head_position.map_or(0, |head| head + 1);
        assert_eq!((result.first_position, result.last_position), (position, position), "{context}");
        assert_eq!(store.stream_version(stream), Some(offset), "{context}");
        assert_eq!(store.head_position(), Some(position), "{context}");
    } else {
        match &result {
            Err(Error::WrongExpectedVersion { stream: s, expected: e, actual: a }) => {
                assert_eq!((s.as_str(), *e, *a), (stream, expected, actual), "{context}: error fields");
            }
            other => panic!("{context}: expected WrongExpectedVersion, got {other:?}"),
        }
        assert_eq!(state(store, &[EXISTING, MISSING]), before, "{context}: a refused append changed the store");
    }
}

#[test]
fn every_variant_on_an_existing_stream() {
    for expected in variants() {
        let (_dir, store) = prepared();
        check_one(&store, EXISTING, Some(2), expected);
        // Usable afterwards, with the numbering unbroken.
        let version = store.stream_version(EXISTING).unwrap();
        let next = store.append(EXISTING, ExpectedVersion::Exact(version), &event(7)).unwrap();
        assert_eq!(next.first_offset, version + 1, "{expected:?}");
    }
}

#[test]
fn every_variant_on_a_missing_stream() {
    for expected in variants() {
        let (_dir, store) = prepared();
        check_one(&store, MISSING, None, expected);
        let version = store.stream_version(MISSING);
        let follow_up = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let next = store.append(MISSING, follow_up, &event(7)).unwrap();
        assert_eq!(next.first_offset, version.map_or(0, |v| v + 1), "{expected:?}");
    }
}

#[test]
fn conflicts_in_a_row_write_nothing_and_the_store_stays_usable() {
    let (dir, store) = prepared();
    let before = state(&store, &[EXISTING, MISSING]);
    for _ in 0..20 {
        for (stream, expected) in [
            (EXISTING, ExpectedVersion::NoStream),
            (EXISTING, ExpectedVersion::Exact(5)),
            (MISSING, ExpectedVersion::StreamExists),
            (MISSING, ExpectedVersion::Exact(0)),
        ] {
            let result = store.append(stream, expected, &event(5));
            assert!(matches!(result, Err(Error::WrongExpectedVersion { .. })), "{stream} {expected:?}: {result:?}");
        }
    }
    assert_eq!(state(&store, &[EXISTING, MISSING]), before);
    let next = store.append(EXISTING, ExpectedVersion::Exact(2), &event(8)).unwrap();
    assert_eq!((next.first_offset, next.first_position), (3, 4));
    store.close().unwrap();

    // Nothing of the refused appends reappears after a reopen.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.head_position(), Some(4));
    assert_eq!(store.stream_version(EXISTING), Some(3));
    assert_eq!(store.stream_version(MISSING), None);
    let result = store.append(EXISTING, ExpectedVersion::Exact(2), &event(9));
    assert!(matches!(
        result,
        Err(Error::WrongExpectedVersion { ref stream, expected: ExpectedVersion::Exact(2), actual: Some(3) })
            if stream == EXISTING
    ));
}

#[test]
fn a_conflict_inside_append_multi_names_the_conflicting_stream_and_writes_nothing() {
    let (_dir, store) = prepared();
    let before = state(&store, &[EXISTING, MISSING]);
    let part = |stream: &str, expected| StreamAppend { stream: stream.into(), expected, events: event(1) };
    let result = store.append_multi(&[
        part(MISSING, ExpectedVersion::NoStream),
        part("other", ExpectedVersion::Exact(0)),
        part(EXISTING, ExpectedVersion::Exact(1)),
    ]);
    match &result {
        Err(Error::WrongExpectedVersion { stream, expected, actual }) => {
            assert_eq!((stream.as_str(), *expected, *actual), (EXISTING, ExpectedVersion::Exact(1), Some(2)));
        }
        other => panic!("expected WrongExpectedVersion, got {other:?}"),
    }
    assert_eq!(state(&store, &[EXISTING, MISSING]), before);
}

#[test]
fn racing_exact_appends_admit_exactly_one_per_version() {
    let (_dir, store) = prepared();
    // Eight threads each try to extend EXISTING from the version they last saw; for each version exactly one
    // wins and the others are told the actual version.
    let winners = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|thread| {
                let store = store.clone();
                scope.spawn(move || {
                    let mut won = 0;
                    for _ in 0..25 {
                        let seen = store.stream_version(EXISTING).unwrap();
                        match store.append(EXISTING, ExpectedVersion::Exact(seen), &event(thread)) {
                            Ok(result) => {
                                assert_eq!(result.first_offset, seen + 1);
                                won += 1;
                            }
                            Err(Error::WrongExpectedVersion { actual: Some(actual), .. }) => assert!(actual > seen),
                            Err(other) => panic!("unexpected error {other}"),
                        }
                    }
                    won
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().unwrap()).sum::<u64>()
    });
    assert_eq!(store.stream_version(EXISTING), Some(2 + winners));
    let offsets: Vec<u64> = support::read_stream(&store, EXISTING, 0).iter().map(|event| event.offset).collect();
    assert_eq!(offsets, (0..=2 + winners).collect::<Vec<_>>());
}
