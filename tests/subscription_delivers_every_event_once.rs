//! A subscription delivers every matching event once, in position order, with no gap and no duplicate at the
//! switch from history to live or across segment rolls; only committed events; `CaughtUp` once it has read
//! the history; `Checkpoint` progress through long runs of events its filter skips; and it ends with `Closed`
//! when the store closes while it waits.
//!
//! The expected events come from the appenders' own acknowledgements (positions from `AppendResult`, streams
//! and types from what was appended), not from the store's readers.

mod support;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use annals::{
    Error, EventData, ExpectedVersion, Filter, Options, Store, StreamAppend, SubscribeFrom, Subscription,
    SubscriptionMessage,
};

/// Generous: only a bug makes a test wait this long (and then it fails instead of hanging).
const PATIENCE: Duration = Duration::from_secs(60);

fn options() -> Options {
    // Small segments: the appends below roll many times.
    support::small_options(16 << 10)
}

/// What a message came to, owned (for comparison).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Event { position: u64, stream: String, event_type: String },
    CaughtUp,
    FellBehind,
    Checkpoint(u64),
    Failed(String),
}

/// Reads a subscription on its own thread and forwards what it yields, so that a test waits with a timeout.
struct Collector {
    messages: mpsc::Receiver<Seen>,
}

impl Collector {
    fn new(mut subscription: Subscription) -> Self {
        let (tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            for message in subscription.by_ref() {
                let seen = match message {
                    Ok(SubscriptionMessage::Event(event)) => Seen::Event {
                        position: event.position(),
                        stream: event.stream().to_owned(),
                        event_type: event.event_type().to_owned(),
                    },
                    Ok(SubscriptionMessage::CaughtUp) => Seen::CaughtUp,
                    Ok(SubscriptionMessage::FellBehind) => Seen::FellBehind,
                    Ok(SubscriptionMessage::Checkpoint(position)) => Seen::Checkpoint(position),
                    Ok(other) => panic!("unexpected message {other:?}"),
                    Err(err) => Seen::Failed(err.to_string()),
                };
                if tx.send(seen).is_err() {
                    return;
                }
            }
        });
        Collector { messages }
    }

    /// Every message until the subscription ends with `Closed` (the store was closed: nothing more comes).
    fn until_closed(&self) -> Vec<Seen> {
        let mut seen = Vec::new();
        loop {
            match self.next() {
                Seen::Failed(reason) if reason.contains("closed") => return seen,
                Seen::Failed(reason) => panic!("the subscription failed: {reason}"),
                message => seen.push(message),
            }
        }
    }

    fn next(&self) -> Seen {
        self.messages.recv_timeout(PATIENCE).expect("the subscription yields within the patience")
    }

    /// Every message up to the first event at or after `position`... or until `CaughtUp` with nothing left
    /// below `end`: collects until the subscription has delivered everything below `end`.
    fn until_position(&self, end: u64) -> Vec<Seen> {
        let mut seen = Vec::new();
        loop {
            let message = self.next();
            let done = match &message {
                Seen::Event { position, .. } | Seen::Checkpoint(position) => *position + 1 >= end,
                Seen::Failed(reason) => panic!("the subscription failed: {reason}"),
                _ => false,
            };
            seen.push(message);
            if done {
                return seen;
            }
        }
    }
}

fn events_of(seen: &[Seen]) -> Vec<(u64, String, String)> {
    seen.iter()
        .filter_map(|message| match message {
            Seen::Event { position, stream, event_type } => Some((*position, stream.clone(), event_type.clone())),
            _ => None,
        })
        .collect()
}

/// The acknowledged events: position -> (stream, type).
type Acked = BTreeMap<u64, (String, String)>;

