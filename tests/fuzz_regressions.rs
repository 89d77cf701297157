//! Crashes found by the fuzz targets in `fuzz/`, reproduced with plain code (no libFuzzer): each test writes
//! the (minimized) store directory the fuzzer found byte by byte, then does what the target did.
//!
//! Each test keeps a fixed crash fixed. The checkpoint crashes were found while stores kept their index in `index.ckpt`;
//! builds with the persistent index ignore and remove that file, and these directories must still open (or
//! fail with `Corrupt`) without a panic. The later ones craft index tables (`write_table`).

use std::path::Path;

use annals::{Error, EventData, ExpectedVersion, Options, Store};

const SEGMENT_HEADER_LEN: usize = 64;
const NO_PREV: u64 = u64::MAX;

fn aligned(len: usize) -> usize {
    (len + 7) & !7
}

fn locator(ordinal: u32, offset: usize) -> u64 {
    (u64::from(ordinal) << 32) | offset as u64
}

/// One frame as `format-spec.md` lays it out, with a correct CRC, padded to 8 bytes.
fn frame(position: u64, stream: &str, offset: u64, prev: u64, data: &[u8]) -> Vec<u8> {
    let event_type = b"T";
    let len = 88 + stream.len() + event_type.len() + data.len();
    let mut out = Vec::new();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    // position, offset, prev, synced_before, timestamp
    for value in [position, offset, prev, position, 1_700_000_000_000_000_000u64.wrapping_add(position)] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.extend_from_slice(&(u128::from(position) + 1).to_be_bytes()); // event id
    out.extend_from_slice(&0u32.to_le_bytes()); // txn_after: commit
    out.extend_from_slice(&(stream.len() as u16).to_le_bytes());
    out.extend_from_slice(&(event_type.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // metadata
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 8]); // codec, reserved
    out.extend_from_slice(stream.as_bytes());
    out.extend_from_slice(event_type);
    out.extend_from_slice(data);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&out[0..4]);
    hasher.update(&out[8..]);
    out[4..8].copy_from_slice(&hasher.finalize().to_le_bytes());
    out.resize(aligned(len), 0);
    out
}

/// A segment file with a valid header, holding `frames` from byte 64, zero-padded to `size`.
fn write_segment(dir: &Path, base_position: u64, ordinal: u32, size: usize, frames: &[Vec<u8>]) {
    let mut bytes = vec![0u8; SEGMENT_HEADER_LEN];
    bytes[0..8].copy_from_slice(b"ANNALSEG");
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    bytes[12..16].copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
    bytes[16..24].copy_from_slice(&(size as u64).to_le_bytes());
    bytes[24..32].copy_from_slice(&base_position.to_le_bytes());
    bytes[32..36].copy_from_slice(&ordinal.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    for frame in frames {
        bytes.extend_from_slice(frame);
    }
    assert!(bytes.len() <= size);
    bytes.resize(size, 0);
    std::fs::write(dir.join(annals::__fuzz::segment_file_name(base_position)), bytes).unwrap();
}

/// One stream's entry of `index.ckpt`.
struct CheckpointStream<'a> {
    name: &'a str,
    last_offset: u64,
    head: u64,
    sparse: Vec<u64>,
}

