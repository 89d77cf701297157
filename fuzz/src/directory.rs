//! The `open_directory` target: the input is a little program that writes a store directory (up to three
//! segment files with valid 64-byte headers, and `index.ckpt`), which is then opened with
//! `Store::open_with(dir, Options { segment_size_bytes: 4096, .. })`.
//!
//! # Input format
//!
//! A sequence of operations, each an opcode byte (taken modulo 6) and its arguments. Integers are
//! little-endian; a missing byte reads as 0, so every input is a valid program.
//!
//! | opcode | operation    | arguments                                                                        |
//! |-------:|--------------|----------------------------------------------------------------------------------|
//! | 0      | new segment  | flags `u8`, then per flag bit: 0 base `u64`, 1 ordinal `u32`, 3 exact size `u16`, |
//! |        |              | 4 header edit (`u8` index, `u8` xor; CRC refreshed below byte 60), 5 file-name    |
//! |        |              | base `u64`, 6 file length `u16`; bit 2 makes the segment 2 pages (8192) long      |
//! | 1      | frame        | flags `u8`, then per flag bit: 0 position `u64`, 1 offset `u64`, 2 prev (locator  |
//! |        |              | ref), 3 synced_before `u64`, 4 txn_after `u32`, 5 flip (`u16` index, `u8` xor);   |
//! |        |              | stream (bit 6: `u8` len + bytes, else `u8` table index), type (bit 7: same),      |
//! |        |              | metadata (`u8` len + bytes), data (`u8` len + bytes)                              |
//! | 2      | raw bytes    | `u16` len + bytes, written as they are at the cursor                             |
//! | 3      | checkpoint   | mode `u8`: even = raw (`u16` len + bytes; mode bit 1 appends a valid CRC);        |
//! |        |              | odd = the checkpoint of everything so far, then edits: flags `u8`, per bit: 0     |
//! |        |              | interval `u32`, 1 next_position `u64`, 2 end (locator ref), 3 last (locator ref),  |
//! |        |              | 4 duplicate stream `u8`, 5 edit stream (`u8` stream, `u8` field, value), 6 bad    |
//! |        |              | CRC, 7 trailing bytes (`u8` len + bytes); mode bit 1: version `u32`; mode bit 2:  |
//! |        |              | `u16` n + locator ref: n made-up streams of one event whose last record is there  |
//! | 4      | options      | `u8`: index interval 1 + (v & 7); bit 3 makes every stream name collide in the    |
//! |        |              | index (`stream_hash_mask = 0`). Only before any frame/checkpoint                 |
//! | 5      | zeros        | `u8` n: skip 8·n zero bytes                                                        |
//!
//! A *locator ref* is a tag `u8` (mod 3): 0 = the locator of the n-th frame written so far (`u8` n), 1 = a raw
//! `u64`, 2 = `u64::MAX`.
//!
//! Frame fields not given are filled in as the engine's writer would (dense positions, per-stream offsets and
//! back-links, `synced_before` = position, `txn_after` = 0, rolling to a new segment when one is full), so
//! the fuzzer spends its time on the interesting deviations, not on rediscovering CRCs. When the program used
//! no deviation at all the directory is a valid store, and the target checks the opened store's contents
//! exactly; otherwise it checks that nothing panics and that every read yields records that are what they
//! claim to be, or `Err(Corrupt)`.

use std::collections::BTreeMap;
use std::path::Path;

use annals::{Error, EventData, ExpectedVersion, Options, RecordedEvent, Store};

use crate::format::{self, aligned, locator, CheckpointStream, RawCheckpoint, RawFrame, SEGMENT_HEADER_LEN};

/// Segment size of the store the target opens (and of segments the builder creates by default).
pub const SEGMENT_SIZE: u64 = 4096;
/// Most segment files a program can write.
pub const MAX_SEGMENTS: usize = 3;

/// Stream names a frame can pick by index.
pub const STREAMS: [&str; 5] = ["a", "b", "account-42", "stream-with-a-longer-name", "ünïcödé"];
/// Event types a frame can pick by index.
pub const TYPES: [&str; 3] = ["T", "Opened", "MoneyDeposited"];

/// Reads the input; missing bytes read as zeros.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let bytes = self.bytes(N);
        out[..bytes.len()].copy_from_slice(bytes);
        out
    }
    fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }
    fn short_bytes(&mut self) -> Vec<u8> {
        let len = self.u8();
        self.bytes(usize::from(len)).to_vec()
    }
}

/// A locator given by reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocatorRef {
    /// The locator of the n-th frame written so far (modulo their count; `u64::MAX` when there is none).
    Frame(u8),
    Raw(u64),
    NoPrev,
}

impl LocatorRef {
    fn parse(r: &mut Reader) -> Self {
        match r.u8() % 3 {
            0 => LocatorRef::Frame(r.u8()),
            1 => LocatorRef::Raw(r.u64()),
            _ => LocatorRef::NoPrev,
        }
    }
    fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            LocatorRef::Frame(n) => out.extend_from_slice(&[0, n]),
            LocatorRef::Raw(value) => {
                out.push(1);
                out.extend_from_slice(&value.to_le_bytes());
            }
            LocatorRef::NoPrev => out.push(2),
        }
    }
}

/// A stream name or event type: an index into the table, or raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    Table(u8),
    Custom(Vec<u8>),
}

/// Segment header and file deviations; `Default` is a valid, writer-like segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentSpec {
    pub base: Option<u64>,
    pub ordinal: Option<u32>,
    pub two_pages: bool,
    pub exact_size: Option<u16>,
    pub header_edit: Option<(u8, u8)>,
    pub name_base: Option<u64>,
    pub file_len: Option<u16>,
}

