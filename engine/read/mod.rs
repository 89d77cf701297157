//! Zero-copy readers: recorded events whose payloads are slices of the mapped segments, and iterators over
//! the whole log, over one stream (forwards and backwards), and over a category or an event type.
//!
//! Stream, category and event-type reads take the locations of their records from the index, a chunk at a
//! time, instead of walking back-links from record to record: a read costs what it yields.
//!
//! Every iterator is a snapshot: it yields what was committed when it was created and never blocks the
//! writer. Each record is fully checked (CRC, expected position, offset and stream) before it is handed out;
//! a check that fails yields one `Err(Corrupt)` and ends the iteration.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::index::memtable::Run;
use crate::index::table::Section;
use crate::index::{pair_section, Index, Kind, View};
use crate::lifecycle::Visibility;
use crate::log::frame::Frame;
use crate::log::segment::{split_locator, Segment, SEGMENT_HEADER_LEN};
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
    pub(crate) fn new(segment: &Segment, at: usize, frame: &Frame) -> Self {
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

    /// The event's global position across all streams: dense from 0 as the writer assigns them; compaction
    /// leaves gaps where it removed hidden events, and never changes a kept event's position.
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

/// One event as stored, borrowed from the mapped segment for the length of a [`Store::scan`](crate::Store::scan)
/// visit: no reference count is taken and nothing is allocated per event. Its record's CRC was checked.
/// [`RecordedEvent`] is the owned (reference-counted) form.
#[derive(Clone, Copy)]
pub struct EventRef<'a> {
    stream: &'a str,
    event_type: &'a str,
    data: &'a [u8],
    metadata: &'a [u8],
    position: u64,
    offset: u64,
    timestamp_nanos: u64,
    event_id: Uuid,
    codec: u8,
}

impl<'a> EventRef<'a> {
    /// `bytes` are the frame's (from its start); the decoder checked its lengths and UTF-8.
    fn new(bytes: &'a [u8], frame: &Frame) -> Self {
        let text = |range: Range<usize>| std::str::from_utf8(&bytes[range]).expect("the decoder checked UTF-8");
        EventRef {
            stream: text(frame.stream.clone()),
            event_type: text(frame.event_type.clone()),
            data: &bytes[frame.data.clone()],
            metadata: &bytes[frame.metadata.clone()],
            position: frame.header.position,
            offset: frame.header.offset,
            timestamp_nanos: frame.header.timestamp_nanos,
            event_id: frame.header.event_id,
            codec: frame.header.codec,
        }
    }

    /// The stream the event belongs to.
    pub fn stream(&self) -> &'a str {
        self.stream
    }

    /// The event type given at append.
    pub fn event_type(&self) -> &'a str {
        self.event_type
    }

    /// The event's payload, in the mapped segment.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The event's metadata, in the mapped segment.
    pub fn metadata(&self) -> &'a [u8] {
        self.metadata
    }

    /// The event's global position (see [`RecordedEvent::position`]).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The event's offset within its stream.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The commit time in nanoseconds since the Unix epoch.
    pub fn timestamp_nanos(&self) -> u64 {
        self.timestamp_nanos
    }

    /// The commit time.
    pub fn timestamp(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(self.timestamp_nanos)
    }

    /// The event's id.
    pub fn event_id(&self) -> Uuid {
        self.event_id
    }

    /// The codec tag given at append; 0 for opaque bytes.
    pub fn codec(&self) -> u8 {
        self.codec
    }
}

impl fmt::Debug for EventRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventRef")
            .field("stream", &self.stream)
            .field("offset", &self.offset)
            .field("position", &self.position)
            .field("event_type", &self.event_type)
            .field("event_id", &self.event_id)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// Visits every committed event from `from_position`, in position order, through `cursor` (a [`ReadAll`]
