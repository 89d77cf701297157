//! `Store::verify` walks the whole log: on a healthy store it counts every segment, record and stream and finds
//! nothing; with one byte of a sealed record flipped (and an index that lets `open` skip the scan) it names
//! that segment file and the damaged frame's byte offset.

mod support;

use annals::{Error, EventData, ExpectedVersion, Options, Store};

fn options() -> Options {
    Options { segment_size_bytes: 4096, ..Default::default() }
}

fn fill(store: &Store) {
    for i in 0..120u64 {
        let stream = format!("account-{}", i % 5);
        store
            .append(&stream, ExpectedVersion::Any, &[EventData::new("MoneyDeposited", format!("amount {i}"))])
            .unwrap();
    }
}

#[test]
fn a_healthy_store_verifies_clean_with_exact_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    fill(&store);
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problem);
    assert_eq!(report.records, 120);
    assert_eq!(report.streams, 5);
    assert!(report.segments > 2, "tiny segments must have rolled: {}", report.segments);
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_reported_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    fill(&store);
    store.close().unwrap();

    // The first frame of the first segment starts right after the 64-byte header; damage its data.
    let first = dir.path().join(annals::__fuzz::segment_file_name(0));
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[64 + 100] ^= 0x40;
    std::fs::write(&first, &bytes).unwrap();

    let store = Store::open_with(dir.path(), options()).unwrap();
    assert!(support::opened_from_index(&store), "{:?}", store.recovery_report());
    let report = store.verify().unwrap();
    match report.problem {
        Some(Error::Corrupt { file, offset, .. }) => {
            assert_eq!(file, first);
            assert_eq!(offset, 64);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(report.records, 0, "the walk stops at the first problem");
}

/// A segment whose header is damaged, in a part of the log that the open does not read (a merged index table
/// covers it, and the open checks only a table's last record), is the report's problem, not an `Err` of the
/// walk.
#[test]
fn a_damaged_segment_header_is_the_reports_problem() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        let mut i = 0u64;
        // Enough rolls for the index thread to merge the first tables into one.
        while support::index_tables(dir.path()).first().is_none_or(|first| {
            let name = first.file_stem().unwrap().to_string_lossy().into_owned();
            let (start, end) = name.split_once('-').unwrap();
            end.parse::<u64>().unwrap() - start.parse::<u64>().unwrap() < 60
        }) {
            store.append(&format!("s-{}", i % 3), ExpectedVersion::Any, &[EventData::new("E", vec![1; 200])]).unwrap();
            i += 1;
            assert!(i < 100_000, "the index merged its first tables");
        }
        store.close().unwrap();
    }
    let second = support::segment_paths(dir.path())[1].clone();
    support::overwrite(&second, 8, &[0xEE]);
    let store = Store::open_with(dir.path(), options()).unwrap();
    let report = store.verify().expect("the walk itself runs");
    match report.problem {
        Some(Error::Corrupt { file, offset, .. }) => assert!(file == second && offset < 64, "{file:?} at {offset}"),
        other => panic!("{other:?}"),
    }
}
