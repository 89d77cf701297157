//! One index table: an immutable file of sorted entries for a contiguous range of positions of the log,
//! written once (from a segment's memtable, at a roll or a close, or by merging tables) and then only mapped
//! and read.
//!
//! The file is a sequence of 4096-byte pages. Every page ends with a CRC-32 of its first 4092 bytes, checked
//! the first time the page is used (a bit per page remembers it), so damage anywhere is found where it would
//! be read, and nothing is read at open but the header page. Page 0 is the header; then come the sections,
//! each a packed array of fixed-size entries, never split across pages:
//!
//! | section      | entry (little-endian)                    | sorted by            | per page |
//! |--------------|------------------------------------------|----------------------|---------:|
//! | streams      | stream hash u64, offset u64, locator u64 | hash, offset, locator | 170 |
//! | categories   | category hash u64, locator u64           | hash, locator        | 255 |
//! | event types  | event type hash u64, locator u64         | hash, locator        | 255 |
//! | positions    | position u64, locator u64, timestamp u64 | position             | 170 |
//! | fences (×4)  | the first u64 of each page of the section above | —             | 511 |
//! | bloom        | 64-byte blocks over the stream hashes    | —                    | 63 |
//!
//! The positions section holds every record whose position is a multiple of [`POSITION_INTERVAL`], and the
//! range's first record. `format-spec.md` §6 is the normative description.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::Mmap;
use uuid::Uuid;

use crate::error::{Error, IoContext, Result};
use crate::log::io::Io;

/// The index format this build writes and reads.
pub const INDEX_FORMAT_VERSION: u32 = 1;
/// Bytes of every page.
pub const PAGE_BYTES: usize = 4096;
/// Bytes of a page before its CRC.
const PAGE_BODY_BYTES: usize = PAGE_BYTES - 4;
/// The positions section holds every record whose position is a multiple of this.
pub const POSITION_INTERVAL: u64 = 64;
/// File name suffix of tables.
pub const TABLE_SUFFIX: &str = "tbl";
const MAGIC: &[u8; 8] = b"ANNALTBL";

// Header (page 0) offsets, each from the one before.
const VERSION_AT: usize = MAGIC.len();
const PAGE_BYTES_AT: usize = VERSION_AT + 4;
const SEED_AT: usize = PAGE_BYTES_AT + 4;
const FIRST_POSITION_AT: usize = SEED_AT + 8;
const END_POSITION_AT: usize = FIRST_POSITION_AT + 8;
const END_LOCATOR_AT: usize = END_POSITION_AT + 8;
const LAST_LOCATOR_AT: usize = END_LOCATOR_AT + 8;
const LAST_EVENT_ID_AT: usize = LAST_LOCATOR_AT + 8;
const FIRST_TIMESTAMP_AT: usize = LAST_EVENT_ID_AT + 16;
const LAST_TIMESTAMP_AT: usize = FIRST_TIMESTAMP_AT + 8;
const NEW_STREAMS_AT: usize = LAST_TIMESTAMP_AT + 8;
const SEPARATOR_AT: usize = NEW_STREAMS_AT + 8;
const POSITION_INTERVAL_AT: usize = SEPARATOR_AT + 4;
const HASH_MASK_AT: usize = POSITION_INTERVAL_AT + 4;
const SECTIONS_AT: usize = HASH_MASK_AT + 8;
const SECTION_DESCRIPTOR_BYTES: usize = 16;
const HEADER_END: usize = SECTIONS_AT + SECTIONS * SECTION_DESCRIPTOR_BYTES;
const _: () = assert!(SECTIONS_AT == 112 && HEADER_END == 256);

/// The sections of a table, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Streams = 0,
    StreamFences = 1,
    Categories = 2,
    CategoryFences = 3,
    EventTypes = 4,
    EventTypeFences = 5,
    Positions = 6,
    PositionFences = 7,
    Bloom = 8,
}
const SECTIONS: usize = 9;
const ALL_SECTIONS: [Section; SECTIONS] = [
    Section::Streams,
    Section::StreamFences,
    Section::Categories,
    Section::CategoryFences,
    Section::EventTypes,
    Section::EventTypeFences,
    Section::Positions,
    Section::PositionFences,
    Section::Bloom,
];

impl Section {
    pub const fn entry_bytes(self) -> usize {
        match self {
            Section::Streams | Section::Positions => 24,
            Section::Categories | Section::EventTypes => 16,
            Section::StreamFences | Section::CategoryFences | Section::EventTypeFences | Section::PositionFences => 8,
            Section::Bloom => BLOOM_BLOCK_BYTES,
        }
    }

    pub const fn per_page(self) -> usize {
        PAGE_BODY_BYTES / self.entry_bytes()
    }

    /// The fences of an entry section.
    const fn fences(self) -> Section {
        match self {
            Section::Streams => Section::StreamFences,
            Section::Categories => Section::CategoryFences,
            Section::EventTypes => Section::EventTypeFences,
            Section::Positions => Section::PositionFences,
            other => other,
        }
    }
}