/// A frame; `None` fields are filled in as the writer would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSpec {
    pub position: Option<u64>,
    pub offset: Option<u64>,
    pub prev: Option<LocatorRef>,
    pub synced_before: Option<u64>,
    pub txn_after: Option<u32>,
    pub flip: Option<(u16, u8)>,
    pub stream: Name,
    pub event_type: Name,
    pub metadata: Vec<u8>,
    pub data: Vec<u8>,
}

impl FrameSpec {
    /// A plain frame of table stream `stream` and type `event_type`.
    pub fn plain(stream: u8, event_type: u8, data: &[u8]) -> Self {
        FrameSpec {
            position: None,
            offset: None,
            prev: None,
            synced_before: None,
            txn_after: None,
            flip: None,
            stream: Name::Table(stream),
            event_type: Name::Table(event_type),
            metadata: Vec::new(),
            data: data.to_vec(),
        }
    }
}

/// Edits of an otherwise exact checkpoint of everything written so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointEdits {
    pub interval: Option<u32>,
    pub next_position: Option<u64>,
    pub end: Option<LocatorRef>,
    pub last: Option<LocatorRef>,
    pub duplicate: Option<u8>,
    /// (stream index, field, value): field 0 sets `last_offset` to the raw value, 1 sets `head`, 2 pushes a
    /// sparse locator, 3 replaces the first sparse locator (or pushes one).
    pub edit: Option<(u8, u8, EditValue)>,
    pub bad_crc: bool,
    pub trailing: Option<Vec<u8>>,
    pub version: Option<u32>,
    /// Adds this many (at most 1024) made-up streams `pad-<i>` of one event each, whose last record is at
    /// the locator: for checks that sample when there are many streams.
    pub pad: Option<(u16, LocatorRef)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditValue {
    Raw(u64),
    Locator(LocatorRef),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointSpec {
    Raw { bytes: Vec<u8>, add_crc: bool },
    Auto(CheckpointEdits),
}

/// One operation of an input program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    NewSegment(SegmentSpec),
    Frame(FrameSpec),
    Raw(Vec<u8>),
    Checkpoint(CheckpointSpec),
    Options { interval_bits: u8 },
    Zeros(u8),
}

/// Parses a whole input into its program.
pub fn parse(data: &[u8]) -> Vec<Op> {
    let mut r = Reader { data };
    let mut ops = Vec::new();
    while !r.is_empty() {
        ops.push(parse_op(&mut r));
    }
    ops
}

fn parse_name(r: &mut Reader, custom: bool) -> Name {
    if custom {
        Name::Custom(r.short_bytes())
    } else {
        Name::Table(r.u8())
    }
}

fn parse_op(r: &mut Reader) -> Op {
    match r.u8() % 6 {
        0 => {
            let flags = r.u8();
            let bit = |n: u8| flags & (1 << n) != 0;
            Op::NewSegment(SegmentSpec {
                base: bit(0).then(|| r.u64()),
                ordinal: bit(1).then(|| r.u32()),
                two_pages: bit(2),
                exact_size: bit(3).then(|| r.u16()),
                header_edit: bit(4).then(|| (r.u8(), r.u8())),
                name_base: bit(5).then(|| r.u64()),
                file_len: bit(6).then(|| r.u16()),
            })
        }
        1 => {
            let flags = r.u8();
            let bit = |n: u8| flags & (1 << n) != 0;
            Op::Frame(FrameSpec {
                position: bit(0).then(|| r.u64()),
                offset: bit(1).then(|| r.u64()),
                prev: bit(2).then(|| LocatorRef::parse(r)),
                synced_before: bit(3).then(|| r.u64()),
                txn_after: bit(4).then(|| r.u32()),
                flip: bit(5).then(|| (r.u16(), r.u8())),
                stream: parse_name(r, bit(6)),
                event_type: parse_name(r, bit(7)),
                metadata: r.short_bytes(),
                data: r.short_bytes(),
            })
        }
        2 => {
            let len = r.u16();
            Op::Raw(r.bytes(usize::from(len)).to_vec())
        }
        3 => {
            let mode = r.u8();
            if mode & 1 == 0 {
                let len = r.u16();
                Op::Checkpoint(CheckpointSpec::Raw {
                    bytes: r.bytes(usize::from(len)).to_vec(),
                    add_crc: mode & 2 != 0,
                })
            } else {
                let flags = r.u8();
                let bit = |n: u8| flags & (1 << n) != 0;
                let mut edits = CheckpointEdits {
                    interval: bit(0).then(|| r.u32()),
                    next_position: bit(1).then(|| r.u64()),
                    end: bit(2).then(|| LocatorRef::parse(r)),
                    last: bit(3).then(|| LocatorRef::parse(r)),
                    duplicate: bit(4).then(|| r.u8()),
                    edit: None,
                    bad_crc: bit(6),
                    trailing: None,
                    version: None,
                    pad: None,
                };
                if bit(5) {
                    let stream = r.u8();
                    let field = r.u8() % 4;
                    let value =
                        if field == 0 { EditValue::Raw(r.u64()) } else { EditValue::Locator(LocatorRef::parse(r)) };
                    edits.edit = Some((stream, field, value));
                }
                if bit(7) {
                    edits.trailing = Some(r.short_bytes());
                }
                if mode & 2 != 0 {
                    edits.version = Some(r.u32());
                }
                if mode & 4 != 0 {
                    edits.pad = Some((r.u16(), LocatorRef::parse(r)));
                }
                Op::Checkpoint(CheckpointSpec::Auto(edits))
            }
        }
        4 => Op::Options { interval_bits: r.u8() },
        _ => Op::Zeros(r.u8()),
    }
}