/// without its iterator), hiding what `visibility` hides. Returns the position a later scan would go on from.
pub(crate) fn scan(
    mut cursor: ReadAll,
    from_position: u64,
    mut visibility: Option<Visibility>,
    visit: &mut dyn FnMut(EventRef<'_>) -> std::ops::ControlFlow<()>,
) -> Result<u64> {
    let mut resume = from_position;
    while let Some(next) = cursor.next_frame() {
        let (at, frame) = next?;
        resume = frame.header.position + 1;
        let segment = cursor.current_segment().expect("a frame was read in it");
        let event = EventRef::new(&segment.bytes()[at..at + frame.len], &frame);
        if let Some(visibility) = &mut visibility {
            if !visibility.shows_record(event.stream, event.offset, event.timestamp_nanos)? {
                continue;
            }
        }
        if visit(event).is_break() {
            return Ok(resume);
        }
    }
    Ok(resume.max(cursor.end_position))
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
    /// What a stream's lifecycle hides (none when no stream has metadata or a tombstone).
    visibility: Option<Visibility>,
    log: Arc<Log>,
    segment: Option<Arc<Segment>>,
    at: usize,
    next_position: u64,
    end_position: u64,
    /// The base of the segment after the current one: where to move on.
    segment_end_position: u64,
    /// Where this reader started in the current segment, and where the read-ahead asked of it ends.
    scan_start: usize,
    prefetched_to: usize,
}

/// Bytes of a scan's read-ahead: asked for a window ahead, a window at a time (segments are mapped for
/// point reads, so the kernel reads ahead only what a scan asks for). The window two behind is released.
const SCAN_READ_AHEAD: usize = 2 << 20;
/// Bytes a reader reads in a segment before it asks for read-ahead: a live subscription's rounds read a
/// commit's records each and make no system call for them.
const SCAN_READ_AHEAD_AFTER: usize = 64 << 10;

impl ReadAll {
    pub(crate) fn new(log: Arc<Log>, index: &Index, from_position: u64, end_position: u64) -> Result<Self> {
        let mut reader = ReadAll {
            visibility: None,
            log,
            segment: None,
            at: 0,
            next_position: from_position,
            end_position,
            segment_end_position: 0,
            scan_start: 0,
            prefetched_to: 0,
        };
        if from_position < end_position {
            // The index's sparse positions find the record; at most 63 records are stepped over to reach it.
            let (ordinal, at) = split_locator(index.locator_of(from_position)?);
            let segment = reader.log.segment(ordinal)?;
            // In a compacted segment: the first record still there at or after it.
            let at = segment.physical_at_or_after(at).map_or(segment.frames_end(), |here| here as usize);
            reader.enter(segment);
            reader.at = at;
            reader.scan_start = at;
            reader.next_position = from_position;
        }
        Ok(reader)
    }

    fn enter(&mut self, segment: Arc<Segment>) {
        self.segment_end_position = self.log.base(segment.ordinal() + 1).unwrap_or(u64::MAX);
        self.at = SEGMENT_HEADER_LEN;
        self.scan_start = SEGMENT_HEADER_LEN;
        self.prefetched_to = 0;
        self.next_position = segment.base_position();
        self.segment = Some(segment);
    }
}

impl ReadAll {
    /// Hides what the streams' lifecycles hide.
    pub(crate) fn with_visibility(mut self, visibility: Option<Visibility>) -> Self {
        self.visibility = visibility;
        self
    }
}

impl Iterator for ReadAll {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let event = self.next_raw()?;
            match (&mut self.visibility, event) {
                (Some(visibility), Ok(event)) => match visibility.shows(&event) {
                    Ok(true) => return Some(Ok(event)),
                    Ok(false) => continue,
                    Err(err) => {
                        self.end_position = 0;
                        return Some(Err(err));
                    }
                },
                (_, event) => return Some(event),
            }
        }
    }
}

impl ReadAll {
    fn next_raw(&mut self) -> Option<Result<RecordedEvent>> {
        match self.next_frame()? {
            Ok((at, frame)) => {
                let segment = self.segment.as_deref().expect("a frame was read in it");
                Some(Ok(RecordedEvent::new(segment, at, &frame)))
            }
            Err(err) => Some(Err(err)),
        }
    }

    /// The segment the last frame [`ReadAll::next_frame`] returned lies in.
    pub(crate) fn current_segment(&self) -> Option<&Segment> {
        self.segment.as_deref()
    }