/// Bytes of one bloom block: one cache line, so a probe touches one line of one page.
const BLOOM_BLOCK_BYTES: usize = 64;
/// Bits per distinct stream in the bloom filter (about 1% false positives with 7 probes per block).
const BLOOM_BITS_PER_KEY: u64 = 10;
const BLOOM_PROBES: u32 = 7;

/// What a table says about the range of the log it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub seed: u64,
    /// First position covered.
    pub first_position: u64,
    /// Positions below this are covered.
    pub end_position: u64,
    /// Locator where the record at `end_position` goes (where replay resumes).
    pub end_locator: u64,
    /// Locator and id of the record at `end_position - 1`: checked against the log at open.
    pub last_locator: u64,
    pub last_event_id: Uuid,
    pub first_timestamp: u64,
    pub last_timestamp: u64,
    /// Streams whose first event (offset 0) lies in the range.
    pub new_streams: u64,
    /// The category separator the category entries were made with.
    pub separator: char,
    /// Every hash in the table was masked with this: `u64::MAX`, except in tests that force collisions.
    pub hash_mask: u64,
}

/// One entry of the streams section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamEntry {
    pub hash: u64,
    pub offset: u64,
    pub locator: u64,
}

/// One entry of the positions section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PositionEntry {
    pub position: u64,
    pub locator: u64,
    pub timestamp: u64,
}

/// The file name of the table covering positions `first..end`.
pub fn file_name(first: u64, end: u64) -> String {
    format!("{first:020}-{end:020}.{TABLE_SUFFIX}")
}

/// The range a table file name stands for; `None` for any other name.
pub fn parse_file_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(&format!(".{TABLE_SUFFIX}"))?;
    let (first, end) = stem.split_once('-')?;
    let digits = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit());
    (digits(first) && digits(end)).then(|| Some((first.parse().ok()?, end.parse().ok()?)))?
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

// ---------------------------------------------------------------------------------------------------------
// Writing.

/// Writes the pages of one section, one entry at a time, and remembers each page's first key (its fence).
struct SectionWriter {
    section: Section,
    page: Vec<u8>,
    entries: u64,
    fences: Vec<u64>,
}

impl SectionWriter {
    fn new(section: Section) -> Self {
        SectionWriter { section, page: Vec::with_capacity(PAGE_BYTES), entries: 0, fences: Vec::new() }
    }

    fn push(&mut self, out: &mut PageSink, entry: &[u8]) -> std::io::Result<()> {
        debug_assert_eq!(entry.len(), self.section.entry_bytes());
        if self.page.is_empty() {
            self.fences.push(u64_at(entry, 0));
        }
        self.page.extend_from_slice(entry);
        self.entries += 1;
        if self.page.len() + self.section.entry_bytes() > PAGE_BODY_BYTES {
            out.page(&mut self.page)?;
        }
        Ok(())
    }

    /// Writes the last, partial page. Returns (first page, entries).
    fn finish(mut self, out: &mut PageSink, first_page: u64) -> std::io::Result<(u64, u64, Vec<u64>)> {
        if !self.page.is_empty() {
            out.page(&mut self.page)?;
        }
        Ok((first_page, self.entries, self.fences))
    }
}

/// The file being written, a page at a time, each page padded and sealed with its CRC.
struct PageSink {
    out: BufWriter<File>,
    pages: u64,
}

impl PageSink {
    fn page(&mut self, body: &mut Vec<u8>) -> std::io::Result<()> {
        assert!(body.len() <= PAGE_BODY_BYTES);
        body.resize(PAGE_BODY_BYTES, 0);
        let crc = crc32fast::hash(body);
        body.extend_from_slice(&crc.to_le_bytes());
        self.out.write_all(body)?;
        body.clear();
        self.pages += 1;
        Ok(())
    }
}

/// The sorted contents of a table to write.
pub struct Contents<S, C, T, P> {
    pub streams: S,
    pub categories: C,
    pub event_types: T,
    pub positions: P,
}

/// Writes a table atomically into `dir`: temporary file, sync, rename, sync the directory. Every iterator must
/// yield its entries in order (asserted). `streams_hint` is the number of distinct streams, or more (it sizes
/// the bloom filter). Returns the path.
pub fn write<S, C, T, P>(
    io: &Io,
    dir: &Path,
    meta: &Meta,
    streams_hint: u64,
    contents: Contents<S, C, T, P>,
) -> Result<PathBuf>
where
    S: Iterator<Item = Result<StreamEntry>>,
    C: Iterator<Item = Result<(u64, u64)>>,
    T: Iterator<Item = Result<(u64, u64)>>,
    P: Iterator<Item = Result<PositionEntry>>,
{
    let path = dir.join(file_name(meta.first_position, meta.end_position));
    let tmp = path.with_extension("tmp");
    let written = write_pages(io, &tmp, meta, streams_hint, contents);
    let installed = written.and_then(|file| {
        io.sync_all(&file, &tmp).context(|| format!("syncing {}", tmp.display()))?;
        drop(file);
        io.rename(&tmp, &path).context(|| format!("renaming {}", tmp.display()))?;
        // IMPORTANT: sync the directory, or the table may vanish after a power cut (harmless: the log is
        // replayed again), and a merge's inputs must not be deleted before their output is durable.
        io.sync_dir(dir).context(|| format!("syncing {}", dir.display()))
    });
    if installed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    installed.map(|()| path)
}

