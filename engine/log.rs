//! The log: the ordered set of segments, and finding a record by locator or by global position.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::frame::{self, DecodeError, Frame};
use crate::index::Names;
use crate::segment::{split_locator, Segment, SEGMENT_HEADER_LEN};

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

    /// Decodes and checks the record at `locator`.
    pub fn read(&self, locator: u64) -> Result<(Arc<Segment>, usize, Frame)> {
        let (ordinal, offset) = split_locator(locator);
        let segment = self.segment(ordinal).ok_or_else(|| {
            Error::corrupt(&self.dir, u64::from(offset), format!("locator points into missing segment {ordinal}"))
        })?;
        let frame = decode_at(&segment, offset as usize)?;
        Ok((segment, offset as usize, frame))
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

impl Log {
    /// Whether the record at `locator` belongs to `stream`, read with `pread` rather than through the mapping.
    /// For checks at open: a fault on the mapping maps a large folio (hundreds of KiB here) into the process,
    /// which a few hundred spread-out checks turn into a hundred MiB of resident memory.
    pub fn is_by_read(&self, locator: u64, stream: &str) -> bool {
        let (ordinal, at) = split_locator(locator);
        let Some(segment) = self.segment(ordinal) else { return false };
        let mut buf = [0u8; frame::HEADER_LEN + frame::STREAM_NAME_BYTES_MAX];
        let len = buf.len().min(segment.size().saturating_sub(u64::from(at)) as usize);
        use std::os::unix::fs::FileExt;
        if (at as usize) < SEGMENT_HEADER_LEN || segment.file().read_exact_at(&mut buf[..len], u64::from(at)).is_err() {
            return false;
        }
        frame::peek_stream(&buf[..len]) == Some(stream.as_bytes())
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
