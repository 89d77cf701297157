//! Log format 2 (compacted segments, format-spec §4.5) is frozen in `tests/fixtures/log-v2/compacted/`: a store
//! whose soft-deleted stream's events compaction removed. Its compacted segments are checked with a small
//! decoder written from the spec (header, relocation section, its CRC, frames where the section says), and the
//! engine must read from it exactly the events it held when it was written.

use std::path::{Path, PathBuf};

use annals::{EventData, ExpectedVersion, Options, Store};

mod support;
use support::{copy_dir, read_all};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/log-v2/compacted")
}

fn options() -> Options {
    Options { segment_size_bytes: 16384, compaction_dead_percent: 25, ..Default::default() }
}

/// What the fixture's store held: `keep-1` and `keep-2` get 30 events each, interleaved with 30 of `gone-3`,
/// which is then soft-deleted, and 20 more of `keep-1` follow.
fn write_store(dir: &Path) {
    let store = Store::open_with(dir, options()).unwrap();
    append_history(&store);
    store.flush_index().unwrap();
    // The background compactor (woken by the deletion) may have done some of it already.
    store.compact().unwrap();
    assert!(store.metrics().compactions > 0);
    store.close().unwrap();
}

fn append_history(store: &Store) {
    for i in 0..30u8 {
        for stream in ["keep-1", "gone-3", "keep-2"] {
            let data = format!("{{\"{stream}\":{i},\"pad\":\"{}\"}}", "x".repeat(60));
            store.append(stream, ExpectedVersion::Any, &[EventData::new("Happened", data.into_bytes())]).unwrap();
        }
    }
    store.delete_stream("gone-3", ExpectedVersion::Exact(29)).unwrap();
    for i in 30..50u8 {
        let data = format!("{{\"keep-1\":{i},\"pad\":\"{}\"}}", "x".repeat(60));
        store.append("keep-1", ExpectedVersion::Any, &[EventData::new("Happened", data.into_bytes())]).unwrap();
    }
}

/// Checks each format 2 segment from the spec's byte map; returns how many there are and how many records
/// they removed.
fn check_compacted_segments(dir: &Path) -> (usize, usize) {
    let u32_at = |bytes: &[u8], at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let (mut segments, mut removed) = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "seg") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"ANNALSEG");
        assert_eq!(crc32fast::hash(&bytes[..60]), u32_at(&bytes, 60), "{}: header CRC", path.display());
        if u32_at(&bytes, 8) == 1 {
            continue;
        }
        assert_eq!(u32_at(&bytes, 8), 2, "{}", path.display());
        assert!(bytes[44..60].iter().all(|&b| b == 0), "reserved bytes");
        let base = u64::from_le_bytes(bytes[24..32].try_into().unwrap());
        let (records, relocation_at) = (u32_at(&bytes, 36) as usize, u32_at(&bytes, 40) as usize);
        assert!(bytes[relocation_at - 8..relocation_at].iter().all(|&b| b == 0), "the frames' end marker");
        let entries = &bytes[relocation_at..relocation_at + 8 * records];
        assert_eq!(crc32fast::hash(entries), u32_at(&bytes, relocation_at + 8 * records), "relocation CRC");
        let mut next_here = 64;
        for i in 0..records {
            let (original, here) = (u32_at(entries, 8 * i), u32_at(entries, 8 * i + 4) as usize);
            assert!(original >= 64);
            if here == 0 {
                removed += 1;
                continue;
            }
            // The kept frames are packed in order, each where its entry says, with its own position.
            assert_eq!(here, next_here, "{}: entry {i}", path.display());
            let frame_len = u32_at(&bytes, here) as usize;
            let position = u64::from_le_bytes(bytes[here + 8..here + 16].try_into().unwrap());
            assert_eq!(position, base + i as u64);
            next_here = here + frame_len.div_ceil(8) * 8;
        }
        assert_eq!(next_here, relocation_at - 8, "{}: frames end where the marker starts", path.display());
        segments += 1;
    }
    (segments, removed)
}

#[test]
fn the_frozen_compacted_store_reads_as_written() {
    let (segments, removed) = check_compacted_segments(&fixture());
    assert!(segments > 0 && removed > 0, "{segments} compacted segments, {removed} records removed");
    // What the same writes show, read from a store that was never compacted.
    let fresh = tempfile::tempdir().unwrap();
    let store = Store::open_with(fresh.path(), Options { compaction_dead_percent: 0, ..options() }).unwrap();
    append_history(&store);
    let visible = |store: &Store| {
        read_all(store, 0)
            .into_iter()
            .map(|event| (event.stream, event.offset, event.position, event.data))
            .collect::<Vec<_>>()
    };
    let expected = visible(&store);

    let work = tempfile::tempdir().unwrap();
    copy_dir(&fixture(), work.path());
    let store = Store::open_with(work.path(), options()).unwrap();
    assert_eq!(visible(&store), expected);
    assert!(store.verify().unwrap().is_ok());
    assert_eq!(store.stream_version("gone-3"), Some(29), "the deleted stream's last event is kept");
    store.close().unwrap();
}

/// The current writer's compacted segments pass the same checks.
#[test]
fn the_current_compactor_writes_log_format_2() {
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path());
    let (segments, removed) = check_compacted_segments(dir.path());
    assert!(segments > 0 && removed > 0);
    // And gives the space back: each compacted file is as short as the format allows (its relocation
    // section's end, rounded up to 8 bytes, and at least 4,096 bytes).
    for path in support::segment_paths(dir.path()) {
        let bytes = std::fs::read(path).unwrap();
        if bytes.len() < 64 || bytes[..8] != *b"ANNALSEG" || bytes[8..12] != 2u32.to_le_bytes() {
            continue;
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let end = u32_at(40) + 8 * u32_at(36) + 4;
        assert_eq!(bytes.len(), end.next_multiple_of(8).max(4096));
    }
}

#[test]
#[ignore = "writes the fixture; run with ANNALS_WRITE_FIXTURE=log-v2 when a log format is released"]
fn write_log_v2_fixture() {
    if std::env::var("ANNALS_WRITE_FIXTURE").as_deref() != Ok("log-v2") {
        eprintln!("nothing written: set ANNALS_WRITE_FIXTURE=log-v2 to write tests/fixtures/log-v2");
        return;
    }
    let target = fixture();
    assert!(!target.exists(), "{} exists: released fixtures are never overwritten", target.display());
    let work = tempfile::tempdir().unwrap();
    write_store(work.path());
    std::fs::create_dir_all(&target).unwrap();
    for entry in std::fs::read_dir(work.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "seg") {
            std::fs::copy(&path, target.join(path.file_name().unwrap())).unwrap();
        }
    }
    println!("wrote {}", target.display());
}
