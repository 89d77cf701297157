//! After a clean close, reopening shows exactly the same store: every event with every field (ids and
//! timestamps included), every stream version, the head position, the stream count, and every read path
//! compared with a model. It holds whatever state the index checkpoint is in, and the recovery report shows
//! the outcome `format-spec.md` §6.3 prescribes for each: present and current (used, nothing replayed); deleted
//! (rebuilt from the log, not counted as rejected); replaced by garbage, truncated or bit-flipped (rejected by
//! its length or CRC check, then rebuilt); taken with another index interval (rejected for the interval);
//! copied from another store (rejected: its end lies in a segment this store does not have); or replaced by a
//! stale copy from earlier in the store's life: empty, at a clean close, at a segment roll (used, and exactly
//! the records after the ones it covers replayed). Each reopened store keeps appending at the right offsets and
//! positions and reopens stably.

mod support;

use std::path::Path;

use annals::{EventData, ExpectedVersion, Options, Store};
use support::{
    assert_store_matches_model, copy_dir, flip_byte, read_all, remove_checkpoint, segment_paths, small_options, state,
    Model, Rng, State, CHECKPOINT,
};

fn options() -> Options {
    small_options(4096, 4)
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

/// Stale checkpoints saved along the way, with how many events each covers.
struct History {
    /// The directory after the final clean close.
    dir: tempfile::TempDir,
    model: Model,
    state: State,
    stale: Vec<(&'static str, Vec<u8>, u64)>,
}

fn read_checkpoint(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join(CHECKPOINT)).expect("the store wrote an index checkpoint")
}

/// Builds a store over several sessions, saving checkpoints that later become stale.
fn history() -> History {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let mut rng = Rng::new(0xc105e);
    let mut stale = Vec::new();

    Store::open_with(dir.path(), options()).unwrap().close().unwrap();
    stale.push(("empty store", read_checkpoint(dir.path()), 0));

    let store = Store::open_with(dir.path(), options()).unwrap();
    append_some(&store, &mut model, &mut rng, 20);
    store.close().unwrap();
    stale.push(("first session", read_checkpoint(dir.path()), model.all.len() as u64));

    let store = Store::open_with(dir.path(), options()).unwrap();
    let segments = segment_paths(dir.path()).len();
    while segment_paths(dir.path()).len() == segments {
        append_some(&store, &mut model, &mut rng, 1);
    }
    // Appends from one thread are one group each: the checkpoint taken after the group that rolled covers
    // every event appended so far.
    let covered_at_roll = model.all.len() as u64;
    // The writer thread writes a checkpoint right after the group that rolled, before it takes the next group:
    // once one more append has returned, the checkpoint on disk is the one taken at the roll.
    append_some(&store, &mut model, &mut rng, 1);
    stale.push(("taken at a segment roll", read_checkpoint(dir.path()), covered_at_roll));
    append_some(&store, &mut model, &mut rng, 40);
    drop(store);
    stale.push(("second session", read_checkpoint(dir.path()), model.all.len() as u64));

    let store = Store::open_with(dir.path(), options()).unwrap();
    append_some(&store, &mut model, &mut rng, 40);
    let state = state(&store, &["stream-never"]);
    store.close().unwrap();
    assert!(segment_paths(dir.path()).len() > 8, "the history is meant to span many segments");
    History { dir, model, state, stale }
}

/// Fails the test unless the open rejected its checkpoint for a reason containing `why` and replayed the whole log.
fn assert_rejected(report: &annals::RecoveryReport, history: &History, why: &str, context: &str) {
    assert!(!report.checkpoint_used, "{context}: the checkpoint was used: {report:?}");
    let reason = report.checkpoint_rejected.as_deref().unwrap_or_else(|| panic!("{context}: no reason: {report:?}"));
    assert!(reason.contains(why), "{context}: rejected because {reason:?}, expected {why:?}");
    assert_eq!(report.records_replayed, history.model.all.len() as u64, "{context}: a rejection replays the whole log");
}

/// Opens a copy of the final store with `checkpoint` (None: no checkpoint file) and checks it is identical.
/// Returns the reopened store's recovery report.
fn reopen_with(
    history: &History,
    checkpoint: Option<&[u8]>,
    options: Options,
    context: &str,
) -> annals::RecoveryReport {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(history.dir.path(), dir.path());
    match checkpoint {
        Some(bytes) => std::fs::write(dir.path().join(CHECKPOINT), bytes).unwrap(),
        None => remove_checkpoint(dir.path()),
    }
    let store = Store::open_with(dir.path(), options.clone()).unwrap_or_else(|err| panic!("{context}: {err}"));
    let report = store.recovery_report().clone();
    assert_eq!(report.tail_bytes_cut, 0, "{context}: a clean close leaves no tail");
    assert_eq!(state(&store, &["stream-never"]), history.state, "{context}: state differs");
    assert_store_matches_model(&store, &history.model, context);

    // It goes on where it left off, and reopens stably.
    let mut model = history.model.clone();
    let events = [EventData::new("Later", &b"later"[..])];
    let result = store.append("stream-0", ExpectedVersion::Any, &events).unwrap();
    assert_eq!(result, model.append("stream-0", &events), "{context}");
    let result = store.append("stream-new", ExpectedVersion::NoStream, &events).unwrap();
    assert_eq!(result, model.append("stream-new", &events), "{context}");
    let after = state(&store, &["stream-never"]);
    store.close().unwrap();
    let store = Store::open_with(dir.path(), options).unwrap();
    assert!(store.recovery_report().checkpoint_used, "{context}: {:?}", store.recovery_report());
    assert_eq!(state(&store, &["stream-never"]), after, "{context}: second reopen differs");
    assert_eq!(read_all(&store, 0).len(), model.all.len(), "{context}");
    report
}

#[test]
fn reopen_with_the_current_checkpoint_replays_nothing_and_changes_nothing() {
    let history = history();
    let current = read_checkpoint(history.dir.path());
    let report = reopen_with(&history, Some(&current), options(), "current checkpoint");
    assert!(report.checkpoint_used, "{report:?}");
    assert_eq!(report.checkpoint_rejected, None);
    assert_eq!(report.records_replayed, 0, "a clean close's checkpoint covers the whole log");
}

#[test]
fn reopen_without_a_checkpoint_rebuilds_the_same_index() {
    let history = history();
    let report = reopen_with(&history, None, options(), "no checkpoint");
    assert!(!report.checkpoint_used);
    assert_eq!(report.checkpoint_rejected, None, "a missing checkpoint is not a rejected one");
    assert_eq!(report.records_replayed, history.model.all.len() as u64);
}

#[test]
fn a_damaged_checkpoint_is_rejected_and_the_index_rebuilt() {
    let history = history();
    let current = read_checkpoint(history.dir.path());
    let mut rng = Rng::new(0xbad);
    let mut damaged: Vec<(String, Vec<u8>)> = vec![
        ("empty file".into(), Vec::new()),
        ("ten bytes".into(), rng.bytes(10)),
        ("random, the checkpoint's length".into(), rng.bytes(current.len())),
        ("random, 64 KiB".into(), rng.bytes(64 << 10)),
        ("zeros".into(), vec![0; current.len()]),
        ("truncated by 4 bytes".into(), current[..current.len() - 4].to_vec()),
        ("truncated to half".into(), current[..current.len() / 2].to_vec()),
        ("one byte appended".into(), [&current[..], &[0]].concat()),
    ];
    for at in [0, 8, 12, 16, 24, 32, 40, 48, 56, 57, current.len() / 2, current.len() - 5, current.len() - 1] {
        let mut bytes = current.clone();
        bytes[at] ^= 0x10;
        damaged.push((format!("byte {at} flipped"), bytes));
    }
    for (what, bytes) in damaged {
        let report = reopen_with(&history, Some(&bytes), options(), &what);
        // The first two checks of format-spec §6.3 decide: at least 60 bytes, then the CRC over all but the
        // last 4. Every damage here fails one of them (its CRC is checked below, independently of the engine).
        let why = if bytes.len() < 60 { "shorter than its fixed part" } else { "CRC mismatch" };
        if bytes.len() >= 60 {
            let (body, crc) = bytes.split_at(bytes.len() - 4);
            assert_ne!(crc32fast::hash(body).to_le_bytes(), crc, "{what}: the damage must break the CRC");
        }
        assert_rejected(&report, &history, why, &what);
    }
}

#[test]
fn a_checkpoint_taken_with_another_index_interval_is_rejected() {
    let history = history();
    let current = read_checkpoint(history.dir.path());
    for interval in [1, 3, 32] {
        let context = format!("interval {interval}");
        let report = reopen_with(&history, Some(&current), small_options(4096, interval), &context);
        assert_rejected(&report, &history, "index interval", &context);
    }
}

#[test]
fn a_stale_checkpoint_is_used_and_the_rest_replayed() {
    // A stale checkpoint (covering less than the log holds) passes every check of format-spec §6.3: its last
    // record is intact and where it says. It is the normal case after a crash between two checkpoints.
    let history = history();
    let total = history.model.all.len() as u64;
    assert_eq!(history.stale.len(), 4);
    for (what, bytes, covered) in &history.stale {
        let report = reopen_with(&history, Some(bytes), options(), what);
        assert!(report.checkpoint_used, "{what}: a stale but valid checkpoint was not used: {report:?}");
        assert_eq!(report.checkpoint_rejected, None, "{what}");
        assert!(*covered < total, "{what}: the checkpoint is stale");
        assert_eq!(report.records_replayed, total - covered, "{what}: replay starts after what it covers");
    }
}

#[test]
fn a_checkpoint_copied_from_another_store_does_not_change_what_is_read() {
    let history = history();
    // Another store with the same stream names but other event sizes: its locators point elsewhere.
    let other = tempfile::tempdir().unwrap();
    let store = Store::open_with(other.path(), options()).unwrap();
    let mut rng = Rng::new(0x07e5);
    append_some(&store, &mut Model::default(), &mut rng, 120);
    store.close().unwrap();
    assert!(segment_paths(other.path()).len() > segment_paths(history.dir.path()).len());
    let foreign = read_checkpoint(other.path());
    let report = reopen_with(&history, Some(&foreign), options(), "checkpoint of another store");
    // §6.3 check 7: the other store is longer, so the checkpoint's end lies in a segment this one lacks.
    assert_rejected(&report, &history, "its end lies in a missing segment", "checkpoint of another store");
}

#[test]
fn a_damaged_checkpoint_in_place_never_reaches_the_reader() {
    // The same as above, damaging the file where it lies instead of writing a new one.
    let history = history();
    let dir = tempfile::tempdir().unwrap();
    copy_dir(history.dir.path(), dir.path());
    flip_byte(&dir.path().join(CHECKPOINT), 30, 0xFF);
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.recovery_report().checkpoint_rejected.as_deref(), Some("CRC mismatch"));
    assert_eq!(state(&store, &["stream-never"]), history.state);
}
