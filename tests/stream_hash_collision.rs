//! Streams whose names share a hash are still kept apart. With `stream_hash_mask: 0` every stream falls into
//! one hash slot of the index; dozens of streams (names that are prefixes of each other, differ in one byte or
//! only in case, or hold multi-byte characters) are appended to interleaved, and each keeps its own version,
//! its own expected-version checks (a conflict reports that stream's own last offset), its own reads from every
//! offset in both directions, and its absence when it does not exist. The same holds after reopening with the
//! persistent index and after rebuilding the index from the log, and when a store written with distinct
//! hashes is reopened with colliding ones and back (the index is then rebuilt, never read with other hashes).

mod support;

use annals::{Error, EventData, ExpectedVersion, Options, Store};
use support::{assert_store_matches_model, remove_index, Model, Rng};
use uuid::Uuid;

fn colliding() -> Options {
    Options { stream_hash_mask: 0, ..support::small_options(4096) }
}

fn distinct() -> Options {
    support::small_options(4096)
}

fn names() -> Vec<String> {
    let mut names: Vec<String> = (0..20).map(|i| format!("s-{i}")).collect();
    names.extend(["a", "aa", "aaa", "A", "s-1 ", "s-10-", "ß", "ss", "é", "e\u{301}"].map(String::from));
    names
}

/// Appends to random streams with the right expected version, and checks conflicts on the way.
fn append_interleaved(store: &Store, model: &mut Model, rng: &mut Rng, appends: usize) {
    let names = names();
    for _ in 0..appends {
        let stream = &names[rng.below(names.len() as u64) as usize];
        let version = model.version(stream);
        // A stale expectation is refused with this stream's own version, whatever the others hold.
        let wrong = match version {
            None => ExpectedVersion::StreamExists,
            Some(_) if rng.below(2) == 0 => ExpectedVersion::NoStream,
            Some(last) => ExpectedVersion::Exact(last + 1 + rng.below(3)),
        };
        let conflict = store.append(stream, wrong, &[EventData::new("Never", &b"never"[..])]);
        match conflict {
            Err(Error::WrongExpectedVersion { stream: s, expected, actual }) => {
                assert_eq!((s.as_str(), expected, actual), (stream.as_str(), wrong, version));
            }
            other => panic!("{stream:?} with {wrong:?}: expected a conflict, got {other:?}"),
        }
        let id = Uuid::from_u128(model.all.len() as u128 + 1);
        let events = [EventData::new(format!("Of{stream}"), rng.bytes_below(150)).with_id(id)];
        let right = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let result = store.append(stream, right, &events).unwrap();
        assert_eq!(result, model.append(stream, &events), "{stream:?}");
    }
}

fn check(store: &Store, model: &Model, context: &str) {
    assert_store_matches_model(store, model, context);
    for name in names() {
        assert_eq!(store.stream_version(&name), model.version(&name), "{context}: {name:?}");
    }
    for missing in ["s-20", "s-", "aaaa", "b", "S-1", "s-1  ", "e"] {
        assert_eq!(store.stream_version(missing), None, "{context}: {missing:?} does not exist");
        assert_eq!(store.read_stream(missing, 0).unwrap().count(), 0, "{context}: {missing:?}");
        assert_eq!(store.read_stream_backwards(missing, None).unwrap().count(), 0, "{context}: {missing:?}");
    }
}

#[test]
fn colliding_streams_keep_their_own_versions_checks_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let mut rng = Rng::new(0xc011);
    let store = Store::open_with(dir.path(), colliding()).unwrap();
    // The first stream is alone in its slot; the second shares it.
    append_interleaved(&store, &mut model, &mut rng, 1);
    check(&store, &model, "one stream");
    append_interleaved(&store, &mut model, &mut rng, 150);
    assert_eq!(store.stream_count(), model.streams.len());
    assert!(model.streams.len() > 20, "most names were used");
    check(&store, &model, "fresh");
    store.close().unwrap();

    let store = Store::open_with(dir.path(), colliding()).unwrap();
    assert!(support::opened_from_index(&store), "{:?}", store.recovery_report());
    check(&store, &model, "reopened with the index");
    append_interleaved(&store, &mut model, &mut rng, 40);
    check(&store, &model, "appended after reopening");
    drop(store);

    remove_index(dir.path());
    let store = Store::open_with(dir.path(), colliding()).unwrap();
    assert!(store.recovery_report().index_tables == 0);
    check(&store, &model, "rebuilt");
    append_interleaved(&store, &mut model, &mut rng, 40);
    check(&store, &model, "appended after rebuilding");
}

#[test]
fn a_store_reopens_across_distinct_and_colliding_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let mut rng = Rng::new(0xc012);
    let store = Store::open_with(dir.path(), distinct()).unwrap();
    append_interleaved(&store, &mut model, &mut rng, 80);
    store.close().unwrap();

    // The index's tables record the hash mask they were made with: under another one they are rebuilt from
    // the log, never read with the wrong hashes.
    let store = Store::open_with(dir.path(), colliding()).unwrap();
    let report = store.recovery_report();
    assert!(report.index_rejected.as_ref().is_some_and(|why| why.contains("hash mask")), "{report:?}");
    assert_eq!(report.records_replayed, model.all.len() as u64);
    check(&store, &model, "colliding after distinct");
    append_interleaved(&store, &mut model, &mut rng, 30);
    store.close().unwrap();

    let store = Store::open_with(dir.path(), distinct()).unwrap();
    assert!(store.recovery_report().index_rejected.is_some(), "{:?}", store.recovery_report());
    check(&store, &model, "distinct after colliding");
    store.close().unwrap();
    let store = Store::open_with(dir.path(), distinct()).unwrap();
    assert!(support::opened_from_index(&store), "{:?}", store.recovery_report());
    check(&store, &model, "distinct, reopened");
}