fn encode_name(name: &Name, out: &mut Vec<u8>) {
    match name {
        Name::Table(n) => out.push(*n),
        Name::Custom(bytes) => {
            out.push(bytes.len().min(255) as u8);
            out.extend_from_slice(&bytes[..bytes.len().min(255)]);
        }
    }
}

fn encode_short(bytes: &[u8], out: &mut Vec<u8>) {
    let len = bytes.len().min(255);
    out.push(len as u8);
    out.extend_from_slice(&bytes[..len]);
}

/// Encodes a program as input bytes (`parse(&encode(ops)) == ops` for ops within the format's ranges).
pub fn encode(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        match op {
            Op::NewSegment(spec) => {
                out.push(0);
                let flags = u8::from(spec.base.is_some())
                    | u8::from(spec.ordinal.is_some()) << 1
                    | u8::from(spec.two_pages) << 2
                    | u8::from(spec.exact_size.is_some()) << 3
                    | u8::from(spec.header_edit.is_some()) << 4
                    | u8::from(spec.name_base.is_some()) << 5
                    | u8::from(spec.file_len.is_some()) << 6;
                out.push(flags);
                if let Some(base) = spec.base {
                    out.extend_from_slice(&base.to_le_bytes());
                }
                if let Some(ordinal) = spec.ordinal {
                    out.extend_from_slice(&ordinal.to_le_bytes());
                }
                if let Some(size) = spec.exact_size {
                    out.extend_from_slice(&size.to_le_bytes());
                }
                if let Some((at, xor)) = spec.header_edit {
                    out.extend_from_slice(&[at, xor]);
                }
                if let Some(base) = spec.name_base {
                    out.extend_from_slice(&base.to_le_bytes());
                }
                if let Some(len) = spec.file_len {
                    out.extend_from_slice(&len.to_le_bytes());
                }
            }
            Op::Frame(spec) => {
                out.push(1);
                let flags = u8::from(spec.position.is_some())
                    | u8::from(spec.offset.is_some()) << 1
                    | u8::from(spec.prev.is_some()) << 2
                    | u8::from(spec.synced_before.is_some()) << 3
                    | u8::from(spec.txn_after.is_some()) << 4
                    | u8::from(spec.flip.is_some()) << 5
                    | u8::from(matches!(spec.stream, Name::Custom(_))) << 6
                    | u8::from(matches!(spec.event_type, Name::Custom(_))) << 7;
                out.push(flags);
                if let Some(position) = spec.position {
                    out.extend_from_slice(&position.to_le_bytes());
                }
                if let Some(offset) = spec.offset {
                    out.extend_from_slice(&offset.to_le_bytes());
                }
                if let Some(prev) = spec.prev {
                    prev.encode(&mut out);
                }
                if let Some(synced) = spec.synced_before {
                    out.extend_from_slice(&synced.to_le_bytes());
                }
                if let Some(txn_after) = spec.txn_after {
                    out.extend_from_slice(&txn_after.to_le_bytes());
                }
                if let Some((at, xor)) = spec.flip {
                    out.extend_from_slice(&at.to_le_bytes());
                    out.push(xor);
                }
                encode_name(&spec.stream, &mut out);
                encode_name(&spec.event_type, &mut out);
                encode_short(&spec.metadata, &mut out);
                encode_short(&spec.data, &mut out);
            }
            Op::Raw(bytes) => {
                out.push(2);
                let len = bytes.len().min(usize::from(u16::MAX));
                out.extend_from_slice(&(len as u16).to_le_bytes());
                out.extend_from_slice(&bytes[..len]);
            }
            Op::Checkpoint(CheckpointSpec::Raw { bytes, add_crc }) => {
                out.push(3);
                out.push(if *add_crc { 2 } else { 0 });
                let len = bytes.len().min(usize::from(u16::MAX));
                out.extend_from_slice(&(len as u16).to_le_bytes());
                out.extend_from_slice(&bytes[..len]);
            }
            Op::Checkpoint(CheckpointSpec::Auto(edits)) => {
                out.push(3);
                out.push(1 | if edits.version.is_some() { 2 } else { 0 } | if edits.pad.is_some() { 4 } else { 0 });
                let flags = u8::from(edits.interval.is_some())
                    | u8::from(edits.next_position.is_some()) << 1
                    | u8::from(edits.end.is_some()) << 2
                    | u8::from(edits.last.is_some()) << 3
                    | u8::from(edits.duplicate.is_some()) << 4
                    | u8::from(edits.edit.is_some()) << 5
                    | u8::from(edits.bad_crc) << 6
                    | u8::from(edits.trailing.is_some()) << 7;
                out.push(flags);
                if let Some(interval) = edits.interval {
                    out.extend_from_slice(&interval.to_le_bytes());
                }
                if let Some(next) = edits.next_position {
                    out.extend_from_slice(&next.to_le_bytes());
                }
                if let Some(end) = edits.end {
                    end.encode(&mut out);
                }
                if let Some(last) = edits.last {
                    last.encode(&mut out);
                }
                if let Some(dup) = edits.duplicate {
                    out.push(dup);
                }
                if let Some((stream, field, value)) = edits.edit {
                    out.extend_from_slice(&[stream, field]);
                    match value {
                        EditValue::Raw(raw) => out.extend_from_slice(&raw.to_le_bytes()),
                        EditValue::Locator(loc) => loc.encode(&mut out),
                    }
                }
                if let Some(trailing) = &edits.trailing {
                    encode_short(trailing, &mut out);
                }
                if let Some(version) = edits.version {
                    out.extend_from_slice(&version.to_le_bytes());
                }
                if let Some((count, head)) = edits.pad {
                    out.extend_from_slice(&count.to_le_bytes());
                    head.encode(&mut out);
                }
            }
            Op::Options { interval_bits } => out.extend_from_slice(&[4, *interval_bits]),
            Op::Zeros(n) => out.extend_from_slice(&[5, *n]),
        }
    }
    out
}