/// `index.ckpt` as `format-spec.md` lays it out, with a correct CRC.
fn write_checkpoint(dir: &Path, interval: u32, next_position: u64, end: u64, last: u64, streams: &[CheckpointStream]) {
    let mut out = Vec::new();
    out.extend_from_slice(b"ANNALIDX");
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&interval.to_le_bytes());
    for value in [next_position, end, last, 1_700_000_000_000_000_000 + next_position, streams.len() as u64] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    for stream in streams {
        out.extend_from_slice(&(stream.name.len() as u16).to_le_bytes());
        out.extend_from_slice(stream.name.as_bytes());
        out.extend_from_slice(&stream.last_offset.to_le_bytes());
        out.extend_from_slice(&stream.head.to_le_bytes());
        out.extend_from_slice(&(stream.sparse.len() as u32).to_le_bytes());
        for locator in &stream.sparse {
            out.extend_from_slice(&locator.to_le_bytes());
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    std::fs::write(dir.join("index.ckpt"), out).unwrap();
}

fn options() -> Options {
    Options { segment_size_bytes: 4096, ..Options::default() }
}

/// Appends `count` events of `len` bytes to `stream` one by one; every append must succeed or fail with a
/// typed error, and the writer thread must stay alive (a dead writer answers `Closed`).
fn append_until_roll(store: &Store, stream: &str, count: usize, len: usize) {
    for i in 0..count {
        match store.append(stream, ExpectedVersion::Any, &[EventData::new("T", vec![i as u8; len])]) {
            Ok(_) | Err(Error::TransactionTooLarge { .. }) => {}
            Err(err) => panic!("append {i} failed with {err:?} (a writer thread that died answers Closed)"),
        }
    }
}

/// open_directory, crash 1: `assertion failed: last.base_position() <= segment.base_position()` in
/// `Log::push`, on the writer thread, at the first segment roll after open.
///
/// Segment 1's header claims base position 1000 while its records are positions 1 and 2. A checkpoint that
/// ends inside segment 1 passes `check_checkpoint` (its last record is where it says, with the position it
/// says), and replay then starts inside segment 1, so the segment's base is never compared with the
/// positions it holds (replay compares bases only for segments after the start segment). The writer resumes
/// at position 3 and, when segment 1 fills, creates segment 2 with base 3 < 1000: the assertion in
/// `Log::push` panics on the writer thread, which takes the store down (appends get `Closed`).
#[test]
fn checkpoint_end_segment_with_a_base_beyond_its_positions() {
    let dir = tempfile::tempdir().unwrap();
    let f0 = frame(0, "a", 0, NO_PREV, b"zero");
    let at1 = SEGMENT_HEADER_LEN;
    let f1 = frame(1, "a", 1, locator(0, SEGMENT_HEADER_LEN), b"one");
    let at2 = at1 + f1.len();
    let f2 = frame(2, "a", 2, locator(1, at1), b"two");
    let end = at2 + f2.len();
    write_segment(dir.path(), 0, 0, 4096, &[f0]);
    write_segment(dir.path(), 1000, 1, 4096, &[f1, f2]);
    let a = CheckpointStream { name: "a", last_offset: 2, head: locator(1, at2), sparse: vec![] };
    write_checkpoint(dir.path(), 4, 3, locator(1, end), locator(1, at2), &[a]);

    match Store::open_with(dir.path(), options()) {
        // Rejecting the checkpoint (or the directory) is a fix.
        Err(Error::Corrupt { .. }) => {}
        Err(err) => panic!("open failed with {err:?}"),
        Ok(store) => {
            append_until_roll(&store, "b", 3, 2000);
            store.close().expect("close after the roll");
        }
    }
}

/// open_directory, crash 2: `assertion failed: stream inserted twice` in `Index::insert`, on the thread
/// that calls `Store::open_with`.
///
/// `index.ckpt` (CRC-valid) lists stream "a" twice. `check_checkpoint` checks each entry on its own (locators
/// in order and before the end, head record belongs to the stream), so both entries pass; `recover` then
/// inserts both into the index and the second insert hits the `assert!`/`assert_ne!` meant for engine bugs.
/// Opening a damaged directory panics in the caller's thread instead of ignoring the checkpoint (or
/// returning `Corrupt`).
#[test]
fn checkpoint_listing_a_stream_twice() {
    let dir = tempfile::tempdir().unwrap();
    let f0 = frame(0, "a", 0, NO_PREV, b"x");
    let end = SEGMENT_HEADER_LEN + f0.len();
    write_segment(dir.path(), 0, 0, 4096, &[f0]);
    let head = locator(0, SEGMENT_HEADER_LEN);
    let a = || CheckpointStream { name: "a", last_offset: 0, head, sparse: vec![] };
    write_checkpoint(dir.path(), 4, 1, locator(0, end), head, &[a(), a()]);

    let store = Store::open_with(dir.path(), options()).expect("the log itself is intact");
    assert_eq!(store.recovery_report().records_replayed, 1, "the old checkpoint is not read: the log is replayed");
    assert_eq!(store.stream_version("a"), Some(0));
    assert_eq!(store.stream_count(), 1);
    store.close().unwrap();
}

/// Not found by the fuzzer (its directories are too small to reach it) but by reviewing the checkpoint
/// sampling while writing the open_directory target: with 512 or more streams, `check_checkpoint` checks
/// only every `len / 256`-th stream's head against the log, so an unchecked entry may point anywhere before
/// `last`. Such an entry is loaded into the index, and the next checkpoint write (at close, or at a roll)
/// calls `Names::name` on its head, whose `expect("index locators point into the log")` panics on the
/// writer thread: `close` fails and the store counts streams that do not exist.
#[test]
fn checkpoint_with_an_unsampled_bogus_stream_head() {
    let dir = tempfile::tempdir().unwrap();
    let mut frames = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    let mut streams = Vec::new();
    let names: Vec<String> = (0..256).map(|i| format!("s{i}")).collect();
    let bogus: Vec<String> = (0..256).map(|i| format!("bogus-{i}")).collect();
    let mut last = 0;
    for (i, name) in names.iter().enumerate() {
        let f = frame(i as u64, name, 0, NO_PREV, b"");
        last = locator(0, at);
        // Entries 0, 2, 4, … are the ones sampled (every len / 256 = 2nd): all of them are right.
        streams.push(CheckpointStream { name, last_offset: 0, head: last, sparse: vec![] });
        streams.push(CheckpointStream { name: &bogus[i], last_offset: 0, head: locator(0, 8), sparse: vec![] });
        at += f.len();
        frames.push(f);
    }
    write_segment(dir.path(), 0, 0, 32768, &frames);
    write_checkpoint(dir.path(), 4, 256, locator(0, at), last, &streams);

    let store = Store::open_with(dir.path(), options()).expect("the log itself is intact");
    assert_eq!(store.stream_count(), 256, "streams the log does not hold are not counted");
    store.close().expect("close writes a checkpoint of the index");
}

/// open_directory, crash 3 (after 94,210 executions of the 10-minute run): `attempt to subtract with
/// overflow` at `engine/recovery.rs:141` in `check_checkpoint`, on the thread that calls `Store::open_with`.
///
/// `index.ckpt` (CRC-valid) says `next_position = 0` but its `last` locator points at a real record. The
/// record's position + 1 differs from 0, and the error message computes `next_position - 1`, which
/// overflows: a panic in debug builds (and in the fuzz build, which has overflow checks); release builds wrap
/// and only print a wrong number. The sibling `frame.header.position + 1` overflows the same way for a
/// record at position `u64::MAX`; in release it wraps to 0, so a checkpoint with `next_position = 0` whose
/// last record claims position `u64::MAX` is *accepted*, and the store then appends position 0 after a
/// record that claims `u64::MAX` (a later open without the checkpoint cuts those appends as a torn tail).
/// Suggested fix: compare with `frame.header.position.checked_add(1) != Some(next_position)` and print
/// `next_position.wrapping_sub(1)` (or just both numbers).
#[test]
fn checkpoint_with_next_position_zero_or_a_last_record_at_u64_max() {
    for last_position in [0, u64::MAX] {
        let dir = tempfile::tempdir().unwrap();
        let f0 = frame(last_position, "a", 0, NO_PREV, b"x");
        let end = SEGMENT_HEADER_LEN + f0.len();
        write_segment(dir.path(), 0, 0, 4096, &[f0]);
        let head = locator(0, SEGMENT_HEADER_LEN);
        let a = CheckpointStream { name: "a", last_offset: 0, head, sparse: vec![] };
        write_checkpoint(dir.path(), 4, 0, locator(0, end), head, &[a]);

        match Store::open_with(dir.path(), options()) {
            Err(Error::Corrupt { .. }) => {}
            Err(err) => panic!("open failed with {err:?}"),
            Ok(store) => {
                assert_eq!(
                    store.recovery_report().index_tables,
                    0,
                    "the old checkpoint is not read (last at {last_position})"
                );
                store.close().unwrap();
            }
        }
    }
}

/// open_directory, crash 4 (after 81,706 executions of the second 10-minute run): `attempt to add with
/// overflow` at `engine/recovery.rs:227` in `replay`, on the thread that calls `Store::open_with`.
///
/// Two CRC-valid records: the first opens a transaction (`txn_after = 3`), the second carries
/// `txn_after = u32::MAX`. Replay checks the sequence with `previous.txn_after != frame.header.txn_after + 1`,
/// which overflows: a panic in debug builds (and the fuzz build); release builds wrap to 0 and correctly
/// report "transaction marker out of sequence". Suggested fix: `previous.txn_after.checked_sub(1) !=
/// Some(frame.header.txn_after)`. (`engine/verify.rs` may deserve the same look.)
#[test]
fn transaction_marker_u32_max_after_a_pending_record() {
    let dir = tempfile::tempdir().unwrap();
    let with_txn_after = |mut frame: Vec<u8>, txn_after: u32| {
        frame[64..68].copy_from_slice(&txn_after.to_le_bytes());
        let len = u32::from_le_bytes(frame[0..4].try_into().unwrap()) as usize;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&frame[0..4]);
        hasher.update(&frame[8..len]);
        frame[4..8].copy_from_slice(&hasher.finalize().to_le_bytes());
        frame
    };
    let f0 = with_txn_after(frame(0, "a", 0, NO_PREV, b"txn"), 3);
    let mut f1 = frame(1, "a", 1, locator(0, SEGMENT_HEADER_LEN), b"");
    // Written in the same group as f0, as a writer would: nothing after position 0 was synced yet. (With
    // synced_before = 1, f1 would prove that position 0 had been synced, and the open would rightly report
    // Corrupt instead of cutting.)
    f1[32..40].copy_from_slice(&0u64.to_le_bytes());
    let f1 = with_txn_after(f1, u32::MAX);
    write_segment(dir.path(), 0, 0, 4096, &[f0, f1]);

    // The transaction never committed: a torn tail, cut on open.
    let store = Store::open_with(dir.path(), options()).expect("a torn transaction is cut, not an error");
    assert_eq!(store.head_position(), None);
    assert!(store.recovery_report().tail_bytes_cut > 0);
    store.close().unwrap();
}

