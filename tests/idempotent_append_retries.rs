//! Retrying an append whose events (same ids, same order) already sit where its expectation puts them returns
//! the original `AppendResult` and writes nothing: with `Exact`, `NoStream`, `StreamExists` and `Any` (against
//! the stream's last events), for `append_multi` too, inside one group, after `Poisoned` and a reopen, and
//! after the appending process was killed. Anything else is not a retry: a conflict under an exact
//! expectation, a new append under `Any`.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use annals::{AppendResult, Error, EventData, ExpectedVersion, FaultInjector, IoOp, Options, Store, StreamAppend};
use uuid::Uuid;

fn event(id: u128) -> EventData {
    EventData::new("Deposited", id.to_le_bytes().to_vec()).with_id(Uuid::from_u128(id))
}

fn events(ids: std::ops::Range<u128>) -> Vec<EventData> {
    ids.map(event).collect()
}

fn stream_ids(store: &Store, stream: &str) -> Vec<u128> {
    store.read_stream(stream, 0).unwrap().map(|e| e.unwrap().event_id().as_u128()).collect()
}

#[test]
fn a_retry_after_success_returns_the_original_result_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("other", ExpectedVersion::Any, &[EventData::new("X", vec![1])]).unwrap();

    let first = store.append("acc-1", ExpectedVersion::NoStream, &events(1..3)).unwrap();
    let second = store.append("acc-1", ExpectedVersion::Exact(1), &events(3..4)).unwrap();
    let third = store.append("acc-1", ExpectedVersion::Any, &events(4..6)).unwrap();
    let head = store.head_position();
    assert_eq!(store.append("acc-1", ExpectedVersion::NoStream, &events(1..3)).unwrap(), first, "NoStream retry");
    assert_eq!(store.append("acc-1", ExpectedVersion::Exact(1), &events(3..4)).unwrap(), second, "Exact retry");
    assert_eq!(store.append("acc-1", ExpectedVersion::Any, &events(4..6)).unwrap(), third, "Any retry");
    assert_eq!(store.append("acc-1", ExpectedVersion::StreamExists, &events(4..6)).unwrap(), third);
    assert_eq!(store.head_position(), head, "no retry wrote anything");
    assert_eq!(stream_ids(&store, "acc-1"), (1..6).collect::<Vec<_>>());

    // A part of the original is committed too: its own offsets and positions.
    let part = store.append("acc-1", ExpectedVersion::NoStream, &events(1..2)).unwrap();
    assert_eq!((part.first_offset, part.last_offset, part.first_position), (0, 0, first.first_position));
    assert_eq!(store.head_position(), head);

    // Not retries: other ids, a different order, more events than the stream holds there.
    for (expected, ids) in [
        (ExpectedVersion::Exact(1), vec![9]),
        (ExpectedVersion::NoStream, vec![2, 1]),
        (ExpectedVersion::Exact(1), vec![3, 4, 5, 6]),
        (ExpectedVersion::Exact(3), vec![6]),
    ] {
        let retry: Vec<EventData> = ids.iter().map(|&id| event(id)).collect();
        let result = store.append("acc-1", expected, &retry);
        assert!(matches!(result, Err(Error::WrongExpectedVersion { .. })), "{expected:?} {ids:?}: {result:?}");
    }
    // Events without ids given are never a retry: each append is new.
    let anonymous = [EventData::new("Deposited", vec![1])];
    let a = store.append("acc-2", ExpectedVersion::Any, &anonymous).unwrap();
    let b = store.append("acc-2", ExpectedVersion::Any, &anonymous).unwrap();
    assert_ne!(a, b);
    // Under `Any`, only the stream's last events count: once the stream moved on, the same ids append again
    // (a duplicate: documented, as KurrentDB's `Any`).
    store.append("acc-1", ExpectedVersion::Any, &events(6..7)).unwrap();
    let again = store.append("acc-1", ExpectedVersion::Any, &events(4..6)).unwrap();
    assert_eq!(again.first_offset, 6, "the retry under Any came after another append: a new append");
    assert_eq!(store.head_position(), head.map(|h| h + 5));
}

#[test]
fn a_multi_stream_retry_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let transfer = |from: u128, to: u128, expected: [ExpectedVersion; 2]| {
        vec![
            StreamAppend { stream: "acc-a".into(), expected: expected[0], events: vec![event(from)] },
            StreamAppend { stream: "acc-b".into(), expected: expected[1], events: vec![event(to)] },
        ]
    };
    let original = store.append_multi(&transfer(1, 2, [ExpectedVersion::NoStream; 2])).unwrap();
    let head = store.head_position();
    assert_eq!(store.append_multi(&transfer(1, 2, [ExpectedVersion::NoStream; 2])).unwrap(), original);
    assert_eq!(store.head_position(), head);
    // One part matches, the other does not: a conflict, nothing written.
    let mixed = store.append_multi(&transfer(1, 3, [ExpectedVersion::NoStream; 2]));
    assert!(matches!(mixed, Err(Error::WrongExpectedVersion { .. })), "{mixed:?}");
    assert_eq!(store.head_position(), head);
    // Under Any: both streams' last events are the original's.
    assert_eq!(store.append_multi(&transfer(1, 2, [ExpectedVersion::Any; 2])).unwrap(), original);
}

