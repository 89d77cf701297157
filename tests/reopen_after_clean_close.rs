//! After a clean close, reopening shows exactly the same store: every event with every field (ids and
//! timestamps included), every stream version, the head position, the stream count, and every read path
//! compared with a model. It holds whatever state the persistent index is in, and the recovery report shows the
//! outcome `format-spec.md` §6 prescribes for each: present and current (used, nothing replayed); deleted
//! (rebuilt from the log, nothing rejected); a table whose header is damaged (rejected with that table's name,
//! the tables from it on dropped and the log after the ones before it replayed); a stale copy from earlier in
//! the store's life (empty, at a clean close, at a segment roll: used, and exactly the records after the ones
//! it covers replayed); the index of another store (rejected: its tables do not describe this log). Each
//! reopened store keeps appending at the right offsets and positions and reopens stably. Damage inside a
//! table's pages (past its header) is reported as `Corrupt` naming the table file where it is read, and by
//! `Store::verify`; deleting the table rebuilds it.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use annals::{Error, EventData, ExpectedVersion, Options, Store};
use support::{
    assert_indexed_reads_match_model, assert_store_matches_model, copy_dir, flip_byte, index_tables, read_all,
    segment_paths, small_options, state, Model, Rng, State, INDEX_DIR,
};

fn options() -> Options {
    small_options(4096)
}

/// Appends `count` appends of 1..=3 events to 6 interleaved streams.
fn append_some(store: &Store, model: &mut Model, rng: &mut Rng, count: usize) {
    for _ in 0..count {
        let stream = format!("stream-{}", rng.below(6));
        let events: Vec<EventData> = (0..1 + rng.below(3))
            .map(|_| EventData::new("Changed", rng.bytes_below(200)).with_metadata(rng.bytes(3)))
            .collect();
        let result = store.append(&stream, ExpectedVersion::Any, &events).unwrap();
        assert_eq!(result, model.append(&stream, &events));
    }
}

/// A copy of a store's `index/` directory.
fn save_index(dir: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&dir.join(INDEX_DIR), copy.path());
    copy
}