/// What a crafted index table says about the log.
struct TableHeader {
    first: u64,
    end: u64,
    end_locator: u64,
    last_locator: u64,
    last_event_id: u128,
    hash_mask: u64,
}

/// An index table as the engine's `engine/index/table.rs` lays it out, holding only `streams` entries
/// (hash, offset, locator), `positions` entries (position, locator, timestamp), and a bloom filter of one
/// block whose every bit is set (it lets every stream through): just enough for the checks an open makes of a table (header CRC, magic, version, page
/// size, a range matching the file name, sections that fit the file, and the last record against the log) and
/// for a stream's head to be found in it.
fn write_table(dir: &Path, header: &TableHeader, streams: &[[u64; 3]], positions: &[[u64; 3]]) {
    const PAGE: usize = 4096;
    let mut page0 = vec![0u8; PAGE];
    page0[0..8].copy_from_slice(b"ANNALTBL");
    page0[8..12].copy_from_slice(&1u32.to_le_bytes()); // format version
    page0[12..16].copy_from_slice(&(PAGE as u32).to_le_bytes());
    let u64s = [
        (16, 0x5eed),                                   // hash seed
        (24, header.first),                             // first position
        (32, header.end),                               // end position
        (40, header.end_locator),                       // where replay resumes
        (48, header.last_locator),                      // the record at end - 1
        (72, 1_700_000_000_000_000_000 + header.first), // first timestamp
        (80, 1_700_000_000_000_000_000 + header.end),   // last timestamp
        (88, 0),                                        // new streams
        (104, header.hash_mask),
    ];
    for (at, value) in u64s {
        page0[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }
    page0[56..72].copy_from_slice(&header.last_event_id.to_be_bytes());
    page0[96..100].copy_from_slice(&u32::from('-').to_le_bytes()); // category separator
    page0[100..104].copy_from_slice(&64u32.to_le_bytes()); // position interval
                                                           // Nine sections (streams, their fences, categories, fences, event types, fences, positions, fences,
                                                           // bloom), each (first page, entries), one page at most each here.
    assert!(streams.len() <= 170 && positions.len() <= 170, "one page of entries per section");
    let le = |entries: &[[u64; 3]]| entries.iter().flatten().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
    let fence = |entries: &[[u64; 3]]| entries.first().map_or(Vec::new(), |first| first[0].to_le_bytes().to_vec());
    let sections: [(Vec<u8>, u64); 9] = [
        (le(streams), streams.len() as u64),
        (fence(streams), u64::from(!streams.is_empty())),
        (Vec::new(), 0),
        (Vec::new(), 0),
        (Vec::new(), 0),
        (Vec::new(), 0),
        (le(positions), positions.len() as u64),
        (fence(positions), u64::from(!positions.is_empty())),
        (vec![0xff; 64], 1),
    ];
    let mut pages: Vec<Vec<u8>> = Vec::new();
    for (section, (bytes, entries)) in sections.iter().enumerate() {
        let at = 112 + section * 16;
        page0[at..at + 8].copy_from_slice(&(1 + pages.len() as u64).to_le_bytes());
        page0[at + 8..at + 16].copy_from_slice(&entries.to_le_bytes());
        if *entries > 0 {
            pages.push(bytes.clone());
        }
    }
    let mut bytes = page0;
    for page in pages {
        let start = bytes.len();
        bytes.extend_from_slice(&page);
        bytes.resize(start + PAGE, 0);
    }
    for page in bytes.chunks_exact_mut(PAGE) {
        let crc = crc32fast::hash(&page[..PAGE - 4]);
        page[PAGE - 4..].copy_from_slice(&crc.to_le_bytes());
    }
    let index = dir.join("index");
    std::fs::create_dir_all(&index).unwrap();
    std::fs::write(index.join(format!("{:020}-{:020}.tbl", header.first, header.end)), bytes).unwrap();
}

/// open_directory (the persistent index): crash 1 again, through an index table instead of the checkpoint:
/// `assertion failed: bases.last().is_none_or(|&last| last <= segment.base_position())` in `Log::push`
/// (`engine/log/mod.rs`), on the writer thread, at the first segment roll after open. Found while rewriting
/// the target for tables (its harness test `a_table_ending_in_a_segment_whose_base_is_beyond_its_positions`);
/// `checkpoint_end_segment_with_a_base_beyond_its_positions` above no longer reaches it, because the checkpoint
/// is ignored now.
///
/// Segment 1's header (and name) claims base position 1000 while its records are positions 1 and 2. A table
/// covering positions 0..3 passes `check_against_log` (`engine/index/tables.rs`): its last record is where it
/// says, with the position and id it says, and its end follows it. Nothing compares the base of that record's
/// segment with the record's position (the checkpoint's check 10 did, `format-spec.md` §6.3), and replay starts
/// inside segment 1, so segment 1's base is never compared with the positions it holds. The writer resumes at
/// position 3 and, when segment 1 fills, creates segment 2 with base 3 < 1000: the assertion in `Log::push`
/// panics on the writer thread, which takes the store down (appends get `Closed`, `close` fails).
#[test]
fn table_ending_in_a_segment_with_a_base_beyond_its_positions() {
    let dir = tempfile::tempdir().unwrap();
    let f0 = frame(0, "a", 0, NO_PREV, b"zero");
    let at1 = SEGMENT_HEADER_LEN;
    let f1 = frame(1, "a", 1, locator(0, SEGMENT_HEADER_LEN), b"one");
    let at2 = at1 + f1.len();
    let f2 = frame(2, "a", 2, locator(1, at1), b"two");
    let end = at2 + f2.len();
    write_segment(dir.path(), 0, 0, 4096, &[f0]);
    write_segment(dir.path(), 1000, 1, 4096, &[f1, f2]);
    // `frame` gives the record at position p the event id p + 1.
    let header = TableHeader {
        first: 0,
        end: 3,
        end_locator: locator(1, end),
        last_locator: locator(1, at2),
        last_event_id: 3,
        hash_mask: u64::MAX,
    };
    write_table(dir.path(), &header, &[], &[]);

    match Store::open_with(dir.path(), options()) {
        // Rejecting the table (the log is then replayed from 0, and segment 1's base is wrong) is a fix.
        Err(Error::Corrupt { .. }) => {}
        Err(err) => panic!("open failed with {err:?}"),
        Ok(store) => {
            append_until_roll(&store, "b", 3, 2000);
            store.close().expect("close after the roll");
        }
    }
}

/// open_directory (the persistent index), found by the new seed `seed-forged-offset` under overflow checks:
/// `attempt to add with overflow` at `engine/log/writer.rs` in `Writer::encode`
/// (`head.map_or((0, NO_PREV), |(last, head)| (last + 1, head))`), on the writer thread, at the first append to
/// the stream. Fixed: `table_head` and `locator_of_offset` confirm the entry's offset against the record's, and
/// a mismatch is `Corrupt` naming the table.
///
/// A table whose CRCs all hold lists stream "a" at offset `u64::MAX`, at the locator of a's only record (offset
/// 0). `Index::table_head` (`engine/index/mod.rs`) takes the newest entry of the stream's hash whose record
/// carries the stream's name (`Log::carries` compares the name only) and returns the entry's offset as the
/// head, never comparing it with the record's own offset. `stream_version("a")` is then `u64::MAX`, and an
/// append computes the next offset as `u64::MAX + 1`: a panic with overflow checks (the writer dies, appends
/// get `Closed`, `close` fails); without them it wraps to offset 0 with a back-link to a's record, and the
/// writer writes a record that breaks its stream (the next `verify` reports it, nothing else does). Suggested
/// fix: `table_head` (and `locator_of_offset`) confirm the entry's offset against the record's header as they
/// confirm its name, and report a mismatch as `Corrupt` naming the table; the writer's `last + 1` could use
/// `checked_add` as a second line.
#[test]
fn table_entry_claiming_offset_u64_max_for_a_real_record() {
    let dir = tempfile::tempdir().unwrap();
    let f0 = frame(0, "a", 0, NO_PREV, b"zero");
    let end = SEGMENT_HEADER_LEN + f0.len();
    write_segment(dir.path(), 0, 0, 4096, &[f0]);
    // Every stream hash is 0 under `stream_hash_mask = 0`: the entry needs no XXH3 of "a".
    let header = TableHeader {
        first: 0,
        end: 1,
        end_locator: locator(0, end),
        last_locator: locator(0, SEGMENT_HEADER_LEN),
        last_event_id: 1,
        hash_mask: 0,
    };
    write_table(dir.path(), &header, &[[0, u64::MAX, locator(0, SEGMENT_HEADER_LEN)]], &[]);

    let options = Options { stream_hash_mask: 0, ..options() };
    match Store::open_with(dir.path(), options) {
        Err(Error::Corrupt { .. }) => {}
        Err(err) => panic!("open failed with {err:?}"),
        Ok(store) => {
            let version = store.stream_version("a");
            match store.append("a", ExpectedVersion::Any, &[EventData::new("T", &b"next"[..])]) {
                Ok(result) => assert_eq!(result.first_offset, 1, "the append continues a's only record"),
                Err(Error::Corrupt { .. }) => {}
                Err(err) => panic!("append failed with {err:?} (a writer thread that died answers Closed)"),
            }
            store.close().expect("close");
            assert!(version != Some(u64::MAX), "stream_version believes the table's offset over the record's");
        }
    }
}

/// open_directory (the persistent index), after 2,093 executions of the third 10-minute run (its input is a
/// crafted log whose CRC-valid frames claim repeated positions, covered by tables computed from them, and a
/// merge of them): `positions are written in order` (an `assert!` in `table::write_pages`,
/// `engine/index/table.rs`), on the `annals-index` thread, in a background merge right after the open.
/// Fixed: the merge checks the order of what it reads (`Ordered`) and fails with `Corrupt`, which stops
/// merging; the flusher (merges now run on their own thread) marks itself stopped however it ends.
///
/// Four small tables are accepted at open: each one's last record is where it says. Nothing else of a table is
/// checked against the log or against its neighbours, so their position entries need not follow one another;
/// here the last table's claims position 0. The four are of one size tier, so the background thread merges
/// them at once: `tables::merge` concatenates the inputs' position entries and `table::write` asserts their
/// order, which is an invariant of the engine's own writes but not of bytes read from disk (`STYLE.md` §3:
/// bad bytes from disk are an error, never a panic). The same holds for the stream, category and event-type
/// entries (`Merged` yields a k-way merge of sections that need not be sorted, or may hold one entry twice).
/// The panic kills the index thread without marking it stopped: `Index::freeze` then waits forever once more
/// than `FROZEN_MAX` memtables are frozen (the writer hangs at its third roll), and `close` fails with "the
/// index thread panicked". Suggested fix: `merge` checks the order of what it reads and fails with `Corrupt`
/// (naming the input) instead of asserting, as a page's CRC failure does; and the thread's loop should mark
/// itself stopped however it ends.
#[test]
fn merge_of_tables_whose_position_entries_do_not_follow_one_another() {
    let dir = tempfile::tempdir().unwrap();
    let mut frames = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    let mut ats = Vec::new();
    for position in 0..4u64 {
        let f = frame(position, &format!("s{position}"), 0, NO_PREV, b"x");
        ats.push(at);
        at += f.len();
        frames.push(f);
    }
    write_segment(dir.path(), 0, 0, 4096, &frames);
    for position in 0..4u64 {
        let here = locator(0, ats[position as usize]);
        let end = ats.get(position as usize + 1).copied().unwrap_or(at);
        let header = TableHeader {
            first: position,
            end: position + 1,
            end_locator: locator(0, end),
            last_locator: here,
            last_event_id: u128::from(position) + 1,
            hash_mask: u64::MAX,
        };
        // The last table's position entry claims position 0.
        let claimed = if position == 3 { 0 } else { position };
        write_table(dir.path(), &header, &[], &[[claimed, here, 1_700_000_000_000_000_000 + position]]);
    }

    let store = Store::open_with(dir.path(), options()).expect("every table's last record is in the log");
    assert_eq!(store.recovery_report().index_tables, 4);
    // Rolls freeze memtables for the index thread to write out; with the thread dead, the third waits forever.
    let appender = store.clone();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        append_until_roll(&appender, "b", 8, 2000);
        let _ = done.send(());
    });
    assert!(
        finished.recv_timeout(std::time::Duration::from_secs(60)).is_ok(),
        "appends that roll segments hang: the index thread is gone"
    );
    store.close().expect("close");
}

