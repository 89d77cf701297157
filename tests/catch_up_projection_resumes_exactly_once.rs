//! The catch-up projection of the persistent-streams design: a projection over the `orders` stream reads
//! from its last processed offset + 1 and saves its checkpoint after each event. Proves that after a
//! restart, including one that interrupts it between handling an event and saving the checkpoint, the
//! projection resumes where its checkpoint says and its result counts every order exactly once.
//!
//! The checkpoint and the projection's state are saved together, atomically, as one snapshot of `orders`
//! (state as of an offset is exactly what a snapshot is): a crash can never keep one without the other, which
//! is what makes "exactly once" hold for the result rather than "at least once".

use annals::{Event, EventCodec, ExpectedVersion, SnapshotOptions, Store};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum OrderEvent {
    OrderPlaced { order_id: u64, cents: i64 },
}

impl Event for OrderEvent {}

/// The projection's state: revenue, and how many times each order was seen (to prove "exactly once").
#[derive(Serialize, Deserialize, Debug, Default, PartialEq)]
struct Revenue {
    total_cents: i64,
    times_seen: Vec<u32>,
}

const CHECKPOINT: SnapshotOptions = SnapshotOptions { schema_version: 1, keep_last: 2 };

/// Runs the projection from its checkpoint; stops (as if the process died) after handling `crash_after`
/// events, before saving the checkpoint of the last one. Returns how many events it handled.
fn run_projection(store: &Store, crash_after: Option<usize>) -> usize {
    let events = EventCodec::<OrderEvent>::default();
    let (mut revenue, last_processed) = match store.latest_snapshot("orders").unwrap() {
        Some(checkpoint) => (serde_json::from_slice(checkpoint.state()).unwrap(), Some(checkpoint.offset())),
        None => (Revenue::default(), None),
    };
    let mut handled = 0;
    for recorded in store.read_stream("orders", last_processed.map_or(0, |offset| offset + 1)).unwrap() {
        let recorded = recorded.unwrap();
        let OrderEvent::OrderPlaced { order_id, cents } = events.decode(&recorded).unwrap();
        revenue.total_cents += cents;
        let order = order_id as usize;
        if revenue.times_seen.len() <= order {
            revenue.times_seen.resize(order + 1, 0);
        }
        revenue.times_seen[order] += 1;
        handled += 1;
        if crash_after == Some(handled) {
            return handled;
        }
        let state = serde_json::to_vec(&revenue).unwrap();
        store.write_snapshot_with("orders", recorded.offset(), &state, CHECKPOINT).unwrap();
    }
    handled
}

fn place_orders(store: &Store, ids: std::ops::Range<u64>) {
    let events = EventCodec::<OrderEvent>::default();
    for order_id in ids {
        let event = events.encode(&OrderEvent::OrderPlaced { order_id, cents: 100 + order_id as i64 }).unwrap();
        store.append("orders", ExpectedVersion::Any, &[event]).unwrap();
    }
}

#[test]
fn the_projection_resumes_from_its_checkpoint_and_counts_each_order_once() {
    let dir = tempfile::tempdir().unwrap();

    let store = Store::open(dir.path()).unwrap();
    place_orders(&store, 0..40);
    // The first run dies after handling 25 events; the 25th was handled but not checkpointed.
    assert_eq!(run_projection(&store, Some(25)), 25);
    assert_eq!(store.latest_snapshot("orders").unwrap().unwrap().offset(), 23);
    drop(store);

    // While the projection is down, more orders come in (from another process run).
    let store = Store::open(dir.path()).unwrap();
    place_orders(&store, 40..70);
    store.close().unwrap();

    // The restarted projection resumes at offset 24 and catches up.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(run_projection(&store, None), 70 - 24);
    // Caught up: a further run handles nothing.
    assert_eq!(run_projection(&store, None), 0);
    place_orders(&store, 70..75);
    assert_eq!(run_projection(&store, None), 5);

    let checkpoint = store.latest_snapshot("orders").unwrap().unwrap();
    assert_eq!(checkpoint.offset(), 74);
    let revenue: Revenue = serde_json::from_slice(checkpoint.state()).unwrap();
    assert_eq!(revenue.times_seen, vec![1; 75], "every order exactly once");
    assert_eq!(revenue.total_cents, (0..75).map(|id| 100 + id).sum::<i64>());
    assert_eq!(store.snapshot_paths("orders").unwrap().len(), 2, "old checkpoints are pruned");
}