    /// The next record's byte offset in [`ReadAll::current_segment`] and its frame, fully checked (CRC, and
    /// the position it must have): the cursor under both the iterator and [`Store::scan`](crate::Store::scan).
    pub(crate) fn next_frame(&mut self) -> Option<Result<(usize, Frame)>> {
        loop {
            if self.next_position >= self.end_position {
                return None;
            }
            if self.next_position >= self.segment_end_position {
                let ordinal = self.segment.as_ref()?.ordinal() + 1;
                match self.log.segment(ordinal) {
                    Ok(next) => self.enter(next),
                    Err(err) => {
                        self.end_position = 0;
                        return Some(Err(err));
                    }
                }
            }
            let segment = self.segment.as_deref()?;
            if segment.is_compacted() && self.at >= segment.frames_end() {
                // Compaction removed the rest of this segment's records.
                self.next_position = self.segment_end_position;
                continue;
            }
            break;
        }
        let segment = self.segment.as_deref().expect("entered above");
        if self.at - self.scan_start >= SCAN_READ_AHEAD_AFTER && self.at + SCAN_READ_AHEAD / 2 > self.prefetched_to {
            let from = self.prefetched_to.max(self.at);
            segment.will_need(from, SCAN_READ_AHEAD);
            if from == self.prefetched_to && from >= self.scan_start + 2 * SCAN_READ_AHEAD {
                segment.release(from - 2 * SCAN_READ_AHEAD, SCAN_READ_AHEAD);
            }
            self.prefetched_to = from + SCAN_READ_AHEAD;
        }
        let at = self.at;
        let checked = decode_at(segment, at).and_then(|frame| {
            let position = frame.header.position;
            // Compaction leaves gaps in a segment's positions: there its records must only ascend, and stay in
            // it; elsewhere each has the next position.
            let fits = if segment.is_compacted() {
                position >= self.next_position && position < self.segment_end_position
            } else {
                position == self.next_position
            };
            if !fits {
                let reason = format!("expected position {}, found {position}", self.next_position);
                return Err(Error::corrupt(segment.path(), at as u64, reason));
            }
            Ok(frame)
        });
        match checked {
            Ok(frame) => {
                self.at += frame.stride();
                self.next_position = frame.header.position + 1;
                if frame.header.position >= self.end_position {
                    self.end_position = 0;
                    return None;
                }
                Some(Ok((at, frame)))
            }
            Err(err) => {
                self.end_position = 0;
                Some(Err(err))
            }
        }
    }
}

/// Records located through the index, and the segment read last (consecutive records are mostly in the same
/// segment, so most reads skip the log's cache).
#[derive(Clone)]
pub(crate) struct Source {
    pub log: Arc<Log>,
    pub index: Arc<Index>,
    cached: Option<Arc<Segment>>,
}

impl Source {
    pub fn new(log: Arc<Log>, index: Arc<Index>) -> Self {
        Source { log, index, cached: None }
    }

    /// The segment a locator points into, and the byte offset within it where the record is now (`at` is the
    /// original offset; compaction may have moved the record, or removed it: then the original offset).
    fn segment(&mut self, locator: u64) -> Result<(Arc<Segment>, usize)> {
        let (ordinal, at) = split_locator(locator);
        let segment = match &self.cached {
            Some(segment) if segment.ordinal() == ordinal => segment.clone(),
            _ => {
                let segment = self.log.segment(ordinal)?;
                self.cached = Some(segment.clone());
                segment
            }
        };
        let here = segment.physical(at).unwrap_or(at);
        Ok((segment, here as usize))
    }

    /// Whether `prev` (a back-link) names a record compaction removed.
    fn removed(&self, prev: u64) -> Result<bool> {
        Ok(prev != crate::log::frame::NO_PREV && self.log.located(prev)?.is_none())
    }

