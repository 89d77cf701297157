//! W10 subscribe: live subscribers beside W2's durable writers, then a catch-up over W3's log.
//!
//! 1. **live**: W2's 16 writers (16 threads, each 2,000 single-event `SyncData` appends to its own streams)
//!    while 16 subscribers (`Store::subscribe(SubscribeFrom::End, …)`, each iterated on its own thread)
//!    follow: 8 on `Filter::All`, 4 on `Filter::Category("account")`, 4 on
//!    `Filter::EventTypes(["MoneyDeposited"])`. Each writer's events cycle through four kinds:
//!    `account-{n}`/`MoneyDeposited`, `order-{n}`/`OrderPlaced`, `account-{n}`/`MoneyWithdrawn`,
//!    `order-{n}`/`OrderShipped`, so the category subscribers get **1/2** of the events and the type
//!    subscribers **1/4** (the `All` ones every event). Thread `t` owns W2's streams `n % 16 == t` under both
//!    names. The same writers run **without** subscribers too, on the same store, in alternate halves of each
//!    of 4 rounds (500 appends per thread per half; the order flips every round), so that both rates see the
//!    shared machine's same moods; the events/s of each are all events over all the time of their halves.
//! 2. **catch-up**: a fresh store with W3's load (1,000,000 events, 10,000 streams round-robin, appends of
//!    1,000); one subscriber on `Filter::All` from `SubscribeFrom::Start` until `CaughtUp`, touching every
//!    payload byte, against W4's scan (`read_all(0)`, the same touch) of the same store, alternating, five
//!    of each: the medians and their ratio.
//!
//! **Delivery latency** is from the return of the append call to the subscriber's receipt: each writer notes
//! (position, instant) right after `append` returns, each subscriber (position, instant) right after `next`
//! yields the event, and the two are joined by position after the half, so the hot path shares nothing. A
//! commit wakes the subscribers and the appending thread alike, and on 2 cores a subscriber often runs first:
//! such a delivery counts as 0 µs, and how many there were is printed. Each half ends with a sentinel event
//! (`account-w10-end`, `MoneyDeposited`: every filter matches it) appended after the last writer is done;
//! every subscriber stops there, and must have received exactly the events its filter matches.
//!
//! Not a criterion bench: its figures (latency percentiles joined across threads, two rates that must share
//! their minutes, a ratio to a scan of the same store) are not one routine's time. Under `cargo test
//! --benches` it runs 2 rounds of 10 appends per thread, and the catch-up over 10,000 events, in about a
//! second.

mod common;

use std::collections::HashMap;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use annals::{EventData, ExpectedVersion, Filter, Store, SubscribeFrom, SubscriptionMessage};
use common::{EventSource, Load, EVENT_TYPE, SEED};

const THREADS: u64 = 16;
const STREAMS: u64 = 1_000;
/// The four kinds of events each writer cycles through: (category, event type).
const KINDS: [(&str, &str); 4] =
    [("account", EVENT_TYPE), ("order", "OrderPlaced"), ("account", "MoneyWithdrawn"), ("order", "OrderShipped")];
/// The stream of the event that ends a half; every filter matches it.
const SENTINEL_STREAM: &str = "account-w10-end";

/// The run's sizes: full as `WORKLOADS.md` has them, or small for test mode.
struct Shape {
    rounds: u64,
    appends_per_half: u64,
    scans: usize,
}

impl Shape {
    fn new(full: bool) -> Shape {
        if full {
            Shape { rounds: 4, appends_per_half: 500, scans: 5 }
        } else {
            Shape { rounds: 2, appends_per_half: 10, scans: 1 }
        }
    }
}

/// The subscribers of a half: a label and the filter, 16 in all.
fn subscribers() -> Vec<(&'static str, Filter)> {
    let mut all = Vec::new();
    all.extend((0..8).map(|_| ("all", Filter::All)));
    all.extend((0..4).map(|_| ("category account", Filter::Category("account".into()))));
    all.extend((0..4).map(|_| ("type MoneyDeposited", Filter::EventTypes(vec![EVENT_TYPE.into()]))));
    all
}