fn write_pages<S, C, T, P>(
    io: &Io,
    tmp: &Path,
    meta: &Meta,
    streams_hint: u64,
    contents: Contents<S, C, T, P>,
) -> Result<File>
where
    S: Iterator<Item = Result<StreamEntry>>,
    C: Iterator<Item = Result<(u64, u64)>>,
    T: Iterator<Item = Result<(u64, u64)>>,
    P: Iterator<Item = Result<PositionEntry>>,
{
    let context = || format!("writing index table {}", tmp.display());
    let file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(tmp).context(context)?;
    let mut sink = PageSink { out: BufWriter::with_capacity(1 << 20, file.try_clone().context(context)?), pages: 1 };
    // Page 0 (the header) is written last, once every section's place is known.
    sink.out.write_all(&[0u8; PAGE_BYTES]).context(context)?;
    let mut descriptors = [(0u64, 0u64); SECTIONS];

    // Streams, and the bloom filter of their hashes.
    let mut writer = SectionWriter::new(Section::Streams);
    let mut bloom = Bloom::with_keys(streams_hint);
    let mut previous: Option<StreamEntry> = None;
    let first_page = sink.pages;
    for entry in contents.streams {
        let entry = entry?;
        assert!(previous.is_none_or(|previous| previous < entry), "stream entries are written in order");
        if previous.is_none_or(|previous| previous.hash != entry.hash) {
            bloom.insert(entry.hash);
        }
        previous = Some(entry);
        let mut bytes = [0u8; 24];
        bytes[..8].copy_from_slice(&entry.hash.to_le_bytes());
        bytes[8..16].copy_from_slice(&entry.offset.to_le_bytes());
        bytes[16..].copy_from_slice(&entry.locator.to_le_bytes());
        writer.push(&mut sink, &bytes).context(context)?;
    }
    let fences = finish(writer, &mut sink, first_page, Section::Streams, &mut descriptors).context(context)?;
    write_fences(&mut sink, Section::StreamFences, &fences, &mut descriptors).context(context)?;

    write_pairs(&mut sink, Section::Categories, contents.categories, &mut descriptors, context)?;
    write_pairs(&mut sink, Section::EventTypes, contents.event_types, &mut descriptors, context)?;

    let mut writer = SectionWriter::new(Section::Positions);
    let first_page = sink.pages;
    let mut previous = None;
    for entry in contents.positions {
        let entry = entry?;
        assert!(previous.is_none_or(|previous: u64| previous < entry.position), "positions are written in order");
        previous = Some(entry.position);
        let mut bytes = [0u8; 24];
        bytes[..8].copy_from_slice(&entry.position.to_le_bytes());
        bytes[8..16].copy_from_slice(&entry.locator.to_le_bytes());
        bytes[16..].copy_from_slice(&entry.timestamp.to_le_bytes());
        writer.push(&mut sink, &bytes).context(context)?;
    }
    let fences = finish(writer, &mut sink, first_page, Section::Positions, &mut descriptors).context(context)?;
    write_fences(&mut sink, Section::PositionFences, &fences, &mut descriptors).context(context)?;

    let mut writer = SectionWriter::new(Section::Bloom);
    let first_page = sink.pages;
    for block in bloom.bits.chunks(BLOOM_BLOCK_BYTES) {
        writer.push(&mut sink, block).context(context)?;
    }
    finish(writer, &mut sink, first_page, Section::Bloom, &mut descriptors).context(context)?;

    sink.out.flush().context(context)?;
    let mut header = encode_header(meta, &descriptors);
    let crc = crc32fast::hash(&header[..PAGE_BODY_BYTES]);
    header[PAGE_BODY_BYTES..].copy_from_slice(&crc.to_le_bytes());
    io.write_at(&file, tmp, &header, 0).context(context)?;
    Ok(file)
}

/// Writes a section of (hash, locator) pairs and its fences.
fn write_pairs(
    sink: &mut PageSink,
    section: Section,
    entries: impl Iterator<Item = Result<(u64, u64)>>,
    descriptors: &mut [(u64, u64); SECTIONS],
    context: impl Fn() -> String + Copy,
) -> Result<()> {
    let mut writer = SectionWriter::new(section);
    let first_page = sink.pages;
    let mut previous = None;
    for entry in entries {
        let entry = entry?;
        assert!(previous.is_none_or(|previous| previous < entry), "{section:?} entries are written in order");
        previous = Some(entry);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&entry.0.to_le_bytes());
        bytes[8..].copy_from_slice(&entry.1.to_le_bytes());
        writer.push(sink, &bytes).context(context)?;
    }
    let fences = finish(writer, sink, first_page, section, descriptors).context(context)?;
    write_fences(sink, section.fences(), &fences, descriptors).context(context)
}