/// An event the directory holds, as the store must return it (valid programs only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedEvent {
    pub stream: String,
    pub event_type: String,
    pub metadata: Vec<u8>,
    pub data: Vec<u8>,
    pub position: u64,
    pub offset: u64,
}

#[derive(Debug, Clone)]
struct StreamAuto {
    last_offset: u64,
    head: u64,
    sparse: Vec<u64>,
}

struct SegmentBuf {
    base: u64,
    ordinal: u32,
    size: u64,
    spec: SegmentSpec,
    /// Bytes after the header.
    body: Vec<u8>,
    frames: usize,
    /// Where the writer would write next (bytes after the header): the end of the last frame.
    frames_end: usize,
    /// Zeros or raw bytes were written: a frame after them is not part of the log.
    gap: bool,
}

impl SegmentBuf {
    fn capacity(&self) -> usize {
        (self.size as usize).saturating_sub(SEGMENT_HEADER_LEN)
    }
}

/// The directory a program describes.
pub struct Built {
    /// (file name, contents).
    pub files: Vec<(String, Vec<u8>)>,
    pub interval: u32,
    pub collide: bool,
    /// The program used no deviation: the directory is a valid store holding `expected`.
    pub clean: bool,
    /// Clean, and with a checkpoint the store must use.
    pub checkpoint_valid: bool,
    pub expected: Vec<ExpectedEvent>,
    /// Every stream name a frame used.
    pub names: Vec<Vec<u8>>,
    /// A frame was written with `txn_after = u32::MAX` (a known bug, see `known_bug`).
    pub txn_after_max: bool,
}

struct Builder {
    interval: u32,
    collide: bool,
    segments: Vec<SegmentBuf>,
    next_position: u64,
    streams: BTreeMap<Vec<u8>, StreamAuto>,
    last_locator: u64,
    last_timestamp: u64,
    locators: Vec<u64>,
    expected: Vec<ExpectedEvent>,
    clean: bool,
    checkpoint: Option<Vec<u8>>,
    checkpoint_valid: bool,
    names: Vec<Vec<u8>>,
    txn_after_max: bool,
}

