//! Reading in batches of the persistent-streams design: take up to 100 events from the current offset,
//! process the batch, continue from the highest offset + 1, stop at the first empty batch. Proves every
//! event is seen exactly once, in order, in full batches but the last, both when the stream's length is a
//! multiple of the batch size (the loop ends on an empty batch) and when it is not, and that events appended
//! while the loop runs are picked up by the following batches.

use annals::{EventData, ExpectedVersion, RecordedEvent, Store};

const BATCH_SIZE: usize = 100;

fn append_orders(store: &Store, range: std::ops::Range<u64>) {
    for chunk in range.collect::<Vec<_>>().chunks(64) {
        let events: Vec<_> =
            chunk.iter().map(|n| EventData::new("OrderPlaced", format!("{{\"order\":{n}}}").into_bytes())).collect();
        store.append("orders", ExpectedVersion::Any, &events).unwrap();
    }
}

/// The loop of `ProcessEventsInBatchesAsync`; `between_batches` runs after each processed batch.
fn process_in_batches(store: &Store, mut between_batches: impl FnMut(usize)) -> Vec<Vec<RecordedEvent>> {
    let mut batches = Vec::new();
    let mut current_offset = 0;
    loop {
        let batch: Vec<RecordedEvent> =
            store.read_stream("orders", current_offset).unwrap().take(BATCH_SIZE).map(Result::unwrap).collect();
        if batch.is_empty() {
            break;
        }
        current_offset = batch.iter().map(RecordedEvent::offset).max().unwrap() + 1;
        batches.push(batch);
        between_batches(batches.len());
    }
    batches
}

fn check(batches: &[Vec<RecordedEvent>], total: u64) {
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    let full = (total as usize) / BATCH_SIZE;
    let rest = (total as usize) % BATCH_SIZE;
    let mut expected = vec![BATCH_SIZE; full];
    if rest > 0 {
        expected.push(rest);
    }
    assert_eq!(sizes, expected);
    let offsets: Vec<u64> = batches.iter().flatten().map(RecordedEvent::offset).collect();
    assert_eq!(offsets, (0..total).collect::<Vec<_>>(), "each event once, in order");
    for event in batches.iter().flatten() {
        assert_eq!(event.data().as_ref(), format!("{{\"order\":{}}}", event.offset()).as_bytes());
    }
}

#[test]
fn batches_of_100_cover_the_stream_once() {
    for total in [0, 1, 99, 100, 101, 1_000, 1_050] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        append_orders(&store, 0..total);
        let batches = process_in_batches(&store, |_| {});
        check(&batches, total);
    }
}

#[test]
fn events_appended_during_the_loop_are_read_by_later_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append_orders(&store, 0..250);
    // After each of the first three batches, 40 more orders arrive.
    let mut appended = 250;
    let batches = process_in_batches(&store, |done| {
        if done <= 3 {
            append_orders(&store, appended..appended + 40);
            appended += 40;
        }
    });
    check(&batches, 370);
}