fn finish(
    writer: SectionWriter,
    sink: &mut PageSink,
    first_page: u64,
    section: Section,
    descriptors: &mut [(u64, u64); SECTIONS],
) -> std::io::Result<Vec<u64>> {
    let (first_page, entries, fences) = writer.finish(sink, first_page)?;
    descriptors[section as usize] = (first_page, entries);
    Ok(fences)
}

fn write_fences(
    sink: &mut PageSink,
    section: Section,
    fences: &[u64],
    descriptors: &mut [(u64, u64); SECTIONS],
) -> std::io::Result<()> {
    let mut writer = SectionWriter::new(section);
    let first_page = sink.pages;
    for fence in fences {
        writer.push(sink, &fence.to_le_bytes())?;
    }
    finish(writer, sink, first_page, section, descriptors).map(|_| ())
}

fn encode_header(meta: &Meta, descriptors: &[(u64, u64); SECTIONS]) -> Vec<u8> {
    let mut header = vec![0u8; PAGE_BYTES];
    header[..VERSION_AT].copy_from_slice(MAGIC);
    header[VERSION_AT..PAGE_BYTES_AT].copy_from_slice(&INDEX_FORMAT_VERSION.to_le_bytes());
    header[PAGE_BYTES_AT..SEED_AT].copy_from_slice(&(PAGE_BYTES as u32).to_le_bytes());
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
    header[LAST_EVENT_ID_AT..LAST_EVENT_ID_AT + 16].copy_from_slice(meta.last_event_id.as_bytes());
    header[SEPARATOR_AT..SEPARATOR_AT + 4].copy_from_slice(&u32::from(meta.separator).to_le_bytes());
    header[POSITION_INTERVAL_AT..POSITION_INTERVAL_AT + 4].copy_from_slice(&(POSITION_INTERVAL as u32).to_le_bytes());
    for (i, (first_page, entries)) in descriptors.iter().enumerate() {
        let at = SECTIONS_AT + i * SECTION_DESCRIPTOR_BYTES;
        header[at..at + 8].copy_from_slice(&first_page.to_le_bytes());
        header[at + 8..at + 16].copy_from_slice(&entries.to_le_bytes());
    }
    header
}

// ---------------------------------------------------------------------------------------------------------
// The bloom filter over a table's distinct stream hashes.

struct Bloom {
    bits: Vec<u8>,
    blocks: u64,
}

impl Bloom {
    /// An empty filter (at least one block) sized for `keys` keys.
    fn with_keys(keys: u64) -> Self {
        let blocks = Self::blocks_for(keys);
        Bloom { bits: vec![0u8; blocks as usize * BLOOM_BLOCK_BYTES], blocks }
    }

    fn insert(&mut self, hash: u64) {
        let hash = Self::mix(hash);
        let block = Self::block_of(hash, self.blocks) as usize * BLOOM_BLOCK_BYTES;
        for bit in Self::bits_of(hash) {
            self.bits[block + (bit / 8) as usize] |= 1 << (bit % 8);
        }
    }

    /// About how many keys a filter of `blocks` blocks was sized for (for sizing a merge's filter).
    fn keys_for(blocks: u64) -> u64 {
        blocks * BLOOM_BLOCK_BYTES as u64 * 8 / BLOOM_BITS_PER_KEY
    }

    /// The keys are XXH3 outputs already; mixing them once more keeps the filter sound for any input.
    fn mix(hash: u64) -> u64 {
        let hash = (hash ^ (hash >> 32)).wrapping_mul(0xD6E8_FEB8_6659_FD93);
        hash ^ (hash >> 32)
    }

    fn blocks_for(keys: u64) -> u64 {
        (keys * BLOOM_BITS_PER_KEY).div_ceil(BLOOM_BLOCK_BYTES as u64 * 8).max(1)
    }

    fn block_of(hash: u64, blocks: u64) -> u64 {
        // The high half picks the block (multiply-shift, no modulo bias worth the name), the low half the bits.
        ((hash >> 32) * blocks) >> 32
    }

    /// The bits of `hash` within its 512-bit block.
    fn bits_of(hash: u64) -> impl Iterator<Item = u32> {
        let (mut h, step) = (hash as u32, (hash as u32).rotate_left(16) | 1);
        (0..BLOOM_PROBES).map(move |_| {
            h = h.wrapping_add(step);
            h % (BLOOM_BLOCK_BYTES as u32 * 8)
        })
    }
}

// ---------------------------------------------------------------------------------------------------------
// Reading.

/// An open table: the mapping, its header, and which pages have had their CRC checked. `Send + Sync`.
pub struct Table {
    path: PathBuf,
    map: Mmap,
    meta: Meta,
    sections: [(u64, u64); SECTIONS],
    /// One bit per page: set once its CRC checked out.
    verified: Box<[AtomicU64]>,
    /// Per section, the end of the read-ahead asked for by [`Table::read_ahead`].
    read_ahead: [AtomicU64; SECTIONS],
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("path", &self.path).field("meta", &self.meta).finish()
    }
}

