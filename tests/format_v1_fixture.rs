//! On-disk format v1 stays readable, and the current writer still writes it.
//!
//! `tests/fixtures/v1/` holds a store written by the first release of the format (`format-spec.md`, version 1):
//! `intact/` (4 KiB segments, index interval 4, several streams, multi-event and multi-stream transactions,
//! metadata, codecs, fixed event ids, spanning 3+ segments, closed cleanly), `torn-tail/` (the same segments with
//! the second half of the last frame overwritten with garbage, and the stale `index.ckpt` written when the first
//! part of the script was closed) and `corrupt-middle/` (one flipped byte in a sealed segment, no checkpoint).
//!
//! The tests copy a fixture to a temporary directory (opening a store writes `LOCK` and may cut a tail) and
//! check: every event's stream, offset, position, type, id, data, metadata and codec (timestamps only for
//! monotonicity: they are whatever the clock said when the fixture was made); that a torn tail is cut back to the
//! last complete transaction, with or without the stale checkpoint; that damage in a sealed segment is
//! `Corrupt` naming the file and the frame's offset, at open without a checkpoint and on read behind one; that
//! the fixture's bytes follow `format-spec.md` as read by the small independent decoder below (not the
//! engine's); that the first frame matches a field-by-field hex literal; and that the current writer, given the
//! same script, writes the same bytes apart from timestamps and the CRCs that cover them.
//!
//! The first open of a fixture by this build is the upgrade to the persistent index: the checkpoint that
//! earlier builds wrote (`index.ckpt`, its bytes still checked against the spec here) is ignored and removed,
//! and the index is built from the log once.
//!
//! The fixtures are frozen: a failure here means the format changed. `write_format_fixtures` (ignored) writes
//! the fixtures of the format this build writes from `script()`, only when `ANNALS_WRITE_FIXTURE=v<N>` names
//! that format and only into a folder that does not exist yet, never over a released one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use annals::{AppendResult, Error, EventData, ExpectedVersion, Options, RecordedEvent, Store, StreamAppend};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------------------------
// The script the fixture was written with.
// ---------------------------------------------------------------------------------------------------------------

fn options() -> Options {
    Options { segment_size_bytes: 4096, ..Default::default() }
}

/// Event ids are `ID_BASE + n` for the n-th event of the script (n from 1).
const ID_BASE: u128 = 0xf1c5_0000_0000_4000_8000_0000_0000_0000;

#[derive(Debug, Clone)]
struct Ev {
    event_type: String,
    data: Vec<u8>,
    metadata: Vec<u8>,
    id: Uuid,
    codec: u8,
}

#[derive(Debug, Clone)]
struct Part {
    stream: String,
    expected: ExpectedVersion,
    events: Vec<Ev>,
}

/// One atomic append: one part is `Store::append`, more are `Store::append_multi`.
type Txn = Vec<Part>;

struct Script {
    /// Appended, then the store is closed: its checkpoint is `torn-tail/index.ckpt`.
    phase1: Vec<Txn>,
    /// Appended after reopening; the last transaction (three events, two streams) is the one `torn-tail` tears.
    phase2: Vec<Txn>,
}

impl Script {
    fn all(&self) -> Vec<Txn> {
        self.phase1.iter().chain(&self.phase2).cloned().collect()
    }
}

struct Builder {
    events: u128,
}

impl Builder {
    fn ev(&mut self, event_type: &str, data: impl AsRef<[u8]>, metadata: impl AsRef<[u8]>, codec: u8) -> Ev {
        self.events += 1;
        Ev {
            event_type: event_type.to_owned(),
            data: data.as_ref().to_vec(),
            metadata: metadata.as_ref().to_vec(),
            id: Uuid::from_u128(ID_BASE + self.events),
            codec,
        }
    }
}

fn part(stream: &str, expected: ExpectedVersion, events: Vec<Ev>) -> Part {
    Part { stream: stream.to_owned(), expected, events }
}