    /// The record at `locator`, fully checked; `None` if compaction removed it.
    fn read(&mut self, locator: u64) -> Result<Option<(Frame, RecordedEvent)>> {
        self.index.records_read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (ordinal, at) = split_locator(locator);
        let segment = match &self.cached {
            Some(segment) if segment.ordinal() == ordinal => segment.clone(),
            _ => self.segment(locator)?.0,
        };
        let Some(here) = segment.physical(at) else { return Ok(None) };
        read_checked(&segment, here as usize, None, None).map(Some)
    }
}

/// Records a chunk of index entries is taken at a time.
const CHUNK: usize = 256;

/// The index entries of one stream, in offset order (or the reverse), from the tables and memtables of a
/// view: candidates, since two streams may share a hash; the reader confirms each by its record.
struct StreamEntries {
    hash: u64,
    view: View,
    /// The stream's run in the active memtable when the read began.
    active: Option<Run>,
    /// Which source comes next: the tables, then the frozen memtables, then the active run (reversed when
    /// reading backwards).
    source: usize,
    /// Within a table: the next entry index.
    entry: Option<u64>,
}

impl StreamEntries {
    fn sources(&self) -> usize {
        self.view.tables.len() + self.view.frozen.len() + 1
    }

    /// Appends to `out` up to `CHUNK` candidates (offset, locator) with offsets from `next` (increasing) up to
    /// `last`. Returns false when every source is done.
    fn forward(&mut self, stream: &str, next: u64, last: u64, out: &mut VecDeque<(u64, u64)>) -> Result<bool> {
        while out.len() < CHUNK && self.source < self.sources() {
            let tables = self.view.tables.len();
            if self.source < tables {
                let table = &self.view.tables[self.source];
                let mut i = match self.entry {
                    Some(i) => i,
                    None if table.may_hold_stream(self.hash)? => {
                        table.lower_bound(Section::Streams, (self.hash, next))?
                    }
                    None => table.len(Section::Streams),
                };
                while out.len() < CHUNK && i < table.len(Section::Streams) {
                    let entry = table.stream_entry(i)?;
                    if entry.hash != self.hash || entry.offset > last {
                        i = table.len(Section::Streams);
                        break;
                    }
                    out.push_back((entry.offset, entry.locator));
                    i += 1;
                }
                if i < table.len(Section::Streams) {
                    self.entry = Some(i);
                    return Ok(true);
                }
            } else {
                let run = match self.source - tables {
                    frozen if frozen < self.view.frozen.len() => self.view.frozen[frozen].run(stream),
                    _ => self.active.as_ref(),
                };
                if let Some(run) = run {
                    // Memtables are keyed by name: these are the stream's own, whole. (What `out` holds may be
                    // another stream's, which shares the hash: it says nothing of where this run starts.)
                    for offset in next.max(run.first_offset)..=last.min(run.last_offset()) {
                        out.push_back((offset, run.locator(offset).expect("within the run")));
                    }
                }
            }
            self.source += 1;
            self.entry = None;
        }
        Ok(self.source < self.sources())
    }

    /// Like `forward`, from offset `next` down to 0, sources newest first.
    fn backward(&mut self, stream: &str, next: u64, out: &mut VecDeque<(u64, u64)>) -> Result<bool> {
        let sources = self.sources();
        while out.len() < CHUNK && self.source < sources {
            let from_newest = sources - 1 - self.source;
            let tables = self.view.tables.len();
            if from_newest >= tables {
                let run = match from_newest - tables {
                    frozen if frozen < self.view.frozen.len() => self.view.frozen[frozen].run(stream),
                    _ => self.active.as_ref(),
                };
                if let Some(run) = run {
                    for offset in (run.first_offset..=next.min(run.last_offset())).rev() {
                        out.push_back((offset, run.locator(offset).expect("within the run")));
                    }
                }
            } else {
                let table = &self.view.tables[from_newest];
                // `entry` counts down: the index of the next entry to take, plus one.
                let mut i = match self.entry {
                    Some(i) => i,
                    None if table.may_hold_stream(self.hash)? => {
                        table.lower_bound(Section::Streams, (self.hash, next.saturating_add(1)))?
                    }
                    None => 0,
                };
                while out.len() < CHUNK && i > 0 {
                    let entry = table.stream_entry(i - 1)?;
                    if entry.hash != self.hash {
                        i = 0;
                        break;
                    }
                    if entry.offset <= next {
                        out.push_back((entry.offset, entry.locator));
                    }
                    i -= 1;
                }
                if i > 0 {
                    self.entry = Some(i);
                    return Ok(true);
                }
            }
            self.source += 1;
            self.entry = None;
        }
        Ok(self.source < sources)
    }
}

