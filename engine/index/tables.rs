//! The set of tables: choosing and checking them at open, and the background thread that writes frozen
//! memtables out as tables and merges runs of small tables into larger ones.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::memtable::Memtable;
use super::table::{self, Meta, Section, Table, PAGE_BYTES};
use super::{Background, Index, Resume};
use crate::error::{Error, IoContext, Result};
use crate::log::frame::NO_PREV;
use crate::log::io::Io;
use crate::log::segment::{locator, split_locator, PreadWindow, SEGMENT_HEADER_LEN};
use crate::log::{corrupt_frame, Log};

/// Tables of the same size tier merged at once.
const MERGE_WIDTH: usize = 4;
/// The smallest tier holds tables up to this size; each next tier four times more.
const TIER_BASE_BYTES: u64 = 256 << 10;

/// What `load` found.
pub struct Found {
    pub tables: Vec<Arc<Table>>,
    pub resume: Resume,
    pub seed: u64,
    pub dropped: Option<String>,
}

/// Whether loading may change the index directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The store's writer: creates the directory, removes unfinished and unused files.
    Write,
    /// A read-only opener: changes nothing (the writer, perhaps in another process, owns the files).
    ReadOnly,
}

/// Opens the index directory: removes unfinished files, chooses the tables that cover positions from 0 without
/// a gap (a merged table over its inputs), opens and checks them, and deletes every other table file. With
/// `Access::ReadOnly` it only chooses, opens and checks: nothing is created or deleted.
pub fn load(dir: &Path, log: &Log, io: &Io, separator: char, hash_mask: u64, access: Access) -> Result<Found> {
    let remove = |path: &Path| match access {
        Access::Write => remove(path),
        Access::ReadOnly => Ok(()),
    };
    match access {
        Access::Write => match std::fs::create_dir(dir) {
            Ok(()) => {
                let parent = dir.parent().expect("the index directory is inside the store");
                io.sync_dir(parent).context(|| format!("syncing {}", parent.display()))?;
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(Error::io(format!("creating {}", dir.display()), err)),
        },
        Access::ReadOnly if !dir.is_dir() => {
            return Ok(Found { tables: Vec::new(), resume: Resume::start(), seed: rand_seed(), dropped: None })
        }
        Access::ReadOnly => {}
    }
    let mut candidates: Vec<(u64, u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).context(|| format!("listing {}", dir.display()))? {
        let entry = entry.context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".tmp") {
            // A table whose write did not finish: never renamed into place, nothing refers to it.
            remove(&entry.path())?;
        } else if let Some((first, end)) = table::parse_file_name(&name) {
            candidates.push((first, end, entry.path()));
        }
    }
    // The cover: from position 0, at each start the table reaching furthest (a merge's output over inputs
    // whose deletion a crash interrupted).
    candidates.sort_by_key(|&(first, end, _)| (first, std::cmp::Reverse(end)));
    let mut chosen = Vec::new();
    let mut next = 0;
    for (first, end, path) in candidates {
        if first == next && end > first {
            chosen.push(path);
            next = end;
        } else {
            remove(&path)?;
        }
    }

    let mut tables: Vec<Arc<Table>> = Vec::new();
    let mut dropped = None;
    let mut paths = chosen.into_iter();
    for path in paths.by_ref() {
        let checked = match Table::open(&path) {
            // A read-only opener races with the writer's merges: an input it listed may be gone. It stops there
            // (the tables before it are a valid cover; the log after them is replayed).
            Err(Error::Io { source, .. })
                if access == Access::ReadOnly && source.kind() == std::io::ErrorKind::NotFound =>
            {
                dropped = Some(format!("{}: deleted while the index was read", path.display()));
                break;
            }
            Ok(table) => {
                let seed = tables.first().map_or(table.meta().seed, |first| first.meta().seed);
                check_against_log(&table, log, io, (seed, separator, hash_mask))?.map(|()| table)
            }
            Err(err) => Err(err.to_string()),
        };
        match checked {
            Ok(table) => tables.push(Arc::new(table)),
            Err(reason) => {
                dropped = Some(format!("{}: {reason}", path.display()));
                remove(&path)?;
                break;
            }
        }
    }
    // Everything after a dropped table goes too: the log is replayed from where the kept ones end.
    for path in paths {
        remove(&path)?;
    }
    let resume = tables.last().map_or(Resume::start(), |table| {
        let meta = table.meta();
        Resume { position: meta.end_position, locator: meta.end_locator, last_timestamp: meta.last_timestamp }
    });
    let seed = tables.first().map_or_else(rand_seed, |table| table.meta().seed);
    Ok(Found { tables, resume, seed, dropped })
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", path.display()), err))
        }
        _ => Ok(()),
    }
}

