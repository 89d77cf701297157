//! The log: the ordered set of segments, and finding a record by locator or by global position. Its parts, each
//! in its own file: one record's bytes (`frame`), one segment file (`segment`), the group-commit writer
//! (`writer`), opening and recovering the log (`recovery`), `verify`, and
//! the I/O layer every write goes through (`io`).

pub(crate) mod backup;
pub(crate) mod compact;
pub(crate) mod follow;
pub(crate) mod frame;
pub(crate) mod head;
pub(crate) mod io;
pub(crate) mod recovery;
pub(crate) mod segment;
pub(crate) mod verify;
pub(crate) mod writer;

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lru::LruCache;
use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::log::frame::{DecodeError, Frame};
use crate::log::io::Io;
use crate::log::segment::{file_name, split_locator, Segment, SEGMENT_HEADER_LEN};

/// The segments of one store, by ordinal (0, 1, …). `Send + Sync`: the writer thread adds segments while
/// readers look them up.
///
/// Only the base positions of all segments are kept (8 bytes each); the segments themselves are opened and
/// mapped on demand, and at most `open_segments_max` stay mapped (least recently used first out). A segment a
/// reader still holds (an `Arc<Segment>`, or a `Bytes` slice of its mapping) stays mapped until it lets go.
/// Segments hold no file descriptor, so open files do not grow with the log either.
pub struct Log {
    dir: PathBuf,
    /// The base position of every segment, by ordinal.
    bases: RwLock<Vec<u64>>,
    open: Mutex<LruCache<u32, Arc<Segment>>>,
    /// Most entries of `open`. (Not the cache's own capacity: `LruCache::new` allocates for it up front, and
    /// `usize::MAX` is a valid option.)
    open_max: usize,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("dir", &self.dir).field("segments", &self.bases.read().len()).finish()
    }
}

/// How a check reads the log: through the mapping (readers, the writer), or with `pread` (recovery and
/// `verify`, where a media error must be an error, not SIGBUS).
#[derive(Clone, Copy)]
pub enum Via<'a> {
    Mapping,
    Pread(&'a Io),
}

