//! Zero-copy readers: recorded events whose payloads are slices of the mapped segments, and iterators over
//! the whole log and over one stream, forwards and backwards.
//!
//! Every iterator is a snapshot: it yields what was committed when it was created and never blocks the
//! writer. Each record is fully checked (CRC, expected position, offset and stream) before it is handed out;
//! a check that fails yields one `Err(Corrupt)` and ends the iteration.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::RwLock;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::index::Index;
use crate::log::frame::{self, Frame, NO_PREV};
use crate::log::segment::{Segment, SEGMENT_HEADER_LEN};
use crate::log::{decode_at, Log};

/// One event as stored, with the offset and position it was given at commit.
///
/// `data()` and `metadata()` are slices of the mapped segment file: no copy is made, and they stay valid for
/// as long as this value (or a clone of the `Bytes`) lives, even after the store is closed. Cloning a
/// `RecordedEvent` is cheap (reference counts). `Send + Sync`.
#[derive(Clone)]
pub struct RecordedEvent {
    frame: Bytes,
    stream: Range<usize>,
    event_type: Range<usize>,
    data: Bytes,
    metadata: Bytes,
    position: u64,
    offset: u64,
    timestamp_nanos: u64,
    event_id: Uuid,
    codec: u8,
}

impl RecordedEvent {
    fn new(segment: &Segment, at: usize, frame: &Frame) -> Self {
        let bytes = segment.bytes().slice(at..at + frame.len);
        RecordedEvent {
            data: bytes.slice(frame.data.clone()),
            metadata: bytes.slice(frame.metadata.clone()),
            frame: bytes,
            stream: frame.stream.clone(),
            event_type: frame.event_type.clone(),
            position: frame.header.position,
            offset: frame.header.offset,
            timestamp_nanos: frame.header.timestamp_nanos,
            event_id: frame.header.event_id,
            codec: frame.header.codec,
        }
    }

    fn str_at(&self, range: &Range<usize>) -> &str {
        std::str::from_utf8(&self.frame[range.clone()]).expect("names were checked to be UTF-8 when decoded")
    }

    /// The stream the event belongs to.
    pub fn stream(&self) -> &str {
        self.str_at(&self.stream)
    }

    /// The event's offset within its stream (0 for the stream's first event).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The event's global position across all streams (dense, from 0).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The event type given at append.
    pub fn event_type(&self) -> &str {
        self.str_at(&self.event_type)
    }

    /// The event's id: the one given with [`EventData::with_id`](crate::EventData::with_id), or a UUIDv7
    /// assigned at append.
    pub fn event_id(&self) -> Uuid {
        self.event_id
    }

    /// The commit time. Timestamps never go backwards along global positions.
    pub fn timestamp(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(self.timestamp_nanos)
    }

    /// The commit time in nanoseconds since the Unix epoch.
    pub fn timestamp_nanos(&self) -> u64 {
        self.timestamp_nanos
    }

    /// The event's payload: a slice of the mapped segment.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The event's metadata (correlation and causation ids, …): a slice of the mapped segment.
    pub fn metadata(&self) -> &Bytes {
        &self.metadata
    }

    /// The codec tag given with [`EventData::with_codec`](crate::EventData::with_codec); 0 for opaque bytes.
    pub fn codec(&self) -> u8 {
        self.codec
    }
}

impl fmt::Debug for RecordedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedEvent")
            .field("stream", &self.stream())
            .field("offset", &self.offset)
            .field("position", &self.position)
            .field("event_type", &self.event_type())
            .field("event_id", &self.event_id)
            .field("timestamp_nanos", &self.timestamp_nanos)
            .field("data_len", &self.data.len())
            .field("metadata_len", &self.metadata.len())
            .finish()
    }
}

/// Reads one frame at `at` of `segment` and checks it is the expected record.
fn read_checked(
    segment: &Segment,
    at: usize,
    position: Option<u64>,
    stream: Option<(&str, u64)>,
) -> Result<(Frame, RecordedEvent)> {
    let frame = decode_at(segment, at)?;
    let mismatch = |what: String| Error::corrupt(segment.path(), at as u64, what);
    if let Some(expected) = position {
        if frame.header.position != expected {
            return Err(mismatch(format!("expected position {expected}, found {}", frame.header.position)));
        }
    }
    if let Some((name, offset)) = stream {
        let found = &segment.bytes()[at..][frame.stream.clone()];
        if found != name.as_bytes() || frame.header.offset != offset {
            let event = RecordedEvent::new(segment, at, &frame);
            return Err(mismatch(format!(
                "expected offset {offset} of stream {name:?}, found offset {} of {:?}",
                event.offset(),
                event.stream()
            )));
        }
    }
    let event = RecordedEvent::new(segment, at, &frame);
    Ok((frame, event))
}

