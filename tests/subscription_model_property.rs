//! Property test against a model: concurrent writers append random transactions while subscribers with
//! random filters start at random positions, stop after a random number of events and resume (from a durable
//! checkpoint, or `After` the last position they saw). Whatever the interleaving: no gap, no duplicate, no
//! event outside the filter, position order always.
//!
//! The model is what the writers were told: every acknowledged transaction's positions, streams and types.
//! Cases: `PROPTEST_CASES` (default 24; each case runs threads and a store).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use annals::{
    EventData, ExpectedVersion, Filter, Options, Store, StreamAppend, SubscribeFrom, SubscriptionMessage,
    SubscriptionStream,
};
use futures::StreamExt;
use proptest::prelude::*;

const STREAMS: [&str; 6] = ["account-1", "account-2", "order-1", "order-22", "audit", "$meta-1"];
const TYPES: [&str; 3] = ["Deposited", "Placed", "Noted"];

#[derive(Debug, Clone)]
enum FilterChoice {
    All,
    Stream(usize),
    Category(&'static str),
    Types(Vec<usize>),
    Prefix(&'static str),
}

impl FilterChoice {
    fn filter(&self) -> Filter {
        match self {
            FilterChoice::All => Filter::All,
            FilterChoice::Stream(i) => Filter::Stream(STREAMS[*i].into()),
            FilterChoice::Category(category) => Filter::Category((*category).into()),
            FilterChoice::Types(types) => Filter::EventTypes(types.iter().map(|&t| TYPES[t].to_owned()).collect()),
            FilterChoice::Prefix(prefix) => Filter::StreamPrefix((*prefix).into()),
        }
    }

    /// The model's own decision.
    fn keeps(&self, stream: &str, event_type: &str) -> bool {
        let system = stream.starts_with('$');
        match self {
            FilterChoice::All => !system,
            FilterChoice::Stream(i) => stream == STREAMS[*i],
            FilterChoice::Category(category) => stream.split('-').next() == Some(*category),
            FilterChoice::Types(types) => types.iter().any(|&t| TYPES[t] == event_type),
            FilterChoice::Prefix(prefix) => stream.starts_with(prefix) && (prefix.starts_with('$') || !system),
        }
    }
}

fn filter_choice() -> impl Strategy<Value = FilterChoice> {
    prop_oneof![
        Just(FilterChoice::All),
        (0..STREAMS.len()).prop_map(FilterChoice::Stream),
        prop::sample::select(vec!["account", "order", "audit", "$meta", "none"]).prop_map(FilterChoice::Category),
        prop::collection::vec(0..TYPES.len(), 1..3).prop_map(FilterChoice::Types),
        prop::sample::select(vec!["", "acc", "order-2", "$", "zzz"]).prop_map(FilterChoice::Prefix),
    ]
}

/// An event as a subscriber saw it: (position, stream, type).
type Seen = (u64, String, String);

/// One transaction: (stream, type, events) parts on distinct streams.
type Txn = Vec<(usize, usize, usize)>;

fn txn() -> impl Strategy<Value = Txn> {
    prop::collection::vec((0..STREAMS.len(), 0..TYPES.len(), 1..4usize), 1..3).prop_map(|mut parts| {
        parts.sort_by_key(|part| part.0);
        parts.dedup_by_key(|part| part.0);
        parts
    })
}

#[derive(Debug, Clone)]
struct SubscriberPlan {
    filter: FilterChoice,
    /// Start after this fraction (in thousandths) of the final log, or from the start when `None`.
    start: Option<u16>,
    /// Stop after this many events, then resume.
    stop_after: usize,
    durable: bool,
}

fn subscriber() -> impl Strategy<Value = SubscriberPlan> {
    (filter_choice(), prop::option::of(0..1000u16), 0..40usize, any::<bool>())
        .prop_map(|(filter, start, stop_after, durable)| SubscriberPlan { filter, start, stop_after, durable })
}

/// Reads up to `limit` events, or until the subscription stands at `end` (known once every writer is done):
/// collects the events' (position, stream, type) and checks progress order. True when it reached the end.
fn drain(
    subscription: SubscriptionStream,
    limit: Option<usize>,
    end: &AtomicU64,
    seen: &mut Vec<Seen>,
) -> (SubscriptionStream, bool) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let mut subscription = subscription;
    let mut taken = 0;
    let mut last = seen.last().map(|event| event.0);
    loop {
        if limit.is_some_and(|limit| taken >= limit) {
            return (subscription, false);
        }
        let next =
            runtime.block_on(async { tokio::time::timeout(Duration::from_millis(5), subscription.next()).await });
        let Ok(next) = next else {
            // Nothing for a while: done if every writer is done and the subscription has read it all.
            if subscription.subscription().current_position() >= end.load(Ordering::SeqCst) {
                return (subscription, true);
            }
            continue;
        };
        match next {
            Some(Ok(SubscriptionMessage::Event(event))) => {
                assert!(last.is_none_or(|last| event.position() > last), "position order");
                last = Some(event.position());
                seen.push((event.position(), event.stream().to_owned(), event.event_type().to_owned()));
                taken += 1;
            }
            Some(Ok(SubscriptionMessage::Checkpoint(position))) => {
                assert!(last.is_none_or(|last| position >= last), "a checkpoint never goes back");
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => panic!("{err}"),
            None => panic!("a subscription ends only with an error"),
        }
    }
}

fn run_case(writers: Vec<Vec<Txn>>, plans: Vec<SubscriberPlan>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), Options { segment_size_bytes: 8 << 10, ..Default::default() }).unwrap();
    let total: usize = writers.iter().flatten().flatten().map(|part| part.2).sum();
    let start = Barrier::new(writers.len() + plans.len());
    let acked = Arc::new(parking_lot::Mutex::new(BTreeMap::<u64, (String, String)>::new()));
    let end = AtomicU64::new(u64::MAX);
    let results: Vec<(SubscriberPlan, u64, Vec<Seen>)> = std::thread::scope(|scope| {
        for txns in &writers {
            let (store, acked, start) = (store.clone(), acked.clone(), &start);
            scope.spawn(move || {
                start.wait();
                for txn in txns {
                    let appends: Vec<StreamAppend> = txn
                        .iter()
                        .map(|&(stream, event_type, count)| StreamAppend {
                            stream: STREAMS[stream].into(),
                            expected: ExpectedVersion::Any,
                            events: vec![EventData::new(TYPES[event_type], vec![7u8; count]); count],
                        })
                        .collect();
                    let results = store.append_multi(&appends).unwrap();
                    let mut acked = acked.lock();
                    for (&(stream, event_type, _), result) in txn.iter().zip(results) {
                        for position in result.first_position..=result.last_position {
                            acked.insert(position, (STREAMS[stream].into(), TYPES[event_type].into()));
                        }
                    }
                }
            });
        }
        let handles: Vec<_> = plans
            .iter()
            .enumerate()
            .map(|(k, plan)| {
                let (store, start, end) = (store.clone(), &start, &end);
                scope.spawn(move || {
                    start.wait();
                    let first = plan.start.map_or(0, |thousandths| total as u64 * u64::from(thousandths) / 1000);
                    let from = if first == 0 { SubscribeFrom::Start } else { SubscribeFrom::After(first - 1) };
                    let name = format!("sub-{k}");
                    if plan.durable && first > 0 {
                        // A durable subscription starts after a checkpoint saved earlier.
                        let seed = store.subscribe_durable(&name, plan.filter.filter()).unwrap();
                        while store.head_position().is_none_or(|head| head < first - 1) {
                            std::thread::yield_now();
                        }
                        seed.save_checkpoint(first - 1).unwrap();
                    }
                    let subscription = if plan.durable {
                        store.subscribe_durable(&name, plan.filter.filter()).unwrap()
                    } else {
                        store.subscribe(from, plan.filter.filter()).unwrap()
                    };
                    let mut seen = Vec::new();
                    let (subscription, done) = drain(subscription.into_stream(), Some(plan.stop_after), end, &mut seen);
                    if done {
                        return (plan.clone(), first, seen);
                    }
                    // Stop, and resume where it left off.
                    let last = seen.last().map(|event| event.0);
                    let resumed = if plan.durable {
                        if let Some(last) = last {
                            subscription.subscription().save_checkpoint(last).unwrap();
                        }
                        drop(subscription);
                        store.subscribe_durable(&name, plan.filter.filter()).unwrap()
                    } else {
                        let resume = last.map_or(from, SubscribeFrom::After);
                        drop(subscription);
                        store.subscribe(resume, plan.filter.filter()).unwrap()
                    };
                    drain(resumed.into_stream(), None, end, &mut seen);
                    (plan.clone(), first, seen)
                })
            })
            .collect();
        // Once every writer is done, the subscribers stop when they have read to the end. (Durable subscribers
        // may still append a checkpoint after this: the end then moves with it.)
        while acked.lock().len() < total {
            std::thread::yield_now();
        }
        end.store(store.head_position().unwrap() + 1, Ordering::SeqCst);
        handles.into_iter().map(|handle| handle.join().unwrap()).collect()
    });
    let acked = acked.lock();
    assert_eq!(acked.len(), total, "every event acknowledged once");
    for (plan, first, seen) in results {
        let want: Vec<Seen> = acked
            .range(first..)
            .filter(|(_, (stream, event_type))| plan.filter.keeps(stream, event_type))
            .map(|(&position, (stream, event_type))| (position, stream.clone(), event_type.clone()))
            .collect();
        // The durable subscribers' own checkpoints are events too (of `$checkpoint-…`), which the writers did
        // not append: only a filter that names `$` streams sees them.
        let (checkpoints, seen): (Vec<_>, Vec<_>) =
            seen.into_iter().partition(|(_, stream, _)| stream.starts_with(annals::CHECKPOINT_STREAM_PREFIX));
        assert!(
            checkpoints.is_empty() || matches!(plan.filter, FilterChoice::Prefix("$")),
            "{plan:?}: {checkpoints:?}"
        );
        assert_eq!(seen, want, "{plan:?} from {first}");
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn subscriptions_match_the_model(
        writers in prop::collection::vec(prop::collection::vec(txn(), 1..60), 1..4),
        plans in prop::collection::vec(subscriber(), 1..6),
    ) {
        run_case(writers, plans);
    }
}