/// Appends `count` transactions from each of `writers` threads: single events and multi-stream transactions
/// over accounts, orders and a `$`-stream, with types `Deposited`, `Withdrawn`, `Placed`.
fn write_concurrently(store: &Store, writers: usize, count: usize, start: &Barrier) -> Acked {
    let acked = Arc::new(parking_lot::Mutex::new(Acked::new()));
    std::thread::scope(|scope| {
        for writer in 0..writers {
            let (store, acked) = (store.clone(), acked.clone());
            scope.spawn(move || {
                start.wait();
                for i in 0..count {
                    let account = format!("account-{}", (writer * 7 + i) % 13);
                    let order = format!("order-{}", (writer + i) % 5);
                    let payload = vec![(i % 251) as u8; i % 300];
                    let parts: Vec<(String, &str)> = match i % 4 {
                        0 => vec![(account, "Deposited")],
                        1 => vec![(account, "Withdrawn"), (order, "Placed")],
                        2 => vec![(order, "Placed")],
                        _ => vec![(format!("$system-{writer}"), "Noted"), (account, "Deposited")],
                    };
                    let appends: Vec<StreamAppend> = parts
                        .iter()
                        .map(|(stream, event_type)| StreamAppend {
                            stream: stream.clone(),
                            expected: ExpectedVersion::Any,
                            events: vec![EventData::new(*event_type, payload.clone())],
                        })
                        .collect();
                    let results = store.append_multi(&appends).unwrap();
                    let mut acked = acked.lock();
                    for ((stream, event_type), result) in parts.iter().zip(results) {
                        acked.insert(result.first_position, (stream.clone(), (*event_type).to_owned()));
                    }
                }
            });
        }
    });
    Arc::try_unwrap(acked).unwrap().into_inner()
}

fn expected(acked: &Acked, from: u64, keep: impl Fn(&str, &str) -> bool) -> Vec<(u64, String, String)> {
    acked
        .range(from..)
        .filter(|(_, (stream, event_type))| keep(stream, event_type))
        .map(|(&position, (stream, event_type))| (position, stream.clone(), event_type.clone()))
        .collect()
}

#[test]
fn every_filter_gets_each_matching_event_once_across_the_switch_to_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    // Some history first.
    let start = Barrier::new(1);
    let history = write_concurrently(&store, 1, 200, &start);
    let filters = vec![
        Filter::All,
        Filter::Stream("account-3".into()),
        Filter::Category("order".into()),
        Filter::EventTypes(vec!["Withdrawn".into(), "Placed".into(), "Withdrawn".into()]),
        Filter::StreamPrefix("account-1".into()),
        Filter::StreamPrefix("acc".into()),
        Filter::StreamPrefix("$system".into()),
        Filter::Category("$system".into()),
    ];
    // Subscribers start in the history, at its start and in its middle, while 4 writers run.
    let mut collectors = Vec::new();
    for filter in &filters {
        for from in [SubscribeFrom::Start, SubscribeFrom::After(99)] {
            let subscription = store.subscribe(from, filter.clone()).unwrap();
            collectors.push((filter.clone(), from, Collector::new(subscription)));
        }
    }
    let start = Barrier::new(4);
    let live = write_concurrently(&store, 4, 150, &start);
    let mut acked = history;
    acked.extend(live);
    let end = store.head_position().unwrap() + 1;
    assert_eq!(acked.len() as u64, end, "every position acknowledged once");
    // Closing ends every subscription once it has delivered what was committed.
    store.close().unwrap();

    for (filter, from, collector) in collectors {
        let first = match from {
            SubscribeFrom::After(position) => position + 1,
            _ => 0,
        };
        let keep = |stream: &str, event_type: &str| match &filter {
            Filter::All => !stream.starts_with('$'),
            Filter::Stream(name) => stream == name,
            Filter::Category(category) => stream.split('-').next() == Some(category.as_str()),
            Filter::EventTypes(types) => types.iter().any(|t| t == event_type),
            Filter::StreamPrefix(prefix) => {
                stream.starts_with(prefix.as_str()) && (prefix.starts_with('$') || !stream.starts_with('$'))
            }
            _ => unreachable!(),
        };
        let want = expected(&acked, first, keep);
        assert!(!want.is_empty(), "{filter:?}: the test has matching events");
        let seen = collector.until_closed();
        let got = events_of(&seen);
        assert_eq!(got.len(), want.len(), "{filter:?} from {from:?}: count");
        assert_eq!(got, want, "{filter:?} from {from:?}: every matching event once, in position order");
        // Checkpoints never run ahead of what was delivered, and never go backwards.
        let mut last = None;
        for message in &seen {
            if let Seen::Event { position, .. } | Seen::Checkpoint(position) = message {
                assert!(last.is_none_or(|last| *position > last), "{filter:?}: progress moves forward");
                last = Some(*position);
            }
        }
    }
}

