//! The on-disk layouts, written independently of the engine from the module docs of `engine/log/frame.rs`,
//! `engine/log/segment.rs` and `engine/index/table.rs` (the index tables; `format-spec.md` §6 still describes
//! the checkpoint they replaced).

/// Bytes of a frame header.
pub const FRAME_HEADER_LEN: usize = 88;
/// Bytes of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 64;
/// `prev` of a stream's first record.
pub const NO_PREV: u64 = u64::MAX;
/// The checkpoint file of format 1 (before the persistent index): ignored and deleted on open.
pub const LEGACY_CHECKPOINT_FILE: &str = "index.ckpt";

/// Rounds up to the next frame start (8 bytes).
pub fn aligned(len: usize) -> usize {
    (len + 7) & !7
}

/// `ordinal << 32 | offset`.
pub fn locator(ordinal: u32, offset: u32) -> u64 {
    (u64::from(ordinal) << 32) | u64::from(offset)
}

/// Every field of a frame, as raw as the format allows (names are bytes, so invalid UTF-8 can be written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub position: u64,
    pub offset: u64,
    pub prev: u64,
    pub synced_before: u64,
    pub timestamp: u64,
    pub event_id: [u8; 16],
    pub txn_after: u32,
    pub codec: u8,
    pub stream: Vec<u8>,
    pub event_type: Vec<u8>,
    pub metadata: Vec<u8>,
    pub data: Vec<u8>,
}

/// Encodes a frame with a correct CRC, padded with zeros to 8 bytes. Names longer than `u16::MAX` are cut.
pub fn encode_frame(frame: &RawFrame) -> Vec<u8> {
    let stream = &frame.stream[..frame.stream.len().min(usize::from(u16::MAX))];
    let event_type = &frame.event_type[..frame.event_type.len().min(usize::from(u16::MAX))];
    let len = FRAME_HEADER_LEN + stream.len() + event_type.len() + frame.metadata.len() + frame.data.len();
    let mut out = Vec::with_capacity(aligned(len));
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for value in [frame.position, frame.offset, frame.prev, frame.synced_before, frame.timestamp] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.extend_from_slice(&frame.event_id);
    out.extend_from_slice(&frame.txn_after.to_le_bytes());
    out.extend_from_slice(&(stream.len() as u16).to_le_bytes());
    out.extend_from_slice(&(event_type.len() as u16).to_le_bytes());
    out.extend_from_slice(&(frame.metadata.len() as u32).to_le_bytes());
    out.extend_from_slice(&(frame.data.len() as u32).to_le_bytes());
    out.push(frame.codec);
    out.extend_from_slice(&[0; 7]);
    debug_assert_eq!(out.len(), FRAME_HEADER_LEN);
    out.extend_from_slice(stream);
    out.extend_from_slice(event_type);
    out.extend_from_slice(&frame.metadata);
    out.extend_from_slice(&frame.data);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&out[0..4]);
    hasher.update(&out[8..]);
    out[4..8].copy_from_slice(&hasher.finalize().to_le_bytes());
    out.resize(aligned(len), 0);
    out
}

/// A valid segment header (magic, version 1, header length 64, size, base, ordinal, zero reserved bytes, CRC).
pub fn segment_header(size: u64, base_position: u64, ordinal: u32) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header[0..8].copy_from_slice(b"ANNALSEG");
    header[8..12].copy_from_slice(&1u32.to_le_bytes());
    header[12..16].copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
    header[16..24].copy_from_slice(&size.to_le_bytes());
    header[24..32].copy_from_slice(&base_position.to_le_bytes());
    header[32..36].copy_from_slice(&ordinal.to_le_bytes());
    fix_segment_header_crc(&mut header);
    header
}

/// Recomputes the CRC of a (possibly edited) segment header.
pub fn fix_segment_header_crc(header: &mut [u8; SEGMENT_HEADER_LEN]) {
    let crc = crc32fast::hash(&header[..60]);
    header[60..64].copy_from_slice(&crc.to_le_bytes());
}

/// The segment file name for a base position.
pub fn segment_file_name(base_position: u64) -> String {
    format!("{base_position:020}.seg")
}

/// Name of the index directory inside a store.
pub const INDEX_DIR: &str = "index";
/// Bytes of every page of an index table.
pub const PAGE_BYTES: usize = 4096;
/// Bytes of a page before its CRC-32.
pub const PAGE_BODY_BYTES: usize = PAGE_BYTES - 4;
/// The positions section holds every record whose position is a multiple of this (and the range's first).
pub const POSITION_INTERVAL: u64 = 64;