/// Stale indexes saved along the way, with how many events each covers.
struct History {
    /// The directory after the final clean close.
    dir: tempfile::TempDir,
    model: Model,
    state: State,
    stale: Vec<(&'static str, tempfile::TempDir, u64)>,
}

/// Builds a store over several sessions, saving indexes that later become stale.
fn history() -> History {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let mut rng = Rng::new(0xc105e);
    let mut stale = Vec::new();

    Store::open_with(dir.path(), options()).unwrap().close().unwrap();
    stale.push(("empty store", save_index(dir.path()), 0));

    let store = Store::open_with(dir.path(), options()).unwrap();
    append_some(&store, &mut model, &mut rng, 20);
    store.close().unwrap();
    stale.push(("first session", save_index(dir.path()), model.all.len() as u64));

    let store = Store::open_with(dir.path(), options()).unwrap();
    let (segments, tables) = (segment_paths(dir.path()).len(), index_tables(dir.path()).len());
    while segment_paths(dir.path()).len() == segments {
        append_some(&store, &mut model, &mut rng, 1);
    }
    // The table of the segment the roll sealed is written in the background: wait for it (bounded).
    let started = Instant::now();
    while index_tables(dir.path()).len() == tables {
        assert!(started.elapsed() < Duration::from_secs(60), "the table of a sealed segment is written");
        std::thread::sleep(Duration::from_millis(5));
    }
    let at_roll = save_index(dir.path());
    let newest = index_tables(dir.path()).pop().unwrap();
    // Tables are named `<first position>-<end position>.tbl`.
    let covered_at_roll = newest.file_stem().unwrap().to_str().unwrap()[21..].parse().unwrap();
    stale.push(("taken at a segment roll", at_roll, covered_at_roll));
    append_some(&store, &mut model, &mut rng, 40);
    drop(store);
    stale.push(("second session", save_index(dir.path()), model.all.len() as u64));

    let store = Store::open_with(dir.path(), options()).unwrap();
    append_some(&store, &mut model, &mut rng, 40);
    let state = state(&store, &["stream-never"]);
    store.close().unwrap();
    assert!(segment_paths(dir.path()).len() > 8, "the history is meant to span many segments");
    History { dir, model, state, stale }
}

/// Opens a copy of the final store with `index` as its `index/` directory (`None`: none) and checks it is
/// identical. Returns the reopened store's recovery report.
fn reopen_with(history: &History, index: Option<&Path>, context: &str) -> annals::RecoveryReport {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(history.dir.path(), dir.path());
    support::remove_index(dir.path());
    if let Some(index) = index {
        std::fs::create_dir(dir.path().join(INDEX_DIR)).unwrap();
        copy_dir(index, &dir.path().join(INDEX_DIR));
    }
    let store = Store::open_with(dir.path(), options()).unwrap_or_else(|err| panic!("{context}: {err}"));
    let report = store.recovery_report().clone();
    assert_eq!(report.tail_bytes_cut, 0, "{context}: a clean close leaves no tail");
    assert_eq!(state(&store, &["stream-never"]), history.state, "{context}: state differs");
    assert_store_matches_model(&store, &history.model, context);
    assert_indexed_reads_match_model(&store, &history.model, context);

    // It goes on where it left off, and reopens stably.
    let mut model = history.model.clone();
    let events = [EventData::new("Later", &b"later"[..])];
    let result = store.append("stream-0", ExpectedVersion::Any, &events).unwrap();
    assert_eq!(result, model.append("stream-0", &events), "{context}");
    let result = store.append("stream-new", ExpectedVersion::NoStream, &events).unwrap();
    assert_eq!(result, model.append("stream-new", &events), "{context}");
    let after = state(&store, &["stream-never"]);
    store.close().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert!(support::opened_from_index(&store), "{context}: {:?}", store.recovery_report());
    assert_eq!(state(&store, &["stream-never"]), after, "{context}: second reopen differs");
    assert_eq!(read_all(&store, 0).len(), model.all.len(), "{context}");
    report
}

#[test]
fn reopen_with_the_current_index_replays_nothing_and_changes_nothing() {
    let history = history();
    let current = save_index(history.dir.path());
    let report = reopen_with(&history, Some(current.path()), "current index");
    assert!(report.index_tables > 0 && report.index_rejected.is_none(), "{report:?}");
    assert_eq!(report.records_replayed, 0, "a clean close's index covers the whole log");
}

#[test]
fn reopen_without_an_index_rebuilds_the_same_index() {
    let history = history();
    let report = reopen_with(&history, None, "no index");
    assert_eq!((report.index_tables, report.index_rejected.as_deref()), (0, None), "a missing index is not rejected");
    assert_eq!(report.records_replayed, history.model.all.len() as u64);
}

#[test]
fn a_table_with_a_damaged_header_is_rejected_and_the_log_after_the_others_replayed() {
    let history = history();
    let tables = index_tables(history.dir.path());
    assert!(tables.len() >= 2, "{tables:?}");
    let total = history.model.all.len() as u64;
    for (which, table) in [("the first table", &tables[0]), ("the last table", tables.last().unwrap())] {
        for at in [0, 8, 16, 24, 32, 40, 100, 200, 4091] {
            let context = format!("{which}, header byte {at} flipped");
            let index = save_index(history.dir.path());
            let damaged = index.path().join(table.file_name().unwrap());
            flip_byte(&damaged, at, 0x10);
            let report = reopen_with(&history, Some(index.path()), &context);
            let name = table.file_name().unwrap().to_str().unwrap();
            let reason = report.index_rejected.as_deref().unwrap_or_else(|| panic!("{context}: {report:?}"));
            assert!(reason.contains(name), "{context}: {reason}");
            // Replay resumes where the last table before the damaged one ends.
            let first_dropped: u64 = name[..20].parse().unwrap();
            assert_eq!(report.records_replayed, total - first_dropped, "{context}: {report:?}");
        }
    }
}

#[test]
fn a_stale_index_is_used_and_the_rest_replayed() {
    // A stale index (covering less than the log holds) checks out against the log: each table's last record
    // is intact and where it says. It is the normal case after a crash between two rolls.
    let history = history();
    let total = history.model.all.len() as u64;
    assert_eq!(history.stale.len(), 4);
    for (what, index, covered) in &history.stale {
        let report = reopen_with(&history, Some(index.path()), what);
        assert_eq!(report.index_rejected, None, "{what}: a stale but valid index was rejected: {report:?}");
        assert!(*covered < total, "{what}: the index is stale");
        assert_eq!(report.records_replayed, total - covered, "{what}: replay starts after what it covers");
    }
}

#[test]
fn the_index_of_another_store_is_rejected_and_rebuilt() {
    let history = history();
    // Another store with the same stream names but other event sizes: its tables describe another log.
    let other = tempfile::tempdir().unwrap();
    let store = Store::open_with(other.path(), options()).unwrap();
    let mut rng = Rng::new(0x07e5);
    append_some(&store, &mut Model::default(), &mut rng, 120);
    store.close().unwrap();
    let foreign = save_index(other.path());
    let report = reopen_with(&history, Some(foreign.path()), "index of another store");
    assert!(report.index_rejected.is_some(), "{report:?}");
    assert_eq!(report.records_replayed, history.model.all.len() as u64, "{report:?}");
}

#[test]
fn damage_inside_a_table_is_reported_where_it_is_read_and_a_deleted_table_is_rebuilt() {
    let history = history();
    let dir = tempfile::tempdir().unwrap();
    copy_dir(history.dir.path(), dir.path());
    let table = index_tables(dir.path()).remove(0);
    // Every page after the header: whichever holds what a read needs, the read says so.
    let pages = std::fs::metadata(&table).unwrap().len() / 4096;
    for page in 1..pages {
        flip_byte(&table, (page * 4096 + 100) as usize, 0x01);
    }
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert!(support::opened_from_index(&store), "the header checks out: {:?}", store.recovery_report());
    let names_table = |err: &Error| matches!(err, Error::Corrupt { file, .. } if *file == table);
    // The read reports it: when it starts (the stream's lifecycle rules are looked up in the same tables once
    // the damage has made the open unsure whether any stream has them), or on the event it needs.
    let read = match store.read_stream("stream-0", 0) {
        Err(err) => Some(err),
        Ok(mut events) => events.find_map(Result::err),
    };
    assert!(read.as_ref().is_some_and(names_table), "{read:?}");
    let problem = store.verify().unwrap().problem;
    assert!(problem.as_ref().is_some_and(names_table), "{problem:?}");
    store.close().unwrap();

    std::fs::remove_file(&table).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert!(store.recovery_report().records_replayed > 0);
    assert_eq!(state(&store, &["stream-never"]), history.state);
    assert!(store.verify().unwrap().is_ok());
}