impl Log {
    /// A log over segments with these base positions (non-empty, strictly increasing), keeping at most
    /// `open_segments_max` of them mapped.
    pub fn new(dir: PathBuf, bases: Vec<u64>, open_segments_max: NonZeroUsize) -> Self {
        assert!(!bases.is_empty());
        assert!(bases.windows(2).all(|pair| pair[0] < pair[1]));
        Log {
            dir,
            bases: RwLock::new(bases),
            open: Mutex::new(LruCache::unbounded()),
            open_max: open_segments_max.get(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many segments the log has.
    pub fn segment_count(&self) -> u32 {
        self.bases.read().len() as u32
    }

    /// The base position of segment `ordinal`, if it exists.
    pub fn base(&self, ordinal: u32) -> Option<u64> {
        self.bases.read().get(ordinal as usize).copied()
    }

    /// The segment with this ordinal, mapped (opened and checked now if it is not mapped already). `Corrupt` if
    /// it is missing or its header does not fit.
    pub fn segment(&self, ordinal: u32) -> Result<Arc<Segment>> {
        if let Some(segment) = self.open.lock().get(&ordinal) {
            return Ok(segment.clone());
        }
        let Some(base) = self.base(ordinal) else {
            return Err(Error::corrupt(&self.dir, u64::from(ordinal), format!("no segment {ordinal} in the log")));
        };
        // Opened outside the lock: two threads may map the same segment at once; one mapping wins the cache.
        let segment = Arc::new(Segment::open(&self.dir.join(file_name(base)), Some((ordinal, base)))?);
        if let Some(records) = segment.records_when_sealed() {
            // A compacted segment is sealed, and its relocation section names every position up to its
            // successor's base (which a read-only opener may not have listed yet).
            if self.base(ordinal + 1).is_none() {
                self.discover()?;
            }
            let end = self.base(ordinal + 1);
            if end.and_then(|end| end.checked_sub(base)) != Some(u64::from(records)) {
                let reason = format!("compacted segment of {records} records, its successor starts at {end:?}");
                return Err(Error::corrupt(segment.path(), 36, reason));
            }
        }
        self.keep_mapped(ordinal, segment.clone());
        Ok(segment)
    }

    /// Adds the segments that the directory lists after the last known one (a read-only opener, following a
    /// writer that rolls). Returns whether there were any.
    pub fn discover(&self) -> Result<bool> {
        let last = *self.bases.read().last().expect("a log has a segment");
        let mut found: Vec<u64> = std::fs::read_dir(&self.dir)
            .map_err(|err| Error::io(format!("listing {}", self.dir.display()), err))?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| segment::parse_file_name(&entry.file_name().to_string_lossy()))
            .filter(|&base| base > last)
            .collect();
        found.sort_unstable();
        let any = !found.is_empty();
        self.bases.write().extend(found);
        Ok(any)
    }

    /// How many segments are mapped now (by this log's cache).
    pub fn mapped_count(&self) -> usize {
        self.open.lock().len()
    }

    /// Adds a new newest segment.
    pub fn push(&self, segment: Arc<Segment>) {
        let mut bases = self.bases.write();
        assert_eq!(bases.len() as u32, segment.ordinal());
        assert!(bases.last().is_none_or(|&last| last <= segment.base_position()));
        bases.push(segment.base_position());
        self.keep_mapped(segment.ordinal(), segment);
    }

    /// Like [`Log::segment`], but maps the segment's file again if compaction replaced it since it was mapped
    /// (one `stat`): for a read-only store, whose writer compacts in another process, before it reads a
    /// segment by name with `pread`.
    pub fn current_segment(&self, ordinal: u32) -> Result<Arc<Segment>> {
        let segment = self.segment(ordinal)?;
        if segment.is_current() {
            return Ok(segment);
        }
        self.forget(ordinal);
        self.segment(ordinal)
    }

    /// The ordinal of the segment holding `position` (the last one whose base is at or below it).
    pub fn ordinal_of(&self, position: u64) -> u32 {
        let bases = self.bases.read();
        (bases.partition_point(|&base| base <= position).max(1) - 1) as u32
    }

    /// Drops segment `ordinal` from the cache of mapped segments: compaction replaced its file, and the next
    /// lookup maps the new one. Readers holding the old one keep reading it (its own locators stay valid in it).
    pub fn forget(&self, ordinal: u32) {
        self.open.lock().pop(&ordinal);
    }

    /// The segment and the byte offset in it of the record at `locator` (an original offset, as the index and
    /// back-links hold them); `None` if compaction removed it.
    pub fn located(&self, locator: u64) -> Result<Option<(Arc<Segment>, usize)>> {
        let (ordinal, at) = split_locator(locator);
        let segment = self.segment(ordinal)?;
        Ok(segment.physical(at).map(|here| (segment, here as usize)))
    }

    /// Like [`Log::located`], for a record that compaction never removes (a stream's last record, the last
    /// record of an index table): its removal is `Corrupt`.
    pub fn kept(&self, locator: u64) -> Result<(Arc<Segment>, usize)> {
        let (ordinal, at) = split_locator(locator);
        let segment = self.segment(ordinal)?;
        match segment.physical(at) {
            Some(here) => Ok((segment, here as usize)),
            None => Err(Error::corrupt(segment.path(), u64::from(at), "no record here: compaction removed it")),
        }
    }

    /// Puts `segment` in the cache of mapped segments, unmapping the least recently used one beyond the bound
    /// (a reader that holds it keeps its mapping until it lets go).
    fn keep_mapped(&self, ordinal: u32, segment: Arc<Segment>) {
        let mut open = self.open.lock();
        open.put(ordinal, segment);
        while open.len() > self.open_max {
            open.pop_lru();
        }
    }

    /// The offset of the record at `locator` if it belongs to `stream`; `None` if it is another stream's (two
    /// names may share a hash in the index). A damaged record is `Corrupt`, never `None`, or a stream whose
    /// last record was damaged would silently vanish and its next append restart it.
    /// A record compaction removed is no stream's (`None`).
    pub fn offset_in(&self, locator: u64, stream: &str, via: Via<'_>) -> Result<Option<u64>> {
        let (ordinal, at) = split_locator(locator);
        let segment = self.segment(ordinal)?;
        let Some(at) = segment.physical(at) else { return Ok(None) };
        let at = at as usize;
        let offset = match via {
            Via::Mapping => {
                if !self.carries(locator, stream, via)? {
                    return Ok(None);
                }
                // `carries` saw a whole header here.
                frame::peek_position_prev(&segment.bytes()[at..at + frame::HEADER_LEN])
            }
            Via::Pread(io) => {
                // One window (one open and one read of the file) for the name and the offset: recovery looks up
                // every stream it replays this way, and a second open per lookup was a fifth of its time.
                if at < SEGMENT_HEADER_LEN || at >= segment.bytes().len() {
                    return Err(Error::corrupt(segment.path(), at as u64, "an index entry points outside the segment"));
                }
                let mut window = segment::PreadWindow::small(&segment, io);
                if !carries_via_pread(&segment, &mut window, at, stream)? {
                    return Ok(None);
                }
                frame::peek_position_prev(window.bytes(at, frame::HEADER_LEN)?)
            }
        };
        Ok(offset.map(|(_, offset, _)| offset))
    }

    /// Whether the record at `locator` belongs to `stream`. A record whose name differs is another stream's
    /// (two names may share a hash in the index), unless the record is damaged: then `Corrupt`, never "no",
    /// or a stream whose last record was damaged would silently vanish and its next append restart it.
    /// A record compaction removed is no stream's (false). `locator` holds an original offset; the record is
    /// looked up where compaction moved it.
    pub fn carries(&self, locator: u64, stream: &str, via: Via<'_>) -> Result<bool> {
        let (ordinal, at) = split_locator(locator);
        let segment = self.segment(ordinal)?;
        let Some(at) = segment.physical(at) else { return Ok(false) };
        let at = at as usize;
        if at < SEGMENT_HEADER_LEN || at >= segment.bytes().len() {
            return Err(Error::corrupt(segment.path(), at as u64, "an index entry points outside the segment"));
        }
        match via {
            Via::Mapping => {
                let bytes = &segment.bytes()[at..];
                if frame::peek_stream(bytes) == Some(stream.as_bytes()) {
                    return Ok(true);
                }
                decode_at(&segment, at).map(|_| false)
            }
            Via::Pread(io) => carries_via_pread(&segment, &mut segment::PreadWindow::small(&segment, io), at, stream),
        }
    }
}

/// [`Log::carries`] through `window` (with `pread`), `at` already checked to lie in the segment.
fn carries_via_pread(
    segment: &Segment,
    window: &mut segment::PreadWindow<'_>,
    at: usize,
    stream: &str,
) -> Result<bool> {
    let named = frame::peek_stream(window.bytes(at, frame::HEADER_LEN + frame::STREAM_NAME_BYTES_MAX)?)
        == Some(stream.as_bytes());
    if named {
        return Ok(true);
    }
    match window.frame(at)? {
        Ok(_) => Ok(false),
        Err(err) => Err(corrupt_frame(segment, at, err)),
    }
}

/// Decodes the frame at `offset` of `segment`, turning any failure into `Corrupt` with file and offset.
pub fn decode_at(segment: &Segment, offset: usize) -> Result<Frame> {
    let bytes = segment.bytes();
    if offset < SEGMENT_HEADER_LEN || offset >= bytes.len() {
        return Err(Error::corrupt(segment.path(), offset as u64, "record offset outside the segment"));
    }
    frame::decode(&bytes[offset..]).map_err(|err| corrupt_frame(segment, offset, err))
}

/// The `Corrupt` error for bytes at `offset` of `segment` that are no valid frame.
pub fn corrupt_frame(segment: &Segment, offset: usize, err: DecodeError) -> Error {
    match err {
        DecodeError::End => {
            Error::corrupt(segment.path(), offset as u64, "expected a record, found the end of the log")
        }
        other => Error::corrupt(segment.path(), offset as u64, other.to_string()),
    }
}