// Header (page 0) offsets.
pub const VERSION_AT: usize = 8;
pub const PAGE_BYTES_AT: usize = VERSION_AT + 4;
pub const SEED_AT: usize = PAGE_BYTES_AT + 4;
pub const FIRST_POSITION_AT: usize = SEED_AT + 8;
pub const END_POSITION_AT: usize = FIRST_POSITION_AT + 8;
pub const END_LOCATOR_AT: usize = END_POSITION_AT + 8;
pub const LAST_LOCATOR_AT: usize = END_LOCATOR_AT + 8;
pub const LAST_EVENT_ID_AT: usize = LAST_LOCATOR_AT + 8;
pub const FIRST_TIMESTAMP_AT: usize = LAST_EVENT_ID_AT + 16;
pub const LAST_TIMESTAMP_AT: usize = FIRST_TIMESTAMP_AT + 8;
pub const NEW_STREAMS_AT: usize = LAST_TIMESTAMP_AT + 8;
pub const SEPARATOR_AT: usize = NEW_STREAMS_AT + 8;
pub const POSITION_INTERVAL_AT: usize = SEPARATOR_AT + 4;
pub const HASH_MASK_AT: usize = POSITION_INTERVAL_AT + 4;
pub const SECTIONS_AT: usize = HASH_MASK_AT + 8;
const _: () = assert!(SECTIONS_AT == 112);

/// The sections of a table in file order, with their entry sizes: streams, stream fences, categories,
/// category fences, event types, event-type fences, positions, position fences, bloom.
pub const SECTION_ENTRY_BYTES: [usize; 9] = [24, 8, 16, 8, 16, 8, 24, 8, 64];
/// Sections with entries (the others are their fences, and the bloom filter).
pub const STREAMS: usize = 0;
pub const CATEGORIES: usize = 2;
pub const EVENT_TYPES: usize = 4;
pub const POSITIONS: usize = 6;
pub const BLOOM: usize = 8;

/// What a key names (the engine hashes each kind apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stream = 1,
    Category = 2,
    EventType = 3,
}

/// XXH3-64 of the key, seeded with the store's seed mixed with the kind (`engine/index/hash.rs`).
pub fn key_hash(seed: u64, kind: Kind, key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(key, seed ^ (kind as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// A stream's category: the bytes before the first separator, or the whole name.
pub fn category(stream: &[u8], separator: char) -> &[u8] {
    let mut buf = [0u8; 4];
    let sep = separator.encode_utf8(&mut buf).as_bytes();
    stream.windows(sep.len()).position(|w| w == sep).map_or(stream, |at| &stream[..at])
}

/// The file name of the table covering positions `first..end`.
pub fn table_file_name(first: u64, end: u64) -> String {
    format!("{first:020}-{end:020}.tbl")
}

/// One record as a table indexes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRecord {
    pub stream: Vec<u8>,
    pub event_type: Vec<u8>,
    pub offset: u64,
    pub position: u64,
    pub locator: u64,
    pub timestamp: u64,
}

/// The header fields of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableMeta {
    pub seed: u64,
    pub first_position: u64,
    pub end_position: u64,
    pub end_locator: u64,
    pub last_locator: u64,
    pub last_event_id: [u8; 16],
    pub first_timestamp: u64,
    pub last_timestamp: u64,
    pub new_streams: u64,
    pub separator: char,
    pub hash_mask: u64,
}

/// The sorted entries of a table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableEntries {
    /// (hash, offset, locator), sorted.
    pub streams: Vec<[u64; 3]>,
    /// (hash, locator), sorted.
    pub categories: Vec<[u64; 2]>,
    pub event_types: Vec<[u64; 2]>,
    /// (position, locator, timestamp), by position.
    pub positions: Vec<[u64; 3]>,
    /// Keys the bloom filter is sized for (at least 1 block).
    pub bloom_keys: u64,
}

impl TableEntries {
    /// The entries of `records` (in position order; the first is the range's first), as the engine's
    /// memtable makes them.
    pub fn of(records: &[TableRecord], seed: u64, hash_mask: u64, separator: char) -> Self {
        let mut entries = TableEntries::default();
        let mut names: Vec<&[u8]> = Vec::new();
        for (i, record) in records.iter().enumerate() {
            let stream = key_hash(seed, Kind::Stream, &record.stream) & hash_mask;
            entries.streams.push([stream, record.offset, record.locator]);
            let category = key_hash(seed, Kind::Category, category(&record.stream, separator)) & hash_mask;
            entries.categories.push([category, record.locator]);
            let event_type = key_hash(seed, Kind::EventType, &record.event_type) & hash_mask;
            entries.event_types.push([event_type, record.locator]);
            if i == 0 || record.position.is_multiple_of(POSITION_INTERVAL) {
                entries.positions.push([record.position, record.locator, record.timestamp]);
            }
            if !names.contains(&record.stream.as_slice()) {
                names.push(&record.stream);
            }
        }
        entries.streams.sort_unstable();
        entries.categories.sort_unstable();
        entries.event_types.sort_unstable();
        entries.bloom_keys = names.len() as u64;
        entries
    }
}

