//! The `open_compacted` target: the frozen store with compacted segments (`tests/fixtures/log-v2/compacted`,
//! format-spec §4.5), damaged by a little program, then opened and read in full.
//!
//! # Input format
//!
//! A sequence of edits, each 8 bytes (a missing byte reads as 0): file `u8` (modulo the number of segment
//! files, in name order), kind `u8` (modulo 4), at `u32` (modulo the file's length), value `u8`, spare `u8`.
//!
//! | kind | edit |
//! |-----:|------|
//! | 0 | xor the byte at `at` with `value` (CRCs stale) |
//! | 1 | the same, then the header CRC and, in a compacted file, the relocation section's CRC made right again |
//! | 2 | cut the file to `at` bytes |
//! | 3 | in a compacted file, set `records` (header byte 36) to the value, both CRCs made right |
//!
//! # What is checked
//!
//! The open returns `Ok` or `Err(Corrupt | UnsupportedFormat)`, never panics or hangs; after an `Ok`, every
//! read (all from several positions, each stream forwards from several offsets and backwards, the category)
//! yields only events the intact store holds, byte for byte, or ends with one `Err`; `verify` never panics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use annals::{Error, Options, RecordedEvent, Store};

/// The frozen fixture.
pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/log-v2/compacted")
}

fn options() -> Options {
    Options { segment_size_bytes: 16 << 10, compaction_dead_percent: 0, ..Default::default() }
}

/// What the intact store shows, by position: (stream, offset, data).
type Shown = HashMap<u64, (String, u64, Vec<u8>)>;

fn owned(event: &RecordedEvent) -> (u64, (String, u64, Vec<u8>)) {
    (event.position(), (event.stream().to_owned(), event.offset(), event.data().to_vec()))
}

fn copy_fixture(to: &Path) {
    for entry in std::fs::read_dir(fixture()).expect("the fixture") {
        let entry = entry.expect("an entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copying the fixture");
    }
}

fn intact() -> &'static Shown {
    static INTACT: OnceLock<Shown> = OnceLock::new();
    INTACT.get_or_init(|| {
        let dir = crate::tempdir();
        copy_fixture(dir.path());
        let store = Store::open_with(dir.path(), options()).expect("the intact fixture opens");
        let shown = store.read_all(0).expect("read_all").map(|event| owned(&event.expect("intact"))).collect();
        store.close().expect("close");
        shown
    })
}

fn u32_at(bytes: &[u8], at: usize) -> usize {
    bytes.get(at..at + 4).map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
}

/// Makes the header CRC and (format 2) the relocation section's CRC right again, where they fit.
fn fix_crcs(bytes: &mut [u8]) {
    if bytes.len() < 64 {
        return;
    }
    if u32_at(bytes, 8) == 2 {
        let (records, at) = (u32_at(bytes, 36), u32_at(bytes, 40));
        if let Some(end) = at.checked_add(records.saturating_mul(8)).filter(|end| end + 4 <= bytes.len()) {
            let crc = crc32fast::hash(&bytes[at..end]);
            bytes[end..end + 4].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let crc = crc32fast::hash(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
}

pub fn run(data: &[u8]) {
    let intact = intact();
    let dir = crate::tempdir();
    copy_fixture(dir.path());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .expect("listing")
        .map(|entry| entry.expect("an entry").path())
        .collect();
    files.sort();
    for edit in data.chunks(8).take(16) {
        let byte = |i: usize| edit.get(i).copied().unwrap_or(0);
        let path = &files[byte(0) as usize % files.len()];
        let mut bytes = std::fs::read(path).expect("reading a segment");
        if bytes.is_empty() {
            continue;
        }
        let at = u32::from_le_bytes([byte(2), byte(3), byte(4), byte(5)]) as usize % bytes.len();
        match byte(1) % 4 {
            0 => bytes[at] ^= byte(6),
            1 => {
                bytes[at] ^= byte(6);
                fix_crcs(&mut bytes);
            }
            2 => bytes.truncate(at),
            _ => {
                if bytes.len() >= 64 && u32_at(&bytes, 8) == 2 {
                    bytes[36] = byte(6);
                    fix_crcs(&mut bytes);
                }
            }
        }
        std::fs::write(path, bytes).expect("writing a segment");
    }
    let store = match Store::open_with(dir.path(), options()) {
        Ok(store) => store,
        Err(Error::Corrupt { .. } | Error::UnsupportedFormat { .. }) => return,
        Err(other) => panic!("the open failed with {other}"),
    };
    let check = |events: &mut dyn Iterator<Item = annals::Result<RecordedEvent>>| {
        for event in events {
            let Ok(event) = event else { break };
            let (position, shown) = owned(&event);
            assert_eq!(intact.get(&position), Some(&shown), "a read yielded an event the store never held");
        }
    };
    for from in [0, 1, 50, 100, 150] {
        if let Ok(mut events) = store.read_all(from) {
            check(&mut events);
        }
    }
    for stream in ["keep-1", "gone-3", "keep-2"] {
        for from in [0, 10, 29, 30, 45] {
            if let Ok(mut events) = store.read_stream(stream, from) {
                check(&mut events);
            }
        }
        if let Ok(mut events) = store.read_stream_backwards(stream, None) {
            check(&mut events);
        }
    }
    if let Ok(mut events) = store.read_category("keep", 0) {
        check(&mut events);
    }
    let _ = store.verify();
    let _ = store.close();
}
