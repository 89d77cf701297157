//! The persistent index: where every event of every stream, category and event type lies in the log, kept
//! on disk so that no open, close, roll or append costs work that grows with the store.
//!
//! - **Tables** (`table.rs`) are immutable files under `<store>/index/`, each covering a contiguous range of
//!   positions: sorted stream, category and event-type entries, a sparse position and time index, and a bloom
//!   filter of the streams. Together they cover the log from position 0 to a durable point.
//! - **Memtables** (`memtable.rs`) hold the entries after that point, in memory: the active one, which the
//!   writer fills after every group, and frozen ones (one per sealed segment, or the active one at close)
//!   waiting for a background thread to write them out as tables.
//! - The background thread also **merges** runs of small tables into larger ones (size-tiered), so that a
//!   lookup visits a handful of tables however long the log is.
//! - A **head cache** keeps the last offset and record of recently used streams within a memory budget.
//!
//! The log stays the truth. A table is written only after every record it covers is synced; at open every
//! table is checked against the log and one that does not match (or is damaged) is dropped and rebuilt by
//! replaying the log. `format-spec.md` §6 specifies the files.

pub(crate) mod hash;
mod heads;
pub(crate) mod memtable;
pub(crate) mod table;
mod tables;

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};

pub use self::hash::Kind;
use self::heads::HeadCache;
use self::memtable::{Memtable, Record, Run};
use self::table::{Section, Table};
pub use self::tables::Access;
use crate::error::{Error, Result};
use crate::log::frame;
use crate::log::io::Io;
use crate::log::segment::{locator, split_locator, SEGMENT_HEADER_LEN};
use crate::log::{decode_at, Log, Via};

/// Name of the index directory inside the store directory.
pub const INDEX_DIR: &str = "index";
/// Frozen memtables the writer lets wait for the background thread before it waits too.
const FROZEN_MAX: usize = 2;

/// Where a stream ends: its last offset and the locator of its last record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub last_offset: u64,
    pub locator: u64,
}

/// The parts of the index that readers and the writer share.
struct State {
    /// Contiguous from position 0, in position order.
    tables: Vec<Arc<Table>>,
    /// Contiguous after the tables, oldest first.
    frozen: Vec<Arc<Memtable>>,
    /// After the frozen ones: the writer's.
    active: Memtable,
}

/// What a reader works from: the tables and frozen memtables as they were (immutable, so no lock is needed),
/// and the active memtable's part that it asked for, copied.
#[derive(Clone)]
pub struct View {
    pub tables: Vec<Arc<Table>>,
    pub frozen: Vec<Arc<Memtable>>,
}

/// The index of one store. `Send + Sync`.
pub struct Index {
    dir: PathBuf,
    /// The seed of the tables' hashes (a read-only index takes the writer's when it adopts its tables).
    seed: AtomicU64,
    access: Access,
    /// Test hook: stream hashes are masked with this (0 puts every stream on one hash).
    hash_mask: u64,
    separator: char,
    log: Arc<Log>,
    io: Io,
    state: RwLock<State>,
    heads: Mutex<HeadCache>,
    background: Arc<Background>,
    /// Records that readers located through the index have read (for tests of what a read touches).
    pub records_read: AtomicU64,
    /// Head lookups of the writer that the head cache answered, and those it did not.
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("dir", &self.dir).finish()
    }
}

/// Where the index's tables end: replay of the log resumes here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    pub position: u64,
    pub locator: u64,
    pub last_timestamp: u64,
}

impl Resume {
    /// The start of the log: no table.
    pub fn start() -> Self {
        Resume { position: 0, locator: locator(0, SEGMENT_HEADER_LEN as u32), last_timestamp: 0 }
    }
}

/// What opening the index found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Tables in use.
    pub tables: usize,
    /// Why tables were dropped (to be rebuilt from the log), if any were.
    pub dropped: Option<String>,
}