/// A fresh random seed for a new index (std's hasher keys are random per process).
fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(std::process::id().into());
    hasher.finish()
}

/// Checks that `table` describes this log: same seed and separator as the rest, and the record it names as
/// its last is in the log where it says, with its position and id, and its end follows that record.
/// `Ok(Err(reason))`: it does not (a stale or foreign table: drop it and replay). `Err`: the open must fail,
/// because the table (whose own CRC holds) vouches for a record that is damaged: a table is written only after
/// every record it covers was synced, so that record was durable and its damage is damage to synced data.
fn check_against_log(
    table: &Table,
    log: &Log,
    io: &Io,
    (seed, separator, hash_mask): (u64, char, u64),
) -> Result<Result<(), String>> {
    let meta = table.meta();
    if meta.hash_mask != hash_mask {
        return Ok(Err(format!("made with hash mask {:#x}, the store now uses {hash_mask:#x}", meta.hash_mask)));
    }
    if meta.seed != seed {
        return Ok(Err("its hash seed differs from the other tables'".into()));
    }
    if meta.separator != separator {
        return Ok(Err(format!("made with category separator {:?}, the store now uses {separator:?}", meta.separator)));
    }
    let (ordinal, at) = split_locator(meta.last_locator);
    if meta.last_locator == NO_PREV || ordinal >= log.segment_count() {
        return Ok(Err("its last record lies beyond the log".into()));
    }
    let segment = log.segment(ordinal)?;
    if (at as usize) < SEGMENT_HEADER_LEN || (!segment.is_compacted() && u64::from(at) >= segment.size()) {
        return Ok(Err("its last record lies outside its segment".into()));
    }
    // Locators hold original offsets. In a compacted segment the relocation section names the record of every
    // position, kept or removed: a removed last record is checked by its position and place alone.
    let logical = at;
    if segment.is_compacted() {
        let last = meta.end_position.checked_sub(1).and_then(|last| segment.logical_of_position(last));
        if last != Some(logical) {
            return Ok(Err("its last record is not where its compacted segment has that position".into()));
        }
        let next_base = log.base(ordinal + 1);
        let end = match segment.logical_of_position(meta.end_position) {
            Some(next) => locator(ordinal, next),
            None if next_base == Some(meta.end_position) => locator(ordinal + 1, SEGMENT_HEADER_LEN as u32),
            None => return Ok(Err("its end lies beyond its compacted segment".into())),
        };
        if meta.end_locator != end {
            return Ok(Err("its end does not follow its last record".into()));
        }
        if segment.physical(logical).is_none() {
            return Ok(Ok(()));
        }
    }
    let Some(at) = segment.physical(logical) else { unreachable!("kept, or a segment never compacted") };
    let frame = match PreadWindow::small(&segment, io).frame(at as usize)? {
        Ok(frame) => frame,
        // A table of this log vouches for its last record: it was synced before the table was written, so its
        // damage is damage to synced data (and dropping the table could let it be cut as a torn tail). A table
        // of another log points anywhere: its first record tells the two apart.
        Err(err) if first_record_matches(table, log, io)? => {
            let Error::Corrupt { file, offset, reason } = corrupt_frame(&segment, at as usize, err) else {
                unreachable!("corrupt_frame makes Corrupt")
            };
            let reason = format!("the last record index table {} covers is damaged: {reason}", table.path().display());
            return Err(Error::Corrupt { file, offset, reason });
        }
        Err(_) => return Ok(Err("its last record is not a record of this log".into())),
    };
    if frame.header.position.checked_add(1) != Some(meta.end_position) || frame.header.event_id != meta.last_event_id {
        return Ok(Err("its last record is another record of the log".into()));
    }
    // Replay resumes inside this segment without reading its start, so nothing else compares its base with
    // the positions it holds: a base beyond them would make the writer's next roll go backwards.
    if segment.base_position() > frame.header.position {
        return Ok(Err(format!(
            "its last record (position {}) lies in a segment that starts at position {}",
            frame.header.position,
            segment.base_position()
        )));
    }
    let after = locator(ordinal, logical + frame.stride() as u32);
    let rolled = meta.end_locator == locator(ordinal + 1, SEGMENT_HEADER_LEN as u32)
        && log.base(ordinal + 1) == Some(meta.end_position);
    if meta.end_locator != after && !rolled {
        return Ok(Err("its end does not follow its last record".into()));
    }
    Ok(Ok(()))
}