/// Iterator over one stream's events in offset order. Returned by
/// [`Store::read_stream`](crate::Store::read_stream).
pub struct ReadStream {
    source: Source,
    stream: String,
    next_offset: u64,
    /// The stream's last offset when the read started; `None` for a missing stream (or once it ended).
    last_offset: Option<u64>,
    entries: StreamEntries,
    /// Candidates taken from the index, next first: (offset, locator).
    pending: VecDeque<(u64, u64)>,
    more: bool,
}

impl ReadStream {
    pub(crate) fn new(source: Source, stream: &str, from_offset: u64) -> Result<Self> {
        let (view, active, head) = source.index.stream_view(stream)?;
        let hash = source.index.hash_of(Kind::Stream, stream);
        Ok(ReadStream {
            source,
            stream: stream.to_owned(),
            next_offset: from_offset,
            last_offset: head.map(|head| head.last_offset),
            entries: StreamEntries { hash, view, active, source: 0, entry: None },
            pending: VecDeque::new(),
            more: true,
        })
    }

    /// Stops at the first record whose position is `end` or more (for reads bounded in time).
    pub(crate) fn stop_before_position(self, end: u64) -> impl Iterator<Item = Result<RecordedEvent>> {
        self.take_while(move |event| event.as_ref().map_or(true, |event| event.position() < end))
    }

    fn fail(&mut self, err: Error) -> Option<Result<RecordedEvent>> {
        self.last_offset = None;
        Some(Err(err))
    }
}

impl Iterator for ReadStream {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        let last = self.last_offset?;
        if self.next_offset > last {
            return None;
        }
        loop {
            if self.pending.is_empty() && self.more {
                match self.entries.forward(&self.stream, self.next_offset, last, &mut self.pending) {
                    Ok(more) => self.more = more,
                    Err(err) => return self.fail(err),
                }
            }
            let Some((offset, locator)) = self.pending.pop_front() else {
                let reason =
                    format!("the index holds no entry for offset {} of stream {:?}", self.next_offset, self.stream);
                return self.fail(Error::corrupt(self.source.log.dir(), self.next_offset, reason));
            };
            if offset < self.next_offset {
                continue;
            }
            let (frame, event) = match self.source.read(locator) {
                Ok(Some(read)) => read,
                // Compaction removed it (this stream's or another's with the same hash).
                Ok(None) => continue,
                Err(err) => return self.fail(err),
            };
            if event.stream() != self.stream {
                // Another stream with the same hash.
                continue;
            }
            // Compaction leaves runs of kept records: a run's first record links back to a removed one, and the
            // read goes on from there.
            if frame.header.offset == offset && offset > self.next_offset {
                match self.source.removed(frame.header.prev) {
                    Ok(true) => self.next_offset = offset,
                    Ok(false) => {}
                    Err(err) => return self.fail(err),
                }
            }
            if frame.header.offset != self.next_offset || offset != self.next_offset {
                let (segment, at) = match self.source.segment(locator) {
                    Ok(found) => found,
                    Err(err) => return self.fail(err),
                };
                let reason = format!(
                    "expected offset {} of stream {:?}, found offset {}",
                    self.next_offset, self.stream, frame.header.offset
                );
                return self.fail(Error::corrupt(segment.path(), at as u64, reason));
            }
            self.next_offset += 1;
            return Some(Ok(event));
        }
    }
}

