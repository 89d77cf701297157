//! W10 subscribe, for annals and the peers `WORKLOADS.md` names for it (PostgreSQL with `LISTEN/NOTIFY`,
//! SQLite polled every 10 ms):
//!
//! 1. **live**: W2's 16 durable writers (each 2,000 single-event appends to its own streams) while 16
//!    subscribers follow from the end of the log: 8 on every event, 4 on the category `account`, 4 on the event
//!    type `MoneyDeposited`. Each writer's events cycle through four kinds, so that every filter matches a fixed
//!    share: `account-{n}`/`MoneyDeposited`, `order-{n}`/`OrderPlaced`, `account-{n}`/`MoneyWithdrawn`,
//!    `order-{n}`/`OrderShipped`: the category matches 1/2 of the events, the type 1/4. Thread `t` owns W2's
//!    streams `n % 16 == t`, under both names. The same writers also run **without** subscribers, on the same
//!    store, in alternate slices (so the two rates share the machine's moods), with events of their own (annals
//!    takes an event id it has seen as a retry). PostgreSQL's notify trigger is made before the first slice, so
//!    its writers pay for `pg_notify` in both variants; without subscribers nobody listens.
//! 2. **catch-up** (run by the harness right after W4, on W3's recovered store): one subscriber on every event
//!    from position 0 until it has caught up, touching every payload byte as W4 does; median of three. Held
//!    against W4's scan of the same store in the same run.
//!
//! **Delivery latency** runs from the moment the writer's append call *returned* to the moment the
//! subscriber's thread received the event. Both instants are taken on the monotonic clock, apart: each writer
//! keeps (event id, return instant), each subscriber (event id, receipt instant), and the two are joined by id
//! after the slice, so nothing on the hot path is shared. An event can reach a subscriber before its writer's
//! thread is scheduled again to return from the append (the commit wakes both); such a delivery counts as 0
//! and the measurement says how many there were. A slice ends with one sentinel event (`account-w10-end`,
//! `MoneyDeposited`, which every filter matches) after the last writer is done; each subscriber stops at it,
//! and must have received exactly the events its filter matches, or the slice fails.

use std::collections::HashMap;
use std::iter::repeat_n;
use std::ops::ControlFlow;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::engines::{Delivery, Follow, FollowFrom, Store};
use crate::event::{touch, EventSource, Pending, EVENT_TYPE, SEED};
use crate::workloads::{
    join_writers, median, median_of_three_passes, percentile, spawn_writers, Measurement, Sizes, Tally,
};
use crate::Result;

/// Slices per engine, as W2's: each slice runs the writers once without and once with the subscribers.
pub const SLICES: usize = 4;

/// The subscribers of a slice: what each follows, and how many follow it.
const SUBSCRIBERS: [(Follow, usize); 3] =
    [(Follow::All, 8), (Follow::Category("account"), 4), (Follow::EventType(EVENT_TYPE), 4)];

/// The four kinds of events each writer cycles through: (category, event type).
const KINDS: [(&str, &str); 4] =
    [("account", EVENT_TYPE), ("order", "OrderPlaced"), ("account", "MoneyWithdrawn"), ("order", "OrderShipped")];

/// The stream of the event that ends a slice; every filter matches it.
const SENTINEL_STREAM: &str = "account-w10-end";

/// W10's events per thread for one variant (`variant` 0: without subscribers, 1: with): W2's streams and
/// counts, W10's kinds.
pub fn events(sizes: &Sizes, variant: u64) -> Vec<Vec<Pending>> {
    let threads = sizes.w2_threads;
    (0..threads)
        .map(|thread| {
            let streams: Vec<u64> = (thread..sizes.w1_streams).step_by(threads as usize).collect();
            let mut source = EventSource::new(SEED ^ (10 << 8) ^ (variant << 6) ^ thread);
            (0..sizes.w2_appends_per_thread as usize)
                .map(|i| {
                    let (category, event_type) = KINDS[i % KINDS.len()];
                    let mut event = source.event();
                    event.event_type = event_type;
                    Pending { stream: format!("{category}-{}", streams[i / 2 % streams.len()]), event }
                })
                .collect()
        })
        .collect()
}