/// Whether the record a table names as its first (its first position entry) is in the log where it says.
fn first_record_matches(table: &Table, log: &Log, io: &Io) -> Result<bool> {
    let Ok(first) = table.position_entry(0) else { return Ok(false) };
    let (ordinal, at) = split_locator(first.locator);
    if first.position != table.meta().first_position || ordinal >= log.segment_count() {
        return Ok(false);
    }
    let segment = log.segment(ordinal)?;
    if (at as usize) < SEGMENT_HEADER_LEN || (!segment.is_compacted() && u64::from(at) >= segment.size()) {
        return Ok(false);
    }
    let Some(at) = segment.physical(at) else { return Ok(false) };
    let decoded = PreadWindow::small(&segment, io).frame(at as usize)?;
    Ok(decoded
        .is_ok_and(|frame| frame.header.position == first.position && frame.header.timestamp_nanos == first.timestamp))
}

// ---------------------------------------------------------------------------------------------------------
// The background thread.

/// The flusher's body: writes frozen memtables out (oldest first) and stops once the index is closing (after
/// writing every frozen memtable) or gone. A failed write is retried every second.
pub fn flush_work(index: Weak<Index>, background: Arc<Background>) {
    // However the thread ends (a panic included), the writer must not wait for it at a roll.
    let _stopped = MarkStopped(&background);
    loop {
        let Some(strong) = index.upgrade() else { return };
        if background.jobs.lock().abandoned {
            return;
        }
        let oldest_frozen = strong.state.read().frozen.first().cloned();
        if let Some(memtable) = oldest_frozen {
            match flush(&strong, &memtable) {
                Ok(()) => background.jobs.lock().failure = None,
                Err(err) => {
                    ::log::warn!("annals: writing an index table failed (the entries stay in memory): {err}");
                    // IMPORTANT: let go of the index before taking the jobs lock. If this is the last reference,
                    // the index's drop runs here, and it takes that lock (parking_lot's is not reentrant): a
                    // failed open's thread used to block there for good.
                    drop(strong);
                    let mut jobs = background.jobs.lock();
                    jobs.failure = Some(err);
                    background.done.notify_all();
                    if jobs.stopping {
                        jobs.stopped = true;
                        return;
                    }
                    background.ready.wait_for(&mut jobs, Duration::from_secs(1));
                    continue;
                }
            }
            // A new table: the merger may have work.
            background.done.notify_all();
            background.ready.notify_all();
            continue;
        }
        let jobs = background.jobs.lock();
        // The close freezes the last memtable before it asks the thread to stop: one frozen since the check
        // above is still written out. (Checked under the jobs lock, which the freeze's wake-up takes too.)
        if jobs.stopping && strong.state.read().frozen.is_empty() {
            drop(jobs);
            background.done.notify_all();
            // (`MarkStopped` marks it stopped, after the index is let go.)
            return;
        }
        // IMPORTANT: not while holding the jobs lock (see above): this may be the index's last reference.
        drop(jobs);
        drop(strong);
        let mut jobs = background.jobs.lock();
        if !jobs.stopping && strong_frozen_is_empty(&index) {
            background.ready.wait_for(&mut jobs, Duration::from_secs(5));
        }
    }
}

/// Marks the flusher stopped when dropped.
struct MarkStopped<'a>(&'a Background);

impl Drop for MarkStopped<'_> {
    fn drop(&mut self) {
        self.0.jobs.lock().stopped = true;
        self.0.done.notify_all();
    }
}

/// Whether the index (if it still exists) has no frozen memtable waiting.
fn strong_frozen_is_empty(index: &Weak<Index>) -> bool {
    index.upgrade().is_none_or(|index| index.state.read().frozen.is_empty())
}