#[test]
fn from_end_delivers_only_what_is_committed_later_and_says_caught_up_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    for i in 0..10u8 {
        store.append("account-1", ExpectedVersion::Any, &[EventData::new("Deposited", vec![i])]).unwrap();
    }
    let collector = Collector::new(store.subscribe(SubscribeFrom::End, Filter::All).unwrap());
    assert_eq!(collector.next(), Seen::CaughtUp, "nothing to catch up: caught up at once");
    store.append("account-2", ExpectedVersion::Any, &[EventData::new("Deposited", vec![1])]).unwrap();
    assert_eq!(
        collector.next(),
        Seen::Event { position: 10, stream: "account-2".into(), event_type: "Deposited".into() }
    );
    // After a position beyond the log: nothing until the log gets there.
    let collector = Collector::new(store.subscribe(SubscribeFrom::After(11), Filter::All).unwrap());
    assert_eq!(collector.next(), Seen::CaughtUp);
    store.append("account-2", ExpectedVersion::Any, &[EventData::new("Deposited", vec![2])]).unwrap();
    store.append("account-2", ExpectedVersion::Any, &[EventData::new("Deposited", vec![3])]).unwrap();
    assert!(matches!(collector.next(), Seen::Event { position: 12, .. }), "position 11 is skipped, 12 is after it");
    // After u64::MAX: never anything.
    let mut never = store.subscribe(SubscribeFrom::After(u64::MAX), Filter::All).unwrap();
    assert!(matches!(never.next(), Some(Ok(SubscriptionMessage::CaughtUp))));
}

#[test]
fn a_filter_that_skips_long_runs_reports_checkpoints_and_a_checkpoint_before_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let noise = |n: usize| {
        for i in 0..n {
            store
                .append(&format!("order-{}", i % 9), ExpectedVersion::Any, &[EventData::new("Placed", vec![1])])
                .unwrap();
        }
    };
    noise(3000);
    store.append("rare-1", ExpectedVersion::Any, &[EventData::new("Seen", vec![1])]).unwrap();
    noise(2500);
    for filter in [Filter::Category("rare".into()), Filter::StreamPrefix("rare".into())] {
        let end = store.head_position().unwrap() + 1;
        let collector = Collector::new(store.subscribe(SubscribeFrom::Start, filter.clone()).unwrap());
        let seen = collector.until_position(end);
        let events = events_of(&seen);
        assert_eq!(events[0], (3000, "rare-1".into(), "Seen".into()), "{filter:?}");
        let checkpoints: Vec<u64> =
            seen.iter().filter_map(|m| if let Seen::Checkpoint(p) = m { Some(*p) } else { None }).collect();
        let progress = seen.iter().rev().find_map(|m| match m {
            Seen::Event { position, .. } | Seen::Checkpoint(position) => Some(*position),
            _ => None,
        });
        assert_eq!(progress, Some(end - 1), "{filter:?}: progress to the end before CaughtUp: {seen:?}");
        assert_eq!(collector.next(), Seen::CaughtUp, "{filter:?}");
        if matches!(filter, Filter::StreamPrefix(_)) {
            // A scan reports along the way too, not only at the end (an index read jumps over the run).
            assert!(checkpoints.iter().filter(|&&p| p < 3000).count() >= 2, "{filter:?}: {checkpoints:?}");
        }
        // Live: a long run of other events is reported too, with no matching event at all.
        noise(usize::try_from(annals::CHECKPOINT_EVERY_POSITIONS).unwrap() + 10);
        let head = store.head_position().unwrap();
        let live = collector.until_position(head - 9);
        assert!(matches!(live.last(), Some(Seen::Checkpoint(_))), "{filter:?}: {live:?}");
        store.append("rare-1", ExpectedVersion::Any, &[EventData::new("Seen", vec![2])]).unwrap();
        let last = collector.until_position(head + 2);
        assert!(matches!(last.last(), Some(Seen::Event { position, .. }) if *position == head + 1), "{last:?}");
    }
}