/// Iterator over every committed event in global order, from a position. Returned by
/// [`Store::read_all`](crate::Store::read_all).
pub struct ReadAll {
    log: Arc<Log>,
    segment: Option<Arc<Segment>>,
    at: usize,
    next_position: u64,
    end_position: u64,
    /// The base of the segment after the current one: where to move on.
    segment_end_position: u64,
}

impl ReadAll {
    pub(crate) fn new(log: Arc<Log>, from_position: u64, end_position: u64) -> Result<Self> {
        let mut reader =
            ReadAll { log, segment: None, at: 0, next_position: from_position, end_position, segment_end_position: 0 };
        if from_position < end_position {
            let segment = reader.log.segment_for_position(from_position);
            reader.enter(segment);
            reader.skip_to(from_position)?;
        }
        Ok(reader)
    }

    fn enter(&mut self, segment: Arc<Segment>) {
        self.segment_end_position =
            self.log.segment(segment.ordinal() + 1).map_or(u64::MAX, |next| next.base_position());
        self.at = SEGMENT_HEADER_LEN;
        self.next_position = segment.base_position();
        self.segment = Some(segment);
    }

    /// Steps over records (checking their framing, not yet their CRC) until `position`.
    ///
    /// When a step lands somewhere that is not the next record, the record stepped from is decoded in full:
    /// a damaged length is the usual cause, and the error then names that record.
    fn skip_to(&mut self, position: u64) -> Result<()> {
        let segment = self.segment.clone().expect("entered a segment");
        let bytes = segment.bytes();
        let mut stepped_from: Option<usize> = None;
        while self.next_position < position {
            let links = bytes.get(self.at..).and_then(frame::peek_position_prev);
            let len = bytes.get(self.at..self.at + 4).map(|len| u32::from_le_bytes(len.try_into().expect("4 bytes")));
            match (links, len) {
                (Some((found, _, _)), Some(len))
                    if found == self.next_position && len as usize >= frame::HEADER_LEN =>
                {
                    stepped_from = Some(self.at);
                    self.at += frame::aligned(len as usize);
                    self.next_position += 1;
                }
                _ => {
                    if let Some(from) = stepped_from {
                        decode_at(&segment, from)?;
                    }
                    decode_at(&segment, self.at)?;
                    let reason = format!("expected position {} here", self.next_position);
                    return Err(Error::corrupt(segment.path(), self.at as u64, reason));
                }
            }
        }
        // The last step must land on the record to read first (unless that one is in the next segment).
        let landed = bytes.get(self.at..).and_then(frame::peek_position_prev).map(|(found, _, _)| found);
        if position < self.segment_end_position.min(self.end_position) && landed != Some(position) {
            if let Some(from) = stepped_from {
                decode_at(&segment, from)?;
            }
        }
        Ok(())
    }
}

impl Iterator for ReadAll {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next_position >= self.end_position {
            return None;
        }
        if self.next_position >= self.segment_end_position {
            let ordinal = self.segment.as_ref()?.ordinal() + 1;
            let next = self.log.segment(ordinal).expect("committed positions lie in existing segments");
            self.enter(next);
        }
        let segment = self.segment.clone()?;
        match read_checked(&segment, self.at, Some(self.next_position), None) {
            Ok((frame, event)) => {
                self.at += frame.stride();
                self.next_position += 1;
                Some(Ok(event))
            }
            Err(err) => {
                self.end_position = 0;
                Some(Err(err))
            }
        }
    }
}

/// What a stream iterator needs of the store, and the segment it read last (consecutive records of a stream
/// are mostly in the same segment, so most reads skip the segment-list lock).
#[derive(Clone)]
pub(crate) struct StreamSource {
    pub log: Arc<Log>,
    pub index: Arc<RwLock<Index>>,
    pub cached: Option<Arc<Segment>>,
}

impl StreamSource {
    pub fn new(log: Arc<Log>, index: Arc<RwLock<Index>>) -> Self {
        StreamSource { log, index, cached: None }
    }

    /// The segment a locator points into, and the byte offset within it.
    fn segment(&mut self, locator: u64) -> Result<(Arc<Segment>, usize)> {
        let (ordinal, at) = crate::log::segment::split_locator(locator);
        match &self.cached {
            Some(segment) if segment.ordinal() == ordinal => Ok((segment.clone(), at as usize)),
            _ => {
                let segment = self.log.segment(ordinal).ok_or_else(|| {
                    Error::corrupt(self.log.dir(), u64::from(at), "locator points into a missing segment")
                })?;
                self.cached = Some(segment.clone());
                Ok((segment, at as usize))
            }
        }
    }