fn resolve_name<'a>(name: &'a Name, table: &[&'a str]) -> &'a [u8] {
    match name {
        Name::Table(n) => table[usize::from(*n) % table.len()].as_bytes(),
        Name::Custom(bytes) => bytes,
    }
}

impl Builder {
    fn resolve(&self, reference: LocatorRef) -> u64 {
        match reference {
            LocatorRef::Frame(n) if !self.locators.is_empty() => self.locators[usize::from(n) % self.locators.len()],
            LocatorRef::Frame(_) | LocatorRef::NoPrev => u64::MAX,
            LocatorRef::Raw(value) => value,
        }
    }

    fn new_segment(&mut self, spec: SegmentSpec) -> bool {
        if self.segments.len() >= MAX_SEGMENTS {
            return false;
        }
        if spec != SegmentSpec::default() && spec != (SegmentSpec { two_pages: true, ..SegmentSpec::default() }) {
            self.clean = false;
        }
        let auto_base = if self.segments.is_empty() { 0 } else { self.next_position };
        if let Some(last) = self.segments.last() {
            if last.base == auto_base {
                // An empty segment followed by another: the store refuses equal bases.
                self.clean = false;
            }
        }
        let size = match spec.exact_size {
            Some(size) => u64::from(size),
            None if spec.two_pages => 2 * SEGMENT_SIZE,
            None => SEGMENT_SIZE,
        };
        self.segments.push(SegmentBuf {
            base: spec.base.unwrap_or(auto_base),
            ordinal: spec.ordinal.unwrap_or(self.segments.len() as u32),
            size,
            spec,
            body: Vec::new(),
            frames: 0,
            frames_end: 0,
            gap: false,
        });
        true
    }

    fn current(&mut self) -> &mut SegmentBuf {
        if self.segments.is_empty() {
            self.new_segment(SegmentSpec::default());
        }
        self.segments.last_mut().expect("a segment")
    }

    fn frame(&mut self, spec: &FrameSpec) {
        let stream = resolve_name(&spec.stream, &STREAMS).to_vec();
        let event_type = resolve_name(&spec.event_type, &TYPES).to_vec();
        let custom = matches!(spec.stream, Name::Custom(_)) || matches!(spec.event_type, Name::Custom(_));
        let deviates = custom
            || spec.position.is_some()
            || spec.offset.is_some()
            || spec.prev.is_some()
            || spec.synced_before.is_some()
            || spec.txn_after.is_some_and(|n| n != 0)
            || spec.flip.is_some();
        if deviates {
            self.clean = false;
        }
        self.txn_after_max |= spec.txn_after == Some(u32::MAX);
        let state = self.streams.get(&stream).cloned();
        let position = spec.position.unwrap_or(self.next_position);
        let offset = spec.offset.unwrap_or(state.as_ref().map_or(0, |s| s.last_offset.wrapping_add(1)));
        let prev = spec.prev.map_or(state.as_ref().map_or(format::NO_PREV, |s| s.head), |p| self.resolve(p));
        self.last_timestamp += 1;
        let frame = RawFrame {
            position,
            offset,
            prev,
            synced_before: spec.synced_before.unwrap_or(position),
            timestamp: self.last_timestamp,
            event_id: (u128::from(position) << 64 | 0xa11a15).to_be_bytes(),
            txn_after: spec.txn_after.unwrap_or(0),
            codec: 0,
            stream: stream.clone(),
            event_type: event_type.clone(),
            metadata: spec.metadata.clone(),
            data: spec.data.clone(),
        };
        let mut bytes = format::encode_frame(&frame);
        if let Some((at, xor)) = spec.flip {
            let at = usize::from(at) % bytes.len();
            bytes[at] ^= xor.max(1);
        }
        // Roll as the writer does when the frame does not fit.
        {
            let segment = self.current();
            let fits = aligned(segment.body.len()) + bytes.len() <= segment.capacity();
            if !fits && segment.frames > 0 && self.segments.len() < MAX_SEGMENTS {
                self.new_segment(SegmentSpec::default());
            }
        }
        let segment = self.segments.last_mut().expect("a segment");
        let start = aligned(segment.body.len());
        let ordinal = segment.ordinal;
        if segment.gap {
            self.clean = false;
        }
        segment.body.resize(start, 0);
        let room = segment.capacity().saturating_sub(start);
        if bytes.len() > room {
            // Torn: only what fits is written.
            self.clean = false;
            segment.body.extend_from_slice(&bytes[..room]);
        } else {
            segment.body.extend_from_slice(&bytes);
        }
        segment.frames += 1;
        segment.frames_end = aligned(segment.body.len());
        let here = locator(ordinal, (SEGMENT_HEADER_LEN + start) as u32);
        self.locators.push(here);
        if !self.names.contains(&stream) {
            self.names.push(stream.clone());
        }
        // The writer's view after this record (whatever the record really holds).
        self.next_position = self.next_position.wrapping_add(1);
        self.last_locator = here;
        let interval = u64::from(self.interval);
        match self.streams.get_mut(&stream) {
            Some(auto) => {
                auto.last_offset = auto.last_offset.wrapping_add(1);
                auto.head = here;
                if auto.last_offset % interval == 0 {
                    auto.sparse.push(here);
                }
            }
            None => {
                self.streams.insert(stream.clone(), StreamAuto { last_offset: 0, head: here, sparse: Vec::new() });
            }
        }
        if self.clean {
            self.expected.push(ExpectedEvent {
                stream: String::from_utf8(stream).expect("table names are UTF-8"),
                event_type: String::from_utf8(event_type).expect("table names are UTF-8"),
                metadata: spec.metadata.clone(),
                data: spec.data.clone(),
                position,
                offset,
            });
        }
    }

    fn checkpoint(&mut self, spec: &CheckpointSpec) {
        match spec {
            CheckpointSpec::Raw { bytes, add_crc } => {
                self.clean = false;
                self.checkpoint_valid = false;
                self.checkpoint = Some(if *add_crc { format::with_crc(bytes.clone()) } else { bytes.clone() });
            }
            CheckpointSpec::Auto(edits) => {
                let end = match self.segments.last() {
                    Some(segment) => locator(segment.ordinal, (SEGMENT_HEADER_LEN + segment.frames_end) as u32),
                    None => locator(0, SEGMENT_HEADER_LEN as u32),
                };
                let mut checkpoint = RawCheckpoint {
                    version: edits.version.unwrap_or(1),
                    interval: edits.interval.unwrap_or(self.interval),
                    next_position: edits.next_position.unwrap_or(self.next_position),
                    end: edits.end.map_or(end, |e| self.resolve(e)),
                    last: edits.last.map_or(self.last_locator, |l| self.resolve(l)),
                    last_timestamp: self.last_timestamp,
                    streams: self
                        .streams
                        .iter()
                        .map(|(name, state)| CheckpointStream {
                            name: name.clone(),
                            last_offset: state.last_offset,
                            head: state.head,
                            sparse: state.sparse.clone(),
                        })
                        .collect(),
                };
                if let Some(dup) = edits.duplicate {
                    if !checkpoint.streams.is_empty() {
                        let copy = checkpoint.streams[usize::from(dup) % checkpoint.streams.len()].clone();
                        checkpoint.streams.push(copy);
                    }
                }
                if let Some((stream, field, value)) = edits.edit {
                    let value = match value {
                        EditValue::Raw(raw) => raw,
                        EditValue::Locator(reference) => self.resolve(reference),
                    };
                    let count = checkpoint.streams.len();
                    if count > 0 {
                        let entry = &mut checkpoint.streams[usize::from(stream) % count];
                        match field % 4 {
                            0 => entry.last_offset = value,
                            1 => entry.head = value,
                            2 => entry.sparse.push(value),
                            _ => match entry.sparse.first_mut() {
                                Some(first) => *first = value,
                                None => entry.sparse.push(value),
                            },
                        }
                    }
                }
                if let Some((count, head)) = edits.pad {
                    let head = self.resolve(head);
                    for i in 0..count.min(1024) {
                        let name = format!("pad-{i}").into_bytes();
                        checkpoint.streams.push(CheckpointStream { name, last_offset: 0, head, sparse: Vec::new() });
                    }
                }
                let mut body = format::encode_checkpoint_body(&checkpoint);
                if let Some(trailing) = &edits.trailing {
                    body.extend_from_slice(trailing);
                }
                let mut bytes = format::with_crc(body);
                if edits.bad_crc {
                    let last = bytes.len() - 1;
                    bytes[last] ^= 0x5a;
                }
                let edited = *edits != CheckpointEdits::default();
                if edited {
                    self.clean = false;
                }
                self.checkpoint_valid = !edited;
                self.checkpoint = Some(bytes);
            }
        }
    }

    fn finish(self) -> Built {
        let mut files = Vec::new();
        for segment in &self.segments {
            let mut header = format::segment_header(segment.size, segment.base, segment.ordinal);
            if let Some((at, xor)) = segment.spec.header_edit {
                let at = usize::from(at) % SEGMENT_HEADER_LEN;
                header[at] ^= xor.max(1);
                if at < 60 {
                    format::fix_segment_header_crc(&mut header);
                }
            }
            let mut bytes = header.to_vec();
            bytes.extend_from_slice(&segment.body);
            let len = segment.spec.file_len.map_or(segment.size as usize, usize::from);
            bytes.resize(len, 0);
            let name = format::segment_file_name(segment.spec.name_base.unwrap_or(segment.base));
            files.retain(|(existing, _)| *existing != name);
            files.push((name, bytes));
        }
        if let Some(checkpoint) = self.checkpoint {
            files.push((format::CHECKPOINT_FILE.to_owned(), checkpoint));
        }
        Built {
            files,
            interval: self.interval,
            collide: self.collide,
            clean: self.clean,
            checkpoint_valid: self.clean && self.checkpoint_valid,
            expected: self.expected,
            names: self.names,
            txn_after_max: self.txn_after_max,
        }
    }
}

/// Runs a program: the directory it describes.
pub fn build(ops: &[Op]) -> Built {
    let mut builder = Builder {
        interval: 4,
        collide: false,
        segments: Vec::new(),
        next_position: 0,
        streams: BTreeMap::new(),
        last_locator: format::NO_PREV,
        last_timestamp: 1_700_000_000_000_000_000,
        locators: Vec::new(),
        expected: Vec::new(),
        clean: true,
        checkpoint: None,
        checkpoint_valid: false,
        names: Vec::new(),
        txn_after_max: false,
    };
    for op in ops {
        match op {
            Op::NewSegment(spec) => {
                builder.new_segment(spec.clone());
            }
            Op::Frame(spec) => builder.frame(spec),
            Op::Raw(bytes) => {
                builder.clean = false;
                let segment = builder.current();
                segment.gap = true;
                let room = segment.capacity().saturating_sub(segment.body.len());
                segment.body.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            Op::Checkpoint(spec) => builder.checkpoint(spec),
            Op::Options { interval_bits } => {
                if builder.locators.is_empty() && builder.checkpoint.is_none() {
                    builder.interval = 1 + u32::from(interval_bits & 7);
                    builder.collide = interval_bits & 8 != 0;
                }
            }
            Op::Zeros(n) => {
                let segment = builder.current();
                segment.gap = true;
                let room = segment.capacity().saturating_sub(segment.body.len());
                let len = segment.body.len() + (usize::from(*n) * 8).min(room);
                segment.body.resize(len, 0);
            }
        }
    }
    if builder.checkpoint.is_none() {
        builder.checkpoint_valid = false;
    }
    builder.finish()
}

/// Writes the directory.
pub fn write(built: &Built, dir: &Path) {
    for (name, bytes) in &built.files {
        std::fs::write(dir.join(name), bytes).expect("writing a file of the fuzzed directory");
    }
}

/// The store's options for a built directory.
pub fn options(built: &Built) -> Options {
    Options {
        segment_size_bytes: SEGMENT_SIZE,
        index_interval_events: built.interval,
        stream_hash_mask: if built.collide { 0 } else { u64::MAX },
        ..Options::default()
    }
}

/// Whether the store accepts this stream name for reads.
fn readable_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= annals::STREAM_NAME_BYTES_MAX && !name.chars().any(char::is_control)
}

/// Most items any read may yield (the directory holds far fewer records).
const ITEMS_MAX: usize = 100_000;

/// Reads the whole log; every item is `Ok` with the next position, or one final `Err(Corrupt)`.
fn read_all_checked(store: &Store, from: u64) -> (Vec<RecordedEvent>, bool) {
    let reader = match store.read_all(from) {
        Ok(reader) => reader,
        Err(Error::Corrupt { .. }) => return (Vec::new(), true),
        Err(err) => panic!("read_all({from}) failed with {err:?}"),
    };
    let mut events = Vec::new();
    let mut reader = reader.take(ITEMS_MAX + 1);
    while let Some(item) = reader.next() {
        match item {
            Ok(event) => {
                assert_eq!(event.position(), from + events.len() as u64, "read_all yields dense positions");
                events.push(event);
            }
            Err(Error::Corrupt { .. }) => {
                assert!(reader.next().is_none(), "read_all goes on after an error");
                return (events, true);
            }
            Err(err) => panic!("read_all item failed with {err:?}"),
        }
    }
    assert!(events.len() <= ITEMS_MAX, "read_all does not end");
    (events, false)
}

/// Reads one stream forwards from `from`: `Ok` items with dense offsets of that stream, or one final
/// `Err(Corrupt)`. Returns `None` if the name is refused.
fn read_stream_checked(store: &Store, name: &str, from: u64) -> Option<(Vec<RecordedEvent>, bool)> {
    let reader = match store.read_stream(name, from) {
        Ok(reader) => reader,
        Err(Error::InvalidStreamName { .. }) if !readable_name(name) => return None,
        Err(err) => panic!("read_stream({name:?}, {from}) failed with {err:?}"),
    };
    assert!(readable_name(name), "read_stream accepted the name {name:?}");
    let mut events = Vec::new();
    let mut reader = reader.take(ITEMS_MAX + 1);
    while let Some(item) = reader.next() {
        match item {
            Ok(event) => {
                assert_eq!(event.stream(), name);
                assert_eq!(event.offset(), from + events.len() as u64, "read_stream yields dense offsets");
                events.push(event);
            }
            Err(Error::Corrupt { .. }) => {
                assert!(reader.next().is_none(), "read_stream goes on after an error");
                return Some((events, true));
            }
            Err(err) => panic!("read_stream item failed with {err:?}"),
        }
    }
    assert!(events.len() <= ITEMS_MAX, "read_stream does not end");
    Some((events, false))
}

/// Reads one stream backwards from `from` (`None`: its last event).
fn read_backwards_checked(store: &Store, name: &str, from: Option<u64>) -> Option<(Vec<RecordedEvent>, bool)> {
    let reader = match store.read_stream_backwards(name, from) {
        Ok(reader) => reader,
        Err(Error::InvalidStreamName { .. }) if !readable_name(name) => return None,
        Err(err) => panic!("read_stream_backwards({name:?}, {from:?}) failed with {err:?}"),
    };
    let version = store.stream_version(name);
    let first = version.map(|last| from.map_or(last, |from| from.min(last)));
    let mut events = Vec::new();
    let mut reader = reader.take(ITEMS_MAX + 1);
    while let Some(item) = reader.next() {
        match item {
            Ok(event) => {
                assert_eq!(event.stream(), name);
                let expected = first.expect("a missing stream yields nothing").checked_sub(events.len() as u64);
                assert_eq!(Some(event.offset()), expected, "read_stream_backwards yields descending offsets");
                events.push(event);
            }
            Err(Error::Corrupt { .. }) => {
                assert!(reader.next().is_none(), "read_stream_backwards goes on after an error");
                return Some((events, true));
            }
            Err(err) => panic!("read_stream_backwards item failed with {err:?}"),
        }
    }
    assert!(events.len() <= ITEMS_MAX, "read_stream_backwards does not end");
    Some((events, false))
}

fn same(event: &RecordedEvent, expected: &ExpectedEvent) -> bool {
    event.stream() == expected.stream
        && event.event_type() == expected.event_type
        && event.offset() == expected.offset
        && event.position() == expected.position
        && event.data()[..] == expected.data[..]
        && event.metadata()[..] == expected.metadata[..]
}

/// The name appended to after open: not one a program can pick from the table.
const NEW_STREAM: &str = "fuzz-new-stream";

/// Checks an opened store: every read, then an append and a reopen.
fn check_open_store(store: Store, built: &Built, dir: &Path) {
    let head = store.head_position();
    let verified = store.verify().unwrap_or_else(|err| panic!("verify could not run: {err:?}"));
    if built.clean {
        assert!(verified.is_ok(), "verify of a valid log: {verified:?}");
        assert_eq!(verified.records, built.expected.len() as u64, "verify counts every record");
    }
    let (all, all_failed) = read_all_checked(&store, 0);
    let mut names: Vec<String> = STREAMS.iter().map(|s| (*s).to_owned()).collect();
    for name in built.names.iter().filter_map(|n| std::str::from_utf8(n).ok()) {
        names.push(name.to_owned());
    }
    for event in &all {
        names.push(event.stream().to_owned());
    }
    names.sort();
    names.dedup();

    if built.clean {
        assert!(!all_failed, "reading a valid log failed");
        let report = store.recovery_report();
        assert_eq!(
            report.checkpoint_used, built.checkpoint_valid,
            "a valid checkpoint must be used (and only a valid one): {report:?}"
        );
        assert_eq!(report.tail_bytes_cut, 0, "a valid log has no torn tail: {report:?}");
        assert_eq!(head, (built.expected.len() as u64).checked_sub(1), "head position of a valid log");
        assert_eq!(all.len(), built.expected.len());
        for (event, expected) in all.iter().zip(&built.expected) {
            assert!(same(event, expected), "read_all returned {event:?}, expected {expected:?}");
        }
    } else if let Some(head) = head {
        assert!(all.len() as u64 <= head + 1, "read_all yielded more than the head position");
    }

    for name in &names {
        let version = store.stream_version(name);
        let expected: Vec<&ExpectedEvent> = built.expected.iter().filter(|e| e.stream == *name).collect();
        if built.clean {
            assert_eq!(version, (expected.len() as u64).checked_sub(1), "stream_version({name:?})");
        }
        let last = version.unwrap_or(0);
        for from in [0, last / 2, last, last + 1] {
            let Some((events, failed)) = read_stream_checked(&store, name, from) else { break };
            if built.clean {
                assert!(!failed, "reading stream {name:?} of a valid log failed");
                let tail = expected.get(from as usize..).unwrap_or_default();
                assert_eq!(events.len(), tail.len(), "read_stream({name:?}, {from}) length");
                for (event, expected) in events.iter().zip(tail) {
                    assert!(same(event, expected), "read_stream returned {event:?}, expected {expected:?}");
                }
            } else if !failed {
                if let Some(version) = version {
                    assert_eq!(events.len() as u64, (version + 1).saturating_sub(from), "read_stream length");
                }
            }
        }
        for from in [None, Some(0), Some(last / 2), Some(last + 1)] {
            let Some((events, failed)) = read_backwards_checked(&store, name, from) else { break };
            if built.clean {
                assert!(!failed, "reading stream {name:?} backwards failed");
                let first = from.map_or(expected.len(), |from| expected.len().min(from as usize + 1));
                let want: Vec<&&ExpectedEvent> = expected[..first].iter().rev().collect();
                assert_eq!(events.len(), want.len(), "read_stream_backwards({name:?}, {from:?}) length");
                for (event, expected) in events.iter().zip(want) {
                    assert!(same(event, expected), "backwards returned {event:?}, expected {expected:?}");
                }
            }
        }
    }

    // An append must succeed, or fail with a typed error that leaves the store as it was.
    let existed = store.stream_version(NEW_STREAM);
    let event = EventData::new("Appended", &b"after open"[..]);
    match store.append(NEW_STREAM, ExpectedVersion::NoStream, &[event]) {
        Ok(result) => {
            assert_eq!(existed, None);
            assert_eq!(result.first_offset, 0);
            assert_eq!(result.first_position, head.map_or(0, |h| h + 1), "an append goes after the head");
            assert_eq!(store.head_position(), Some(result.last_position));
            let (events, failed) = read_stream_checked(&store, NEW_STREAM, 0).expect("a valid name");
            assert!(!failed && events.len() == 1, "the appended event reads back");
            assert_eq!(&events[0].data()[..], b"after open");
            assert_eq!(events[0].position(), result.first_position);
        }
        Err(Error::WrongExpectedVersion { .. }) => assert!(existed.is_some()),
        Err(Error::TransactionTooLarge { .. }) => assert_eq!(store.head_position(), head),
        Err(err) => panic!("append after open failed with {err:?}"),
    }
    let head = store.head_position();
    let versions: Vec<Option<u64>> = names.iter().map(|name| store.stream_version(name)).collect();
    let closed = store.close();
    if let Err(err) = &closed {
        panic!("close failed with {err:?}");
    }

    // What the store wrote, it must open again, with the same contents.
    let reopened = match Store::open_with(dir, options(built)) {
        Ok(store) => store,
        Err(err) => panic!("reopening a store that opened and closed cleanly failed: {err:?}"),
    };
    assert_eq!(reopened.head_position(), head, "head position after reopening");
    let versions_now: Vec<Option<u64>> = names.iter().map(|name| reopened.stream_version(name)).collect();
    assert_eq!(versions_now, versions, "stream versions after reopening");
    if built.clean {
        let (all_again, failed) = read_all_checked(&reopened, 0);
        assert!(!failed);
        assert_eq!(all_again.len() as u64, head.map_or(0, |h| h + 1));
    }
    let _ = reopened.close();
}

/// Engine bugs the fuzzer found whose fix is pending: inputs that reach them are skipped (so that a fuzzing
/// run explores past them) unless `ANNALS_FUZZ_KNOWN_BUGS` is set. Each has a test in
/// `tests/fuzz_regressions.rs`.
pub fn known_bug(built: &Built) -> Option<&'static str> {
    // None pending: the four crashes found so far are fixed (their tests in tests/fuzz_regressions.rs run in
    // every `cargo test`). Add an arm here for the next one, while its fix is pending.
    let _ = built;
    None
}