impl Index {
    /// Opens the index of the store in `store_dir` over `log`: picks the tables that cover the log from
    /// position 0 without gaps, checks each against the log, and drops (deletes) the rest. Returns where
    /// replay must resume. Starts the background thread.
    ///
    /// With `Access::ReadOnly` (a read-only opener) nothing is created, deleted or written, and there is no
    /// background thread: frozen memtables stay in memory until [`adopt_tables`](Self::adopt_tables) finds
    /// tables the writer wrote for them.
    pub fn open(
        store_dir: &Path,
        log: Arc<Log>,
        io: Io,
        options: &crate::Options,
        access: Access,
    ) -> Result<(Arc<Index>, Resume, Opened)> {
        let (separator, cache_bytes_max, hash_mask) =
            (options.category_separator, options.index_cache_bytes_max, options.stream_hash_mask);
        let dir = store_dir.join(INDEX_DIR);
        let found = tables::load(&dir, &log, &io, separator, hash_mask, access)?;
        let resume = found.resume;
        let state = State {
            tables: found.tables,
            frozen: Vec::new(),
            active: Memtable::new(resume.position, resume.locator, separator),
        };
        let index = Arc::new(Index {
            dir,
            seed: AtomicU64::new(found.seed),
            access,
            hash_mask,
            separator,
            log,
            io,
            state: RwLock::new(state),
            heads: Mutex::new(HeadCache::new(cache_bytes_max)),
            background: Arc::new(Background::default()),
            records_read: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
        });
        let opened = Opened { tables: index.state.read().tables.len(), dropped: found.dropped };
        if access == Access::ReadOnly {
            return Ok((index, resume, opened));
        }
        // Two threads: one writes frozen memtables out, the other merges tables. A merge of large tables takes
        // seconds; the writer must never wait for one (it waits only for the flusher, at a roll, when too many
        // memtables are queued).
        let (worker, background) = (Arc::downgrade(&index), index.background.clone());
        let flusher = std::thread::Builder::new()
            .name("annals-index".into())
            .spawn(move || tables::flush_work(worker, background))
            .map_err(|err| Error::io("starting the index thread", err))?;
        let (worker, background) = (Arc::downgrade(&index), index.background.clone());
        let merger = std::thread::Builder::new()
            .name("annals-merge".into())
            .spawn(move || tables::merge_work(worker, background))
            .map_err(|err| Error::io("starting the index merge thread", err))?;
        index.background.handles.lock().extend([flusher, merger]);
        Ok((index, resume, opened))
    }

    pub fn separator(&self) -> char {
        self.separator
    }

    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    fn hash(&self, kind: Kind, key: &str) -> u64 {
        hash::hash(self.seed.load(Ordering::Relaxed), kind, key) & self.hash_mask
    }

    // -----------------------------------------------------------------------------------------------------
    // The writer's side.

