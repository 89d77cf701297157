//! Index format 1 stays readable, and the current writer still writes it (`format-spec.md` §6).
//!
//! `tests/fixtures/index-v1/intact/` is the log of `tests/fixtures/v1/intact/` (5 segments of 4 KiB, 97 records,
//! 7 streams in 4 categories) with the `index/` this build wrote for it: the first open replayed the log and
//! froze one memtable per sealed segment, the index thread wrote the 4 tables and merged them into one
//! (positions 0..61), and the close wrote the last segment's table (61..97).
//!
//! The tests check the fixture's bytes with the small decoder below, written from the spec and not from the
//! engine (pages and their CRCs, the header, the section layout and fences, every entry against the records of
//! the log, the bloom filter's bits, the hash's check value); that this build opens the fixture from its index
//! alone and reads the same events through it as through the log; and that the tables this build writes for
//! the same log pass the same decoder.
//!
//! The fixture is frozen: a failure here means index format 1 changed. `write_index_fixture` (ignored) writes it
//! only when `ANNALS_WRITE_FIXTURE=index-v1` is set and only into a folder that does not exist yet.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use annals::{Options, Store};
use support::{copy_dir, INDEX_DIR};

const PAGE: usize = 4096;
const BODY: usize = PAGE - 4;
const SEGMENT_HEADER_LEN: usize = 64;
const FRAME_HEADER_LEN: usize = 88;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture() -> PathBuf {
    fixtures().join("index-v1/intact")
}

fn options() -> Options {
    Options { segment_size_bytes: 4096, ..Default::default() }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

// ---------------------------------------------------------------------------------------------------------------
// The log, walked with the spec's frame layout (§4, §5.1).
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Record {
    position: u64,
    offset: u64,
    locator: u64,
    /// Where the next record goes: after this one, or at byte 64 of the next segment.
    next_locator: u64,
    timestamp: u64,
    event_id: [u8; 16],
    stream: String,
    event_type: String,
}

fn locator(ordinal: u32, at: usize) -> u64 {
    (u64::from(ordinal) << 32) | at as u64
}

fn log_records(dir: &Path) -> Vec<Record> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    segments.sort();
    let mut records: Vec<Record> = Vec::new();
    for (ordinal, path) in segments.iter().enumerate() {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(&bytes[..8], b"ANNALSEG");
        let mut at = SEGMENT_HEADER_LEN;
        while at + FRAME_HEADER_LEN <= bytes.len() && u32_at(&bytes, at) != 0 {
            let len = u32_at(&bytes, at) as usize;
            let (stream_len, type_len) = (
                u16::from_le_bytes([bytes[at + 68], bytes[at + 69]]),
                u16::from_le_bytes([bytes[at + 70], bytes[at + 71]]),
            );
            let name = at + FRAME_HEADER_LEN;
            let stream = std::str::from_utf8(&bytes[name..name + stream_len as usize]).unwrap().to_owned();
            let type_at = name + stream_len as usize;
            let event_type = std::str::from_utf8(&bytes[type_at..type_at + type_len as usize]).unwrap().to_owned();
            if let Some(previous) = records.last_mut() {
                previous.next_locator = locator(ordinal as u32, at);
            }
            records.push(Record {
                position: u64_at(&bytes, at + 8),
                offset: u64_at(&bytes, at + 16),
                locator: locator(ordinal as u32, at),
                next_locator: locator(ordinal as u32, (at + len).next_multiple_of(8)),
                timestamp: u64_at(&bytes, at + 40),
                event_id: bytes[at + 48..at + 64].try_into().unwrap(),
                stream,
                event_type,
            });
            at = (at + len).next_multiple_of(8);
        }
    }
    for (n, record) in records.iter().enumerate() {
        assert_eq!(record.position, n as u64, "the fixture's log is dense");
    }
    records
}

// ---------------------------------------------------------------------------------------------------------------
// Keys (§6.4), written from the spec.
// ---------------------------------------------------------------------------------------------------------------

const STREAM: u64 = 1;
const CATEGORY: u64 = 2;
const EVENT_TYPE: u64 = 3;

fn key_hash(seed: u64, kind: u64, key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), seed ^ kind.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn category(stream: &str) -> &str {
    match stream.find('-') {
        Some(i) => &stream[..i],
        None => stream,
    }
}

/// The 7 (byte, bit) places of `hash` in a filter of `blocks` blocks: (block, bit within the block).
fn bloom_bits(hash: u64, blocks: u64) -> (u64, Vec<u32>) {
    let mut m = hash ^ (hash >> 32);
    m = m.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    m ^= m >> 32;
    let block = ((m >> 32) * blocks) >> 32;
    let mut x = m as u32;
    let step = x.rotate_left(16) | 1;
    let bits = (0..7)
        .map(|_| {
            x = x.wrapping_add(step);
            x % 512
        })
        .collect();
    (block, bits)
}