    /// Locators of `stream`'s records from `from` up to `through`: walks `prev` back from the nearest indexed
    /// record (fewer than `interval` steps). Returned newest first.
    ///
    /// The walk reads only the header fields it follows, without the CRC: every record it finds is fully
    /// checked (CRC, stream, offset) when it is handed out, so a damaged link surfaces there as `Corrupt`.
    fn walk(&mut self, stream: &str, from: u64, through: u64) -> Result<Vec<u64>> {
        let (interval, start) = {
            let index = self.index.read();
            // A stream never leaves the index; if its lookup fails now, the name in its last record (which the
            // lookup confirms) was damaged on disk since.
            let Some(state) = index.get(stream, &*self.log) else {
                let reason = format!("stream {stream:?}: its last record no longer carries its name");
                return Err(Error::corrupt(self.log.dir(), 0, reason));
            };
            (index.interval(), state.walk_start(from, index.interval()))
        };
        let (mut offset, mut locator) = start;
        // The record whose back-link led here, to blame if the link turns out wrong.
        let mut linked_from = None;
        let mut locators = Vec::with_capacity((offset - from + 1).min(u64::from(interval)) as usize);
        loop {
            let links = match self.segment(locator) {
                Ok((segment, at)) => segment.bytes().get(at..).and_then(frame::peek_position_prev),
                Err(_) => None,
            };
            let prev = match links {
                Some((_, found, prev)) if found == offset && (prev != NO_PREV || offset == 0) => prev,
                _ => return Err(self.broken_link(stream, offset, locator, linked_from)),
            };
            if offset <= through {
                locators.push(locator);
            }
            if offset == from {
                return Ok(locators);
            }
            linked_from = Some(locator);
            locator = prev;
            offset -= 1;
        }
    }

    /// The error for a walk that found something else than offset `offset` at `locator`: blames the record
    /// whose back-link led there if that record is itself damaged (the usual case), else the place found.
    fn broken_link(&mut self, stream: &str, offset: u64, locator: u64, linked_from: Option<u64>) -> Error {
        if let Some(source) = linked_from {
            if let Ok((segment, at)) = self.segment(source) {
                if let Err(err) = decode_at(&segment, at) {
                    return err;
                }
            }
        }
        let reason = format!("stream {stream:?}: no record of offset {offset} where its back-link points");
        match self.segment(locator) {
            Ok((segment, at)) => Error::corrupt(segment.path(), at as u64, reason),
            Err(err) => err,
        }
    }

    fn read(&mut self, stream: &str, locator: u64, offset: u64) -> Result<(Frame, RecordedEvent)> {
        let (segment, at) = self.segment(locator)?;
        read_checked(&segment, at, None, Some((stream, offset)))
    }
}

/// Iterator over one stream's events in offset order. Returned by
/// [`Store::read_stream`](crate::Store::read_stream).
pub struct ReadStream {
    source: StreamSource,
    stream: String,
    next_offset: u64,
    /// The stream's last offset when the read started; `None` for a missing stream.
    last_offset: Option<u64>,
    /// Locators of the next records, the next one last.
    pending: Vec<u64>,
}

impl ReadStream {
    pub(crate) fn new(source: StreamSource, stream: &str, from_offset: u64, last_offset: Option<u64>) -> Self {
        ReadStream { source, stream: stream.to_owned(), next_offset: from_offset, last_offset, pending: Vec::new() }
    }
}

impl Iterator for ReadStream {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        let last = self.last_offset?;
        if self.next_offset > last {
            return None;
        }
        if self.pending.is_empty() {
            match self.source.walk(&self.stream, self.next_offset, last) {
                Ok(locators) => self.pending = locators,
                Err(err) => {
                    self.last_offset = None;
                    return Some(Err(err));
                }
            }
        }
        let locator = self.pending.pop().expect("a walk yields at least the record it starts from");
        match self.source.read(&self.stream, locator, self.next_offset) {
            Ok((_, event)) => {
                self.next_offset += 1;
                Some(Ok(event))
            }
            Err(err) => {
                self.last_offset = None;
                Some(Err(err))
            }
        }
    }
}

/// Iterator over one stream's events from an offset back to offset 0. Returned by
/// [`Store::read_stream_backwards`](crate::Store::read_stream_backwards).
pub struct ReadStreamBackwards {
    source: StreamSource,
    stream: String,
    /// The next record to yield: (offset, locator); `None` when done.
    next: Option<(u64, u64)>,
    first: Option<u64>,
}

impl ReadStreamBackwards {
    pub(crate) fn new(source: StreamSource, stream: &str, from_offset: Option<u64>, last_offset: Option<u64>) -> Self {
        let first = last_offset.map(|last| from_offset.map_or(last, |from| from.min(last)));
        ReadStreamBackwards { source, stream: stream.to_owned(), next: None, first }
    }
}

impl Iterator for ReadStreamBackwards {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(first) = self.first.take() {
            match self.source.walk(&self.stream, first, first) {
                Ok(locators) => self.next = Some((first, locators[0])),
                Err(err) => return Some(Err(err)),
            }
        }
        let (offset, locator) = self.next.take()?;
        match self.source.read(&self.stream, locator, offset) {
            Ok((frame, event)) => {
                if offset > 0 {
                    self.next = Some((offset - 1, frame.header.prev));
                }
                Some(Ok(event))
            }
            Err(err) => Some(Err(err)),
        }
    }
}