/// The target: build the directory, open it, check it.
pub fn run(data: &[u8]) {
    let ops = parse(data);
    let built = build(&ops);
    if std::env::var_os("ANNALS_FUZZ_KNOWN_BUGS").is_none() && known_bug(&built).is_some() {
        return;
    }
    let dir = crate::tempdir();
    write(&built, dir.path());
    match Store::open_with(dir.path(), options(&built)) {
        Ok(store) => check_open_store(store, &built, dir.path()),
        Err(err) => {
            assert!(!built.clean, "a valid store directory failed to open: {err:?}");
            match err {
                Error::Corrupt { .. } | Error::UnsupportedFormat { .. } => {}
                other => panic!("open failed with an unexpected error: {other:?}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_round_trip_through_bytes() {
        let ops = vec![
            Op::Options { interval_bits: 9 },
            Op::NewSegment(SegmentSpec { two_pages: true, header_edit: Some((8, 2)), ..SegmentSpec::default() }),
            Op::Frame(FrameSpec { prev: Some(LocatorRef::Frame(3)), ..FrameSpec::plain(1, 2, b"xyz") }),
            Op::Raw(vec![1, 2, 3]),
            Op::Checkpoint(CheckpointSpec::Auto(CheckpointEdits {
                edit: Some((1, 1, EditValue::Locator(LocatorRef::Raw(77)))),
                trailing: Some(vec![9]),
                version: Some(2),
                pad: Some((600, LocatorRef::Frame(0))),
                ..CheckpointEdits::default()
            })),
            Op::Checkpoint(CheckpointSpec::Raw { bytes: vec![4, 5], add_crc: true }),
            Op::Zeros(3),
        ];
        assert_eq!(parse(&encode(&ops)), ops);
    }

    #[test]
    fn a_valid_program_opens_with_its_events() {
        let mut ops = vec![Op::Options { interval_bits: 1 }];
        for i in 0..60u8 {
            ops.push(Op::Frame(FrameSpec::plain(i % 3, i % 2, &[i; 100])));
            if i == 20 {
                ops.push(Op::Checkpoint(CheckpointSpec::Auto(CheckpointEdits::default())));
            }
        }
        let built = build(&ops);
        assert!(built.clean);
        assert_eq!(built.files.iter().filter(|(name, _)| name.ends_with(".seg")).count(), 3);
        run(&encode(&ops));
    }
}
