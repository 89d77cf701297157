//! W8 snapshot-load, for annals: one stream of 1,000,000 events (an 8-byte balance delta each), a snapshot
//! every 10,000 events written by the repository's policy as the stream grows; the time to load the
//! aggregate's state with `Repository::load` (latest snapshot + tail) and the same without snapshots
//! (`Repository::load_from_events`, every event decoded and applied). The aggregate, the deltas and the
//! appends are those of the library's bench `benches/w8_snapshot_load.rs`.
//!
//! The peers have no snapshot layer, so W8 holds annals against itself: with snapshots, without, and with the
//! worst tail the policy allows (9,999 events after the latest snapshot).

use std::path::Path;
use std::time::Instant;

use annals::{Aggregate, Event, Loaded, Options, Repository, SnapshotPolicy, Store};
use serde::{Deserialize, Serialize};

use crate::workloads::Measurement;
use crate::Result;

const SNAPSHOT_EVERY_EVENTS: u64 = 10_000;
/// Loads timed per variant; the median is reported.
const LOADS: usize = 5;

/// Deltas from a fixed xorshift64 sequence, so every run appends the same events.
struct Deltas(u64);

impl Deltas {
    /// A delta in ±2^40 (bincode then stores it in 9 bytes: the event payload is 10 bytes with its tag).
    fn next(&mut self) -> i64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % (1 << 41)) as i64 - (1 << 40)
    }
}

#[derive(Serialize, Deserialize, Debug)]
enum LedgerEvent {
    BalanceChanged { delta: i64 },
}

impl Event for LedgerEvent {}

#[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
struct Ledger {
    balance: i64,
}

impl Aggregate for Ledger {
    type Event = LedgerEvent;
    type Error = std::convert::Infallible;
    const CATEGORY: &'static str = "ledger";

    fn apply(&mut self, LedgerEvent::BalanceChanged { delta }: &LedgerEvent) {
        self.balance += delta;
    }
}

/// Appends `count` deltas in saves of 10,000 events (so that each save crosses one multiple of the policy's
/// interval and the policy snapshots at its end).
fn append_deltas(
    repository: &Repository<Ledger>,
    ledger: &mut Loaded<Ledger>,
    deltas: &mut Deltas,
    count: u64,
) -> Result<()> {
    let mut left = count;
    while left > 0 {
        let batch = left.min(SNAPSHOT_EVERY_EVENTS);
        let events = (0..batch).map(|_| LedgerEvent::BalanceChanged { delta: deltas.next() }).collect();
        repository.save(ledger, events).map_err(|err| err.to_string())?;
        left -= batch;
    }
    Ok(())
}

/// Median microseconds of `LOADS` runs of `load`.
fn time_loads(mut load: impl FnMut() -> Result<Loaded<Ledger>>, expected: &Ledger) -> Result<f64> {
    let mut times = Vec::with_capacity(LOADS);
    for _ in 0..LOADS {
        let start = Instant::now();
        let loaded = load()?;
        times.push(start.elapsed().as_secs_f64() * 1e6);
        if loaded.state() != expected {
            return Err("W8 loaded a different balance than was appended".into());
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Runs W8 on a fresh annals store in `dir`, with `events` events (1,000,000 at scale 1; a multiple of the
/// snapshot interval, so that the latest snapshot is at the head).
pub fn w8(dir: &Path, events: u64) -> Result<Measurement> {
    let events = events.div_ceil(SNAPSHOT_EVERY_EVENTS).max(1) * SNAPSHOT_EVERY_EVENTS;
    let store = Store::open_with(dir, Options::default())?;
    let repository =
        Repository::<Ledger>::new(store.clone()).with_snapshot_policy(SnapshotPolicy::every(SNAPSHOT_EVERY_EVENTS));
    let mut deltas = Deltas(crate::event::SEED);
    let mut ledger = Loaded::<Ledger>::new("w8");
    let loading = Instant::now();
    append_deltas(&repository, &mut ledger, &mut deltas, events)?;
    let load_seconds = loading.elapsed().as_secs_f64();

    let load = |repository: &Repository<Ledger>| repository.load("w8").map_err(|err| err.to_string().into());
    let replay = || repository.load_from_events("w8").map_err(|err| err.to_string().into());
    let without = time_loads(replay, ledger.state())?;
    let at_head = time_loads(|| load(&repository), ledger.state())?;

    // The worst tail the policy allows: 9,999 events after the latest snapshot.
    let no_snapshots = Repository::<Ledger>::new(store.clone()).with_snapshot_policy(SnapshotPolicy::NEVER);
    append_deltas(&no_snapshots, &mut ledger, &mut deltas, SNAPSHOT_EVERY_EVENTS - 1)?;
    let with_tail = time_loads(|| load(&no_snapshots), ledger.state())?;
    drop((repository, no_snapshots));
    store.close()?;
    Ok(Measurement::new("annals", "W8", at_head, "µs")
        .with("without_snapshots_us", without)
        .with("snapshot_then_9999_events_us", with_tail)
        .with("events", events)
        .with("append_events_per_s", events as f64 / load_seconds))
}