/// Two identical appends in flight at once (a client that timed out and retried while the first was still
/// queued): one writes, the other gets the same result, whichever group they land in.
#[test]
fn concurrent_duplicates_write_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for round in 0..50u128 {
        let start = Barrier::new(4);
        let results: Vec<AppendResult> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        start.wait();
                        let expected = if round == 0 {
                            ExpectedVersion::NoStream
                        } else {
                            ExpectedVersion::Exact(round as u64 * 2 - 1)
                        };
                        store.append("acc-1", expected, &events(round * 2..round * 2 + 2)).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|handle| handle.join().unwrap()).collect()
        });
        assert!(results.windows(2).all(|pair| pair[0] == pair[1]), "round {round}: {results:?}");
    }
    assert_eq!(stream_ids(&store, "acc-1"), (0..100).collect::<Vec<_>>());
}

#[test]
fn a_retry_after_poisoned_and_a_reopen_is_safe_whatever_the_failed_append_left() {
    for fail in [IoOp::SyncData, IoOp::Write] {
        let dir = tempfile::tempdir().unwrap();
        let armed = Arc::new(AtomicBool::new(false));
        let injector = {
            let armed = armed.clone();
            FaultInjector::new(move |op| {
                (op == fail && armed.load(Ordering::SeqCst)).then(|| std::io::Error::from_raw_os_error(libc::EIO))
            })
        };
        let store =
            Store::open_with(dir.path(), Options { fault_injector: Some(injector), ..Default::default() }).unwrap();
        store.append("acc-1", ExpectedVersion::NoStream, &events(1..3)).unwrap();
        armed.store(true, Ordering::SeqCst);
        let failed = store.append("acc-1", ExpectedVersion::Exact(1), &events(3..5));
        assert!(matches!(failed, Err(Error::Poisoned { .. })), "{fail:?}: {failed:?}");
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        let retried = store.append("acc-1", ExpectedVersion::Exact(1), &events(3..5)).unwrap();
        assert_eq!((retried.first_offset, retried.last_offset), (2, 3), "{fail:?}");
        let again = store.append("acc-1", ExpectedVersion::Exact(1), &events(3..5)).unwrap();
        assert_eq!(again, retried, "{fail:?}");
        assert_eq!(stream_ids(&store, "acc-1"), vec![1, 2, 3, 4], "{fail:?}: the events once");
    }
}

// ---------------------------------------------------------------------------------------------------------
// After a kill: a child runs a script of steps (an `Exact` append, then an `Any` multi-stream append) with
// fixed ids and is killed at a random moment. The next child resumes the way a client with no memory of its
// last answer must: it runs the last step it may have begun again (both appends: retries if they were
// committed, new if not), then the rest. The streams must end up holding the script once.

const CHILD_DIR_ENV: &str = "ANNALS_IDEMPOTENT_CHILD_DIR";
const SCRIPT: u128 = 2_000;

#[test]
#[ignore = "the child process of a_retry_after_a_kill_is_safe; idle unless ANNALS_IDEMPOTENT_CHILD_DIR is set"]
fn child_entry() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else { return };
    let store = Store::open(&dir).unwrap();
    let done = store.stream_version("acc-1").map_or(0, |version| u128::from(version / 2 + 1));
    for i in done.saturating_sub(1)..SCRIPT {
        let expected = if i == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(i as u64 * 2 - 1) };
        let result = store.append("acc-1", expected, &events(i * 2..i * 2 + 2)).unwrap();
        assert_eq!(result.first_offset, i as u64 * 2);
        let parts = [
            StreamAppend { stream: "ledger".into(), expected: ExpectedVersion::Any, events: vec![event(10_000 + i)] },
            StreamAppend {
                stream: format!("acc-{}", 2 + i % 3),
                expected: ExpectedVersion::Any,
                events: vec![event(20_000 + i)],
            },
        ];
        store.append_multi(&parts).unwrap();
    }
    std::process::exit(0);
}

#[test]
fn a_retry_after_a_kill_is_safe() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = support::Rng::new(0x1de3);
    let mut kills = 0;
    loop {
        let mut child = support::spawn_child("child_entry", CHILD_DIR_ENV, dir.path());
        let delay = Duration::from_millis(rng.range(20, 220));
        std::thread::sleep(delay);
        if kills < 8 && child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            child.wait().unwrap();
            kills += 1;
            continue;
        }
        let status = child.wait().unwrap();
        assert!(status.success(), "the child finished the script: {status}");
        break;
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(stream_ids(&store, "acc-1"), (0..SCRIPT * 2).collect::<Vec<_>>(), "after {kills} kills");
    assert_eq!(stream_ids(&store, "ledger"), (10_000..10_000 + SCRIPT).collect::<Vec<_>>(), "after {kills} kills");
    for k in 0..3 {
        let want: Vec<u128> = (0..SCRIPT).filter(|i| i % 3 == k).map(|i| 20_000 + i).collect();
        assert_eq!(stream_ids(&store, &format!("acc-{}", 2 + k)), want);
    }
    assert!(kills > 0, "at least one kill happened mid-script");
}
