//! W8 snapshot-load: one stream of 1,000,000 events, each an 8-byte balance delta, with a snapshot every
//! 10,000 events (written by the repository's policy as the stream grows); reports the time to load the
//! aggregate's state with `Repository::load` (latest snapshot + tail), and the same without snapshots
//! (`Repository::load_from_events`, a replay of every event).
//!
//! Three measurements, in this order, on the same stream:
//! - `replay_all_events`: no snapshot used, 1,000,000 events decoded and applied;
//! - `snapshot_at_head`: the latest snapshot is at the last event (the stream's length is a multiple of
//!   10,000), so the tail is empty: the cost is finding, reading and decoding one snapshot;
//! - `snapshot_then_9999_events`: 9,999 more events appended without a snapshot, the worst tail the policy
//!   allows.
//!
//! The delta is an `i64` drawn from ±2^40, so that bincode's variable-length integer takes 9 bytes (a marker
//! byte and the 8 bytes); the event payload is 10 bytes with the variant tag. Files are in the page cache (a
//! warm load). Under `cargo test --benches` (criterion's test mode) the stream has 20,000 events.

mod common;

use std::hint::black_box;
use std::time::Duration;

use annals::{Aggregate, Event, Loaded, Repository, SnapshotPolicy, Store};
use criterion::{criterion_group, criterion_main, Criterion};
use serde::{Deserialize, Serialize};

const SNAPSHOT_EVERY_EVENTS: u64 = 10_000;

/// Deltas from a fixed xorshift64 sequence, so every run appends the same events.
struct Deltas(u64);

impl Deltas {
    /// A delta in ±2^40.
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

/// Appends `count` deltas in appends of 10,000 events (so each append crosses one multiple and the policy
/// snapshots at its end).
fn append_deltas(repository: &Repository<Ledger>, ledger: &mut Loaded<Ledger>, deltas: &mut Deltas, count: u64) {
    let mut left = count;
    while left > 0 {
        let batch = left.min(SNAPSHOT_EVERY_EVENTS);
        let events = (0..batch).map(|_| LedgerEvent::BalanceChanged { delta: deltas.next() }).collect();
        repository.save(ledger, events).expect("appending deltas");
        left -= batch;
    }
}

fn w8(c: &mut Criterion) {
    let events = if common::full_run() { 1_000_000 } else { 20_000 };
    let dir = tempfile::tempdir().expect("a scratch directory");
    let store = Store::open(dir.path()).expect("opening the store");
    let repository =
        Repository::<Ledger>::new(store).with_snapshot_policy(SnapshotPolicy::every(SNAPSHOT_EVERY_EVENTS));
    let mut deltas = Deltas(0x616e_6e61_6c73);
    let mut ledger = Loaded::<Ledger>::new("w8");
    append_deltas(&repository, &mut ledger, &mut deltas, events);
    let expected = repository.load_from_events("w8").expect("loading");
    assert_eq!(expected.events_replayed(), events);
    assert_eq!(expected.state(), ledger.state());

    let mut group = c.benchmark_group("w8_snapshot_load");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(5));
    group.bench_function("replay_all_events", |b| {
        b.iter(|| black_box(repository.load_from_events("w8").expect("loading").into_state()))
    });

    let at_head = repository.load("w8").expect("loading");
    assert_eq!((at_head.snapshot_offset(), at_head.events_replayed()), (Some(events - 1), 0));
    assert_eq!(at_head.state(), ledger.state());
    group.sample_size(100).measurement_time(Duration::from_secs(3));
    group.bench_function("snapshot_at_head", |b| b.iter(|| black_box(repository.load("w8").expect("loading"))));

    let repository = Repository::<Ledger>::new(repository.store().clone()).with_snapshot_policy(SnapshotPolicy::NEVER);
    append_deltas(&repository, &mut ledger, &mut deltas, SNAPSHOT_EVERY_EVENTS - 1);
    let with_tail = repository.load("w8").expect("loading");
    assert_eq!(with_tail.events_replayed(), SNAPSHOT_EVERY_EVENTS - 1);
    assert_eq!(with_tail.state(), ledger.state());
    group
        .bench_function("snapshot_then_9999_events", |b| b.iter(|| black_box(repository.load("w8").expect("loading"))));
    group.finish();
}

criterion_group!(benches, w8);
criterion_main!(benches);