#[test]
fn the_hash_matches_the_specs_check_value() {
    assert_eq!(key_hash(0, STREAM, "account-42"), 4_029_820_897_691_837_885);
    assert_eq!(category("account-42"), "account");
    assert_eq!(category("order-7-line-3"), "order");
    assert_eq!(category("transfers"), "transfers");
    assert_eq!(category("-x"), "");
}

// ---------------------------------------------------------------------------------------------------------------
// Tables (§6.1 to §6.3), decoded from the spec.
// ---------------------------------------------------------------------------------------------------------------

/// Entry sizes of the nine sections, in file order.
const ENTRY_BYTES: [usize; 9] = [24, 8, 16, 8, 16, 8, 24, 8, 64];

struct RawTable {
    name: String,
    bytes: Vec<u8>,
    /// (first page, entries) of each section.
    sections: [(u64, u64); 9],
}

impl RawTable {
    fn header(&self) -> &[u8] {
        &self.bytes[..PAGE]
    }

    /// The entries of section `i`, each as its bytes.
    fn entries(&self, i: usize) -> Vec<&[u8]> {
        let (first_page, count) = self.sections[i];
        let per_page = BODY / ENTRY_BYTES[i];
        (0..count as usize)
            .map(|n| {
                let at = (first_page as usize + n / per_page) * PAGE + (n % per_page) * ENTRY_BYTES[i];
                &self.bytes[at..at + ENTRY_BYTES[i]]
            })
            .collect()
    }
}

/// Reads a table file and checks what does not need the log: pages, CRCs, header constants, reserved bytes,
/// the name, the section layout, the zero bytes after each page's last entry, fences and sort orders.
fn decode_table(path: &Path) -> RawTable {
    let name = path.file_name().unwrap().to_str().unwrap().to_owned();
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.len() >= PAGE && bytes.len().is_multiple_of(PAGE), "{name}: whole pages");
    for (page, chunk) in bytes.chunks(PAGE).enumerate() {
        assert_eq!(crc32fast::hash(&chunk[..BODY]), u32_at(chunk, BODY), "{name}: CRC of page {page}");
    }
    let header = &bytes[..PAGE];
    assert_eq!(&header[..8], b"ANNALTBL", "{name}: magic");
    assert_eq!(u32_at(header, 8), 1, "{name}: index format version");
    assert_eq!(u32_at(header, 12), PAGE as u32, "{name}: page size");
    assert_eq!(u32_at(header, 100), 64, "{name}: position interval");
    assert!(header[256..BODY].iter().all(|&b| b == 0), "{name}: reserved bytes are zero");
    let (first, end) = (u64_at(header, 24), u64_at(header, 32));
    assert_eq!(name, format!("{first:020}-{end:020}.tbl"), "the name holds the range");
    assert!(first < end);

    let mut sections = [(0u64, 0u64); 9];
    let mut next_page = 1u64;
    for (i, section) in sections.iter_mut().enumerate() {
        let at = 112 + 16 * i;
        *section = (u64_at(header, at), u64_at(header, at + 8));
        assert_eq!(section.0, next_page, "{name}: section {i} starts after the previous one");
        next_page += section.1.div_ceil((BODY / ENTRY_BYTES[i]) as u64);
    }
    assert_eq!(next_page as usize, bytes.len() / PAGE, "{name}: the file ends after the last section");
    let table = RawTable { name, bytes, sections };

    for (i, (&(first_page, count), entry_bytes)) in table.sections.iter().zip(ENTRY_BYTES).enumerate() {
        // After each page's last entry, zeros up to the CRC.
        let per_page = BODY / entry_bytes;
        for page in 0..(count as usize).div_ceil(per_page) {
            let used = (count as usize - page * per_page).min(per_page) * entry_bytes;
            let at = (first_page as usize + page) * PAGE;
            assert!(table.bytes[at + used..at + BODY].iter().all(|&b| b == 0), "{}: section {i} padding", table.name);
        }
    }
    for (section, fences) in [(0, 1), (2, 3), (4, 5), (6, 7)] {
        let per_page = BODY / ENTRY_BYTES[section];
        let entries = table.entries(section);
        let expected: Vec<u64> = entries.chunks(per_page).map(|page| u64_at(page[0], 0)).collect();
        let found: Vec<u64> = table.entries(fences).iter().map(|entry| u64_at(entry, 0)).collect();
        assert_eq!(found, expected, "{}: fences of section {section}", table.name);
        let keys: Vec<Vec<u64>> =
            entries.iter().map(|entry| entry.chunks(8).map(|word| u64_at(word, 0)).collect()).collect();
        if section == 6 {
            assert!(keys.windows(2).all(|pair| pair[0][0] < pair[1][0]), "{}: positions ascend", table.name);
        } else {
            assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "{}: section {section} is sorted", table.name);
        }
    }
    assert!(table.sections[8].1 >= 1, "{}: the bloom filter has a block", table.name);
    table
}