/// The merger's body: merges the newest run of `MERGE_WIDTH` tables of one tier whenever there is one, and stops
/// once the index is closing or gone (a merge in progress is abandoned: its inputs stay as they are).
pub fn merge_work(index: Weak<Index>, background: Arc<Background>) {
    loop {
        let Some(strong) = index.upgrade() else { return };
        let tables = strong.state.read().tables.clone();
        let candidate = merge_candidate(&tables);
        drop(tables);
        if background.jobs.lock().stopping {
            return;
        }
        if candidate.is_none() {
            // IMPORTANT: let go of the index before taking the jobs lock: if this is its last reference, the
            // index's drop runs here and takes that lock (not reentrant).
            drop(strong);
            let mut jobs = background.jobs.lock();
            if !jobs.stopping {
                background.ready.wait_for(&mut jobs, Duration::from_secs(5));
            }
            continue;
        }
        if let Some(range) = candidate {
            match merge(&strong, &background, range) {
                Ok(()) | Err(Error::Closed) => {}
                Err(err @ Error::Corrupt { .. }) => {
                    // Tables whose contents are damaged stay as they are (reads that need them report it);
                    // merging stops until the store is opened again.
                    ::log::warn!("annals: index tables can not be merged, merging stops: {err}");
                    return;
                }
                Err(err) => {
                    ::log::warn!("annals: merging index tables failed (they stay as they are): {err}");
                    drop(strong);
                    let mut jobs = background.jobs.lock();
                    if !jobs.stopping {
                        background.ready.wait_for(&mut jobs, Duration::from_secs(5));
                    }
                }
            }
        }
    }
}

/// Writes the oldest frozen memtable out as a table and puts the table in its place.
fn flush(index: &Index, memtable: &Arc<Memtable>) -> Result<()> {
    let meta = memtable.meta(index.seed.load(std::sync::atomic::Ordering::Relaxed), index.hash_mask);
    let contents = memtable.contents(index.seed.load(std::sync::atomic::Ordering::Relaxed), index.hash_mask);
    let path = table::write(&index.io, &index.dir, &meta, memtable.stream_count() as u64, contents)?;
    let table = Arc::new(Table::open(&path)?);
    let mut state = index.state.write();
    assert!(Arc::ptr_eq(&state.frozen[0], memtable), "only the flusher removes frozen memtables");
    state.frozen.remove(0);
    state.tables.push(table);
    Ok(())
}

/// The size tier of a table.
fn tier(table: &Table) -> u32 {
    (table.size() / TIER_BASE_BYTES).max(1).ilog(4)
}

/// The newest run of `MERGE_WIDTH` adjacent tables of one tier, if any.
fn merge_candidate(tables: &[Arc<Table>]) -> Option<std::ops::Range<usize>> {
    (0..=tables.len().checked_sub(MERGE_WIDTH)?).rev().map(|start| start..start + MERGE_WIDTH).find(|range| {
        let tier0 = tier(&tables[range.start]);
        tables[range.clone()].iter().all(|table| tier(table) == tier0)
    })
}

/// Merges `range` of the tables into one, puts it in their place and deletes their files. Gives up with
/// `Closed` if the index starts closing meanwhile.
fn merge(index: &Index, background: &Background, range: std::ops::Range<usize>) -> Result<()> {
    let inputs: Vec<Arc<Table>> = index.state.read().tables[range.clone()].to_vec();
    let (first, last) = (inputs[0].meta(), inputs[inputs.len() - 1].meta());
    let meta = Meta {
        seed: first.seed,
        first_position: first.first_position,
        end_position: last.end_position,
        end_locator: last.end_locator,
        last_locator: last.last_locator,
        last_event_id: last.last_event_id,
        first_timestamp: first.first_timestamp,
        last_timestamp: last.last_timestamp,
        new_streams: inputs.iter().map(|table| table.meta().new_streams).sum(),
        separator: first.separator,
        hash_mask: first.hash_mask,
    };
    let cancelled = || background.jobs.lock().stopping;
    // What the inputs hold comes from disk: entries out of order (which `table::write` asserts against, as it
    // must for the engine's own memtables) are damage to report, never a panic.
    let dir = index.dir.clone();
    let streams = Ordered::new(
        Merged::new(
            &inputs,
            cancelled,
            |table, i| {
                table.read_ahead(Section::Streams, i);
                table.stream_entry(i)
            },
            |table| table.len(Section::Streams),
        ),
        &dir,
        "stream",
        |entry: &table::StreamEntry| (entry.hash, entry.offset, entry.locator),
    );
    let categories = Ordered::new(
        Merged::new(
            &inputs,
            cancelled,
            |table, i| {
                table.read_ahead(Section::Categories, i);
                table.pair(Section::Categories, i)
            },
            |table| table.len(Section::Categories),
        ),
        &dir,
        "category",
        |&(hash, locator): &(u64, u64)| (hash, locator, 0),
    );
    let event_types = Ordered::new(
        Merged::new(
            &inputs,
            cancelled,
            |table, i| {
                table.read_ahead(Section::EventTypes, i);
                table.pair(Section::EventTypes, i)
            },
            |table| table.len(Section::EventTypes),
        ),
        &dir,
        "event-type",
        |&(hash, locator): &(u64, u64)| (hash, locator, 0),
    );
    // Tables are in position order: their position entries follow one another.
    let positions = Ordered::new(
        inputs.iter().flat_map(|table| {
            (0..table.len(Section::Positions)).map(move |i| {
                table.read_ahead(Section::Positions, i);
                table.position_entry(i)
            })
        }),
        &dir,
        "position",
        |entry: &table::PositionEntry| (entry.position, 0, 0),
    );
    let streams_hint = inputs.iter().map(|table| table.streams_hint()).sum();
    let contents = table::Contents { streams, categories, event_types, positions };
    let path = table::write(&index.io, &index.dir, &meta, streams_hint, contents)?;
    let merged = Arc::new(Table::open(&path)?);
    {
        let mut state = index.state.write();
        assert!(
            state.tables[range.clone()].iter().zip(&inputs).all(|(now, input)| Arc::ptr_eq(now, input)),
            "the flusher only appends tables, and only the merger replaces them"
        );
        state.tables.splice(range, [merged]);
    }
    // The inputs stay mapped for readers that hold them; their files go now. A crash before these deletions
    // leaves them beside the merged table, which the next open prefers.
    for input in inputs {
        remove(input.path())?;
    }
    Ok(())
}

