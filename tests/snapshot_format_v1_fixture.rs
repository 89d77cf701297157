//! Snapshot files of format version 1 stay readable. `tests/fixtures/snapshot-v1/` holds the `snapshots/`
//! directory written by version 1 for stream `account-2` of the v1 `intact` store (two snapshots: offsets 1 and
//! 5, schema version 7); the test lays them beside a copy of that store and reads them back byte for byte.
//! The exact bytes of the newer file are checked too, so an accidental change of the layout fails loudly.

use std::path::Path;

use annals::{SnapshotOptions, Store};

const STREAM: &str = "account-2";
const FIXTURE: &str = "tests/fixtures/snapshot-v1";

fn options() -> annals::Options {
    annals::Options { segment_size_bytes: 4096, index_interval_events: 4, ..Default::default() }
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

/// The store of the v1 fixture with the snapshot fixture beside it.
fn store_with_fixture() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new("tests/fixtures/v1/intact"), dir.path());
    copy_dir(Path::new(FIXTURE), dir.path());
    let store = Store::open_with(dir.path(), options()).unwrap();
    (dir, store)
}

#[test]
#[ignore = "regenerates the snapshot fixture; run once by hand when a new snapshot format is released"]
fn regenerate_snapshot_v1_fixture() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new("tests/fixtures/v1/intact"), dir.path());
    let store = Store::open_with(dir.path(), options()).unwrap();
    let keep = SnapshotOptions { schema_version: 7, ..Default::default() };
    store.write_snapshot_with(STREAM, 1, b"balance=990", keep).unwrap();
    store.write_snapshot_with(STREAM, 5, b"balance=1234;owner=Ada", keep).unwrap();
    let _ = std::fs::remove_dir_all(FIXTURE);
    copy_dir(&dir.path().join("snapshots"), &Path::new(FIXTURE).join("snapshots"));
}

#[test]
fn the_latest_v1_snapshot_reads_back_exactly() {
    let (_dir, store) = store_with_fixture();
    assert!(store.stream_version(STREAM).unwrap() >= 5, "the fixture store holds offset 5 of {STREAM}");
    let snapshot = store.latest_snapshot(STREAM).unwrap().expect("the v1 snapshot is found and trusted");
    assert_eq!(snapshot.stream(), STREAM);
    assert_eq!(snapshot.offset(), 5);
    assert_eq!(snapshot.schema_version(), 7);
    assert_eq!(snapshot.state(), b"balance=1234;owner=Ada");
    assert_eq!(store.snapshot_paths(STREAM).unwrap().len(), 2);
}

/// The bytes of `00000000000000000005.snap`, as version 1 writes them.
const NEWEST_V1_HEX: &[&str] = &[
    "414e4e4c534e4150010000000700000005000000000000000900000016000000000000006163636f756e742d3262616c",
    "616e63653d313233343b6f776e65723d416461bfa8dcba",
];

fn hex(parts: &[&str]) -> Vec<u8> {
    let hex: String = parts.concat();
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn the_v1_snapshot_bytes_are_frozen() {
    let (_dir, store) = store_with_fixture();
    let paths = store.snapshot_paths(STREAM).unwrap();
    let newest = paths.iter().find(|path| path.ends_with("00000000000000000005.snap")).expect("offset 5 file");
    let expected = hex(NEWEST_V1_HEX);
    assert_eq!(std::fs::read(newest).unwrap(), expected, "the checked-in fixture changed");
    let (body, crc) = expected.split_at(expected.len() - 4);
    assert_eq!(crc32fast::hash(body).to_le_bytes(), crc, "a CRC-32 over everything before it ends the file");

    // The current writer, given the same snapshot, writes exactly these bytes: any change of the layout must
    // come with a new format version (and a new fixture).
    let fresh = tempfile::tempdir().unwrap();
    copy_dir(Path::new("tests/fixtures/v1/intact"), fresh.path());
    let writer = Store::open_with(fresh.path(), options()).unwrap();
    let keep = SnapshotOptions { schema_version: 7, ..Default::default() };
    writer.write_snapshot_with(STREAM, 5, b"balance=1234;owner=Ada", keep).unwrap();
    let written = writer.snapshot_paths(STREAM).unwrap();
    assert_eq!(std::fs::read(&written[0]).unwrap(), expected);
}

#[test]
fn a_damaged_v1_snapshot_falls_back_to_the_older_one() {
    let (_dir, store) = store_with_fixture();
    let paths = store.snapshot_paths(STREAM).unwrap();
    let newest = paths.iter().find(|path| path.ends_with("00000000000000000005.snap")).unwrap();
    let mut bytes = std::fs::read(newest).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0x01;
    std::fs::write(newest, bytes).unwrap();
    let snapshot = store.latest_snapshot(STREAM).unwrap().expect("the older snapshot is still trusted");
    assert_eq!((snapshot.offset(), snapshot.state()), (1, &b"balance=990"[..]));
}
