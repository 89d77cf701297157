//! `read_category` and `read_event_type` return exactly the committed events of a category (the stream name
//! before the first separator) or of an event type, in position order, from any position; they touch only
//! those records (counted by the store); and they hold across segment rolls, index tables written at each roll
//! and merged in the background, a reopen, a rebuild of the index from the log, and another category
//! separator (which rebuilds the index). An iterator is a snapshot: events appended after it was created are
//! not part of it.

mod support;

use annals::{EventData, ExpectedVersion, Options, Store};
use support::{assert_indexed_reads_match_model, collect, small_options, Model, Rng};

const STREAMS: [&str; 7] = ["account-1", "account-2", "order-1", "order-2-line-9", "cart-7", "transfers", "account-"];
const TYPES: [&str; 4] = ["Opened", "Deposited", "Withdrawn", "Closed"];

fn fill(store: &Store, model: &mut Model, rng: &mut Rng, count: usize) {
    for _ in 0..count {
        let stream = *rng.pick(&STREAMS);
        let events: Vec<EventData> =
            (0..rng.range_usize(1, 4)).map(|_| EventData::new(*rng.pick(&TYPES), rng.bytes_below(200))).collect();
        let result = store.append(stream, ExpectedVersion::Any, &events).unwrap();
        assert_eq!(result, model.append(stream, &events));
    }
}

#[test]
fn categories_and_event_types_read_exactly_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_options(4096);
    let store = Store::open_with(dir.path(), options.clone()).unwrap();
    let (mut model, mut rng) = (Model::default(), Rng::new(0xca7e));
    fill(&store, &mut model, &mut rng, 300);
    assert!(support::segment_paths(dir.path()).len() > 10, "small segments roll, and their tables are written");
    assert_indexed_reads_match_model(&store, &model, "live");

    store.close().unwrap();
    let store = Store::open_with(dir.path(), options.clone()).unwrap();
    assert!(support::opened_from_index(&store));
    assert_indexed_reads_match_model(&store, &model, "reopened");
    fill(&store, &mut model, &mut rng, 50);
    assert_indexed_reads_match_model(&store, &model, "appended after reopening");
    drop(store);

    support::remove_index(dir.path());
    let store = Store::open_with(dir.path(), options).unwrap();
    assert_eq!(store.recovery_report().records_replayed, model.all.len() as u64);
    assert_indexed_reads_match_model(&store, &model, "rebuilt");
}

#[test]
fn an_iterator_is_a_snapshot_of_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("account-1", ExpectedVersion::Any, &[EventData::new("Opened", &b"1"[..])]).unwrap();
    let by_category = store.read_category("account", 0).unwrap();
    let by_type = store.read_event_type("Opened", 0).unwrap();
    store.append("account-2", ExpectedVersion::Any, &[EventData::new("Opened", &b"2"[..])]).unwrap();
    assert_eq!(collect(by_category).len(), 1);
    assert_eq!(collect(by_type).len(), 1);
    assert_eq!(collect(store.read_category("account", 0).unwrap()).len(), 2);
    // A start past the end, and names that match nothing.
    assert!(collect(store.read_category("account", 2).unwrap()).is_empty());
    assert!(collect(store.read_category("account", u64::MAX).unwrap()).is_empty());
    assert!(collect(store.read_category("", 0).unwrap()).is_empty());
    assert!(collect(store.read_event_type("Nothing", 0).unwrap()).is_empty());
}

#[test]
fn another_separator_rebuilds_the_index_with_other_categories() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for stream in ["eu.account-1", "eu.account-2", "us.order-1"] {
        store.append(stream, ExpectedVersion::Any, &[EventData::new("Opened", &b"{}"[..])]).unwrap();
    }
    let streams = |store: &Store, category: &str| -> Vec<String> {
        collect(store.read_category(category, 0).unwrap()).into_iter().map(|event| event.stream).collect()
    };
    assert_eq!(streams(&store, "eu.account"), ["eu.account-1", "eu.account-2"]);
    store.close().unwrap();

    let dotted = Options { category_separator: '.', ..Options::default() };
    let store = Store::open_with(dir.path(), dotted).unwrap();
    let report = store.recovery_report();
    assert!(report.index_rejected.as_ref().is_some_and(|why| why.contains("separator")), "{report:?}");
    assert_eq!(streams(&store, "eu"), ["eu.account-1", "eu.account-2"]);
    assert_eq!(streams(&store, "us"), ["us.order-1"]);
    assert!(streams(&store, "eu.account").is_empty());
}