/// The filter of each subscriber of a slice, in the order they are made.
fn followers() -> Vec<Follow> {
    SUBSCRIBERS.iter().flat_map(|&(follow, count)| repeat_n(follow, count)).collect()
}

/// A short name of a filter's kind, for the measurement's fields.
fn kind(follow: Follow) -> &'static str {
    match follow {
        Follow::All => "all",
        Follow::Category(_) => "category",
        Follow::EventType(_) => "event_type",
    }
}

/// What one engine's W10 slices add up to.
#[derive(Debug, Default)]
pub struct W10 {
    alone: Duration,
    alone_events: u64,
    alone_rates: Vec<f64>,
    subscribed: Duration,
    subscribed_events: u64,
    subscribed_rates: Vec<f64>,
    /// Delivery latencies by the filter's kind.
    latencies: HashMap<&'static str, Vec<Duration>>,
    /// Deliveries received before the append that made them had returned to its writer.
    before_return: u64,
}

impl Tally for W10 {
    fn measurement(mut self, engine: &str, workload: &'static str) -> Measurement {
        let mut every: Vec<Duration> = self.latencies.values().flatten().copied().collect();
        every.sort_unstable();
        let writers = self.subscribed_events as f64 / self.subscribed.as_secs_f64();
        let alone = self.alone_events as f64 / self.alone.as_secs_f64();
        let mut measurement = Measurement::new(engine, workload, percentile(&every, 99), "µs")
            .with("p50_us", percentile(&every, 50))
            .with("p99_us", percentile(&every, 99))
            .with("max_us", percentile(&every, 100))
            .with("deliveries", every.len())
            .with("delivered_before_return", self.before_return)
            .with("writers_events_per_s", writers)
            .with("writers_alone_events_per_s", alone)
            .with("writers_ratio", writers / alone)
            .with("median_slice_rate", median(self.subscribed_rates.clone()))
            .with("median_slice_rate_alone", median(self.alone_rates.clone()))
            .with("slice_rates", self.subscribed_rates.iter().map(|rate| rate.round()).collect::<Vec<_>>())
            .with("slice_rates_alone", self.alone_rates.iter().map(|rate| rate.round()).collect::<Vec<_>>());
        for (kind, latencies) in &mut self.latencies {
            latencies.sort_unstable();
            let (p50, p99): (&'static str, &'static str) = match *kind {
                "all" => ("p50_all_us", "p99_all_us"),
                "category" => ("p50_category_us", "p99_category_us"),
                _ => ("p50_event_type_us", "p99_event_type_us"),
            };
            measurement = measurement.with(p50, percentile(latencies, 50)).with(p99, percentile(latencies, 99));
        }
        measurement
    }
}

/// One slice: the writers once without subscribers and once with them, the order alternating by slice.
pub fn slice(
    store: &dyn Store,
    alone: &[&[Pending]],
    subscribed: &[&[Pending]],
    slice: usize,
    tally: &mut W10,
) -> Result<()> {
    if slice == 0 {
        store.prepare_subscriptions()?;
    }
    for with in [!slice.is_multiple_of(2), slice.is_multiple_of(2)] {
        if with {
            run(store, subscribed, true, tally)?;
        } else {
            run(store, alone, false, tally)?;
        }
    }
    Ok(())
}