/// The table files of a store, in name order.
fn table_paths(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join(INDEX_DIR))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "tbl"))
        .collect();
    paths.sort();
    paths
}

/// Checks every table of the store in `dir` against its log, from the spec alone. Returns the tables' ranges.
fn check_index_against_log(dir: &Path) -> Vec<(u64, u64)> {
    let records = log_records(dir);
    let tables: Vec<RawTable> = table_paths(dir).iter().map(|path| decode_table(path)).collect();
    assert!(!tables.is_empty(), "the store has index tables");
    let seed = u64_at(tables[0].header(), 16);
    let mut ranges = Vec::new();
    let mut next = 0;
    let mut streams_seen = BTreeSet::new();
    for table in &tables {
        let header = table.header();
        let name = &table.name;
        let (first, end) = (u64_at(header, 24), u64_at(header, 32));
        assert_eq!(first, next, "{name}: the tables cover the log without a gap or an overlap");
        assert!(end as usize <= records.len(), "{name}: the table covers only records of the log");
        next = end;
        ranges.push((first, end));
        let range = &records[first as usize..end as usize];
        let last = range.last().unwrap();

        // The header (§6.2).
        assert_eq!(u64_at(header, 16), seed, "{name}: one seed for every table");
        assert_eq!(u64_at(header, 40), last.next_locator, "{name}: end locator");
        assert_eq!(u64_at(header, 48), last.locator, "{name}: last locator");
        assert_eq!(&header[56..72], &last.event_id, "{name}: last event id");
        assert_eq!(u64_at(header, 72), range[0].timestamp, "{name}: first timestamp");
        assert_eq!(u64_at(header, 80), last.timestamp, "{name}: last timestamp");
        let new_streams = range.iter().filter(|record| record.offset == 0).count() as u64;
        assert_eq!(u64_at(header, 88), new_streams, "{name}: new streams");
        assert_eq!(u32_at(header, 96), '-' as u32, "{name}: separator");
        assert_eq!(u64_at(header, 104), u64::MAX, "{name}: hash mask");

        // The entries (§6.3): one per record, with that record's locator.
        let mut streams: Vec<[u64; 3]> =
            range.iter().map(|r| [key_hash(seed, STREAM, &r.stream), r.offset, r.locator]).collect();
        streams.sort();
        let found: Vec<[u64; 3]> =
            table.entries(0).iter().map(|e| [u64_at(e, 0), u64_at(e, 8), u64_at(e, 16)]).collect();
        assert_eq!(found, streams, "{name}: stream entries");
        for (section, kind) in [(2, CATEGORY), (4, EVENT_TYPE)] {
            let mut pairs: Vec<[u64; 2]> = range
                .iter()
                .map(|r| {
                    let key = if kind == CATEGORY { category(&r.stream) } else { &r.event_type };
                    [key_hash(seed, kind, key), r.locator]
                })
                .collect();
            pairs.sort();
            let found: Vec<[u64; 2]> = table.entries(section).iter().map(|e| [u64_at(e, 0), u64_at(e, 8)]).collect();
            assert_eq!(found, pairs, "{name}: section {section}");
        }
        let positions: BTreeMap<u64, [u64; 2]> =
            table.entries(6).iter().map(|e| (u64_at(e, 0), [u64_at(e, 8), u64_at(e, 16)])).collect();
        for record in range {
            if record.position == first || record.position.is_multiple_of(64) {
                assert!(positions.contains_key(&record.position), "{name}: position {} has its entry", record.position);
            }
        }
        for (&position, &[locator, timestamp]) in &positions {
            let record = &records[position as usize];
            assert!((first..end).contains(&position), "{name}: a position entry outside the range");
            assert_eq!([locator, timestamp], [record.locator, record.timestamp], "{name}: position {position}");
        }

        // The bloom filter (§6.4): every stream's 7 bits are set, and it is sized for the streams.
        let distinct: BTreeSet<u64> = streams.iter().map(|entry| entry[0]).collect();
        let blocks = table.sections[8].1;
        assert!(blocks >= (10 * distinct.len() as u64).div_ceil(512).max(1), "{name}: bloom size");
        let bloom = table.entries(8);
        for &hash in &distinct {
            let (block, bits) = bloom_bits(hash, blocks);
            for bit in bits {
                assert!(bloom[block as usize][bit as usize / 8] & (1 << (bit % 8)) != 0, "{name}: bloom bit {bit}");
            }
        }
        streams_seen.extend(range.iter().map(|record| record.stream.clone()));
    }
    // A closed store's index covers the whole log.
    assert_eq!(next as usize, records.len(), "the tables of a closed store cover the whole log");
    assert!(streams_seen.len() >= 7);
    ranges
}

