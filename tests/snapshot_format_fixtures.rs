//! Snapshot files of every released format stay recognised. Each fixture is the `snapshots/` directory that
//! one format version wrote for stream `account-2` of the v1 `intact` store (offsets 1 and 5, schema version
//! 7), laid beside a copy of that store:
//!
//! - `tests/fixtures/snapshot-v1/`: format 1 recorded no event id, so its snapshots cannot be checked against
//!   the stream. They are recognised, skipped with `SkipReason::Unverifiable`, the aggregate is rebuilt from
//!   its events, and the next snapshot written replaces them.
//! - `tests/fixtures/snapshot-v2/`: the current format, read back exactly, and written again byte for byte.
//!
//! The bytes of each newer file are checked too, so an accidental change of a layout fails loudly. The
//! fixtures are frozen: `write_snapshot_fixture` writes the current format's fixture only when
//! `ANNALS_WRITE_FIXTURE=snapshot-v<N>` names it, and never over an existing folder.

use std::path::Path;

use annals::{SkipReason, SnapshotOptions, Store, SNAPSHOT_FORMAT_VERSION};

const STREAM: &str = "account-2";
const STATE_1: &[u8] = b"balance=990";
const STATE_5: &[u8] = b"balance=1234;owner=Ada";

fn options() -> annals::Options {
    annals::Options { segment_size_bytes: 4096, ..Default::default() }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn fixture(version: u32) -> String {
    format!("tests/fixtures/snapshot-v{version}")
}

/// The store of the v1 log fixture with the snapshot fixture of `version` beside it.
fn store_with_fixture(version: u32) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new("tests/fixtures/v1/intact"), dir.path());
    copy_dir(Path::new(&fixture(version)), dir.path());
    let store = Store::open_with(dir.path(), options()).unwrap();
    (dir, store)
}

/// The snapshots the fixtures hold, written by this build into a fresh copy of the log fixture.
fn write_fresh() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new("tests/fixtures/v1/intact"), dir.path());
    let store = Store::open_with(dir.path(), options()).unwrap();
    let keep = SnapshotOptions { schema_version: 7, ..Default::default() };
    store.write_snapshot_with(STREAM, 1, STATE_1, keep).unwrap();
    store.write_snapshot_with(STREAM, 5, STATE_5, keep).unwrap();
    (dir, store)
}

#[test]
#[ignore = "writes a new snapshot fixture; run with ANNALS_WRITE_FIXTURE=snapshot-v<N> when a format is released"]
fn write_snapshot_fixture() {
    let name = format!("snapshot-v{SNAPSHOT_FORMAT_VERSION}");
    if std::env::var("ANNALS_WRITE_FIXTURE").as_deref() != Ok(name.as_str()) {
        eprintln!("nothing written: set ANNALS_WRITE_FIXTURE={name} to write tests/fixtures/{name}");
        return;
    }
    let target = Path::new("tests/fixtures").join(&name);
    assert!(!target.exists(), "{} exists: a released fixture is never overwritten", target.display());
    let (dir, _store) = write_fresh();
    copy_dir(&dir.path().join("snapshots"), &target.join("snapshots"));
}