#[test]
fn a_waiting_subscription_ends_with_closed_when_the_store_closes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    store.append("a-1", ExpectedVersion::Any, &[EventData::new("E", vec![1])]).unwrap();
    let collector = Collector::new(store.subscribe(SubscribeFrom::Start, Filter::All).unwrap());
    assert!(matches!(collector.next(), Seen::Event { position: 0, .. }));
    assert_eq!(collector.next(), Seen::CaughtUp);
    let closer = store.clone();
    closer.close().unwrap();
    assert!(matches!(collector.next(), Seen::Failed(reason) if reason.contains("closed")));
    assert!(collector.messages.recv_timeout(PATIENCE).is_err(), "nothing after the end");
    let _ = store;
}

#[test]
fn durable_subscriptions_resume_after_their_checkpoint_and_refuse_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    for i in 0..20u8 {
        store.append(&format!("account-{}", i % 3), ExpectedVersion::Any, &[EventData::new("D", vec![i])]).unwrap();
    }
    let mut first = store.subscribe_durable("audit", Filter::Category("account".into())).unwrap();
    for expected in 0..7u64 {
        match first.next() {
            Some(Ok(SubscriptionMessage::Event(event))) => assert_eq!(event.position(), expected),
            other => panic!("{other:?}"),
        }
    }
    first.save_checkpoint(6).unwrap();
    assert!(matches!(first.save_checkpoint(10_000), Err(Error::InvalidCheckpoint { .. })), "not committed");
    drop(first);
    assert_eq!(store.subscription_checkpoint("audit").unwrap(), Some(6));
    // The checkpoint is a system event: not delivered to `All`, nor counted as an account event.
    let mut resumed = store.subscribe_durable("audit", Filter::Category("account".into())).unwrap();
    assert!(matches!(resumed.next(), Some(Ok(SubscriptionMessage::Event(e))) if e.position() == 7));
    let plain = store.subscribe(SubscribeFrom::Start, Filter::All).unwrap();
    assert!(matches!(plain.checkpoint_append(3), Err(Error::InvalidCheckpoint { .. })), "not durable");
    assert!(matches!(store.subscribe_durable("", Filter::All), Err(Error::InvalidCheckpoint { .. })));
    assert!(matches!(store.subscribe_durable(&"x".repeat(1020), Filter::All), Err(Error::InvalidStreamName { .. })));
    assert!(matches!(
        store.subscribe(SubscribeFrom::Start, Filter::Stream(String::new())),
        Err(Error::InvalidStreamName { .. })
    ));
    // After a reopen, too.
    store.close().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let mut resumed = store.subscribe_durable("audit", Filter::Category("account".into())).unwrap();
    assert!(matches!(resumed.next(), Some(Ok(SubscriptionMessage::Event(e))) if e.position() == 7));
}

/// A read model kept in the store, updated with its checkpoint in one atomic append: exactly once.
#[test]
fn a_checkpoint_committed_with_the_read_models_events_is_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    for i in 0..30u8 {
        store.append("order-1", ExpectedVersion::Any, &[EventData::new("Placed", vec![i])]).unwrap();
    }
    for round in 0..3 {
        let mut subscription = store.subscribe_durable("order-count", Filter::Category("order".into())).unwrap();
        // Handle up to 10 events, committing each one's effect with the checkpoint.
        for _ in 0..10 {
            let Some(Ok(SubscriptionMessage::Event(event))) = subscription.next() else { panic!("round {round}") };
            let effect = StreamAppend {
                stream: "count-orders".into(),
                expected: ExpectedVersion::Any,
                events: vec![EventData::new("Counted", event.position().to_le_bytes().to_vec())],
            };
            store.append_multi(&[effect, subscription.checkpoint_append(event.position()).unwrap()]).unwrap();
        }
        // The subscription is dropped mid-stream: the next round resumes exactly after the last commit.
    }
    let counted: Vec<u64> = store
        .read_stream("count-orders", 0)
        .unwrap()
        .map(|event| u64::from_le_bytes(event.unwrap().data()[..].try_into().unwrap()))
        .collect();
    let positions: Vec<u64> = store.read_category("order", 0).unwrap().map(|e| e.unwrap().position()).collect();
    assert_eq!(counted, positions, "every order counted once, none twice");
}