/// The writers of one slice, with the subscribers if `with`. Subscriptions and connections are made before a
/// barrier; the writers' time runs from the barrier to the return of the last append.
fn run(store: &dyn Store, per_thread: &[&[Pending]], with: bool, tally: &mut W10) -> Result<()> {
    let followers = if with { followers() } else { Vec::new() };
    let barrier = Barrier::new(per_thread.len() + followers.len() + 1);
    let (start, joined, received) = std::thread::scope(|scope| {
        let barrier = &barrier;
        let subscribers: Vec<_> = followers
            .iter()
            .map(|&follow| scope.spawn(move || follow_until_sentinel(store, follow, barrier)))
            .collect();
        let writers = spawn_writers(scope, store, per_thread, barrier);
        barrier.wait();
        let start = Instant::now();
        let joined = join_writers(writers, start);
        if with {
            end_subscribers(store);
        }
        let received: Vec<_> =
            subscribers.into_iter().map(|handle| handle.join().expect("W10 subscriber panicked")).collect();
        (start, joined, received)
    });
    let (appended, end) = joined?;
    let returned: HashMap<u128, Instant> = appended.iter().map(|appended| (appended.id, appended.returned)).collect();
    let (elapsed, events) = (end - start, appended.len() as u64);
    if with {
        tally.subscribed += elapsed;
        tally.subscribed_events += events;
        tally.subscribed_rates.push(events as f64 / elapsed.as_secs_f64());
    } else {
        tally.alone += elapsed;
        tally.alone_events += events;
        tally.alone_rates.push(events as f64 / elapsed.as_secs_f64());
    }
    for (follow, result) in followers.into_iter().zip(received) {
        let receipts = result?;
        let expected = per_thread
            .iter()
            .flat_map(|events| events.iter())
            .filter(|pending| follow.matches(&pending.stream, pending.event.event_type))
            .count();
        if receipts.len() != expected {
            return Err(
                format!("a W10 subscriber on {follow:?} received {} events, {expected} match", receipts.len()).into()
            );
        }
        let latencies = tally.latencies.entry(kind(follow)).or_default();
        for (id, at) in receipts {
            let returned = returned.get(&id).ok_or("a W10 subscriber received an event no writer appended")?;
            tally.before_return += u64::from(at < *returned);
            latencies.push(at.saturating_duration_since(*returned));
        }
    }
    Ok(())
}

/// A live subscriber's thread: subscribes from the end, waits at the barrier with the writers, then notes
/// (id, instant) of every event it receives until the sentinel.
fn follow_until_sentinel(store: &dyn Store, follow: Follow, barrier: &Barrier) -> Result<Vec<(u128, Instant)>> {
    let subscriber = store.subscribe(follow, FollowFrom::End);
    barrier.wait();
    let mut subscriber = subscriber?;
    let mut receipts = Vec::new();
    subscriber.follow(&mut |delivery| {
        let Delivery::Event { id, stream, data } = delivery else { return ControlFlow::Continue(()) };
        let at = Instant::now();
        if stream == SENTINEL_STREAM {
            return ControlFlow::Break(());
        }
        std::hint::black_box(data);
        receipts.push((u128::from_be_bytes(id), at));
        ControlFlow::Continue(())
    })?;
    Ok(receipts)
}

/// Appends the sentinel that ends every subscriber (with a fresh id: annals takes an id it has seen for a
/// retry). If it cannot be appended the subscribers would wait forever, so the harness stops here, saying why.
fn end_subscribers(store: &dyn Store) {
    let sentinel = Pending { stream: SENTINEL_STREAM.to_owned(), event: EventSource::new(fastrand::u64(..)).event() };
    let appended = store.writer().and_then(|mut writer| writer.append(std::slice::from_ref(&sentinel)));
    if let Err(err) = appended {
        eprintln!("annals-compare: W10's sentinel event failed ({err}); the subscribers cannot be stopped");
        std::process::exit(1);
    }
}

/// W10's catch-up: one subscriber on every event from position 0 until it has caught up, every payload byte
/// touched; median of three. Making the subscriber is on the clock (for the peers a connection: milliseconds
/// against seconds). `w4`: W4's rate on the same store in the same run, for the ratio.
pub fn catch_up(engine: &str, store: &dyn Store, sizes: &Sizes, w4: Option<f64>) -> Result<Measurement> {
    let rate = median_of_three_passes("W10 catch-up", sizes, |sum| {
        let mut count = 0;
        store.subscribe(Follow::All, FollowFrom::Start)?.follow(&mut |delivery| match delivery {
            Delivery::Event { data, .. } => {
                *sum = sum.wrapping_add(touch(data));
                count += 1;
                ControlFlow::Continue(())
            }
            Delivery::CaughtUp => ControlFlow::Break(()),
        })?;
        Ok(count)
    })?;
    let mut measurement = Measurement::new(engine, "W10", rate, "events/s").with("catch_up_events_per_s", rate);
    if let Some(w4) = w4 {
        measurement = measurement.with("catch_up_vs_w4", rate / w4);
    }
    Ok(measurement)
}