    /// Adds committed records (in position order, continuing the active memtable) and keeps the head cache
    /// true for their streams. `next_locator` is where the record after the last one goes. Runs `publish`
    /// while readers are held off, so that whatever it makes visible (the committed position) appears
    /// together with the entries.
    pub fn publish<'a>(&self, records: impl IntoIterator<Item = (Record<'a>, u64)>, publish: impl FnOnce()) {
        let mut state = self.state.write();
        let mut heads = self.heads.lock();
        for (record, next_locator) in records {
            state.active.push(&record, next_locator);
            heads.update(record.stream, Head { last_offset: record.offset, locator: record.locator });
        }
        publish();
    }

    /// Adds one record replayed from a compacted segment, where positions may skip removed records.
    pub fn publish_after_gap(&self, record: Record<'_>, next_locator: u64) {
        let mut state = self.state.write();
        let mut heads = self.heads.lock();
        // (The record pushed next becomes the memtable's last.)
        state.active.skip_to(record.position, record.timestamp, record.locator);
        state.active.push(&record, next_locator);
        heads.update(record.stream, Head { last_offset: record.offset, locator: record.locator });
    }

    /// Skips the active memtable to `position`: replay of a compacted segment whose last records were removed.
    pub fn skip_to(&self, position: u64, timestamp: u64, last_locator: u64) {
        self.state.write().active.skip_to(position, timestamp, last_locator);
    }

    /// Freezes the active memtable (if it holds anything) and starts a new one at `position`, `locator`: at a
    /// roll (the records it holds are synced) and at close. The background thread writes it out. Waits while
    /// too many frozen memtables are queued.
    pub fn freeze(&self, position: u64, locator: u64) {
        {
            let mut state = self.state.write();
            if state.active.is_empty() {
                state.active = Memtable::new(position, locator, self.separator);
                return;
            }
            let frozen = std::mem::replace(&mut state.active, Memtable::new(position, locator, self.separator));
            state.frozen.push(Arc::new(frozen));
        }
        if self.access == Access::ReadOnly {
            return;
        }
        self.background.wake();
        let mut jobs = self.background.jobs.lock();
        while self.state.read().frozen.len() > FROZEN_MAX && !jobs.stopped && jobs.failure.is_none() {
            self.background.done.wait(&mut jobs);
        }
    }

    /// Waits until no frozen memtable is left (every sealed segment's entries are in tables); the last failure
    /// to write one, if writing stopped or failed.
    pub fn wait_for_tables(&self) -> Result<()> {
        let mut jobs = self.background.jobs.lock();
        loop {
            if self.state.read().frozen.is_empty() {
                return Ok(());
            }
            if let Some(failure) = &jobs.failure {
                return Err(crate::log::writer::clone_error(failure));
            }
            if jobs.stopped {
                return Err(Error::Closed);
            }
            self.background.done.wait_for(&mut jobs, std::time::Duration::from_millis(50));
        }
    }

    /// A read-only index: takes the tables the writer has written since, if they cover the log from 0 to the end
    /// of one of its frozen memtables, and drops the frozen memtables they cover (so that a long-lived reader's
    /// memory does not grow with what it has followed). Returns whether it adopted any.
    pub fn adopt_tables(&self) -> Result<bool> {
        assert_eq!(self.access, Access::ReadOnly, "only a read-only index adopts tables");
        let found = tables::load(&self.dir, &self.log, &self.io, self.separator, self.hash_mask, Access::ReadOnly)?;
        let Some(end) = found.tables.last().map(|table| table.meta().end_position) else { return Ok(false) };
        let mut state = self.state.write();
        let covered = state.tables.last().map_or(0, |table| table.meta().end_position);
        let aligned = state.frozen.iter().any(|frozen| frozen.end_position == end);
        if end <= covered || !aligned {
            return Ok(false);
        }
        if state.tables.is_empty() {
            // The tables' hashes are the writer's: from now on lookups hash with its seed (the memtables are
            // keyed by name, so nothing else depends on it).
            self.seed.store(found.seed, Ordering::Relaxed);
        } else if found.seed != self.seed.load(Ordering::Relaxed) {
            return Ok(false);
        }
        state.tables = found.tables;
        state.frozen.retain(|frozen| frozen.first_position >= end);
        Ok(true)
    }

    /// Writes every frozen memtable out and stops the background thread: the close of the store. The active
    /// memtable must have been frozen. Returns the first failure of a table write.
    pub fn close(&self) -> Result<()> {
        if self.access == Access::ReadOnly {
            return Ok(());
        }
        {
            let mut jobs = self.background.jobs.lock();
            jobs.stopping = true;
            jobs.failure = None;
        }
        self.background.wake();
        let handles = std::mem::take(&mut *self.background.handles.lock());
        for handle in handles {
            if handle.join().is_err() {
                return Err(Error::io("closing the index", std::io::Error::other("an index thread panicked")));
            }
        }
        match self.background.jobs.lock().failure.take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Stops the background threads without writing anything more, and waits for them: the open that made this
    /// index failed, and the directory is no longer locked, so nothing may go on writing into it.
    pub fn abandon(&self) {
        {
            let mut jobs = self.background.jobs.lock();
            jobs.stopping = true;
            jobs.abandoned = true;
        }
        self.background.wake();
        for handle in std::mem::take(&mut *self.background.handles.lock()) {
            let _ = handle.join();
        }
    }

    /// The head of `stream` for the writer: through the head cache, which it fills.
    pub fn head_for_append(&self, stream: &str) -> Result<Option<Head>> {
        if let Some(head) = self.memtable_head(stream) {
            return Ok(Some(head));
        }
        if let Some(cached) = self.heads.lock().get(stream) {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(cached);
        }
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
        let tables = self.state.read().tables.clone();
        let head = self.table_head(&tables, stream, Via::Mapping)?;
        // Only the writer fills the cache, and only it changes heads, so nothing can have changed since.
        self.heads.lock().put(stream, head);
        Ok(head)
    }

    fn memtable_head(&self, stream: &str) -> Option<Head> {
        let state = self.state.read();
        std::iter::once(&state.active)
            .chain(state.frozen.iter().rev().map(|frozen| &**frozen))
            .find_map(|memtable| memtable.run(stream))
            .map(|run| Head { last_offset: run.last_offset(), locator: run.head() })
    }

    /// The newest entry of `stream` in `tables`, its name confirmed in the log.
    fn table_head(&self, tables: &[Arc<Table>], stream: &str, via: Via<'_>) -> Result<Option<Head>> {
        let hash = self.hash(Kind::Stream, stream);
        for table in tables.iter().rev() {
            if !table.may_hold_stream(hash)? {
                continue;
            }
            // The entries of this hash end just before the first entry of a larger hash.
            let mut i = table.lower_bound(Section::Streams, (hash.wrapping_add(1), 0))?;
            if hash == u64::MAX {
                i = table.len(Section::Streams);
            }
            while i > 0 {
                i -= 1;
                let entry = table.stream_entry(i)?;
                if entry.hash != hash {
                    break;
                }
                if let Some(offset) = self.log.offset_in(entry.locator, stream, via)? {
                    confirm_offset(table, stream, entry.offset, offset)?;
                    return Ok(Some(Head { last_offset: entry.offset, locator: entry.locator }));
                }
            }
        }
        Ok(None)
    }

    // -----------------------------------------------------------------------------------------------------
    // The readers' side.

    /// The head of `stream` (no cache fill), or `None` if it does not exist; `via` says how names are read.
    pub fn head(&self, stream: &str, via: Via<'_>) -> Result<Option<Head>> {
        if let Some(head) = self.memtable_head(stream) {
            return Ok(Some(head));
        }
        if let Some(cached) = self.heads.lock().peek(stream) {
            return Ok(cached);
        }
        let tables = self.state.read().tables.clone();
        self.table_head(&tables, stream, via)
    }

    /// A view for a read of `stream`: the stream's head and, copied, its run in the active memtable.
    pub fn stream_view(&self, stream: &str) -> Result<(View, Option<Run>, Option<Head>)> {
        let (view, run, memtable_head) = {
            let state = self.state.read();
            let view = View { tables: state.tables.clone(), frozen: state.frozen.clone() };
            let run = state.active.run(stream).cloned();
            let head = std::iter::once(&state.active)
                .chain(state.frozen.iter().rev().map(|frozen| &**frozen))
                .find_map(|memtable| memtable.run(stream))
                .map(|run| Head { last_offset: run.last_offset(), locator: run.head() });
            (view, run, head)
        };
        let head = match memtable_head {
            Some(head) => Some(head),
            None => match self.heads.lock().peek(stream) {
                Some(cached) => cached,
                None => self.table_head(&view.tables, stream, Via::Mapping)?,
            },
        };
        Ok((view, run, head))
    }

    /// A view for a read of a category or an event type from `from_locator`: the active memtable's locators
    /// of `key` at or after it, copied.
    pub fn pairs_view(&self, kind: Kind, key: &str, from_locator: u64) -> (View, Vec<u64>) {
        let state = self.state.read();
        let view = View { tables: state.tables.clone(), frozen: state.frozen.clone() };
        let locators = state.active.locators(kind, key);
        let from = locators.partition_point(|&locator| locator < from_locator);
        (view, locators[from..].to_vec())
    }

    pub fn hash_of(&self, kind: Kind, key: &str) -> u64 {
        self.hash(kind, key)
    }

    /// How many streams exist (with an event below the committed position).
    /// Head lookups of the writer the head cache answered, and those it did not.
    pub fn head_cache_counts(&self) -> (u64, u64) {
        (self.cache_hits.load(Ordering::Relaxed), self.cache_misses.load(Ordering::Relaxed))
    }

    /// How many tables and memtables (frozen and active) the index holds now.
    pub fn shape(&self) -> (usize, usize) {
        let state = self.state.read();
        (state.tables.len(), state.frozen.len() + 1)
    }

    pub fn stream_count(&self) -> u64 {
        let state = self.state.read();
        state.tables.iter().map(|table| table.meta().new_streams).sum::<u64>()
            + state.frozen.iter().map(|frozen| frozen.new_streams).sum::<u64>()
            + state.active.new_streams
    }

    /// The locator of the record at `position`, which must be below the index's end.
    pub fn locator_of(&self, position: u64) -> Result<u64> {
        let start = {
            let state = self.state.read();
            if let Some(table) = covering_table(&state.tables, position) {
                let table = table.clone();
                drop(state);
                table_position_start(&table, position)?
            } else {
                let memtable = state
                    .frozen
                    .iter()
                    .map(|frozen| &**frozen)
                    .chain(std::iter::once(&state.active))
                    .find(|memtable| (memtable.first_position..memtable.end_position).contains(&position))
                    .ok_or_else(|| Error::corrupt(&self.dir, position, "no index covers this position"))?;
                let entries = memtable.positions();
                let i = entries.partition_point(|entry| entry.position <= position);
                let entry = entries[i.checked_sub(1).expect("a memtable's first record has an entry")];
                (entry.position, entry.locator)
            }
        };
        self.walk(start, position)
    }

    /// Steps from the record at `start` (position, locator) forward to `position`, through the mapping. It
    /// reads only the header fields it steps by (the length, checked for consistency with the header, and the
    /// position), not the CRC, so that a read that starts after a damaged record is not stopped by it; a
    /// header that does not check out is decoded in full, and its damage reported.
    fn walk(&self, start: (u64, u64), position: u64) -> Result<u64> {
        let (mut at_position, mut at) = start;
        while at_position < position {
            let (ordinal, offset) = split_locator(at);
            let segment = self.log.segment(ordinal)?;
            if segment.is_compacted() {
                // Its relocation section names every position's original offset, removed records' too.
                if let Some(logical) = segment.logical_of_position(position) {
                    return Ok(locator(ordinal, logical));
                }
                let next = self.log.base(ordinal + 1).ok_or_else(|| {
                    Error::corrupt(segment.path(), 0, format!("position {position} lies beyond the log"))
                })?;
                (at_position, at) = (next, locator(ordinal + 1, SEGMENT_HEADER_LEN as u32));
                continue;
            }
            let bytes = segment.bytes().get(offset as usize..).unwrap_or_default();
            let stride = match (frame::check_header(bytes), frame::peek_position_prev(bytes)) {
                (Ok(len), Some((found, _, _))) if found == at_position && len <= bytes.len() => frame::aligned(len),
                _ => {
                    let frame = decode_at(&segment, offset as usize)?;
                    let reason = format!("expected position {at_position}, found {}", frame.header.position);
                    return Err(Error::corrupt(segment.path(), u64::from(offset), reason));
                }
            };
            at_position += 1;
            at = if self.log.base(ordinal + 1) == Some(at_position) {
                locator(ordinal + 1, SEGMENT_HEADER_LEN as u32)
            } else {
                locator(ordinal, offset + stride as u32)
            };
        }
        Ok(at)
    }

    /// The first position below `end` whose commit time is at or after `at_nanos`; `None` if there is none.
    pub fn position_at(&self, at_nanos: u64, end: u64) -> Result<Option<u64>> {
        let (tables, memtables) = {
            let state = self.state.read();
            let memtables: Vec<(u64, u64, Vec<table::PositionEntry>, u64)> = state
                .frozen
                .iter()
                .map(|frozen| &**frozen)
                .chain(std::iter::once(&state.active))
                .filter(|memtable| !memtable.is_empty())
                .map(|memtable| {
                    (
                        memtable.first_position,
                        memtable.end_position,
                        memtable.positions().to_vec(),
                        memtable.last_timestamp,
                    )
                })
                .collect();
            (state.tables.clone(), memtables)
        };
        for table in &tables {
            if table.meta().last_timestamp < at_nanos {
                continue;
            }
            // Entries are in position order and timestamps never decrease: find the first entry at or after
            // the instant, then walk from the entry before it.
            let entries = table.len(Section::Positions);
            let (mut lo, mut hi) = (0, entries);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if table.position_entry(mid)?.timestamp < at_nanos {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            let start = table.position_entry(lo.saturating_sub(1))?;
            return self.first_at_or_after(start, at_nanos, table.meta().end_position.min(end));
        }
        for (first, memtable_end, entries, last_timestamp) in memtables {
            if last_timestamp < at_nanos || first >= end {
                continue;
            }
            let i = entries.partition_point(|entry| entry.timestamp < at_nanos);
            let start = entries[i.saturating_sub(1)];
            return self.first_at_or_after(start, at_nanos, memtable_end.min(end));
        }
        Ok(None)
    }

    /// Walks from `start` to the first record (below `end`) committed at or after `at_nanos`.
    fn first_at_or_after(&self, start: table::PositionEntry, at_nanos: u64, end: u64) -> Result<Option<u64>> {
        if start.timestamp >= at_nanos {
            return Ok(Some(start.position));
        }
        let (mut position, mut at) = (start.position, start.locator);
        while position < end {
            let (ordinal, offset) = split_locator(at);
            let segment = self.log.segment(ordinal)?;
            if segment.is_compacted() {
                // Only the records compaction kept have a commit time to compare.
                let next_base = self.log.base(ordinal + 1).unwrap_or(u64::MAX);
                let mut here = segment.physical_at_or_after(offset).map_or(segment.frames_end(), |here| here as usize);
                while here < segment.frames_end() {
                    let frame = match frame::decode(&segment.bytes()[here..]) {
                        Ok(frame) => frame,
                        Err(frame::DecodeError::End) => break,
                        Err(err) => return Err(crate::log::corrupt_frame(&segment, here, err)),
                    };
                    if frame.header.position >= end {
                        return Ok(None);
                    }
                    if frame.header.timestamp_nanos >= at_nanos {
                        return Ok(Some(frame.header.position));
                    }
                    here += frame.stride();
                }
                (position, at) = (next_base, locator(ordinal + 1, SEGMENT_HEADER_LEN as u32));
                continue;
            }
            let frame = decode_at(&segment, offset as usize)?;
            if frame.header.timestamp_nanos >= at_nanos {
                return Ok(Some(position));
            }
            position += 1;
            at = if self.log.base(ordinal + 1) == Some(position) {
                locator(ordinal + 1, SEGMENT_HEADER_LEN as u32)
            } else {
                locator(ordinal, offset + frame.stride() as u32)
            };
        }
        Ok(None)
    }

    /// The locator of `stream`'s record at `offset`, if it has one (names confirmed in the log).
    pub fn locator_of_offset(&self, stream: &str, offset: u64, via: Via<'_>) -> Result<Option<u64>> {
        let view = {
            let state = self.state.read();
            if let Some(locator) = std::iter::once(&state.active)
                .chain(state.frozen.iter().map(|frozen| &**frozen))
                .find_map(|memtable| memtable.run(stream).and_then(|run| run.locator(offset)))
            {
                return Ok(Some(locator));
            }
            state.tables.clone()
        };
        let hash = self.hash(Kind::Stream, stream);
        for table in view.iter().rev() {
            if !table.may_hold_stream(hash)? {
                continue;
            }
            let mut i = table.lower_bound(Section::Streams, (hash, offset))?;
            while i < table.len(Section::Streams) {
                let entry = table.stream_entry(i)?;
                if (entry.hash, entry.offset) != (hash, offset) {
                    break;
                }
                if let Some(found) = self.log.offset_in(entry.locator, stream, via)? {
                    confirm_offset(table, stream, offset, found)?;
                    return Ok(Some(entry.locator));
                }
                i += 1;
            }
        }
        Ok(None)
    }

    /// Whether the index holds the entry "offset `offset` of `stream` is at `locator`". No name is read: an
    /// entry of another stream with the same hash can not have the same locator.
    pub fn has_stream_entry(&self, stream: &str, offset: u64, locator: u64) -> Result<bool> {
        let tables = {
            let state = self.state.read();
            let in_memory = std::iter::once(&state.active)
                .chain(state.frozen.iter().map(|frozen| &**frozen))
                .filter_map(|memtable| memtable.run(stream))
                .any(|run| run.locator(offset) == Some(locator));
            if in_memory {
                return Ok(true);
            }
            state.tables.clone()
        };
        let hash = self.hash(Kind::Stream, stream);
        let Some(table) = covering_table_of_locator(&tables, locator) else { return Ok(false) };
        let mut i = table.lower_bound(Section::Streams, (hash, offset))?;
        while i < table.len(Section::Streams) {
            let entry = table.stream_entry(i)?;
            if (entry.hash, entry.offset) != (hash, offset) {
                break;
            }
            if entry.locator == locator {
                return Ok(true);
            }
            i += 1;
        }
        Ok(false)
    }

    /// Whether a category or event-type entry `(key, locator)` exists.
    pub fn holds_pair(&self, kind: Kind, key: &str, locator: u64) -> Result<bool> {
        let view = {
            let state = self.state.read();
            let in_memory = std::iter::once(&state.active)
                .chain(state.frozen.iter().map(|frozen| &**frozen))
                .any(|memtable| memtable.locators(kind, key).binary_search(&locator).is_ok());
            if in_memory {
                return Ok(true);
            }
            state.tables.clone()
        };
        let (hash, section) = (self.hash(kind, key), pair_section(kind));
        let Some(table) = covering_table_of_locator(&view, locator) else { return Ok(false) };
        let i = table.lower_bound(section, (hash, locator))?;
        Ok(i < table.len(section) && table.pair(section, i)? == (hash, locator))
    }

    /// The tables, for `verify` and tests.
    pub fn tables(&self) -> Vec<Arc<Table>> {
        self.state.read().tables.clone()
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        // The thread holds only a weak reference: it ends once it sees the index gone or stopping.
        self.background.jobs.lock().stopping = true;
        self.background.wake();
    }
}

/// A table entry's record carries the entry's stream; it must hold the entry's offset too, or the table is
/// damaged (the writer would continue the stream from a wrong offset).
fn confirm_offset(table: &Table, stream: &str, entry: u64, record: u64) -> Result<()> {
    if entry == record {
        return Ok(());
    }
    Err(Error::corrupt(
        table.path(),
        0,
        format!("an entry of stream {stream:?} says offset {entry}, but its record holds offset {record}"),
    ))
}

/// The section of a category or event-type key.
pub fn pair_section(kind: Kind) -> Section {
    match kind {
        Kind::Category => Section::Categories,
        Kind::EventType => Section::EventTypes,
        Kind::Stream => unreachable!("streams have their own section"),
    }
}

/// The table whose range holds `position`.
fn covering_table(tables: &[Arc<Table>], position: u64) -> Option<&Arc<Table>> {
    let after = tables.partition_point(|table| table.meta().first_position <= position);
    tables.get(after.checked_sub(1)?).filter(|table| position < table.meta().end_position)
}

/// The table whose range holds the record at `locator`: locators grow with positions and tables are contiguous,
/// so it is the first whose end lies beyond it (each table starts where the one before it ends).
fn covering_table_of_locator(tables: &[Arc<Table>], locator: u64) -> Option<&Arc<Table>> {
    let i = tables.partition_point(|table| table.meta().end_locator <= locator);
    tables.get(i).filter(|table| locator <= table.meta().last_locator)
}

/// The position entry at or before `position` in `table`: (position, locator).
fn table_position_start(table: &Table, position: u64) -> Result<(u64, u64)> {
    let i = table.lower_bound(Section::Positions, (position + 1, 0))?;
    let entry = table.position_entry(i.checked_sub(1).ok_or_else(|| {
        Error::corrupt(table.path(), 0, "the positions section does not start at the table's first position")
    })?)?;
    Ok((entry.position, entry.locator))
}

/// The background threads' queue: one writes frozen memtables out, the other merges tables.
#[derive(Default)]
struct Background {
    jobs: Mutex<Jobs>,
    /// Wakes the threads.
    ready: Condvar,
    /// Signals that a frozen memtable was written (or the flusher stopped).
    done: Condvar,
    /// The flusher's and the merger's.
    handles: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct Jobs {
    /// Write every frozen memtable out, then stop; stop merging.
    stopping: bool,
    /// Stop at once, writing nothing more: the open that made this index failed.
    abandoned: bool,
    /// The flusher has stopped.
    stopped: bool,
    /// The last failure to write a table; the memtable stays frozen (and in use) and is tried again.
    failure: Option<Error>,
}

impl Background {
    fn wake(&self) {
        let _jobs = self.jobs.lock();
        self.ready.notify_all();
    }
}

/// `NonZeroUsize` of an option, at least 1.
pub fn at_least_one(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}
