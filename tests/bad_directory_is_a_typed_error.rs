//! Opening something that is not a usable store directory gives a typed error, never a panic, and changes
//! nothing: a path that is a regular file, a segment written by a newer format version, a segment whose header
//! is damaged, a segment shorter than its header, a segment missing from the middle, and a file name that does
//! not match the segment's base position.

use std::path::Path;

use annals::{Error, EventData, ExpectedVersion, Options, Store};

fn options() -> Options {
    Options { segment_size_bytes: 4096, ..Default::default() }
}

/// A closed store of three or more segments; returns the segment paths in order.
fn store_with_segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let store = Store::open_with(dir, options()).unwrap();
    for i in 0..100 {
        store.append("account-1", ExpectedVersion::Any, &[EventData::new("MoneyDeposited", format!("{i}"))]).unwrap();
    }
    store.close().unwrap();
    let mut segments: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 3, "{segments:?}");
    segments
}

#[test]
fn a_path_that_is_a_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"hello").unwrap();
    assert!(matches!(Store::open(&file), Err(Error::Io { .. })));
    assert_eq!(std::fs::read(&file).unwrap(), b"hello");
}

#[test]
fn a_segment_of_a_newer_format_version_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let segments = store_with_segments(dir.path());
    let mut bytes = std::fs::read(&segments[1]).unwrap();
    // Version at byte 8; the header CRC (bytes 60..64) covers bytes 0..60 and is recomputed.
    bytes[8..12].copy_from_slice(&(annals::COMPACTED_FORMAT_VERSION + 1).to_le_bytes());
    let crc = crc32(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&segments[1], &bytes).unwrap();
    let opened = Store::open_with(dir.path(), options());
    assert!(
        matches!(&opened, Err(Error::UnsupportedFormat { file, found, .. }) if *file == segments[1] && *found == annals::COMPACTED_FORMAT_VERSION + 1),
        "{:?}",
        opened.err()
    );
    // Nothing was changed: the file is exactly as damaged.
    assert_eq!(std::fs::read(&segments[1]).unwrap(), bytes);
}

#[test]
fn damaged_or_short_or_missing_segments_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let segments = store_with_segments(dir.path());
    let pristine = std::fs::read(&segments[1]).unwrap();

    let mut damaged = pristine.clone();
    damaged[30] ^= 1; // inside the base position, under the header CRC
    std::fs::write(&segments[1], &damaged).unwrap();
    let opened = Store::open_with(dir.path(), options());
    assert!(matches!(&opened, Err(Error::Corrupt { file, .. }) if *file == segments[1]), "{:?}", opened.err());

    std::fs::write(&segments[1], &pristine[..40]).unwrap();
    let opened = Store::open_with(dir.path(), options());
    assert!(matches!(&opened, Err(Error::Corrupt { file, .. }) if *file == segments[1]), "{:?}", opened.err());

    std::fs::remove_file(&segments[1]).unwrap();
    let opened = Store::open_with(dir.path(), options());
    assert!(matches!(&opened, Err(Error::Corrupt { .. })), "{:?}", opened.err());

    std::fs::write(&segments[1], &pristine).unwrap();
    let renamed = dir.path().join(annals::__fuzz::segment_file_name(123_456));
    std::fs::rename(&segments[2], &renamed).unwrap();
    let opened = Store::open_with(dir.path(), options());
    assert!(matches!(&opened, Err(Error::Corrupt { file, .. }) if *file == renamed), "{:?}", opened.err());

    std::fs::rename(&renamed, &segments[2]).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.stream_version("account-1"), Some(99));
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(bytes);
    hasher.finalize()
}
