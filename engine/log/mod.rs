//! The log: the ordered set of segments, and finding a record by locator or by global position. Its parts, each
//! in its own file: one record's bytes (`frame`), one segment file (`segment`), the group-commit writer
//! (`writer`), opening and recovering the log (`recovery`), the index checkpoint (`checkpoint`), `verify`, and
//! the I/O layer every write goes through (`io`).

pub(crate) mod checkpoint;
pub(crate) mod frame;
pub(crate) mod io;
pub(crate) mod recovery;
pub(crate) mod segment;
pub(crate) mod verify;
pub(crate) mod writer;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::index::Names;
use crate::log::frame::{DecodeError, Frame};
use crate::log::io::Io;
use crate::log::segment::{split_locator, Segment, SEGMENT_HEADER_LEN};

/// The segments of one store, ordered by ordinal (consecutive). `Send + Sync`: the writer thread appends
/// segments while readers look them up.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    segments: RwLock<Vec<Arc<Segment>>>,
}

impl Log {
    /// A log over `segments`, which must be non-empty with consecutive ordinals and increasing bases.
    pub fn new(dir: PathBuf, segments: Vec<Arc<Segment>>) -> Self {
        assert!(!segments.is_empty());
        for pair in segments.windows(2) {
            assert_eq!(pair[0].ordinal() + 1, pair[1].ordinal());
            assert!(pair[0].base_position() <= pair[1].base_position());
        }
        Log { dir, segments: RwLock::new(segments) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The segment with this ordinal, if it exists.
    pub fn segment(&self, ordinal: u32) -> Option<Arc<Segment>> {
        let segments = self.segments.read();
        let first = segments[0].ordinal();
        let index = ordinal.checked_sub(first)? as usize;
        segments.get(index).cloned()
    }

    /// Every segment, oldest first.
    pub fn segments(&self) -> Vec<Arc<Segment>> {
        self.segments.read().clone()
    }

    /// Adds a new newest segment.
    pub fn push(&self, segment: Arc<Segment>) {
        let mut segments = self.segments.write();
        let last = segments.last().expect("a log has a segment");
        assert_eq!(last.ordinal() + 1, segment.ordinal());
        assert!(last.base_position() <= segment.base_position());
        segments.push(segment);
    }

    /// The segment that holds `position`: the last one whose base is at or below it.
    pub fn segment_for_position(&self, position: u64) -> Arc<Segment> {
        let segments = self.segments.read();
        let after = segments.partition_point(|segment| segment.base_position() <= position);
        segments[after.saturating_sub(1)].clone()
    }

    /// Runs `look` on the bytes at `locator`, to the end of its segment (no check of what they hold), borrowed
    /// from the segment: no `Bytes` slice (and its reference count) per lookup.
    fn with_bytes_at<T>(&self, locator: u64, look: impl FnOnce(&[u8]) -> T) -> Option<T> {
        let (ordinal, offset) = split_locator(locator);
        let segment = self.segment(ordinal)?;
        let bytes = segment.bytes();
        ((offset as usize) < bytes.len() && offset as usize >= SEGMENT_HEADER_LEN)
            .then(|| look(&bytes[offset as usize..]))
    }
}

/// Decodes the frame at `offset` of `segment`, turning any failure into `Corrupt` with file and offset.
pub fn decode_at(segment: &Segment, offset: usize) -> Result<Frame> {
    let bytes = segment.bytes();
    if offset < SEGMENT_HEADER_LEN || offset >= bytes.len() {
        return Err(Error::corrupt(segment.path(), offset as u64, "record offset outside the segment"));
    }
    frame::decode(&bytes[offset..]).map_err(|err| match err {
        DecodeError::End => {
            Error::corrupt(segment.path(), offset as u64, "expected a record, found the end of the log")
        }
        other => Error::corrupt(segment.path(), offset as u64, other.to_string()),
    })
}

/// Stream names read with `pread` through the I/O layer, never through the mapping: for recovery and
/// `Store::verify`, where a media error must become an `Error` rather than SIGBUS (and where a few hundred
/// spread-out checks through the mapping would each fault a large folio into memory).
///
/// [`Names`] answers plain values, so a failed read answers "no" (or a marker name) and is kept: the caller
/// must call [`take_failure`](Self::take_failure) after the index calls that read names.
pub struct PreadNames<'a> {
    log: &'a Log,
    io: &'a Io,
    failure: RefCell<Option<Error>>,
}

impl<'a> PreadNames<'a> {
    pub fn new(log: &'a Log, io: &'a Io) -> Self {
        PreadNames { log, io, failure: RefCell::new(None) }
    }