/// Iterator over one stream's events from an offset back to offset 0. Returned by
/// [`Store::read_stream_backwards`](crate::Store::read_stream_backwards).
pub struct ReadStreamBackwards {
    /// Offsets below this are hidden (a stream's lifecycle): the read stops there.
    stop: u64,
    source: Source,
    stream: String,
    /// The next offset to yield; `None` when done.
    next: Option<u64>,
    /// The back-link of the record yielded last. If compaction removed its target, the next record may be at
    /// any lower offset, or there may be none (looked at only when the next one is not where expected).
    last_prev: u64,
    entries: StreamEntries,
    pending: VecDeque<(u64, u64)>,
    more: bool,
}

impl ReadStreamBackwards {
    pub(crate) fn new(source: Source, stream: &str, from_offset: Option<u64>) -> Result<Self> {
        let (view, active, head) = source.index.stream_view(stream)?;
        let hash = source.index.hash_of(Kind::Stream, stream);
        let first = head.map(|head| from_offset.map_or(head.last_offset, |from| from.min(head.last_offset)));
        Ok(ReadStreamBackwards {
            stop: 0,
            source,
            stream: stream.to_owned(),
            next: first,
            last_prev: crate::log::frame::NO_PREV,
            entries: StreamEntries { hash, view, active, source: 0, entry: None },
            pending: VecDeque::new(),
            more: true,
        })
    }
}

impl ReadStreamBackwards {
    pub(crate) fn stopping_below(mut self, stop: u64) -> Self {
        self.stop = stop;
        self
    }
}

impl Iterator for ReadStreamBackwards {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        let next = self.next.filter(|&next| next >= self.stop)?;
        loop {
            if self.pending.is_empty() && self.more {
                match self.entries.backward(&self.stream, next, &mut self.pending) {
                    Ok(more) => self.more = more,
                    Err(err) => {
                        self.next = None;
                        return Some(Err(err));
                    }
                }
            }
            let Some((offset, locator)) = self.pending.pop_front() else {
                self.next = None;
                match self.source.removed(self.last_prev) {
                    // Compaction removed everything below the last record yielded.
                    Ok(true) => return None,
                    Ok(false) => {}
                    Err(err) => return Some(Err(err)),
                }
                let reason = format!("the index holds no entry for offset {next} of stream {:?}", self.stream);
                return Some(Err(Error::corrupt(self.source.log.dir(), next, reason)));
            };
            if offset > next {
                continue;
            }
            let last_prev = self.last_prev;
            let read = self.source.read(locator).and_then(|read| {
                // Compaction removed it (this stream's or another's with the same hash): not yielded.
                let Some((frame, event)) = read else { return Ok(None) };
                if event.stream() != self.stream {
                    return Ok(None);
                }
                // Below a gap compaction left, the next record kept may be at any lower offset.
                let in_place = frame.header.offset == next && offset == next;
                let after_gap = || -> Result<bool> {
                    Ok(frame.header.offset == offset && offset < next && self.source.removed(last_prev)?)
                };
                if !in_place && !after_gap()? {
                    let (segment, at) = self.source.segment(locator)?;
                    let reason = format!(
                        "expected offset {next} of stream {:?}, found offset {}",
                        self.stream, frame.header.offset
                    );
                    return Err(Error::corrupt(segment.path(), at as u64, reason));
                }
                Ok(Some(event))
            });
            match read {
                Ok(None) => continue,
                Ok(Some(event)) if event.offset() < self.stop => {
                    // Past a gap, below what the stream's lifecycle shows.
                    self.next = None;
                    return None;
                }
                Ok(Some(event)) => {
                    self.next = event.offset().checked_sub(1);
                    self.last_prev = crate::log::frame::peek_position_prev(&event.frame)
                        .map_or(crate::log::frame::NO_PREV, |(_, _, prev)| prev);
                    return Some(Ok(event));
                }
                Err(err) => {
                    self.next = None;
                    return Some(Err(err));
                }
            }
        }
    }
}

/// Iterator over the events of one category or one event type, in position order. Returned by
/// [`Store::read_category`](crate::Store::read_category) and
/// [`Store::read_event_type`](crate::Store::read_event_type).
pub struct ReadIndexed {
    visibility: Option<Visibility>,
    source: Source,
    kind: Kind,
    key: String,
    hash: u64,
    from_position: u64,
    from_locator: u64,
    /// Positions from this on were not committed when the read began.
    end_position: u64,
    view: View,
    /// The active memtable's locators of the key at or after `from_locator`, copied.
    active: Vec<u64>,
    source_no: usize,
    entry: Option<u64>,
    pending: VecDeque<u64>,
    done: bool,
}

