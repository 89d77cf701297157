//! The reference's catch-up projection (`CatchUpProjectionAsync`: read the `orders` stream from the last
//! processed offset + 1, update the projection, save the checkpoint after each event), written on a durable
//! subscription: it resumes after the last saved checkpoint, handles each order once across restarts, and then
//! follows new orders live without polling.

use std::collections::BTreeSet;

use annals::{EventData, ExpectedVersion, Filter, Store, SubscriptionMessage};

fn place(store: &Store, order: u64) {
    store
        .append("orders", ExpectedVersion::Any, &[EventData::new("OrderPlaced", order.to_le_bytes().to_vec())])
        .unwrap();
}

/// Handles up to `limit` orders from where the projection left off; returns the ones it handled.
fn run_projection(store: &Store, limit: usize) -> Vec<u64> {
    let mut subscription = store.subscribe_durable("orders-projection", Filter::Stream("orders".into())).unwrap();
    let mut handled = Vec::new();
    while handled.len() < limit {
        match subscription.next().unwrap().unwrap() {
            SubscriptionMessage::Event(event) => {
                handled.push(u64::from_le_bytes(event.data()[..].try_into().unwrap())); // UpdateProjectionAsync
                subscription.save_checkpoint(event.position()).unwrap(); // SaveCheckpointAsync
            }
            SubscriptionMessage::CaughtUp | SubscriptionMessage::Checkpoint(_) => {}
            other => panic!("{other:?}"),
        }
    }
    handled
}

#[test]
fn the_catch_up_projection_resumes_after_its_checkpoint_and_follows_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for order in 0..40 {
        place(&store, order);
        store.append("customers", ExpectedVersion::Any, &[EventData::new("Visited", vec![1])]).unwrap();
    }
    // The first run stops after 15 orders (a deploy, a crash after the checkpoint).
    let mut handled = run_projection(&store, 15);
    assert_eq!(handled, (0..15).collect::<Vec<_>>());
    // After a restart of the store too: it resumes at order 15.
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    handled.extend(run_projection(&store, 25));
    // Live: orders placed while the projection waits are handled as they come.
    let live = std::thread::spawn({
        let store = store.clone();
        move || run_projection(&store, 10)
    });
    for order in 40..50 {
        place(&store, order);
    }
    handled.extend(live.join().unwrap());
    assert_eq!(handled, (0..50).collect::<Vec<_>>(), "each order once, in order");
    assert_eq!(handled.iter().collect::<BTreeSet<_>>().len(), 50);
}