/// operations_vs_model (the persistent index), intermittent, in the last 10-minute run (fork mode): after a
/// clean close, the reopen reported `index_tables: 0, records_replayed: 6, records_resynced: 6`, where a clean
/// close must leave tables over every record (`Index::close`: "Writes every frozen memtable out and stops the
/// background thread"). Fixed: the flusher returns on `stopping` only when no memtable is frozen (checked under
/// the jobs lock, which the freeze's wake-up takes too). The race is narrow: it did not fail in 2,000 rounds here, and the fuzzer's input (`Buffer` durability with a 1 ms flush, a 200-byte head cache, a
/// multi-stream append of 2.7 KB that rolls a segment, then the final close and reopen) failed 1 time in 120
/// replays.
///
/// Suspected race in `tables::work` (`engine/index/tables.rs`): the thread reads `state.frozen` (empty), then
/// the writer's close freezes the active memtable (`Index::freeze`, which pushes it and wakes the thread) and
/// calls `Index::close` (which sets `stopping`); the thread then takes the jobs lock, sees `stopping`, and
/// returns without writing the memtable frozen in between. Nothing is lost (the log is the truth: the next
/// open replays those records and, since nothing proves them synced, rewrites and syncs them), but a clean
/// close no longer guarantees an open without replay, and `close` reports success. Suggested fix: under the
/// jobs lock, return on `stopping` only if no memtable is frozen.
#[test]
fn a_clean_close_always_leaves_tables_over_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let buffered = Options {
        durability: annals::Durability::Buffer { flush_interval: std::time::Duration::from_millis(1) },
        index_cache_bytes_max: 200,
        ..options()
    };
    for round in 0..300 {
        let store = Store::open_with(dir.path(), buffered.clone()).unwrap();
        let report = store.recovery_report().clone();
        assert_eq!((report.index_rejected.clone(), report.records_replayed), (None, 0), "round {round}: {report:?}");
        // Each round rolls a segment or two, so that the index thread is busy writing a table when the close
        // comes: the window is after it wrote one and before it takes the jobs lock again.
        for stream in ["s0", "s1", "s2"] {
            store.append(stream, ExpectedVersion::Any, &[EventData::new("T", vec![round as u8; 1500])]).unwrap();
        }
        store.close().unwrap();
    }
}