fn script() -> Script {
    use ExpectedVersion::{Any, Exact, NoStream, StreamExists};
    let mut b = Builder { events: 0 };
    let mut phase1: Vec<Txn> = Vec::new();

    phase1.push(vec![part(
        "account-1",
        NoStream,
        vec![b.ev("AccountOpened", br#"{"owner":"Ada"}"#, br#"{"correlation":"c-1"}"#, 0)],
    )]);
    phase1.push(vec![
        part("account-1", Exact(0), vec![b.ev("MoneyWithdrawn", br#"{"amount":10}"#, b"", 0)]),
        part(
            "account-2",
            NoStream,
            vec![
                b.ev("AccountOpened", br#"{"owner":"Grace"}"#, b"", 0),
                b.ev("MoneyDeposited", br#"{"amount":10}"#, br#"{"causation":"t-1"}"#, 0),
            ],
        ),
        part("transfers", Any, vec![b.ev("TransferCompleted", br#"{"from":1,"to":2,"amount":10}"#, b"", 1)]),
    ]);
    for i in 0..40u32 {
        let stream = ["account-1", "account-2", "account-3"][i as usize % 3];
        let metadata = if i % 2 == 0 { format!(r#"{{"seq":{i}}}"#) } else { String::new() };
        let codec = if i % 5 == 0 { 1 } else { 0 };
        let data = format!(r#"{{"amount":{}}}"#, i * 7 + 1);
        phase1.push(vec![part(stream, Any, vec![b.ev("MoneyDeposited", data, metadata, codec)])]);
    }
    // Every byte value as data, a multi-byte UTF-8 stream name, the largest codec tag.
    let every_byte: Vec<u8> = (0..=255).collect();
    phase1.push(vec![part("snapshots/ünïcødé-流", NoStream, vec![b.ev("Snapshot", every_byte, b"", 255)])]);
    // The longest stream name and event type.
    phase1.push(vec![part(&"s".repeat(1024), NoStream, vec![b.ev(&"T".repeat(1024), b"", b"", 0)])]);
    // Empty data and metadata.
    phase1.push(vec![part("empty", NoStream, vec![b.ev("Empty", b"", b"", 0)])]);
    // Several events of one stream in one append.
    phase1.push(vec![part(
        "account-3",
        StreamExists,
        vec![
            b.ev("InterestAccrued", br#"{"rate":"0.5%"}"#, b"", 0),
            b.ev("FeeCharged", br#"{"fee":2}"#, br#"{"reason":"monthly"}"#, 0),
            b.ev("StatementIssued", br#"{"month":"2026-11"}"#, b"", 2),
        ],
    )]);
    for i in 0..30u32 {
        if i % 7 == 3 {
            phase1.push(vec![
                part("account-1", Any, vec![b.ev("MoneyWithdrawn", format!(r#"{{"amount":{i}}}"#), b"", 0)]),
                part("account-3", Any, vec![b.ev("MoneyDeposited", format!(r#"{{"amount":{i}}}"#), b"", 0)]),
                part("transfers", Any, vec![b.ev("TransferCompleted", format!(r#"{{"n":{i}}}"#), b"", 1)]),
            ]);
        } else {
            let stream = ["account-2", "account-1", "account-3"][i as usize % 3];
            let metadata = format!(r#"{{"user":"u{}"}}"#, i % 4);
            phase1.push(vec![part(stream, Any, vec![b.ev("MoneyDeposited", format!("{i}"), metadata, 0)])]);
        }
    }

    let mut phase2: Vec<Txn> = Vec::new();
    for i in 0..5u32 {
        phase2.push(vec![part("account-2", Any, vec![b.ev("MoneyDeposited", format!("late {i}"), b"", 0)])]);
    }
    phase2.push(vec![
        part("account-1", Any, vec![b.ev("MoneyWithdrawn", br#"{"amount":99}"#, b"", 0)]),
        part(
            "transfers",
            Any,
            vec![
                b.ev("TransferStarted", br#"{"id":"t-last"}"#, br#"{"correlation":"c-last"}"#, 0),
                b.ev("TransferCompleted", br#"{"id":"t-last"}"#, br#"{"correlation":"c-last"}"#, 1),
            ],
        ),
    ]);
    Script { phase1, phase2 }
}

/// One event as the script says it must be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    stream: String,
    offset: u64,
    position: u64,
    event_type: String,
    id: Uuid,
    data: Vec<u8>,
    metadata: Vec<u8>,
    codec: u8,
    /// Index of its transaction in the script.
    txn: usize,
    /// Events of the same transaction after this one (the frame's `txn_after`).
    txn_after: u32,
    /// Position of the first event of its transaction.
    txn_first_position: u64,
}

/// The events of `txns` with their offsets and positions, in position order.
fn model(txns: &[Txn]) -> Vec<Expected> {
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    let mut out = Vec::new();
    for (txn_no, txn) in txns.iter().enumerate() {
        let first = out.len() as u64;
        let mut remaining = txn.iter().map(|part| part.events.len() as u32).sum::<u32>();
        for part in txn {
            for ev in &part.events {
                let offset = versions.get(&part.stream).map_or(0, |last| last + 1);
                versions.insert(part.stream.clone(), offset);
                remaining -= 1;
                out.push(Expected {
                    stream: part.stream.clone(),
                    offset,
                    position: out.len() as u64,
                    event_type: ev.event_type.clone(),
                    id: ev.id,
                    data: ev.data.clone(),
                    metadata: ev.metadata.clone(),
                    codec: ev.codec,
                    txn: txn_no,
                    txn_after: remaining,
                    txn_first_position: first,
                });
            }
        }
    }
    out
}

fn event_data(ev: &Ev) -> EventData {
    EventData::new(ev.event_type.clone(), ev.data.clone())
        .with_metadata(ev.metadata.clone())
        .with_id(ev.id)
        .with_codec(ev.codec)
}

/// Appends `txns` (which follow `done` earlier transactions of `all`) and checks each result against the model.
fn run(store: &Store, all: &[Txn], done: usize, txns: &[Txn]) {
    let expected = model(all);
    for (i, txn) in txns.iter().enumerate() {
        let txn_no = done + i;
        let results: Vec<AppendResult> = if txn.len() == 1 {
            let events: Vec<EventData> = txn[0].events.iter().map(event_data).collect();
            vec![store.append(&txn[0].stream, txn[0].expected, &events).unwrap()]
        } else {
            let appends: Vec<StreamAppend> = txn
                .iter()
                .map(|part| StreamAppend {
                    stream: part.stream.clone(),
                    expected: part.expected,
                    events: part.events.iter().map(event_data).collect(),
                })
                .collect();
            store.append_multi(&appends).unwrap()
        };
        let mine: Vec<&Expected> = expected.iter().filter(|e| e.txn == txn_no).collect();
        let mut at = 0;
        for (part, result) in txn.iter().zip(&results) {
            let (first, last) = (mine[at], mine[at + part.events.len() - 1]);
            assert_eq!(
                *result,
                AppendResult {
                    first_offset: first.offset,
                    last_offset: last.offset,
                    first_position: first.position,
                    last_position: last.position,
                }
            );
            at += part.events.len();
        }
    }
}

/// Writes the fixture store into `dir`: phase 1, close, reopen, phase 2, close.
fn generate(dir: &Path) {
    let script = script();
    let all = script.all();
    let store = Store::open_with(dir, options()).unwrap();
    run(&store, &all, 0, &script.phase1);
    store.close().unwrap();
    let store = Store::open_with(dir, options()).unwrap();
    assert_eq!(store.recovery_report().records_replayed, 0, "the index of phase 1 is used");
    run(&store, &all, script.phase1.len(), &script.phase2);
    store.close().unwrap();
}

// ---------------------------------------------------------------------------------------------------------------
// An independent reader of format v1, written from format-spec.md (not from the engine).
// ---------------------------------------------------------------------------------------------------------------

const SEGMENT_HEADER_LEN: usize = 64;
const FRAME_HEADER_LEN: usize = 88;
const NO_PREV: u64 = u64::MAX;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
fn aligned(len: usize) -> usize {
    len.div_ceil(8) * 8
}
fn locator(ordinal: u32, offset: usize) -> u64 {
    (u64::from(ordinal) << 32) | offset as u64
}

/// The frame CRC as the spec defines it: CRC-32 (IEEE) of bytes `0..4` followed by bytes `8..frame_len`.
fn frame_crc(frame: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&frame[0..4]);
    hasher.update(&frame[8..]);
    hasher.finalize()
}

#[derive(Debug, Clone)]
struct RawFrame {
    ordinal: u32,
    at: usize,
    len: usize,
    position: u64,
    offset: u64,
    prev: u64,
    synced_before: u64,
    timestamp: u64,
    id: Uuid,
    txn_after: u32,
    stream: String,
    event_type: String,
    metadata: Vec<u8>,
    data: Vec<u8>,
    codec: u8,
}

impl RawFrame {
    fn locator(&self) -> u64 {
        locator(self.ordinal, self.at)
    }
}

struct RawSegment {
    name: String,
    bytes: Vec<u8>,
    base: u64,
    ordinal: u32,
    frames: Vec<RawFrame>,
    /// Byte offset after the last frame's padding: the end of the written log in this segment.
    end: usize,
}

/// Checks a segment header against the spec and returns (base position, ordinal).
fn check_segment_header(name: &str, bytes: &[u8]) -> (u64, u32) {
    assert!(bytes.len() >= SEGMENT_HEADER_LEN, "{name}: shorter than its header");
    assert_eq!(&bytes[0..8], b"ANNALSEG", "{name}: magic");
    assert_eq!(u32_at(bytes, 8), 1, "{name}: format version");
    assert_eq!(u32_at(bytes, 12), SEGMENT_HEADER_LEN as u32, "{name}: header length");
    assert_eq!(u64_at(bytes, 16), bytes.len() as u64, "{name}: segment size is the file size");
    let (base, ordinal) = (u64_at(bytes, 24), u32_at(bytes, 32));
    assert!(bytes[36..60].iter().all(|&b| b == 0), "{name}: reserved header bytes");
    assert_eq!(u32_at(bytes, 60), crc32fast::hash(&bytes[..60]), "{name}: header CRC");
    assert_eq!(name, format!("{base:020}.seg"), "{name}: file name is the base position");
    (base, ordinal)
}

/// Decodes one frame at `at`, checking every rule of the spec; `None` at a zero length (the end of the log).
fn decode_frame(name: &str, ordinal: u32, bytes: &[u8], at: usize) -> Option<RawFrame> {
    let len = u32_at(bytes, at) as usize;
    if len == 0 {
        return None;
    }
    assert!(len >= FRAME_HEADER_LEN && at + len <= bytes.len(), "{name}@{at}: frame length {len}");
    let f = &bytes[at..at + len];
    assert_eq!(u32_at(f, 4), frame_crc(f), "{name}@{at}: frame CRC");
    let (stream_len, type_len) = (usize::from(u16_at(f, 68)), usize::from(u16_at(f, 70)));
    let (metadata_len, data_len) = (u32_at(f, 72) as usize, u32_at(f, 76) as usize);
    assert_eq!(FRAME_HEADER_LEN + stream_len + type_len + metadata_len + data_len, len, "{name}@{at}: lengths");
    assert!((1..=1024).contains(&stream_len) && (1..=1024).contains(&type_len), "{name}@{at}: name lengths");
    assert!(f[81..88].iter().all(|&b| b == 0), "{name}@{at}: reserved frame bytes");
    assert!(bytes[at + len..at + aligned(len)].iter().all(|&b| b == 0), "{name}@{at}: padding");
    let body = &f[FRAME_HEADER_LEN..];
    let (stream, rest) = body.split_at(stream_len);
    let (event_type, rest) = rest.split_at(type_len);
    let (metadata, data) = rest.split_at(metadata_len);
    Some(RawFrame {
        ordinal,
        at,
        len,
        position: u64_at(f, 8),
        offset: u64_at(f, 16),
        prev: u64_at(f, 24),
        synced_before: u64_at(f, 32),
        timestamp: u64_at(f, 40),
        id: Uuid::from_bytes(f[48..64].try_into().unwrap()),
        txn_after: u32_at(f, 64),
        stream: String::from_utf8(stream.to_vec()).expect("stream name is UTF-8"),
        event_type: String::from_utf8(event_type.to_vec()).expect("event type is UTF-8"),
        metadata: metadata.to_vec(),
        data: data.to_vec(),
        codec: f[80],
    })
}

/// Reads one intact segment file by the spec: header, frames up to the zero length, zeros to the end.
fn parse_segment(name: &str, bytes: Vec<u8>) -> RawSegment {
    let (base, ordinal) = check_segment_header(name, &bytes);
    let mut frames = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    while at + 4 <= bytes.len() {
        let Some(frame) = decode_frame(name, ordinal, &bytes, at) else { break };
        at += aligned(frame.len);
        frames.push(frame);
    }
    assert!(bytes[at..].iter().all(|&b| b == 0), "{name}: bytes after the end of the log are zero");
    RawSegment { name: name.to_owned(), bytes, base, ordinal, frames, end: at }
}

/// Every `*.seg` of `dir`, in name order (which is position order).
fn segment_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

fn parse_segments(dir: &Path) -> Vec<RawSegment> {
    segment_names(dir).iter().map(|name| parse_segment(name, fs::read(dir.join(name)).unwrap())).collect()
}

#[derive(Debug, PartialEq, Eq)]
struct RawStream {
    last_offset: u64,
    head: u64,
    sparse: Vec<u64>,
}

#[derive(Debug)]
struct RawCheckpoint {
    interval: u32,
    next_position: u64,
    end: u64,
    last: u64,
    last_timestamp: u64,
    streams: BTreeMap<String, RawStream>,
}

/// Reads `index.ckpt` by the spec.
fn parse_checkpoint(bytes: &[u8]) -> RawCheckpoint {
    assert!(bytes.len() >= 60, "checkpoint shorter than its fixed part");
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    assert_eq!(u32::from_le_bytes(crc.try_into().unwrap()), crc32fast::hash(body), "checkpoint CRC");
    assert_eq!(&body[0..8], b"ANNALIDX", "checkpoint magic");
    assert_eq!(u32_at(body, 8), 1, "checkpoint format version");
    let count = u64_at(body, 48);
    let mut at = 56;
    let mut streams = BTreeMap::new();
    for _ in 0..count {
        let name_len = usize::from(u16_at(body, at));
        let name = String::from_utf8(body[at + 2..at + 2 + name_len].to_vec()).unwrap();
        at += 2 + name_len;
        let (last_offset, head, sparse_len) = (u64_at(body, at), u64_at(body, at + 8), u32_at(body, at + 16));
        at += 20;
        let sparse = (0..sparse_len as usize).map(|i| u64_at(body, at + 8 * i)).collect();
        at += 8 * sparse_len as usize;
        assert!(streams.insert(name, RawStream { last_offset, head, sparse }).is_none(), "stream listed twice");
    }
    assert_eq!(at, body.len(), "no bytes after the last stream");
    RawCheckpoint {
        interval: u32_at(body, 12),
        next_position: u64_at(body, 16),
        end: u64_at(body, 24),
        last: u64_at(body, 32),
        last_timestamp: u64_at(body, 40),
        streams,
    }
}

/// The index a checkpoint of `frames` (every record of the log, in order) must hold.
fn streams_of(frames: &[&RawFrame], interval: u64) -> BTreeMap<String, RawStream> {
    let mut streams: BTreeMap<String, RawStream> = BTreeMap::new();
    for frame in frames {
        let state =
            streams.entry(frame.stream.clone()).or_insert(RawStream { last_offset: 0, head: 0, sparse: Vec::new() });
        state.last_offset = frame.offset;
        state.head = frame.locator();
        if frame.offset > 0 && frame.offset % interval == 0 {
            state.sparse.push(frame.locator());
        }
    }
    streams
}

// ---------------------------------------------------------------------------------------------------------------
// Fixture handling.
// ---------------------------------------------------------------------------------------------------------------

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1").join(name)
}

/// A temporary copy of a fixture: opening a store writes into its directory.
fn copy_fixture(name: &str) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    copy
}

fn file_names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect()
}

/// The segment of the corrupt-middle fixture that holds the flipped byte, and the offset of its frame.
const CORRUPT_SEGMENT: &str = "00000000000000000030.seg";
const CORRUPT_FRAME_OFFSET: u64 = 328;

fn read_all(store: &Store) -> Vec<RecordedEvent> {
    store.read_all(0).unwrap().collect::<annals::Result<Vec<_>>>().unwrap()
}

/// Checks every field of `actual` against `expected`, and that timestamps never go backwards.
fn assert_events(actual: &[RecordedEvent], expected: &[Expected]) {
    assert_eq!(actual.len(), expected.len(), "number of events");
    let mut previous_timestamp = 0;
    for (event, want) in actual.iter().zip(expected) {
        let context = format!("position {}", want.position);
        assert_eq!(event.stream(), want.stream, "{context}: stream");
        assert_eq!(event.offset(), want.offset, "{context}: offset");
        assert_eq!(event.position(), want.position, "{context}: position");
        assert_eq!(event.event_type(), want.event_type, "{context}: event type");
        assert_eq!(event.event_id(), want.id, "{context}: event id");
        assert_eq!(event.data().as_ref(), &want.data[..], "{context}: data");
        assert_eq!(event.metadata().as_ref(), &want.metadata[..], "{context}: metadata");
        assert_eq!(event.codec(), want.codec, "{context}: codec");
        assert!(event.timestamp_nanos() >= previous_timestamp.max(1), "{context}: timestamp went backwards");
        previous_timestamp = event.timestamp_nanos();
    }
}

/// Checks the whole store against `expected`: the global log, every stream forwards from every offset and
/// backwards, stream versions, the head, and `verify`.
fn assert_store(store: &Store, expected: &[Expected]) {
    assert_events(&read_all(store), expected);
    assert_eq!(store.head_position(), expected.len().checked_sub(1).map(|p| p as u64));
    let streams: BTreeSet<&str> = expected.iter().map(|e| e.stream.as_str()).collect();
    assert_eq!(store.stream_count(), streams.len());
    for stream in streams {
        let mine: Vec<Expected> = expected.iter().filter(|e| e.stream == stream).cloned().collect();
        assert_eq!(store.stream_version(stream), Some(mine.len() as u64 - 1), "version of {stream:?}");
        for from in 0..mine.len() {
            let read: Vec<RecordedEvent> =
                store.read_stream(stream, from as u64).unwrap().collect::<annals::Result<_>>().unwrap();
            assert_events(&read, &mine[from..]);
        }
        let mut backwards: Vec<RecordedEvent> =
            store.read_stream_backwards(stream, None).unwrap().collect::<annals::Result<_>>().unwrap();
        backwards.reverse();
        assert_events(&backwards, &mine);
    }
    assert_eq!(store.stream_version("never-written"), None);
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, expected.len() as u64);
}

// ---------------------------------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn intact_v1_store_reads_back_every_field() {
    let expected = model(&script().all());
    let dir = copy_fixture("intact");
    // The first open by a build with the persistent index (format-spec §6): the checkpoint of earlier builds
    // is ignored and removed, and the index is built from the log, once.
    let store = Store::open_with(dir.path(), options()).unwrap();
    let report = store.recovery_report().clone();
    assert_eq!((report.index_tables, report.records_replayed, report.tail_bytes_cut), (0, expected.len() as u64, 0));
    assert!(report.index_rejected.is_none(), "{report:?}");
    assert!(!dir.path().join("index.ckpt").exists(), "the old checkpoint is removed");
    assert_store(&store, &expected);
    store.close().unwrap();

    // From then on the store opens from its index, replaying nothing.
    let store = Store::open_with(dir.path(), options()).unwrap();
    let report = store.recovery_report().clone();
    assert!(report.index_tables > 0 && report.records_replayed == 0 && report.index_rejected.is_none(), "{report:?}");
    assert_store(&store, &expected);

    // A v1 store stays writable, and what is appended now reads back after a reopen.
    let late = EventData::new("AccountClosed", &b"{}"[..]).with_id(Uuid::from_u128(ID_BASE + 1000));
    let result = store.append("account-1", ExpectedVersion::Exact(expected_version(&expected, "account-1")), &[late]);
    assert_eq!(result.unwrap().first_position, expected.len() as u64);
    store.close().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let all = read_all(&store);
    assert_events(&all[..expected.len()], &expected);
    let last = all.last().unwrap();
    assert_eq!(
        (last.stream(), last.event_type(), last.position()),
        ("account-1", "AccountClosed", expected.len() as u64)
    );
}

fn expected_version(expected: &[Expected], stream: &str) -> u64 {
    expected.iter().filter(|e| e.stream == stream).map(|e| e.offset).max().unwrap()
}

#[test]
fn torn_tail_is_cut_back_to_the_last_complete_transaction() {
    let all = model(&script().all());
    let last_txn = all.last().unwrap().txn;
    let prefix: Vec<Expected> = all.iter().filter(|e| e.txn < last_txn).cloned().collect();
    assert_eq!(all.len() - prefix.len(), 3, "the torn transaction has three events, only the last frame is torn");
    for with_checkpoint in [true, false] {
        let dir = copy_fixture("torn-tail");
        if !with_checkpoint {
            fs::remove_file(dir.path().join("index.ckpt")).unwrap();
        }
        let store = Store::open_with(dir.path(), options()).unwrap();
        let report = store.recovery_report().clone();
        // The stale checkpoint of earlier builds is not read: the index is built from the whole log.
        assert!(report.index_tables == 0 && report.index_rejected.is_none(), "{report:?}");
        assert_eq!(report.records_replayed, prefix.len() as u64, "{report:?}");
        assert!(!dir.path().join("index.ckpt").exists());
        assert!(report.tail_bytes_cut > 0, "{report:?}");
        assert_store(&store, &prefix);

        // Recovery writes nothing (format-spec.md §8): the torn tail is still on disk after the open.
        let last_segment = segment_names(dir.path()).pop().unwrap();
        assert_eq!(
            fs::read(dir.path().join(&last_segment)).unwrap(),
            fs::read(fixture("torn-tail").join(&last_segment)).unwrap()
        );

        // The positions of the cut transaction are given to the next append, and survive a reopen.
        let again = EventData::new("TransferRetried", &b"{}"[..]).with_id(Uuid::from_u128(ID_BASE + 2000));
        let result = store.append("transfers", ExpectedVersion::Any, &[again]).unwrap();
        assert_eq!(result.first_position, prefix.len() as u64);

        // The writer zeroed the cut before that first write (§7.1 step 0): nothing of the torn transaction is
        // left after the new end of the log, whose last record is the one just appended.
        let segment = parse_segment(&last_segment, fs::read(dir.path().join(&last_segment)).unwrap());
        assert_eq!(segment.frames.last().unwrap().position, prefix.len() as u64);
        assert_eq!(segment.frames.last().unwrap().event_type, "TransferRetried");
        store.close().unwrap();
        let store = Store::open_with(dir.path(), options()).unwrap();
        let events = read_all(&store);
        assert_events(&events[..prefix.len()], &prefix);
        assert_eq!(events.len(), prefix.len() + 1);
        assert_eq!(events.last().unwrap().event_type(), "TransferRetried");
        store.close().unwrap();
    }
}

#[test]
fn corrupt_sealed_segment_is_reported_at_open_without_an_index() {
    let dir = copy_fixture("corrupt-middle");
    assert!(!dir.path().join("index.ckpt").exists());
    let result = Store::open_with(dir.path(), options());
    let Err(Error::Corrupt { file, offset, reason }) = result else {
        panic!("expected Corrupt, got {:?}", result.map(|_| ()));
    };
    assert_eq!(file, dir.path().join(CORRUPT_SEGMENT));
    assert_eq!(offset, CORRUPT_FRAME_OFFSET);
    assert!(reason.contains("CRC"), "{reason}");
    // Nothing was changed: the damaged bytes are still there for a person to look at.
    assert_eq!(
        fs::read(dir.path().join(CORRUPT_SEGMENT)).unwrap(),
        fs::read(fixture("corrupt-middle").join(CORRUPT_SEGMENT)).unwrap()
    );
}

#[test]
fn corruption_behind_the_index_is_found_on_read_and_by_verify() {
    // The intact store opened once (its index built) and closed, then the damaged segment put in place: the
    // open trusts the index and does not read the sealed segments, so the damage shows when the record is read.
    let dir = copy_fixture("intact");
    Store::open_with(dir.path(), options()).unwrap().close().unwrap();
    fs::copy(fixture("corrupt-middle").join(CORRUPT_SEGMENT), dir.path().join(CORRUPT_SEGMENT)).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.recovery_report().records_replayed, 0, "{:?}", store.recovery_report());
    let is_the_damage = |err: &Error| {
        matches!(err, Error::Corrupt { file, offset, .. }
            if *file == dir.path().join(CORRUPT_SEGMENT) && *offset == CORRUPT_FRAME_OFFSET)
    };

    let results: Vec<annals::Result<RecordedEvent>> = store.read_all(0).unwrap().collect();
    let (good, bad) = results.split_at(results.len() - 1);
    assert!(good.iter().all(|event| event.is_ok()));
    assert!(matches!(&bad[0], Err(err) if is_the_damage(err)), "{:?}", bad[0].as_ref().map(|e| e.position()));
    let damaged_position = good.len() as u64;

    let report = store.verify().unwrap();
    assert!(report.problem.as_ref().is_some_and(is_the_damage), "{report:?}");
    assert_eq!(report.records, damaged_position);

    // The damaged event's stream fails at that event; reads that do not touch it are unaffected.
    let expected = model(&script().all());
    let damaged = &expected[damaged_position as usize];
    let stream: Vec<annals::Result<RecordedEvent>> = store.read_stream(&damaged.stream, 0).unwrap().collect();
    assert_eq!(stream.len() as u64, damaged.offset + 1);
    assert!(matches!(stream.last().unwrap(), Err(err) if is_the_damage(err)));
    let after: Vec<RecordedEvent> =
        store.read_all(damaged_position + 1).unwrap().collect::<annals::Result<_>>().unwrap();
    assert_events(&after, &expected[damaged_position as usize + 1..]);
}

#[test]
fn fixture_bytes_follow_the_spec() {
    let expected = model(&script().all());
    let dir = fixture("intact");
    let segments = parse_segments(&dir);
    let mut names = segment_names(&dir).into_iter().collect::<BTreeSet<_>>();
    names.insert("index.ckpt".to_owned());
    assert_eq!(file_names(&dir), names, "a closed store holds its segments and index.ckpt, nothing else");
    assert!(segments.len() >= 3, "the fixture spans at least three segments");

    // Segments: consecutive ordinals, each based at the position after the previous one's last record, each
    // ending with a complete transaction.
    let mut next_position = 0;
    for (i, segment) in segments.iter().enumerate() {
        assert_eq!(segment.ordinal as usize, i, "{}: ordinal", segment.name);
        assert_eq!(segment.base, next_position, "{}: base position", segment.name);
        assert_eq!(segment.bytes.len(), 4096, "{}: size", segment.name);
        assert!(!segment.frames.is_empty(), "{}: a sealed segment holds a record", segment.name);
        assert_eq!(segment.frames.last().unwrap().txn_after, 0, "{}: ends inside a transaction", segment.name);
        next_position += segment.frames.len() as u64;
    }

    // Records: every field as the script says; positions dense; back-links; transaction markers.
    let frames: Vec<&RawFrame> = segments.iter().flat_map(|segment| &segment.frames).collect();
    assert_eq!(frames.len(), expected.len());
    let mut heads: BTreeMap<&str, u64> = BTreeMap::new();
    let mut previous_timestamp = 0;
    for (frame, want) in frames.iter().zip(&expected) {
        let context = format!("position {}", want.position);
        assert_eq!(frame.position, want.position, "{context}");
        assert_eq!(frame.offset, want.offset, "{context}");
        assert_eq!(frame.prev, heads.get(want.stream.as_str()).copied().unwrap_or(NO_PREV), "{context}: prev");
        heads.insert(&want.stream, frame.locator());
        assert_eq!(
            (&frame.stream, &frame.event_type, &frame.metadata, &frame.data),
            (&want.stream, &want.event_type, &want.metadata, &want.data),
            "{context}"
        );
        assert_eq!((frame.id, frame.codec, frame.txn_after), (want.id, want.codec, want.txn_after), "{context}");
        // Every append of the script was synced alone, so each record's synced_before is its transaction's
        // first position: everything before it was durable when it was written.
        assert_eq!(frame.synced_before, want.txn_first_position, "{context}: synced_before");
        assert!(frame.timestamp >= previous_timestamp.max(1), "{context}: timestamp");
        if want.txn_after < frame_txn_size(&expected, want) - 1 {
            assert_eq!(frame.timestamp, previous_timestamp, "{context}: one timestamp per commit group");
        }
        previous_timestamp = frame.timestamp;
    }

    // The checkpoint written at close covers the whole log.
    let checkpoint = parse_checkpoint(&fs::read(dir.join("index.ckpt")).unwrap());
    let (last_segment, last_frame) = (segments.last().unwrap(), *frames.last().unwrap());
    assert_eq!(checkpoint.interval, 4);
    assert_eq!(checkpoint.next_position, expected.len() as u64);
    assert_eq!(checkpoint.end, locator(last_segment.ordinal, last_segment.end));
    assert_eq!(checkpoint.last, last_frame.locator());
    assert_eq!(checkpoint.last_timestamp, last_frame.timestamp);
    assert_eq!(checkpoint.streams, streams_of(&frames, 4));
}

/// Number of events in `event`'s transaction.
fn frame_txn_size(expected: &[Expected], event: &Expected) -> u32 {
    expected.iter().filter(|e| e.txn == event.txn).count() as u32
}

#[test]
fn damaged_fixtures_differ_from_intact_only_where_intended() {
    let intact = parse_segments(&fixture("intact"));
    let names: Vec<String> = intact.iter().map(|segment| segment.name.clone()).collect();

    // torn-tail: the last frame's second half is garbage; its checkpoint is the one of phase 1.
    assert_eq!(file_names(&fixture("torn-tail")), names.iter().cloned().chain(["index.ckpt".to_owned()]).collect());
    let last = intact.last().unwrap();
    let torn_frame = last.frames.last().unwrap();
    let torn_range = torn_frame.at + torn_frame.len / 2..torn_frame.at + torn_frame.len;
    for segment in &intact {
        let torn = fs::read(fixture("torn-tail").join(&segment.name)).unwrap();
        let differing: Vec<usize> = (0..torn.len()).filter(|&i| torn[i] != segment.bytes[i]).collect();
        if segment.name == last.name {
            assert!(!differing.is_empty() && differing.iter().all(|i| torn_range.contains(i)), "{differing:?}");
        } else {
            assert!(differing.is_empty(), "{}", segment.name);
        }
    }
    let stale = parse_checkpoint(&fs::read(fixture("torn-tail").join("index.ckpt")).unwrap());
    let phase1_len = model(&script().phase1).len() as u64;
    assert_eq!(stale.next_position, phase1_len, "the torn-tail checkpoint covers phase 1 only");
    let frames: Vec<&RawFrame> = intact.iter().flat_map(|segment| &segment.frames).collect();
    assert_eq!(stale.last, frames[phase1_len as usize - 1].locator());
    assert_eq!(stale.streams, streams_of(&frames[..phase1_len as usize], 4));

    // corrupt-middle: one byte flipped in the body of the frame at CORRUPT_FRAME_OFFSET of a sealed segment.
    assert_eq!(file_names(&fixture("corrupt-middle")), names.iter().cloned().collect());
    assert_ne!(CORRUPT_SEGMENT, last.name, "the damaged segment is sealed");
    for segment in &intact {
        let corrupt = fs::read(fixture("corrupt-middle").join(&segment.name)).unwrap();
        let differing: Vec<usize> = (0..corrupt.len()).filter(|&i| corrupt[i] != segment.bytes[i]).collect();
        if segment.name == CORRUPT_SEGMENT {
            let frame = segment.frames.iter().find(|frame| frame.at as u64 == CORRUPT_FRAME_OFFSET).unwrap();
            assert_eq!(differing.len(), 1);
            assert!((frame.at + FRAME_HEADER_LEN..frame.at + frame.len).contains(&differing[0]));
            assert_eq!((corrupt[differing[0]] ^ segment.bytes[differing[0]]).count_ones(), 1);
        } else {
            assert!(differing.is_empty(), "{}", segment.name);
        }
    }
}

/// The first frame of `intact/00000000000000000000.seg` (at byte 64), field by field as in format-spec.md:
/// (field, bytes, expected bytes in hex). The CRC and the timestamp have no literal: the CRC is recomputed as
/// the spec defines it, and the timestamp is whatever the clock said when the fixture was made.
const FIRST_FRAME: &[(&str, usize, Option<&str>)] = &[
    ("frame_len", 4, Some("92000000")),
    ("crc", 4, None),
    ("position", 8, Some("0000000000000000")),
    ("offset", 8, Some("0000000000000000")),
    ("prev", 8, Some("ffffffffffffffff")),
    ("synced_before", 8, Some("0000000000000000")),
    ("timestamp", 8, None),
    ("event_id", 16, Some("f1c50000000040008000000000000001")),
    ("txn_after", 4, Some("00000000")),
    ("stream_len", 2, Some("0900")),
    ("type_len", 2, Some("0d00")),
    ("metadata_len", 4, Some("15000000")),
    ("data_len", 4, Some("0f000000")),
    ("codec", 1, Some("00")),
    ("reserved", 7, Some("00000000000000")),
    ("stream", 9, Some("6163636f756e742d31")),
    ("event_type", 13, Some("4163636f756e744f70656e6564")),
    ("metadata", 21, Some("7b22636f7272656c6174696f6e223a22632d31227d")),
    ("data", 15, Some("7b226f776e6572223a22416461227d")),
    ("padding", 6, Some("000000000000")),
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn first_frame_bytes_are_pinned() {
    let segment = fs::read(fixture("intact").join("00000000000000000000.seg")).unwrap();
    let mut at = SEGMENT_HEADER_LEN;
    for &(field, len, literal) in FIRST_FRAME {
        let bytes = &segment[at..at + len];
        match (field, literal) {
            (_, Some(literal)) => assert_eq!(hex(bytes), literal, "field {field} at byte {at}"),
            ("crc", None) => {
                let frame_len = u32_at(&segment, SEGMENT_HEADER_LEN) as usize;
                let frame = &segment[SEGMENT_HEADER_LEN..SEGMENT_HEADER_LEN + frame_len];
                assert_eq!(u32::from_le_bytes(bytes.try_into().unwrap()), frame_crc(frame), "frame CRC");
            }
            ("timestamp", None) => assert_ne!(u64::from_le_bytes(bytes.try_into().unwrap()), 0),
            _ => unreachable!("field {field} has no literal and no check"),
        }
        at += len;
    }
    // The table is the whole frame with its padding; the next frame starts right after it.
    assert_eq!(at - SEGMENT_HEADER_LEN, 152);
    assert_ne!(u32_at(&segment, at), 0, "the second frame starts at byte {at}");
}

/// The bytes of `segment` with every frame's CRC and timestamp zeroed.
fn without_clock(segment: &RawSegment) -> Vec<u8> {
    let mut bytes = segment.bytes.clone();
    for frame in &segment.frames {
        bytes[frame.at + 4..frame.at + 8].fill(0);
        bytes[frame.at + 40..frame.at + 48].fill(0);
    }
    bytes
}

#[test]
fn the_current_writer_still_writes_format_v1() {
    let fresh = tempfile::tempdir().unwrap();
    generate(fresh.path());
    let (written, frozen) = (parse_segments(fresh.path()), parse_segments(&fixture("intact")));
    assert_eq!(written.iter().map(|s| &s.name).collect::<Vec<_>>(), frozen.iter().map(|s| &s.name).collect::<Vec<_>>());
    for (written, frozen) in written.iter().zip(&frozen) {
        // The segment headers hold no clock: byte for byte.
        assert_eq!(written.bytes[..SEGMENT_HEADER_LEN], frozen.bytes[..SEGMENT_HEADER_LEN], "{}", frozen.name);
        let (written_bytes, frozen_bytes) = (without_clock(written), without_clock(frozen));
        let first_difference = (0..frozen_bytes.len()).find(|&i| written_bytes[i] != frozen_bytes[i]);
        assert_eq!(first_difference, None, "{}: first differing byte", frozen.name);
    }
    // Beside the segments it writes the persistent index (no more `index.ckpt`).
    assert!(!fresh.path().join("index.ckpt").exists());
    assert!(fs::read_dir(fresh.path().join("index")).unwrap().count() > 0);
}

// ---------------------------------------------------------------------------------------------------------------
// The generator.
// ---------------------------------------------------------------------------------------------------------------

/// Writes `files` into `dir`, which must not exist: a released fixture is never overwritten.
fn write_fixture(dir: &Path, files: &[(String, Vec<u8>)]) {
    assert!(!dir.exists(), "{} exists: a released fixture is never overwritten", dir.display());
    fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes).unwrap();
    }
}

/// Where the fixtures of the format this build writes go, named `intact`, `torn-tail` or `corrupt-middle`.
fn new_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/v{}", annals::FORMAT_VERSION)).join(name)
}

#[test]
#[ignore = "writes the fixtures of a new format; run with ANNALS_WRITE_FIXTURE=v<N> when a format is released"]
fn write_format_fixtures() {
    let name = format!("v{}", annals::FORMAT_VERSION);
    if std::env::var("ANNALS_WRITE_FIXTURE").as_deref() != Ok(name.as_str()) {
        eprintln!("nothing written: set ANNALS_WRITE_FIXTURE={name} to write tests/fixtures/{name}");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    generate(work.path());
    let segments = parse_segments(work.path());
    let segment_files: Vec<(String, Vec<u8>)> = segments.iter().map(|s| (s.name.clone(), s.bytes.clone())).collect();

    // intact: the segments (the index is derived data, with fixtures of its own format).
    write_fixture(&new_fixture("intact"), &segment_files);

    // torn-tail: the second half of the last frame overwritten with garbage.
    let mut torn = segment_files.clone();
    let last = segments.last().unwrap();
    let frame = last.frames.last().unwrap();
    let bytes = &mut torn.last_mut().unwrap().1;
    for (i, byte) in bytes[frame.at + frame.len / 2..frame.at + frame.len].iter_mut().enumerate() {
        *byte ^= 0x5a ^ (i as u8).wrapping_mul(37);
    }
    write_fixture(&new_fixture("torn-tail"), &torn);

    // corrupt-middle: one bit flipped in the last body byte of the third frame of the second segment.
    let mut corrupt = segment_files;
    let frame = &segments[1].frames[2];
    corrupt[1].1[frame.at + frame.len - 1] ^= 0x01;
    write_fixture(&new_fixture("corrupt-middle"), &corrupt);

    println!("const CORRUPT_SEGMENT: &str = {:?};", segments[1].name);
    println!("const CORRUPT_FRAME_OFFSET: u64 = {};", frame.at);
    let first = &segments[0].frames[0];
    let mut at = SEGMENT_HEADER_LEN;
    for &(field, len, _) in FIRST_FRAME {
        let len = match field {
            "stream" => first.stream.len(),
            "event_type" => first.event_type.len(),
            "metadata" => first.metadata.len(),
            "data" => first.data.len(),
            "padding" => aligned(first.len) - first.len,
            _ => len,
        };
        println!("    ({field:?}, {len}, Some({:?})),", hex(&segments[0].bytes[at..at + len]));
        at += len;
    }
    for segment in &segments {
        println!("{}: {} records, end at byte {}", segment.name, segment.frames.len(), segment.end);
    }
}
