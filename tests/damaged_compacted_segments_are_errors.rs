//! Bad bytes in a compacted segment (format 2) are typed errors, never a panic or a wrong event: random damage
//! to a compacted store's segments (anywhere; in the header's format 2 fields with the header CRC made right;
//! in the relocation entries with their CRC made right; a record count one short with every CRC right; a
//! shorter file), then an open (with the index kept or
//! rebuilt from the log) and every read. The open fails with `Corrupt` or succeeds; every event a read yields
//! is exactly one the intact store holds, or the read ends with one `Err`; `verify` never panics.

use std::collections::HashMap;
use std::path::Path;

use annals::{Error, EventData, ExpectedVersion, Options, Store};

mod support;
use support::{copy_dir, read_all, Owned, Rng};

fn options() -> Options {
    Options { segment_size_bytes: 8192, compaction_dead_percent: 0, ..Default::default() }
}

const STREAMS: [&str; 3] = ["keep-a", "gone-b", "keep-c"];

fn build(dir: &Path) -> HashMap<u64, Owned> {
    let store = Store::open_with(dir, options()).unwrap();
    let mut rng = Rng(11);
    for i in 0..400u64 {
        let stream = STREAMS[rng.range(0, 3) as usize];
        let data = vec![i as u8; rng.range(1, 160) as usize];
        store.append(stream, ExpectedVersion::Any, &[EventData::new("E", data)]).unwrap();
    }
    store.delete_stream("gone-b", ExpectedVersion::Any).unwrap();
    store.truncate_before("keep-c", 40).unwrap();
    store.append("keep-a", ExpectedVersion::Any, &[EventData::new("E", vec![1; 3000])]).unwrap();
    store.flush_index().unwrap();
    assert!(store.compact().unwrap().segments > 0);
    let events = read_all(&store, 0).into_iter().map(|event| (event.position, event)).collect();
    store.close().unwrap();
    events
}

fn compacted_segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "seg")
                && std::fs::read(path).unwrap()[8..12] == annals::COMPACTED_FORMAT_VERSION.to_le_bytes()
        })
        .collect();
    found.sort();
    found
}

fn damage(path: &Path, rng: &mut Rng) {
    let mut bytes = std::fs::read(path).unwrap();
    let u32_at = |bytes: &[u8], at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let (records, relocation_at) = (u32_at(&bytes, 36), u32_at(&bytes, 40));
    match rng.range(0, 6) {
        0 => {
            let at = rng.range(0, bytes.len() as u64) as usize;
            bytes[at] ^= 1 << rng.range(0, 8);
        }
        1 => {
            // `records` or `relocation_at`, the header CRC made right.
            let at = 36 + rng.range(0, 8) as usize;
            bytes[at] ^= 1 << rng.range(0, 8);
            let crc = crc32fast::hash(&bytes[..60]);
            bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        }
        2 | 3 => {
            // A relocation entry, its CRC made right.
            let at = relocation_at + rng.range(0, (records * 8) as u64) as usize;
            bytes[at] ^= 1 << rng.range(0, 8);
            let crc = crc32fast::hash(&bytes[relocation_at..relocation_at + records * 8]);
            bytes[relocation_at + records * 8..relocation_at + records * 8 + 4].copy_from_slice(&crc.to_le_bytes());
        }
        4 => {
            // One record fewer than the successor's base says, every CRC right (a writer's bug, not the disk's).
            let fewer = records - 1;
            bytes[36..40].copy_from_slice(&(fewer as u32).to_le_bytes());
            let crc = crc32fast::hash(&bytes[relocation_at..relocation_at + fewer * 8]);
            bytes[relocation_at + fewer * 8..relocation_at + fewer * 8 + 4].copy_from_slice(&crc.to_le_bytes());
            let crc = crc32fast::hash(&bytes[..60]);
            bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        }
        _ => bytes.truncate(rng.range(64, bytes.len() as u64) as usize),
    }
    std::fs::write(path, bytes).unwrap();
}

/// Reads everything a reader can ask for; each event yielded must be one the intact store holds.
fn read_everything(store: &Store, intact: &HashMap<u64, Owned>) {
    let check = |events: Box<dyn Iterator<Item = annals::Result<annals::RecordedEvent>>>| {
        for event in events {
            let Ok(event) = event else { break };
            let owned = Owned::from(&event);
            assert_eq!(intact.get(&owned.position), Some(&owned), "a read yielded an event the store never held");
        }
    };
    for from in [0, 1, 100, 250, 399] {
        if let Ok(events) = store.read_all(from) {
            check(Box::new(events));
        }
    }
    for stream in STREAMS {
        for from in [0, 10, 40, 100] {
            if let Ok(events) = store.read_stream(stream, from) {
                check(Box::new(events));
            }
        }
        if let Ok(events) = store.read_stream_backwards(stream, None) {
            check(Box::new(events));
        }
    }
    if let Ok(events) = store.read_category("keep", 0) {
        check(Box::new(events));
    }
    let _ = store.verify();
}

#[test]
fn random_damage_to_compacted_segments_is_an_error_or_harmless() {
    let pristine = tempfile::tempdir().unwrap();
    let intact = build(pristine.path());
    assert!(!compacted_segments(pristine.path()).is_empty());
    let seed: u64 = std::env::var("ANNALS_DAMAGE_SEED").map_or(5, |s| s.parse().unwrap());
    let rounds: u64 = std::env::var("ANNALS_DAMAGE_ROUNDS").map_or(150, |s| s.parse().unwrap());
    let mut rng = Rng(seed);
    let (mut opened, mut refused) = (0, 0);
    for round in 0..rounds {
        let work = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), work.path());
        let segments = compacted_segments(work.path());
        damage(&segments[rng.range(0, segments.len() as u64) as usize], &mut rng);
        if rng.percent(50) {
            std::fs::remove_dir_all(work.path().join("index")).unwrap();
        }
        match Store::open_with(work.path(), options()) {
            Ok(store) => {
                opened += 1;
                read_everything(&store, &intact);
                let _ = store.close();
            }
            Err(err @ (Error::Corrupt { .. } | Error::UnsupportedFormat { .. })) => {
                if std::env::var("ANNALS_DAMAGE_VERBOSE").is_ok() {
                    println!("round {round}: {err}");
                }
                refused += 1
            }
            Err(other) => panic!("round {round} (seed {seed}): the open failed with {other}"),
        }
    }
    println!("{rounds} damaged stores: {opened} opened, {refused} refused");
    assert!(refused > 0, "no damage was ever noticed");
}