/// Bloom filter blocks for `keys` keys: 10 bits per key, 512 bits per block, at least one.
pub fn bloom_blocks(keys: u64) -> u64 {
    (keys.saturating_mul(10)).div_ceil(512).max(1)
}

/// How many keys a filter of `blocks` blocks was sized for (what a merge sums up).
pub fn bloom_keys_for(blocks: u64) -> u64 {
    blocks * 512 / 10
}

fn bloom_mix(hash: u64) -> u64 {
    let hash = (hash ^ (hash >> 32)).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    hash ^ (hash >> 32)
}

fn bloom_insert(bits: &mut [u8], blocks: u64, hash: u64) {
    let hash = bloom_mix(hash);
    let block = (((hash >> 32) * blocks) >> 32) as usize * 64;
    let (mut h, step) = (hash as u32, (hash as u32).rotate_left(16) | 1);
    for _ in 0..7 {
        h = h.wrapping_add(step);
        let bit = h % 512;
        bits[block + (bit / 8) as usize] |= 1 << (bit % 8);
    }
}

/// Pages of `entries` entries of `entry_bytes` bytes: each page is filled up to its CRC, never split.
fn section_pages(entries: usize, entry_bytes: usize) -> usize {
    entries.div_ceil(PAGE_BODY_BYTES / entry_bytes)
}