fn hex(parts: &[&str]) -> Vec<u8> {
    let hex: String = parts.concat();
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

fn newest_file(store: &Store) -> std::path::PathBuf {
    let paths = store.snapshot_paths(STREAM).unwrap();
    paths.into_iter().find(|path| path.ends_with("00000000000000000005.snap")).expect("the offset 5 file")
}

// ---------------------------------------------------------------------------------------------------------
// Format 1.

/// The bytes of `00000000000000000005.snap`, as format 1 wrote them.
const NEWEST_V1_HEX: &[&str] = &[
    "414e4e4c534e4150010000000700000005000000000000000900000016000000000000006163636f756e742d3262616c",
    "616e63653d313233343b6f776e65723d416461bfa8dcba",
];

#[test]
fn v1_snapshots_are_recognised_and_skipped_as_unverifiable() {
    let (_dir, store) = store_with_fixture(1);
    assert!(store.stream_version(STREAM).unwrap() >= 5, "the fixture store holds offset 5 of {STREAM}");
    let search = store.find_latest_snapshot(STREAM).unwrap();
    assert!(search.snapshot().is_none(), "a v1 snapshot can not be checked against the stream");
    let reasons: Vec<&SkipReason> = search.skipped().iter().map(|skipped| &skipped.reason).collect();
    assert_eq!(reasons, [&SkipReason::Unverifiable { found: 1 }, &SkipReason::Unverifiable { found: 1 }]);
}

#[test]
fn the_v1_snapshot_bytes_are_frozen() {
    let (_dir, store) = store_with_fixture(1);
    let expected = hex(NEWEST_V1_HEX);
    assert_eq!(std::fs::read(newest_file(&store)).unwrap(), expected, "the checked-in fixture changed");
    let (body, crc) = expected.split_at(expected.len() - 4);
    assert_eq!(crc32fast::hash(body).to_le_bytes(), crc, "a CRC-32 over everything before it ends the file");
}

#[test]
fn a_new_snapshot_replaces_the_v1_ones() {
    let (_dir, store) = store_with_fixture(1);
    store.write_snapshot_with(STREAM, 3, b"v2 state", SnapshotOptions { schema_version: 7, keep_last: 3 }).unwrap();
    assert_eq!(store.snapshot_paths(STREAM).unwrap().len(), 1, "retention deleted the unverifiable v1 files");
    assert_eq!(store.latest_snapshot(STREAM).unwrap().unwrap().state(), b"v2 state");
}

// ---------------------------------------------------------------------------------------------------------
// Format 2.

/// The bytes of `00000000000000000005.snap`, as format 2 writes them: position 15 and the id of the event at
/// offset 5 of `account-2` in the v1 log fixture.
const NEWEST_V2_HEX: &[&str] = &[
    "414e4e4c534e4150020000000700000005000000000000000f00000000000000f1c50000000040008000000000000010",
    "0900000016000000000000006163636f756e742d3262616c616e63653d313233343b6f776e65723d416461",
];

#[test]
fn the_latest_v2_snapshot_reads_back_exactly() {
    let (_dir, store) = store_with_fixture(2);
    let snapshot = store.latest_snapshot(STREAM).unwrap().expect("the v2 snapshot is found and trusted");
    assert_eq!((snapshot.stream(), snapshot.offset(), snapshot.schema_version()), (STREAM, 5, 7));
    assert_eq!(snapshot.state(), STATE_5);
    let event = store.read_stream(STREAM, 5).unwrap().next().unwrap().unwrap();
    assert_eq!((snapshot.position(), snapshot.event_id()), (event.position(), event.event_id()));
    assert_eq!(store.snapshot_paths(STREAM).unwrap().len(), 2);
}

#[test]
fn the_v2_snapshot_bytes_are_frozen_and_written_again_exactly() {
    let (_dir, store) = store_with_fixture(2);
    let frozen = std::fs::read(newest_file(&store)).unwrap();
    let expected = hex(NEWEST_V2_HEX);
    assert_eq!(frozen[..expected.len()], expected[..], "the checked-in fixture changed");
    assert_eq!(frozen.len(), expected.len() + 4, "a 4-byte CRC ends the file");
    let (body, crc) = frozen.split_at(frozen.len() - 4);
    assert_eq!(crc32fast::hash(body).to_le_bytes(), crc, "a CRC-32 over everything before it ends the file");

    // The current writer writes exactly these bytes: any change of the layout must come with a new format
    // version (and a new fixture).
    let (_fresh, writer) = write_fresh();
    assert_eq!(std::fs::read(newest_file(&writer)).unwrap(), frozen);
}

#[test]
fn a_damaged_v2_snapshot_falls_back_to_the_older_one() {
    let (_dir, store) = store_with_fixture(2);
    let newest = newest_file(&store);
    let mut bytes = std::fs::read(&newest).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0x01;
    std::fs::write(&newest, bytes).unwrap();
    let snapshot = store.latest_snapshot(STREAM).unwrap().expect("the older snapshot is still trusted");
    assert_eq!((snapshot.offset(), snapshot.state()), (1, STATE_1));
}