/// Whether `filter` matches an event of `kind` (an index into `KINDS`).
fn matches(filter: &Filter, kind: usize) -> bool {
    let (category, event_type) = KINDS[kind];
    match filter {
        Filter::Category(wanted) => category == wanted,
        Filter::EventTypes(types) => types.iter().any(|wanted| wanted == event_type),
        _ => true,
    }
}

/// One writer's events for one half: (stream, kind, event), made off the clock.
fn writer_events(thread: u64, half: u64, count: u64) -> Vec<(String, usize, EventData)> {
    let streams: Vec<u64> = (thread..STREAMS).step_by(THREADS as usize).collect();
    let mut source = EventSource::new(SEED ^ (10 << 16) ^ (half << 8) ^ thread);
    (0..count as usize)
        .map(|i| {
            let kind = i % KINDS.len();
            let (category, event_type) = KINDS[kind];
            let stream = format!("{category}-{}", streams[i / 2 % streams.len()]);
            (stream, kind, source.event_of_type(event_type))
        })
        .collect()
}

/// What the halves of one variant add up to.
#[derive(Default)]
struct Tally {
    elapsed: Duration,
    events: u64,
    /// Delivery latencies by subscriber label.
    latencies: HashMap<&'static str, Vec<Duration>>,
    before_return: u64,
}