/// Passes entries through while each one's key is greater than the one before; else ends with `Corrupt`.
struct Ordered<'a, I, K> {
    entries: I,
    dir: &'a Path,
    what: &'static str,
    key: K,
    previous: Option<(u64, u64, u64)>,
    failed: bool,
}

impl<'a, I, K> Ordered<'a, I, K> {
    fn new(entries: I, dir: &'a Path, what: &'static str, key: K) -> Self {
        Ordered { entries, dir, what, key, previous: None, failed: false }
    }
}

impl<T, I: Iterator<Item = Result<T>>, K: Fn(&T) -> (u64, u64, u64)> Iterator for Ordered<'_, I, K> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        if self.failed {
            return None;
        }
        let entry = match self.entries.next()? {
            Ok(entry) => entry,
            Err(err) => {
                self.failed = true;
                return Some(Err(err));
            }
        };
        let key = (self.key)(&entry);
        if self.previous.is_some_and(|previous| previous >= key) {
            self.failed = true;
            let reason = format!("the tables being merged hold {} entries out of order", self.what);
            return Some(Err(Error::corrupt(self.dir, 0, reason)));
        }
        self.previous = Some(key);
        Some(Ok(entry))
    }
}

/// A k-way merge of one section of several tables, in order. Checks `cancelled` now and then.
struct Merged<'a, T, C> {
    heads: Vec<Option<T>>,
    next: Vec<u64>,
    tables: &'a [Arc<Table>],
    read: fn(&Table, u64) -> Result<T>,
    len: fn(&Table) -> u64,
    cancelled: C,
    yielded: u64,
    failed: bool,
}

impl<'a, T: Ord + Copy, C: Fn() -> bool> Merged<'a, T, C> {
    fn new(tables: &'a [Arc<Table>], cancelled: C, read: fn(&Table, u64) -> Result<T>, len: fn(&Table) -> u64) -> Self {
        Merged {
            heads: vec![None; tables.len()],
            next: vec![0; tables.len()],
            tables,
            read,
            len,
            cancelled,
            yielded: 0,
            failed: false,
        }
    }

    fn fill(&mut self, k: usize) -> Result<()> {
        if self.heads[k].is_none() && self.next[k] < (self.len)(&self.tables[k]) {
            self.heads[k] = Some((self.read)(&self.tables[k], self.next[k])?);
            self.next[k] += 1;
        }
        Ok(())
    }
}

impl<T: Ord + Copy, C: Fn() -> bool> Iterator for Merged<'_, T, C> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        if self.failed {
            return None;
        }
        self.yielded += 1;
        if self.yielded.is_multiple_of(PAGE_BYTES as u64) && (self.cancelled)() {
            self.failed = true;
            return Some(Err(Error::Closed));
        }
        for k in 0..self.tables.len() {
            if let Err(err) = self.fill(k) {
                self.failed = true;
                return Some(Err(err));
            }
        }
        let k = (0..self.heads.len()).filter(|&k| self.heads[k].is_some()).min_by_key(|&k| self.heads[k])?;
        self.heads[k].take().map(Ok)
    }
}