impl ReadIndexed {
    pub(crate) fn new(source: Source, kind: Kind, key: &str, from_position: u64, end_position: u64) -> Result<Self> {
        let from_locator =
            if from_position < end_position { source.index.locator_of(from_position)? } else { u64::MAX };
        let (view, active) = source.index.pairs_view(kind, key, from_locator);
        let hash = source.index.hash_of(kind, key);
        Ok(ReadIndexed {
            visibility: None,
            source,
            kind,
            key: key.to_owned(),
            hash,
            from_position,
            from_locator,
            end_position,
            view,
            active,
            source_no: 0,
            entry: None,
            pending: VecDeque::new(),
            done: from_position >= end_position,
        })
    }

    /// Takes up to `CHUNK` more locators from the index. False when there are none left.
    fn fill(&mut self) -> Result<bool> {
        let section = pair_section(self.kind);
        let sources = self.view.tables.len() + self.view.frozen.len() + 1;
        while self.pending.len() < CHUNK && self.source_no < sources {
            let tables = self.view.tables.len();
            if self.source_no < tables {
                let table = &self.view.tables[self.source_no];
                if table.meta().end_position <= self.from_position {
                    self.source_no += 1;
                    continue;
                }
                let mut i = match self.entry {
                    Some(i) => i,
                    None => table.lower_bound(section, (self.hash, self.from_locator))?,
                };
                while self.pending.len() < CHUNK && i < table.len(section) {
                    let (hash, locator) = table.pair(section, i)?;
                    if hash != self.hash {
                        i = table.len(section);
                        break;
                    }
                    self.pending.push_back(locator);
                    i += 1;
                }
                if i < table.len(section) {
                    self.entry = Some(i);
                    return Ok(true);
                }
            } else if self.source_no - tables < self.view.frozen.len() {
                let locators = self.view.frozen[self.source_no - tables].locators(self.kind, &self.key);
                let from = locators.partition_point(|&locator| locator < self.from_locator);
                self.pending.extend(&locators[from..]);
            } else {
                self.pending.extend(std::mem::take(&mut self.active));
            }
            self.source_no += 1;
            self.entry = None;
        }
        Ok(!self.pending.is_empty())
    }

    /// Hides what the streams' lifecycles hide.
    pub(crate) fn with_visibility(mut self, visibility: Option<Visibility>) -> Self {
        self.visibility = visibility;
        self
    }

    fn matches(&self, event: &RecordedEvent) -> bool {
        match self.kind {
            Kind::Category => crate::index::hash::category(event.stream(), self.source.index.separator()) == self.key,
            Kind::EventType => event.event_type() == self.key,
            Kind::Stream => unreachable!("streams are read with ReadStream"),
        }
    }
}

impl Iterator for ReadIndexed {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            if self.pending.is_empty() {
                match self.fill() {
                    Ok(true) => {}
                    Ok(false) => self.done = true,
                    Err(err) => {
                        self.done = true;
                        return Some(Err(err));
                    }
                }
                continue;
            }
            let locator = self.pending.pop_front().expect("not empty");
            match self.source.read(locator) {
                // Removed by compaction.
                Ok(None) => {}
                Ok(Some((_, event))) if event.position() >= self.end_position => self.done = true,
                // Another key with the same hash, or (a table's first entries) before the start.
                Ok(Some((_, event))) if !self.matches(&event) || event.position() < self.from_position => {}
                Ok(Some((_, event))) => match self.visibility.as_mut().map_or(Ok(true), |v| v.shows(&event)) {
                    Ok(true) => return Some(Ok(event)),
                    Ok(false) => {}
                    Err(err) => {
                        self.done = true;
                        return Some(Err(err));
                    }
                },
                Err(err) => {
                    self.done = true;
                    return Some(Err(err));
                }
            }
        }
        None
    }
}