/// One half: the writers, with the subscribers if `with`. Returns when every subscriber has stopped.
fn half(store: &Store, half: u64, count: u64, with: bool, tally: &mut Tally) {
    let subscribers = if with { subscribers() } else { Vec::new() };
    let per_thread: Vec<_> = (0..THREADS).map(|thread| writer_events(thread, half, count)).collect();
    let barrier = Barrier::new(THREADS as usize + subscribers.len() + 1);
    let returned = Mutex::new(HashMap::<u64, Instant>::new());
    let (start, end, receipts) = std::thread::scope(|scope| {
        let followers: Vec<_> = subscribers
            .iter()
            .map(|(_, filter)| {
                let (barrier, filter) = (&barrier, filter.clone());
                scope.spawn(move || {
                    let subscription = store.subscribe(SubscribeFrom::End, filter).expect("subscribing");
                    barrier.wait();
                    let mut receipts = Vec::new();
                    for message in subscription {
                        if let SubscriptionMessage::Event(event) = message.expect("W10 subscription") {
                            let at = Instant::now();
                            if event.stream() == SENTINEL_STREAM {
                                break;
                            }
                            receipts.push((event.position(), at));
                        }
                    }
                    receipts
                })
            })
            .collect();
        let writers: Vec<_> = per_thread
            .iter()
            .map(|events| {
                let (barrier, returned) = (&barrier, &returned);
                scope.spawn(move || {
                    let mut mine = Vec::with_capacity(events.len());
                    barrier.wait();
                    for (stream, _, event) in events {
                        let appended = store.append(stream, ExpectedVersion::Any, std::slice::from_ref(event));
                        mine.push((appended.expect("W10 append").first_position, Instant::now()));
                    }
                    let finished = Instant::now();
                    returned.lock().expect("return instants").extend(mine);
                    finished
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let end = writers.into_iter().map(|writer| writer.join().expect("W10 writer")).max().unwrap_or(start);
        if with {
            let sentinel = EventData::new(EVENT_TYPE, &b"end"[..]);
            store.append(SENTINEL_STREAM, ExpectedVersion::Any, &[sentinel]).expect("the sentinel event");
        }
        let receipts: Vec<_> = followers.into_iter().map(|follower| follower.join().expect("W10 subscriber")).collect();
        (start, end, receipts)
    });
    tally.elapsed += end - start;
    tally.events += THREADS * count;
    let returned = returned.into_inner().expect("return instants");
    for ((label, filter), receipts) in subscribers.iter().zip(receipts) {
        let expected = per_thread.iter().flatten().filter(|(_, kind, _)| matches(filter, *kind)).count();
        assert_eq!(receipts.len(), expected, "a subscriber on {filter:?} missed or repeated events");
        let latencies = tally.latencies.entry(label).or_default();
        for (position, at) in receipts {
            let returned = returned[&position];
            tally.before_return += u64::from(at < returned);
            latencies.push(at.saturating_duration_since(returned));
        }
    }
}

fn percentile_us(sorted: &[Duration], percent: usize) -> f64 {
    sorted[(sorted.len() * percent / 100).min(sorted.len() - 1)].as_secs_f64() * 1e6
}

fn live(shape: &Shape) {
    let dir = common::scratch_dir();
    let store = common::open(dir.path());
    let (mut alone, mut with) = (Tally::default(), Tally::default());
    for round in 0..shape.rounds {
        for subscribed in [!round.is_multiple_of(2), round.is_multiple_of(2)] {
            let tally = if subscribed { &mut with } else { &mut alone };
            half(&store, round * 2 + u64::from(subscribed), shape.appends_per_half, subscribed, tally);
        }
    }
    store.close().expect("closing the store");

    let rate = |tally: &Tally| tally.events as f64 / tally.elapsed.as_secs_f64();
    let mut every: Vec<Duration> = with.latencies.values().flatten().copied().collect();
    every.sort_unstable();
    eprintln!(
        "w10_subscribe: writers {:.0} events/s with 16 subscribers, {:.0} without ({:.2}×), {} events each way",
        rate(&with),
        rate(&alone),
        rate(&with) / rate(&alone),
        with.events
    );
    eprintln!(
        "w10_subscribe: delivery latency from append return, {} deliveries: p50 {:.0} µs, p99 {:.0} µs, max {:.0} \
         µs; {} received before their append returned (counted as 0)",
        every.len(),
        percentile_us(&every, 50),
        percentile_us(&every, 99),
        percentile_us(&every, 100),
        with.before_return
    );
    let mut labels: Vec<_> = with.latencies.iter_mut().collect();
    labels.sort_by_key(|(label, _)| *label);
    for (label, latencies) in labels {
        latencies.sort_unstable();
        eprintln!(
            "w10_subscribe:   {label}: {} deliveries, p50 {:.0} µs, p99 {:.0} µs",
            latencies.len(),
            percentile_us(latencies, 50),
            percentile_us(latencies, 99)
        );
    }
}

/// The median rate of `count` events over `times`.
fn median_rate(mut times: Vec<Duration>, count: u64) -> f64 {
    times.sort_unstable();
    count as f64 / times[times.len() / 2].as_secs_f64()
}

fn catch_up(shape: &Shape) {
    let load = Load::w3();
    let dir = common::scratch_dir();
    let store = common::open(dir.path());
    common::load(&store, load);
    let (mut scans, mut catch_ups) = (Vec::new(), Vec::new());
    for _ in 0..shape.scans {
        let start = Instant::now();
        let (mut acc, mut count) = (0u8, 0u64);
        for event in store.read_all(0).expect("read_all") {
            acc ^= common::touch(event.expect("W4 read").data());
            count += 1;
        }
        scans.push(start.elapsed());
        assert_eq!(count, load.events);
        std::hint::black_box(acc);

        let start = Instant::now();
        let (mut acc, mut count) = (0u8, 0u64);
        for message in store.subscribe(SubscribeFrom::Start, Filter::All).expect("subscribing") {
            match message.expect("W10 catch-up") {
                SubscriptionMessage::Event(event) => {
                    acc ^= common::touch(event.data());
                    count += 1;
                }
                SubscriptionMessage::CaughtUp => break,
                _ => {}
            }
        }
        catch_ups.push(start.elapsed());
        assert_eq!(count, load.events);
        std::hint::black_box(acc);
    }
    store.close().expect("closing the store");
    let (scan, catch_up) = (median_rate(scans, load.events), median_rate(catch_ups, load.events));
    eprintln!(
        "w10_subscribe: catch-up from position 0 over {} events: {catch_up:.0} events/s; W4's scan of the same \
         store {scan:.0} events/s; catch-up ÷ scan {:.2}×",
        load.events,
        catch_up / scan
    );
}

fn main() {
    let shape = Shape::new(common::full_run());
    live(&shape);
    catch_up(&shape);
}