    /// The first read that failed since the last call, as `Err`.
    pub fn take_failure(&self) -> Result<()> {
        self.failure.borrow_mut().take().map_or(Ok(()), Err)
    }

    /// Reads `len` bytes (fewer at the segment's end) at `locator`; `None` if it points outside the log or the
    /// read failed (the failure is kept).
    fn read(&self, locator: u64, len: usize) -> Option<Vec<u8>> {
        let (ordinal, at) = split_locator(locator);
        let segment = self.log.segment(ordinal)?;
        if (at as usize) < SEGMENT_HEADER_LEN || u64::from(at) >= segment.size() {
            return None;
        }
        let mut buf = vec![0u8; len.min((segment.size() - u64::from(at)) as usize)];
        match self.io.read_at(segment.file(), segment.path(), &mut buf, u64::from(at)) {
            Ok(()) => Some(buf),
            Err(err) => {
                let context = format!("reading segment {} at byte {at}", segment.path().display());
                self.failure.borrow_mut().get_or_insert(Error::io(context, err));
                None
            }
        }
    }

    fn name_bytes(&self, locator: u64) -> Option<Vec<u8>> {
        let head = self.read(locator, frame::HEADER_LEN + frame::STREAM_NAME_BYTES_MAX)?;
        frame::peek_stream(&head).map(<[u8]>::to_vec)
    }

    /// Whether the record at `locator` belongs to `stream`: only the name bytes are compared, no CRC.
    pub fn carries(&self, locator: u64, stream: &str) -> bool {
        self.name_bytes(locator).is_some_and(|name| name == stream.as_bytes())
    }
}

impl Names for PreadNames<'_> {
    /// As [`Log`]'s: a damaged record still counts as the stream's, so that the damage is reported where the
    /// stream is read instead of the stream silently vanishing.
    fn is(&self, locator: u64, stream: &str) -> bool {
        if self.carries(locator, stream) {
            return true;
        }
        let Some(head) = self.read(locator, frame::HEADER_LEN) else { return false };
        let len = head.get(..4).map_or(0, |len| u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize);
        self.read(locator, len.max(frame::HEADER_LEN)).is_some_and(|bytes| frame::decode(&bytes).is_err())
    }

    fn name(&self, locator: u64) -> String {
        self.name_bytes(locator)
            .map(|name| String::from_utf8_lossy(&name).into_owned())
            .unwrap_or_else(|| format!("\u{1}unreadable record at {locator:#x}"))
    }
}

impl Names for Log {
    /// A record whose name differs is normally another stream's (a shared hash slot). But if the record is
    /// damaged (its CRC covers the name), it still counts as the stream's: otherwise the stream would silently
    /// vanish and its next append restart it at offset 0; this way its reads and `verify` report the damage.
    fn is(&self, locator: u64, stream: &str) -> bool {
        self.with_bytes_at(locator, |bytes| {
            frame::peek_stream(bytes) == Some(stream.as_bytes()) || frame::decode(bytes).is_err()
        })
        .unwrap_or(false)
    }

    fn name(&self, locator: u64) -> String {
        // Index locators point at records; if bytes on disk were damaged under one, the name becomes a marker
        // that no valid stream name can equal (it holds a control character), never a panic.
        self.with_bytes_at(locator, |bytes| {
            frame::peek_stream(bytes).map(|name| String::from_utf8_lossy(name).into_owned())
        })
        .flatten()
        .unwrap_or_else(|| format!("\u{1}unreadable record at {locator:#x}"))
    }
}