impl Table {
    /// Maps the table at `path` and checks its header: CRC, magic, version, page size, a range that matches the
    /// file name, and sections that lie in the file in order. Nothing else is read.
    pub fn open(path: &Path) -> Result<Table> {
        let file = File::open(path).context(|| format!("opening index table {}", path.display()))?;
        let len = file.metadata().context(|| format!("reading metadata of {}", path.display()))?.len();
        let corrupt = |offset: u64, reason: String| Error::corrupt(path, offset, reason);
        if len < PAGE_BYTES as u64 || !len.is_multiple_of(PAGE_BYTES as u64) {
            return Err(corrupt(0, format!("{len} bytes is not a whole number of {PAGE_BYTES}-byte pages")));
        }
        let mut header = vec![0u8; PAGE_BYTES];
        file.read_exact_at(&mut header, 0).context(|| format!("reading {}", path.display()))?;
        if crc32fast::hash(&header[..PAGE_BODY_BYTES]) != u32_at(&header, PAGE_BODY_BYTES) {
            return Err(corrupt(PAGE_BODY_BYTES as u64, "header page CRC mismatch".into()));
        }
        if &header[..VERSION_AT] != MAGIC {
            return Err(corrupt(0, "not an index table (bad magic)".into()));
        }
        let version = u32_at(&header, VERSION_AT);
        if version != INDEX_FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                file: path.to_owned(),
                found: version,
                supported: INDEX_FORMAT_VERSION,
            });
        }
        if u32_at(&header, PAGE_BYTES_AT) as usize != PAGE_BYTES
            || u32_at(&header, POSITION_INTERVAL_AT) as u64 != POSITION_INTERVAL
        {
            return Err(corrupt(PAGE_BYTES_AT as u64, "unexpected page size or position interval".into()));
        }
        if let Some(i) = header[HEADER_END..PAGE_BODY_BYTES].iter().position(|&byte| byte != 0) {
            return Err(corrupt((HEADER_END + i) as u64, "reserved header bytes are not zero".into()));
        }
        let separator = char::from_u32(u32_at(&header, SEPARATOR_AT))
            .ok_or_else(|| corrupt(SEPARATOR_AT as u64, "the category separator is no character".into()))?;
        let meta = Meta {
            seed: u64_at(&header, SEED_AT),
            first_position: u64_at(&header, FIRST_POSITION_AT),
            end_position: u64_at(&header, END_POSITION_AT),
            end_locator: u64_at(&header, END_LOCATOR_AT),
            last_locator: u64_at(&header, LAST_LOCATOR_AT),
            last_event_id: Uuid::from_bytes(
                header[LAST_EVENT_ID_AT..LAST_EVENT_ID_AT + 16].try_into().expect("16 bytes"),
            ),
            first_timestamp: u64_at(&header, FIRST_TIMESTAMP_AT),
            last_timestamp: u64_at(&header, LAST_TIMESTAMP_AT),
            new_streams: u64_at(&header, NEW_STREAMS_AT),
            separator,
            hash_mask: u64_at(&header, HASH_MASK_AT),
        };
        let name = path.file_name().and_then(|name| name.to_str()).and_then(parse_file_name);
        if meta.first_position >= meta.end_position || name != Some((meta.first_position, meta.end_position)) {
            return Err(corrupt(FIRST_POSITION_AT as u64, "the range does not match the file name".into()));
        }
        let pages = len / PAGE_BYTES as u64;
        let mut sections = [(0u64, 0u64); SECTIONS];
        let mut next_page = 1u64;
        for section in ALL_SECTIONS {
            let at = SECTIONS_AT + section as usize * SECTION_DESCRIPTOR_BYTES;
            let (first_page, entries) = (u64_at(&header, at), u64_at(&header, at + 8));
            let section_pages = entries.div_ceil(section.per_page() as u64);
            if first_page != next_page || section_pages > pages - first_page.min(pages) {
                return Err(corrupt(at as u64, format!("section {section:?} does not fit the file")));
            }
            next_page = first_page + section_pages;
            sections[section as usize] = (first_page, entries);
        }
        let fence_count_ok = [Section::Streams, Section::Categories, Section::EventTypes, Section::Positions]
            .into_iter()
            .all(|section| {
                sections[section.fences() as usize].1
                    == sections[section as usize].1.div_ceil(section.per_page() as u64)
            });
        if next_page != pages || !fence_count_ok || sections[Section::Bloom as usize].1 == 0 {
            return Err(corrupt(SECTIONS_AT as u64, "the sections do not add up to the file".into()));
        }
        // SAFETY: index tables are immutable once renamed into place: annals never writes to a table file
        // after that (merges write new files and delete old ones, and a deleted file stays mapped and
        // unchanged), and the directory lock keeps other annals processes out. The file is never shrunk.
        let map = unsafe { Mmap::map(&file) }.context(|| format!("mapping {}", path.display()))?;
        // Lookups touch a bloom block, a few fence pages and a page or two of entries, scattered over the
        // file: without this, every fault on a cold page reads the kernel's read-around window with it (the
        // device's read_ahead_kb: 8 MiB on the machine W9 ran on), and 1,000 random stream reads of a
        // 10-million-stream store read 3.5 GB from disk. Merges and verify, which read tables whole, ask for
        // read-ahead themselves ([`Table::read_ahead`]). Advice is a hint: if the kernel refuses it, lookups
        // are only slower.
        let _ = map.advise(memmap2::Advice::Random);
        // Every lookup starts in the bloom filter and the fences, a few hundredths of the file: ask for them
        // now, without waiting, so that the first reads after an open on a cold cache do not fault them in
        // one page at a time (they stay cached while lookups use them).
        for section in [
            Section::StreamFences,
            Section::CategoryFences,
            Section::EventTypeFences,
            Section::PositionFences,
            Section::Bloom,
        ] {
            let (first_page, entries) = sections[section as usize];
            let pages = entries.div_ceil(section.per_page() as u64);
            if pages > 0 {
                let (at, len) = (first_page as usize * PAGE_BYTES, pages as usize * PAGE_BYTES);
                let _ = map.advise_range(memmap2::Advice::WillNeed, at, len);
            }
        }
        let verified = (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        let read_ahead = std::array::from_fn(|_| AtomicU64::new(0));
        let table = Table { path: path.to_owned(), map, meta, sections, verified, read_ahead };
        table.verified[0].fetch_or(1, Ordering::Relaxed);
        Ok(table)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    pub fn len(&self, section: Section) -> u64 {
        self.sections[section as usize].1
    }

    /// Bytes of the file.
    pub fn size(&self) -> u64 {
        self.map.len() as u64
    }

    /// The body of page `page`, its CRC checked the first time it is used.
    fn page(&self, page: u64) -> Result<&[u8]> {
        let at = page as usize * PAGE_BYTES;
        let bytes = &self.map[at..at + PAGE_BYTES];
        let (word, bit) = (page as usize / 64, 1u64 << (page % 64));
        if self.verified[word].load(Ordering::Relaxed) & bit == 0 {
            if crc32fast::hash(&bytes[..PAGE_BODY_BYTES]) != u32_at(bytes, PAGE_BODY_BYTES) {
                return Err(Error::corrupt(&self.path, at as u64, "index page CRC mismatch"));
            }
            self.verified[word].fetch_or(bit, Ordering::Relaxed);
        }
        Ok(&bytes[..PAGE_BODY_BYTES])
    }

    /// The bytes of entry `i` of `section` (which must be below its length).
    pub fn entry(&self, section: Section, i: u64) -> Result<&[u8]> {
        let (first_page, entries) = self.sections[section as usize];
        assert!(i < entries, "entry {i} of {section:?} (of {entries})");
        let per_page = section.per_page() as u64;
        let page = self.page(first_page + i / per_page)?;
        let at = (i % per_page) as usize * section.entry_bytes();
        Ok(&page[at..at + section.entry_bytes()])
    }

    fn key(&self, section: Section, i: u64) -> Result<(u64, u64)> {
        let entry = self.entry(section, i)?;
        let second = if section == Section::Positions { 0 } else { u64_at(entry, 8) };
        Ok((u64_at(entry, 0), second))
    }

    /// The index of the first entry of `section` whose key is at least `key` (the section's length if none):
    /// `(hash, offset)` for streams, `(hash, locator)` for categories and event types, `(position, 0)` for
    /// positions. The fences narrow the search to the pages whose entries can hold `key.0`.
    pub fn lower_bound(&self, section: Section, key: (u64, u64)) -> Result<u64> {
        let entries = self.len(section);
        let fences = section.fences();
        let pages = self.len(fences);
        // First page whose first key is at least key.0, and first one whose first key is beyond it: entries
        // before the page before the first, and from the second on, can not hold key.0.
        let first_at_least = self.partition(fences, pages, |fence| fence < key.0)?;
        let first_beyond = self.partition(fences, pages, |fence| fence <= key.0)?;
        let per_page = section.per_page() as u64;
        let mut lo = first_at_least.saturating_sub(1) * per_page;
        let mut hi = (first_beyond * per_page).min(entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(section, mid)? < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        // Entries beyond the searched pages all hold a larger first key.
        Ok(lo)
    }

    /// The first index in `0..len` of the fence section for which `before` is false.
    fn partition(&self, fences: Section, len: u64, before: impl Fn(u64) -> bool) -> Result<u64> {
        let (mut lo, mut hi) = (0, len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if before(u64_at(self.entry(fences, mid)?, 0)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    pub fn stream_entry(&self, i: u64) -> Result<StreamEntry> {
        let entry = self.entry(Section::Streams, i)?;
        Ok(StreamEntry { hash: u64_at(entry, 0), offset: u64_at(entry, 8), locator: u64_at(entry, 16) })
    }

    /// Entry `i` of the categories or event types section: (hash, locator).
    pub fn pair(&self, section: Section, i: u64) -> Result<(u64, u64)> {
        let entry = self.entry(section, i)?;
        Ok((u64_at(entry, 0), u64_at(entry, 8)))
    }

    pub fn position_entry(&self, i: u64) -> Result<PositionEntry> {
        let entry = self.entry(Section::Positions, i)?;
        Ok(PositionEntry { position: u64_at(entry, 0), locator: u64_at(entry, 8), timestamp: u64_at(entry, 16) })
    }

    /// About how many distinct streams the table holds (at least as many as its bloom filter was sized for).
    pub fn streams_hint(&self) -> u64 {
        Bloom::keys_for(self.len(Section::Bloom))
    }

    /// Whether the table may hold entries of the stream with this hash (false: certainly not).
    pub fn may_hold_stream(&self, hash: u64) -> Result<bool> {
        let blocks = self.len(Section::Bloom);
        let hash = Bloom::mix(hash);
        let block = self.entry(Section::Bloom, Bloom::block_of(hash, blocks))?;
        Ok(Bloom::bits_of(hash).all(|bit| block[(bit / 8) as usize] & (1 << (bit % 8)) != 0))
    }

    /// The read-ahead of a pass over a whole section (a merge, which reads entry `i` next): the mapping is
    /// advised random for lookups, so without this a cold merge would read the file a page per fault. When
    /// `i` comes within half a window of what was asked for so far, the next window is asked for, without
    /// waiting (asking for a whole table at once would queue hundreds of megabytes of reads in front of the
    /// lookups). A hint only: its failure changes nothing but speed.
    pub fn read_ahead(&self, section: Section, i: u64) {
        let (first_page, _) = self.sections[section as usize];
        self.read_ahead_at(section as usize, (first_page + i / section.per_page() as u64) * PAGE_BYTES as u64);
    }

    /// [`Table::read_ahead`] for a pass that reads byte `at` next, its progress kept in slot `slot`.
    fn read_ahead_at(&self, slot: usize, at: u64) {
        const WINDOW: u64 = 2 << 20;
        let asked = &self.read_ahead[slot];
        let until = asked.load(Ordering::Relaxed);
        if at + WINDOW / 2 > until {
            let from = at.max(until);
            let len = WINDOW.min(self.size().saturating_sub(from));
            if len > 0 {
                let _ = self.map.advise_range(memmap2::Advice::WillNeed, from as usize, len as usize);
            }
            asked.store(from + WINDOW, Ordering::Relaxed);
            // The window before the last one is passed: drop it from this process' page tables, so that a
            // merge does not leave every page of its inputs counted in the process' resident memory (1.4 GB
            // after a reopen of a 10-million-stream store, W9). The pages stay in the page cache.
            if from >= 2 * WINDOW && until == from {
                // SAFETY: the mapping is shared and read-only, of a file never written after it is renamed
                // into place (see `open`). MADV_DONTNEED on such a mapping only unmaps pages: the next access
                // faults the same bytes in again from the page cache, so slices of it stay valid and unchanged.
                let _ = unsafe {
                    self.map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        (from - 2 * WINDOW) as usize,
                        WINDOW as usize,
                    )
                };
            }
        }
    }

    /// Checks the CRC of every page not checked yet; the first damaged one is `Corrupt`.
    pub fn verify_pages(&self) -> Result<()> {
        (1..self.size() / PAGE_BYTES as u64).try_for_each(|page| {
            // (The streams section's slot: a verify and a merge of the same table only share a hint.)
            self.read_ahead_at(Section::Streams as usize, page * PAGE_BYTES as u64);
            self.page(page).map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(first: u64, end: u64) -> Meta {
        Meta {
            seed: 42,
            first_position: first,
            end_position: end,
            end_locator: 9 << 32 | 64,
            last_locator: 8 << 32 | 4000,
            last_event_id: Uuid::from_u128(7),
            first_timestamp: 10,
            last_timestamp: 20,
            new_streams: 3,
            separator: '-',
            hash_mask: u64::MAX,
        }
    }

    fn ok<T>(items: Vec<T>) -> impl Iterator<Item = Result<T>> {
        items.into_iter().map(Ok)
    }

    fn sample(dir: &Path, streams: u64, per_stream: u64) -> PathBuf {
        let mut entries = Vec::new();
        for s in 0..streams {
            for offset in 0..per_stream {
                entries.push(StreamEntry { hash: s * 1000 + 1, offset, locator: offset * streams + s });
            }
        }
        entries.sort();
        let categories: Vec<(u64, u64)> = (0..streams * per_stream).map(|l| (l % 3, l)).collect::<Vec<_>>();
        let mut categories = categories;
        categories.sort();
        let positions = (0..streams * per_stream)
            .step_by(POSITION_INTERVAL as usize)
            .map(|p| PositionEntry { position: p, locator: p, timestamp: p * 2 })
            .collect();
        let contents = Contents {
            streams: ok(entries),
            categories: ok(categories),
            event_types: ok(vec![]),
            positions: ok(positions),
        };
        write(&Io::default(), dir, &meta(0, streams * per_stream), streams, contents).unwrap()
    }

    #[test]
    fn tables_are_mapped_for_lookups_and_read_ahead_is_clamped() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path(), 300, 3);
        let table = Table::open(&path).unwrap();
        let flags = crate::log::segment::vm_flags_of_mappings(&std::fs::canonicalize(&path).unwrap());
        assert_eq!(flags.len(), 1, "{flags:?}");
        assert!(flags[0].iter().any(|flag| flag == "rr"), "{flags:?}");
        for section in ALL_SECTIONS {
            for i in [0, table.len(section), u64::MAX / 4096] {
                table.read_ahead(section, i);
            }
        }
        table.verify_pages().unwrap();
    }

    #[test]
    fn a_table_round_trips_and_finds_every_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path(), 300, 7);
        assert_eq!(path.file_name().unwrap(), "00000000000000000000-00000000000000002100.tbl");
        let table = Table::open(&path).unwrap();
        assert_eq!(table.meta(), &meta(0, 2100));
        assert_eq!(table.len(Section::Streams), 2100);
        assert_eq!(table.len(Section::EventTypes), 0);
        for s in [0u64, 1, 150, 299] {
            let hash = s * 1000 + 1;
            assert!(table.may_hold_stream(hash).unwrap());
            for from in 0..8 {
                let i = table.lower_bound(Section::Streams, (hash, from)).unwrap();
                if from < 7 {
                    assert_eq!(
                        table.stream_entry(i).unwrap(),
                        StreamEntry { hash, offset: from, locator: from * 300 + s }
                    );
                } else {
                    assert!(i == 2100 || table.stream_entry(i).unwrap().hash > hash);
                }
            }
        }
        // A hash between two streams and one beyond them all.
        let i = table.lower_bound(Section::Streams, (1500, 0)).unwrap();
        assert_eq!(table.stream_entry(i).unwrap().hash, 2001);
        assert_eq!(table.lower_bound(Section::Streams, (u64::MAX, 0)).unwrap(), 2100);
        let absent = (0..1000u64).filter(|h| table.may_hold_stream(h * 7919 + 5).unwrap()).count();
        assert!(absent < 50, "the bloom filter lets through {absent} of 1000 absent streams");
        // Categories: hash 1, from locator 1000.
        let i = table.lower_bound(Section::Categories, (1, 1000)).unwrap();
        assert_eq!(table.pair(Section::Categories, i).unwrap(), (1, 1000));
        let i = table.lower_bound(Section::Positions, (130, 0)).unwrap();
        assert_eq!(table.position_entry(i).unwrap().position, 192);
        table.verify_pages().unwrap();
    }

    #[test]
    fn a_damaged_page_is_corrupt_where_it_is_read_and_a_damaged_header_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path(), 300, 7);
        let pristine = std::fs::read(&path).unwrap();
        let mut damaged = pristine.clone();
        damaged[PAGE_BYTES * 2 + 100] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        let table = Table::open(&path).unwrap();
        let err = table.verify_pages().unwrap_err();
        assert!(matches!(err, Error::Corrupt { offset, .. } if offset == 2 * PAGE_BYTES as u64), "{err}");

        let mut damaged = pristine.clone();
        damaged[END_POSITION_AT] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        assert!(matches!(Table::open(&path), Err(Error::Corrupt { .. })));
        std::fs::write(&path, &pristine[..PAGE_BYTES * 3]).unwrap();
        assert!(matches!(Table::open(&path), Err(Error::Corrupt { .. })));
    }

    /// Reserved header bytes must be zero (format-spec §6.2): a later version may give them a meaning, which a
    /// reader of this one must not silently ignore. The CRC is fixed up, so only the reserved check can refuse.
    #[test]
    fn nonzero_reserved_header_bytes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path(), 3, 2);
        let pristine = std::fs::read(&path).unwrap();
        for at in [HEADER_END, PAGE_BODY_BYTES - 1] {
            let mut damaged = pristine.clone();
            damaged[at] = 1;
            let crc = crc32fast::hash(&damaged[..PAGE_BODY_BYTES]);
            damaged[PAGE_BODY_BYTES..PAGE_BYTES].copy_from_slice(&crc.to_le_bytes());
            std::fs::write(&path, &damaged).unwrap();
            let err = Table::open(&path).unwrap_err();
            assert!(matches!(err, Error::Corrupt { offset, .. } if offset == at as u64), "byte {at}: {err}");
        }
        std::fs::write(&path, &pristine).unwrap();
        Table::open(&path).unwrap();
    }

    #[test]
    fn file_names_parse_back() {
        assert_eq!(parse_file_name(&file_name(5, 1 << 40)), Some((5, 1 << 40)));
        for other in ["5-6.tbl", "00000000000000000005-00000000000000000006.tmp", "x"] {
            assert_eq!(parse_file_name(other), None);
        }
    }
}