#[test]
fn the_index_fixture_follows_the_spec() {
    let ranges = check_index_against_log(&fixture());
    assert_eq!(ranges, vec![(0, 92), (92, 97)], "a merged table and the last segment's");
}

/// The engine reads the fixture from its index alone, and what it reads through the index is what the log
/// holds.
#[test]
fn this_build_opens_the_index_fixture_without_replay() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture(), dir.path());
    let store = Store::open_with(dir.path(), options()).unwrap();
    let report = store.recovery_report().clone();
    assert_eq!(
        (report.index_tables, report.records_replayed, report.index_rejected.clone()),
        (2, 0, None),
        "{report:?}"
    );
    let records = log_records(dir.path());
    let mut by_stream: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut by_category: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut by_type: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for record in &records {
        by_stream.entry(&record.stream).or_default().push(record.position);
        by_category.entry(category(&record.stream)).or_default().push(record.position);
        by_type.entry(&record.event_type).or_default().push(record.position);
    }
    let positions = |events: Box<dyn Iterator<Item = annals::Result<annals::RecordedEvent>>>| -> Vec<u64> {
        events.map(|event| event.unwrap().position()).collect()
    };
    for (stream, expected) in &by_stream {
        assert_eq!(&positions(Box::new(store.read_stream(stream, 0).unwrap())), expected, "{stream}");
        assert_eq!(store.stream_version(stream), Some(expected.len() as u64 - 1), "{stream}");
    }
    for (name, expected) in &by_category {
        assert_eq!(&positions(Box::new(store.read_category(name, 0).unwrap())), expected, "category {name}");
    }
    for (name, expected) in &by_type {
        assert_eq!(&positions(Box::new(store.read_event_type(name, 0).unwrap())), expected, "type {name}");
    }
    assert_eq!(positions(Box::new(store.read_all(0).unwrap())).len(), records.len());
    assert!(store.verify().unwrap().is_ok());
    assert_eq!(store.recovery_report().records_replayed, 0);
}

/// Opens a copy of the v1 log (no index), waits until the index thread has merged the sealed segments'
/// tables into one, and closes: the index this build writes for that log.
fn write_index_of_v1_log(dir: &Path) {
    copy_dir(&fixtures().join("v1/intact"), dir);
    let store = Store::open_with(dir, options()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let names: Vec<String> =
            table_paths(dir).iter().map(|path| path.file_name().unwrap().to_string_lossy().into_owned()).collect();
        if names == ["00000000000000000000-00000000000000000092.tbl"] {
            break;
        }
        assert!(Instant::now() < deadline, "the index thread merged the sealed segments' tables: {names:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    store.close().unwrap();
}

/// The tables the current writer makes for the v1 log pass the same checks as the frozen fixture.
#[test]
fn the_current_writer_writes_index_format_1() {
    let dir = tempfile::tempdir().unwrap();
    write_index_of_v1_log(dir.path());
    assert_eq!(check_index_against_log(dir.path()), vec![(0, 92), (92, 97)]);
}

#[test]
#[ignore = "writes the index fixture; run with ANNALS_WRITE_FIXTURE=index-v1 when an index format is released"]
fn write_index_fixture() {
    if std::env::var("ANNALS_WRITE_FIXTURE").as_deref() != Ok("index-v1") {
        eprintln!("nothing written: set ANNALS_WRITE_FIXTURE=index-v1 to write tests/fixtures/index-v1");
        return;
    }
    let target = fixture();
    assert!(!target.exists(), "{} exists: released fixtures are never overwritten", target.display());
    let work = tempfile::tempdir().unwrap();
    write_index_of_v1_log(work.path());
    std::fs::create_dir_all(target.join(INDEX_DIR)).unwrap();
    for entry in std::fs::read_dir(work.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "seg") {
            std::fs::copy(&path, target.join(path.file_name().unwrap())).unwrap();
        }
    }
    for path in table_paths(work.path()) {
        std::fs::copy(&path, target.join(INDEX_DIR).join(path.file_name().unwrap())).unwrap();
    }
    println!("wrote {}", target.display());
}