/// Encodes a whole table file: header page and sections, every page with its CRC.
pub fn encode_table(meta: &TableMeta, entries: &TableEntries) -> Vec<u8> {
    let mut sections: Vec<Vec<u8>> = Vec::new();
    let le = |values: &[u64]| values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
    let fences = |items: Vec<u64>, entry_bytes: usize| -> Vec<u8> {
        let per_page = PAGE_BODY_BYTES / entry_bytes;
        items.iter().step_by(per_page).flat_map(|v| v.to_le_bytes()).collect()
    };
    let streams: Vec<u8> = entries.streams.iter().flat_map(|e| le(e)).collect();
    sections.push(streams);
    sections.push(fences(entries.streams.iter().map(|e| e[0]).collect(), 24));
    for pairs in [&entries.categories, &entries.event_types] {
        sections.push(pairs.iter().flat_map(|e| le(e)).collect());
        sections.push(fences(pairs.iter().map(|e| e[0]).collect(), 16));
    }
    sections.push(entries.positions.iter().flat_map(|e| le(e)).collect());
    sections.push(fences(entries.positions.iter().map(|e| e[0]).collect(), 24));
    let blocks = bloom_blocks(entries.bloom_keys);
    let mut bits = vec![0u8; blocks as usize * 64];
    let mut previous = None;
    for entry in &entries.streams {
        if previous != Some(entry[0]) {
            bloom_insert(&mut bits, blocks, entry[0]);
        }
        previous = Some(entry[0]);
    }
    sections.push(bits);

    let mut header = vec![0u8; PAGE_BYTES];
    header[..8].copy_from_slice(b"ANNALTBL");
    header[VERSION_AT..VERSION_AT + 4].copy_from_slice(&1u32.to_le_bytes());
    header[PAGE_BYTES_AT..PAGE_BYTES_AT + 4].copy_from_slice(&(PAGE_BYTES as u32).to_le_bytes());
    for (at, value) in [
        (SEED_AT, meta.seed),
        (FIRST_POSITION_AT, meta.first_position),
        (END_POSITION_AT, meta.end_position),
        (END_LOCATOR_AT, meta.end_locator),
        (LAST_LOCATOR_AT, meta.last_locator),
        (FIRST_TIMESTAMP_AT, meta.first_timestamp),
        (LAST_TIMESTAMP_AT, meta.last_timestamp),
        (NEW_STREAMS_AT, meta.new_streams),
        (HASH_MASK_AT, meta.hash_mask),
    ] {
        header[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }
    header[LAST_EVENT_ID_AT..LAST_EVENT_ID_AT + 16].copy_from_slice(&meta.last_event_id);
    header[SEPARATOR_AT..SEPARATOR_AT + 4].copy_from_slice(&u32::from(meta.separator).to_le_bytes());
    header[POSITION_INTERVAL_AT..POSITION_INTERVAL_AT + 4].copy_from_slice(&(POSITION_INTERVAL as u32).to_le_bytes());
    let mut body = Vec::new();
    let mut page = 1u64;
    for (i, bytes) in sections.iter().enumerate() {
        let entry_bytes = SECTION_ENTRY_BYTES[i];
        let count = bytes.len() / entry_bytes;
        let at = SECTIONS_AT + i * 16;
        header[at..at + 8].copy_from_slice(&page.to_le_bytes());
        header[at + 8..at + 16].copy_from_slice(&(count as u64).to_le_bytes());
        let per_page = PAGE_BODY_BYTES / entry_bytes;
        for chunk in bytes.chunks(per_page * entry_bytes) {
            let mut p = chunk.to_vec();
            p.resize(PAGE_BYTES, 0);
            body.extend_from_slice(&p);
            page += 1;
        }
        debug_assert_eq!(page as usize - 1, body.len() / PAGE_BYTES);
        debug_assert_eq!(section_pages(count, entry_bytes), bytes.chunks(per_page * entry_bytes).count());
    }
    let mut out = header;
    out.extend_from_slice(&body);
    fix_page_crcs(&mut out);
    out
}

/// Rewrites the CRC of every whole page.
pub fn fix_page_crcs(bytes: &mut [u8]) {
    for page in bytes.chunks_exact_mut(PAGE_BYTES) {
        fix_page_crc(page);
    }
}

/// Rewrites the CRC of one page.
pub fn fix_page_crc(page: &mut [u8]) {
    let crc = crc32fast::hash(&page[..PAGE_BODY_BYTES]);
    page[PAGE_BODY_BYTES..PAGE_BYTES].copy_from_slice(&crc.to_le_bytes());
}

/// Where each section starts in a table's header: (first page, entries) for the 9 sections.
pub fn table_sections(bytes: &[u8]) -> Option<[(u64, u64); 9]> {
    let mut out = [(0, 0); 9];
    for (i, slot) in out.iter_mut().enumerate() {
        let at = SECTIONS_AT + i * 16;
        *slot = (u64_at(bytes, at)?, u64_at(bytes, at + 8)?);
    }
    Some(out)
}

/// The little-endian u64 at `at`, if the bytes hold it.
pub fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// Where the valid frames of a segment file's bytes end (walking from the header with `decode_frame`).
pub fn end_of_frames(segment: &[u8]) -> usize {
    let mut at = SEGMENT_HEADER_LEN;
    while at + 4 <= segment.len() {
        match annals::__fuzz::decode_frame(&segment[at..]) {
            Some(len) => at += aligned(len),
            None => break,
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_frames_decode_in_the_engine() {
        let frame = RawFrame {
            position: 3,
            offset: 1,
            prev: 64,
            synced_before: 3,
            timestamp: 9,
            event_id: [7; 16],
            txn_after: 0,
            codec: 2,
            stream: b"account-42".to_vec(),
            event_type: b"Opened".to_vec(),
            metadata: b"m".to_vec(),
            data: b"data!".to_vec(),
        };
        let bytes = encode_frame(&frame);
        assert_eq!(annals::__fuzz::decode_frame(&bytes), Some(88 + 10 + 6 + 1 + 5));
    }

    #[test]
    fn our_tables_open_and_check_out_in_the_engine() {
        let records: Vec<TableRecord> = (0..700u64)
            .map(|p| TableRecord {
                stream: format!("account-{}", p % 37).into_bytes(),
                event_type: if p % 2 == 0 { b"Opened".to_vec() } else { b"Deposited".to_vec() },
                offset: p / 37,
                position: p,
                locator: locator(0, 64 + p as u32 * 200),
                timestamp: 1000 + p,
            })
            .collect();
        let meta = TableMeta {
            seed: 7,
            first_position: 0,
            end_position: 700,
            end_locator: locator(0, 64 + 700 * 200),
            last_locator: locator(0, 64 + 699 * 200),
            last_event_id: [1; 16],
            first_timestamp: 1000,
            last_timestamp: 1699,
            new_streams: 37,
            separator: '-',
            hash_mask: u64::MAX,
        };
        let bytes = encode_table(&meta, &TableEntries::of(&records, 7, u64::MAX, '-'));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(table_file_name(0, 700));
        std::fs::write(&path, &bytes).unwrap();
        assert!(annals::__fuzz::check_table(&path));
        let mut damaged = bytes.clone();
        damaged[PAGE_BYTES + 10] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        assert!(!annals::__fuzz::check_table(&path));
    }
}
