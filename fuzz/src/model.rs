//! The `operations_vs_model` target: a sequence of operations (decoded with `arbitrary`) runs against the real
//! store (4 KiB segments, so that rolls are frequent and every roll writes an index table) and against an
//! in-memory model; every result must match. Reads cover streams (both ways), the whole log, categories and
//! event types; reopens cover a clean close, the index deleted, a damaged table header, a damaged table page
//! (which `Store::verify` must name), another category separator, and garbage past the log's end.

use std::collections::BTreeMap;
use std::path::Path;

use annals::{
    AppendResult, Durability, Error, EventData, ExpectedVersion, Options, RecordedEvent, Store, StreamAppend,
};
use arbitrary::Arbitrary;

use crate::format::{self, INDEX_DIR, PAGE_BYTES, SEGMENT_HEADER_LEN};

/// Segment size of the store under test.
pub const SEGMENT_SIZE: u64 = 4096;
/// Most operations run per input.
pub const OPS_MAX: usize = 64;
/// Most events per stream part.
pub const EVENTS_MAX: usize = 8;
/// Most parts per `append_multi`.
pub const PARTS_MAX: usize = 4;

fn long_name(c: char, len: usize) -> String {
    std::iter::repeat_n(c, len).collect()
}

/// Stream names: six valid ones (one of the maximum length), then three the store must refuse.
pub fn stream_name(index: u8) -> String {
    match index % 10 {
        0 => "s0".into(),
        1 => "s1".into(),
        2 => "s2".into(),
        3 => "account-42".into(),
        4 => "ünïcödé-stream".into(),
        5 => long_name('x', annals::STREAM_NAME_BYTES_MAX),
        6 => String::new(),
        7 => "bad\nname".into(),
        8 => long_name('y', annals::STREAM_NAME_BYTES_MAX + 1),
        _ => "s3".into(),
    }
}

/// Categories to read: those of the streams above (with either separator), and some that hold nothing.
pub fn category_name(index: u8) -> String {
    match index % 11 {
        0 => "s0".into(),
        1 => "s1".into(),
        2 => "s2".into(),
        3 => "s3".into(),
        4 => "account".into(),
        5 => "account-42".into(),
        6 => "ünïcödé".into(),
        7 => "ünïcödé-stream".into(),
        8 => long_name('x', annals::STREAM_NAME_BYTES_MAX),
        9 => "missing".into(),
        _ => String::new(),
    }
}

/// Event types: valid ones, then ones the store must refuse.
pub fn event_type(index: u8) -> String {
    match index % 8 {
        0 => "T".into(),
        1 => "Opened".into(),
        2 => "MoneyDeposited".into(),
        3 => long_name('t', annals::EVENT_TYPE_BYTES_MAX),
        4 => String::new(),
        5 => "tab\there".into(),
        6 => long_name('u', annals::EVENT_TYPE_BYTES_MAX + 1),
        _ => "Closed".into(),
    }
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Any,
    NoStream,
    StreamExists,
    Exact(u8),
}

impl Expected {
    fn to_engine(self) -> ExpectedVersion {
        match self {
            Expected::Any => ExpectedVersion::Any,
            Expected::NoStream => ExpectedVersion::NoStream,
            Expected::StreamExists => ExpectedVersion::StreamExists,
            Expected::Exact(offset) => ExpectedVersion::Exact(u64::from(offset)),
        }
    }
}

/// An event; its data is `data_len % 4200` bytes counting up from `fill` (so that large events, which make
/// the 4 KiB segments roll, take a few input bytes).
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub struct Ev {
    pub event_type: u8,
    pub data_len: u16,
    pub fill: u8,
    pub metadata: Vec<u8>,
    pub id: Option<u128>,
    pub codec: u8,
}

impl Ev {
    fn data(&self) -> Vec<u8> {
        (0..usize::from(self.data_len % 4200)).map(|i| self.fill.wrapping_add(i as u8)).collect()
    }
    fn metadata(&self) -> Vec<u8> {
        self.metadata[..self.metadata.len().min(64)].to_vec()
    }
    fn to_engine(&self) -> EventData {
        let mut event = EventData::new(event_type(self.event_type), self.data())
            .with_metadata(self.metadata())
            .with_codec(self.codec);
        if let Some(id) = self.id {
            event = event.with_id(uuid::Uuid::from_u128(id));
        }
        event
    }
}

#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub stream: u8,
    pub expected: Expected,
    pub events: Vec<Ev>,
}

#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Append(Part),
    AppendMulti(Vec<Part>),
    ReadStream {
        stream: u8,
        from: u8,
    },
    ReadStreamBackwards {
        stream: u8,
        from: Option<u8>,
    },
    ReadAll {
        from: u16,
    },
    ReadCategory {
        category: u8,
        from: u16,
    },
    ReadEventType {
        event_type: u8,
        from: u16,
    },
    /// Close and reopen; with the other category separator (`-` or `.`) if asked, which rebuilds the index.
    Reopen {
        other_separator: bool,
    },
    /// Close, delete `index/`, reopen: the index is rebuilt from the log.
    ReopenWithoutIndex,
    /// Close, flip a byte of a table's header page (its CRC must catch it), reopen: that table and the ones
    /// after it are rebuilt.
    DamageTableHeader {
        table: u8,
        at: u16,
        xor: u8,
    },
    /// Close, flip a byte of a table's other pages, reopen: `verify` must name the table; then close, delete
    /// it, and reopen: the log after the tables before it is replayed.
    DamageTablePage {
        table: u8,
        at: u32,
        xor: u8,
    },
    /// Close, overwrite bytes past the last frame of the last segment, reopen: the tail is cut, nothing lost.
    CorruptTail {
        at: u16,
        bytes: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// A head cache of 200 bytes (a stream or two), so that heads come from the tables.
    pub small_cache: bool,
    pub buffered: bool,
    pub collide: bool,
    pub ops: Vec<Op>,
}

/// What the model keeps of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelEvent {
    stream: String,
    offset: u64,
    position: u64,
    event_type: String,
    data: Vec<u8>,
    metadata: Vec<u8>,
    id: Option<u128>,
    codec: u8,
}

#[derive(Default)]
struct Model {
    /// Stream → positions of its events, in offset order.
    streams: BTreeMap<String, Vec<u64>>,
    all: Vec<ModelEvent>,
}

/// The error a call must fail with, compared by kind and the fields a caller acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    WrongExpectedVersion { stream: String, actual: Option<u64> },
    EventTooLarge { size: u64, max: u64 },
    TransactionTooLarge { size: u64, max: u64 },
    InvalidStreamName(String),
    InvalidEventType(String),
    EmptyAppend,
    DuplicateStream(String),
}

fn describe(err: &Error) -> Option<Expect> {
    Some(match err {
        Error::WrongExpectedVersion { stream, actual, .. } => {
            Expect::WrongExpectedVersion { stream: stream.clone(), actual: *actual }
        }
        Error::EventTooLarge { size, max } => Expect::EventTooLarge { size: *size, max: *max },
        Error::TransactionTooLarge { size, max } => Expect::TransactionTooLarge { size: *size, max: *max },
        Error::InvalidStreamName { name, .. } => Expect::InvalidStreamName(name.clone()),
        Error::InvalidEventType { event_type, .. } => Expect::InvalidEventType(event_type.clone()),
        Error::EmptyAppend => Expect::EmptyAppend,
        Error::DuplicateStream { stream } => Expect::DuplicateStream(stream.clone()),
        _ => return None,
    })
}

fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty() && name.len() <= max && !name.chars().any(char::is_control)
}

impl Model {
    fn version(&self, stream: &str) -> Option<u64> {
        self.streams.get(stream).and_then(|positions| (positions.len() as u64).checked_sub(1))
    }

    /// Validates and applies one transaction as the store must.
    fn append(&mut self, parts: &[(String, Expected, Vec<Ev>)]) -> Result<Vec<AppendResult>, Expect> {
        let capacity = SEGMENT_SIZE - SEGMENT_HEADER_LEN as u64;
        let event_max = Options::default().event_size_bytes_max.min(capacity);
        let mut bytes = 0u64;
        for (stream, _, events) in parts {
            if !valid_name(stream, annals::STREAM_NAME_BYTES_MAX) {
                return Err(Expect::InvalidStreamName(stream.clone()));
            }
            if events.is_empty() {
                return Err(Expect::EmptyAppend);
            }
            for event in events {
                let event_type = event_type(event.event_type);
                if !valid_name(&event_type, annals::EVENT_TYPE_BYTES_MAX) {
                    return Err(Expect::InvalidEventType(event_type));
                }
                let size = (format::FRAME_HEADER_LEN
                    + stream.len()
                    + event_type.len()
                    + event.metadata().len()
                    + event.data().len()) as u64;
                if size > event_max {
                    return Err(Expect::EventTooLarge { size, max: event_max });
                }
                bytes += format::aligned(size as usize) as u64;
            }
        }
        if bytes > capacity {
            return Err(Expect::TransactionTooLarge { size: bytes, max: capacity });
        }
        for (stream, expected, _) in parts {
            let actual = self.version(stream);
            if !expected.to_engine().admits(actual) {
                return Err(Expect::WrongExpectedVersion { stream: stream.clone(), actual });
            }
        }
        let mut results = Vec::new();
        for (stream, _, events) in parts {
            let first_offset = self.version(stream).map_or(0, |v| v + 1);
            let first_position = self.all.len() as u64;
            for (i, event) in events.iter().enumerate() {
                let position = self.all.len() as u64;
                self.all.push(ModelEvent {
                    stream: stream.clone(),
                    offset: first_offset + i as u64,
                    position,
                    event_type: event_type(event.event_type),
                    data: event.data(),
                    metadata: event.metadata(),
                    id: event.id,
                    codec: event.codec,
                });
                self.streams.entry(stream.clone()).or_default().push(position);
            }
            results.push(AppendResult {
                first_offset,
                last_offset: first_offset + events.len() as u64 - 1,
                first_position,
                last_position: self.all.len() as u64 - 1,
            });
        }
        Ok(results)
    }
}

fn check_event(event: &RecordedEvent, expected: &ModelEvent) {
    assert_eq!(event.stream(), expected.stream);
    assert_eq!(event.offset(), expected.offset, "offset of position {}", expected.position);
    assert_eq!(event.position(), expected.position);
    assert_eq!(event.event_type(), expected.event_type);
    assert_eq!(&event.data()[..], &expected.data[..], "data of position {}", expected.position);
    assert_eq!(&event.metadata()[..], &expected.metadata[..]);
    assert_eq!(event.codec(), expected.codec);
    if let Some(id) = expected.id {
        assert_eq!(event.event_id().as_u128(), id);
    }
}

fn collect(iter: impl Iterator<Item = annals::Result<RecordedEvent>>, what: &str) -> Vec<RecordedEvent> {
    iter.take(100_000).map(|item| item.unwrap_or_else(|err| panic!("{what}: {err:?}"))).collect()
}

struct Harness {
    dir: tempfile::TempDir,
    separator: char,
    small_cache: bool,
    buffered: bool,
    collide: bool,
    store: Option<Store>,
    model: Model,
}

impl Harness {
    fn options(&self) -> Options {
        Options {
            segment_size_bytes: SEGMENT_SIZE,
            category_separator: self.separator,
            index_cache_bytes_max: if self.small_cache { 200 } else { Options::default().index_cache_bytes_max },
            durability: if self.buffered {
                Durability::Buffer { flush_interval: std::time::Duration::from_millis(1) }
            } else {
                Durability::SyncData
            },
            stream_hash_mask: if self.collide { 0 } else { u64::MAX },
            ..Options::default()
        }
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("the store is open")
    }

    fn close(&mut self) {
        let store = self.store.take().expect("the store is open");
        store.close().expect("close");
    }

    /// Opens the store and checks what recovery says, then every head and `verify`.
    fn open(&mut self, expect: Reopened) {
        let store = Store::open_with(self.dir.path(), self.options()).expect("reopening a cleanly closed store");
        let report = store.recovery_report().clone();
        let all = self.model.all.len() as u64;
        match expect {
            Reopened::FromTables => {
                assert_eq!(report.index_rejected, None, "a table of a clean close is rejected: {report:?}");
                assert_eq!(report.records_replayed, 0, "records replayed after a clean close: {report:?}");
            }
            Reopened::FromLog => {
                assert_eq!((report.index_tables, report.records_replayed), (0, all), "without tables: {report:?}");
            }
            Reopened::Replayed => {
                assert_eq!(report.index_rejected, None, "a table after a deleted one: {report:?}");
            }
            Reopened::Rejected { tables } => {
                assert_eq!(report.index_rejected.is_some(), tables > 0, "a damaged or foreign table: {report:?}");
            }
        }
        self.store = Some(store);
        self.check_heads();
        let verified = self.store().verify().expect("verify runs");
        assert!(verified.is_ok(), "verify after reopening: {verified:?}");
        assert_eq!(verified.records, all, "verify counts every record");
    }

    /// The table files in `index/`, in position order.
    fn tables(&self) -> Vec<std::path::PathBuf> {
        let mut tables: Vec<_> = std::fs::read_dir(self.dir.path().join(INDEX_DIR))
            .expect("listing index/")
            .map(|entry| entry.expect("an entry of index/").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "tbl"))
            .collect();
        tables.sort();
        tables
    }

    /// Closes, flips a byte of a table's header page, reopens: the table is rejected, the log replayed.
    fn damage_table_header(&mut self, table: u8, at: u16, xor: u8) {
        self.close();
        let tables = self.tables();
        if let Some(path) = tables.get(usize::from(table) % tables.len().max(1)) {
            let mut bytes = std::fs::read(path).expect("reading a table");
            bytes[usize::from(at) % PAGE_BYTES] ^= xor.max(1);
            write_file(path, &bytes);
        }
        self.open(Reopened::Rejected { tables: tables.len() });
    }

    /// Closes, flips a byte past a table's header, reopens: the damage is the first problem `verify` finds,
    /// in that table. Then closes, deletes the table, and reopens: the tables after it go too, and the log
    /// after the ones before it is replayed.
    fn damage_table_page(&mut self, table: u8, at: u32, xor: u8) {
        self.close();
        let tables = self.tables();
        let Some(path) = tables.get(usize::from(table) % tables.len().max(1)).cloned() else {
            return self.open(Reopened::FromTables);
        };
        let mut bytes = std::fs::read(&path).expect("reading a table");
        let body = bytes.len() - PAGE_BYTES;
        let at = PAGE_BYTES + at as usize % body;
        bytes[at] ^= xor.max(1);
        write_file(&path, &bytes);
        let store =
            Store::open_with(self.dir.path(), self.options()).expect("a damaged table page does not stop an open");
        let verified = store.verify().expect("verify runs");
        store.close().expect("closing a store with a damaged table");
        match &verified.problem {
            Some(Error::Corrupt { file, .. }) => {
                assert_eq!(file, &path, "verify names the damaged table: {verified:?}")
            }
            // A merge reads its inputs' entries, not their fences or bloom filters: damage there is merged
            // away in the background (the input deleted once the close has let the merge finish), and may be
            // out of the index before verify runs.
            other => assert!(!path.exists(), "verify misses a damaged page of {}: {other:?}", path.display()),
        }
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            removed => removed.expect("removing the damaged table"),
        }
        self.open(Reopened::Replayed);
    }

    fn check_heads(&self) {
        let store = self.store();
        assert_eq!(store.head_position(), (self.model.all.len() as u64).checked_sub(1), "head position");
        for i in 0..10 {
            let name = stream_name(i);
            if valid_name(&name, annals::STREAM_NAME_BYTES_MAX) {
                assert_eq!(store.stream_version(&name), self.model.version(&name), "version of {name:?}");
            }
        }
        assert_eq!(store.stream_count(), self.model.streams.len(), "stream count");
    }

    fn append(&mut self, parts: &[Part], multi: bool) {
        let parts: Vec<(String, Expected, Vec<Ev>)> = parts
            .iter()
            .take(PARTS_MAX)
            .map(|part| {
                (stream_name(part.stream), part.expected, part.events.iter().take(EVENTS_MAX).cloned().collect())
            })
            .collect();
        let engine_parts: Vec<StreamAppend> = parts
            .iter()
            .map(|(stream, expected, events)| StreamAppend {
                stream: stream.clone(),
                expected: expected.to_engine(),
                events: events.iter().map(Ev::to_engine).collect(),
            })
            .collect();
        let (got, want) = if multi {
            let got = self.store().append_multi(&engine_parts);
            let want = if parts.is_empty() {
                Err(Expect::EmptyAppend)
            } else if let Some(dup) =
                parts.iter().enumerate().find(|(i, (stream, ..))| parts[..*i].iter().any(|(s, ..)| s == stream))
            {
                Err(Expect::DuplicateStream(dup.1 .0.clone()))
            } else {
                self.model.append(&parts)
            };
            (got, want)
        } else {
            let part = &engine_parts[0];
            let got = self.store().append(&part.stream, part.expected, &part.events).map(|r| vec![r]);
            (got, self.model.append(&parts[..1]))
        };
        match (got, want) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "append results"),
            (Err(err), Err(want)) => assert_eq!(describe(&err), Some(want), "append error: {err:?}"),
            (got, want) => panic!("append returned {got:?}, the model expected {want:?}"),
        }
    }

    fn read_stream(&self, stream: u8, from: u8) {
        let name = stream_name(stream);
        let from = u64::from(from);
        match self.store().read_stream(&name, from) {
            Err(Error::InvalidStreamName { .. }) => assert!(!valid_name(&name, annals::STREAM_NAME_BYTES_MAX)),
            Err(err) => panic!("read_stream({name:?}) failed: {err:?}"),
            Ok(iter) => {
                let got = collect(iter, "read_stream");
                let positions = self.model.streams.get(&name).map(Vec::as_slice).unwrap_or_default();
                let want = positions.get(from as usize..).unwrap_or_default();
                assert_eq!(got.len(), want.len(), "read_stream({name:?}, {from}) length");
                for (event, &position) in got.iter().zip(want) {
                    check_event(event, &self.model.all[position as usize]);
                }
            }
        }
    }

    fn read_stream_backwards(&self, stream: u8, from: Option<u8>) {
        let name = stream_name(stream);
        let from = from.map(u64::from);
        match self.store().read_stream_backwards(&name, from) {
            Err(Error::InvalidStreamName { .. }) => assert!(!valid_name(&name, annals::STREAM_NAME_BYTES_MAX)),
            Err(err) => panic!("read_stream_backwards({name:?}) failed: {err:?}"),
            Ok(iter) => {
                let got = collect(iter, "read_stream_backwards");
                let positions = self.model.streams.get(&name).map(Vec::as_slice).unwrap_or_default();
                let end = from.map_or(positions.len(), |from| positions.len().min(from as usize + 1));
                let want: Vec<u64> = positions[..end].iter().rev().copied().collect();
                assert_eq!(got.len(), want.len(), "read_stream_backwards({name:?}, {from:?}) length");
                for (event, position) in got.iter().zip(want) {
                    check_event(event, &self.model.all[position as usize]);
                }
            }
        }
    }

    fn read_all(&self, from: u16) {
        let from = u64::from(from) % (self.model.all.len() as u64 + 2);
        let iter = self.store().read_all(from).expect("read_all");
        let got = collect(iter, "read_all");
        let want = self.model.all.get(from as usize..).unwrap_or_default();
        assert_eq!(got.len(), want.len(), "read_all({from}) length");
        let mut timestamp = 0;
        for (event, expected) in got.iter().zip(want) {
            check_event(event, expected);
            assert!(event.timestamp_nanos() >= timestamp, "timestamps never go backwards");
            timestamp = event.timestamp_nanos();
        }
    }

    /// Reads a category (`category`) or an event type: every event of it from `from` on, in position order.
    fn read_indexed(&self, key: &str, category: bool, from: u16) {
        let from = u64::from(from) % (self.model.all.len() as u64 + 2);
        let separator = self.separator;
        let (got, what) = if category {
            (collect(self.store().read_category(key, from).expect("read_category"), "read_category"), "category")
        } else {
            (collect(self.store().read_event_type(key, from).expect("read_event_type"), "read_event_type"), "type")
        };
        let want: Vec<&ModelEvent> = self.model.all[(from as usize).min(self.model.all.len())..]
            .iter()
            .filter(|event| {
                if category {
                    event.stream.split_once(separator).map_or(event.stream.as_str(), |(c, _)| c) == key
                } else {
                    event.event_type == key
                }
            })
            .collect();
        assert_eq!(got.len(), want.len(), "read of {what} {key:?} from {from}: length");
        for (event, expected) in got.iter().zip(want) {
            check_event(event, expected);
        }
    }

    /// Overwrites bytes after the last frame of the last segment. Returns false if the bytes happen to hold
    /// a valid frame at a frame boundary (then the store can not tell them from a real write, and the model
    /// no longer applies).
    fn corrupt_tail(&mut self, at: u16, bytes: &[u8]) -> bool {
        let mut segments: Vec<_> = std::fs::read_dir(self.dir.path())
            .expect("listing")
            .map(|entry| entry.expect("entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
            .collect();
        segments.sort();
        let path = segments.last().expect("a segment");
        let mut file = std::fs::read(path).expect("reading the last segment");
        let end = format::end_of_frames(&file);
        let room = file.len() - end;
        if room == 0 || bytes.is_empty() {
            return true;
        }
        let start = end + usize::from(at) % room;
        let len = bytes.len().min(file.len() - start);
        file[start..start + len].copy_from_slice(&bytes[..len]);
        let mut probe = format::aligned(end);
        while probe + 4 <= file.len() {
            if annals::__fuzz::decode_frame(&file[probe..]).is_some() {
                return false;
            }
            probe += 8;
        }
        write_file(path, &file);
        true
    }
}

/// What a reopen must report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reopened {
    /// After a clean close: every table used, nothing replayed, nothing rejected.
    FromTables,
    /// Without `index/`: no table, every record replayed.
    FromLog,
    /// A table (of these many) is damaged or was made with another separator: rejected if there was one.
    Rejected { tables: usize },
    /// A table was deleted: the ones after it are dropped silently, the log after the others replayed.
    Replayed,
}

fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("writing a store file");
}

/// The target.
pub fn run(input: &Input) {
    let mut harness = Harness {
        dir: crate::tempdir(),
        separator: '-',
        small_cache: input.small_cache,
        buffered: input.buffered,
        collide: input.collide,
        store: None,
        model: Model::default(),
    };
    let store = Store::open_with(harness.dir.path(), harness.options()).expect("opening an empty directory");
    harness.store = Some(store);
    for op in input.ops.iter().take(OPS_MAX) {
        match op {
            Op::Append(part) => harness.append(std::slice::from_ref(part), false),
            Op::AppendMulti(parts) => harness.append(parts, true),
            Op::ReadStream { stream, from } => harness.read_stream(*stream, *from),
            Op::ReadStreamBackwards { stream, from } => harness.read_stream_backwards(*stream, *from),
            Op::ReadAll { from } => harness.read_all(*from),
            Op::ReadCategory { category, from } => harness.read_indexed(&category_name(*category), true, *from),
            Op::ReadEventType { event_type: index, from } => harness.read_indexed(&event_type(*index), false, *from),
            Op::Reopen { other_separator } => {
                harness.close();
                if *other_separator {
                    harness.separator = if harness.separator == '-' { '.' } else { '-' };
                    let tables = harness.tables().len();
                    harness.open(Reopened::Rejected { tables });
                } else {
                    harness.open(Reopened::FromTables);
                }
            }
            Op::ReopenWithoutIndex => {
                harness.close();
                std::fs::remove_dir_all(harness.dir.path().join(INDEX_DIR)).expect("removing index/");
                harness.open(Reopened::FromLog);
            }
            Op::DamageTableHeader { table, at, xor } => harness.damage_table_header(*table, *at, *xor),
            Op::DamageTablePage { table, at, xor } => harness.damage_table_page(*table, *at, *xor),
            Op::CorruptTail { at, bytes } => {
                harness.close();
                if !harness.corrupt_tail(*at, bytes) {
                    return;
                }
                harness.open(Reopened::FromTables);
            }
        }
        harness.check_heads();
    }
    // Everything must also survive a final reopen from the log alone.
    harness.close();
    std::fs::remove_dir_all(harness.dir.path().join(INDEX_DIR)).expect("removing index/");
    harness.open(Reopened::FromLog);
    harness.read_all(0);
    harness.close();
}

/// Encodes an input the way `arbitrary` 1.x decodes it (for hand-written seeds).
pub mod encode {
    use super::*;

    /// `arbitrary` picks variant `(u32 * count) >> 32`: the smallest u32 that lands on `index`.
    fn variant(out: &mut Vec<u8>, index: u64, count: u64) {
        let value = (index << 32).div_ceil(count);
        out.extend_from_slice(&(value as u32).to_le_bytes());
    }

    fn vec<T>(out: &mut Vec<u8>, items: &[T], mut each: impl FnMut(&mut Vec<u8>, &T)) {
        for item in items {
            out.push(1);
            each(out, item);
        }
        out.push(0);
    }

    fn expected(out: &mut Vec<u8>, e: Expected) {
        match e {
            Expected::Any => variant(out, 0, 4),
            Expected::NoStream => variant(out, 1, 4),
            Expected::StreamExists => variant(out, 2, 4),
            Expected::Exact(n) => {
                variant(out, 3, 4);
                out.push(n);
            }
        }
    }

    fn ev(out: &mut Vec<u8>, e: &Ev) {
        out.push(e.event_type);
        out.extend_from_slice(&e.data_len.to_le_bytes());
        out.push(e.fill);
        vec(out, &e.metadata, |out, b| out.push(*b));
        match e.id {
            Some(id) => {
                out.push(1);
                out.extend_from_slice(&id.to_le_bytes());
            }
            None => out.push(0),
        }
        out.push(e.codec);
    }

    fn part(out: &mut Vec<u8>, p: &Part) {
        out.push(p.stream);
        expected(out, p.expected);
        vec(out, &p.events, ev);
    }

    fn op(out: &mut Vec<u8>, op: &Op) {
        const COUNT: u64 = 12;
        match op {
            Op::Append(p) => {
                variant(out, 0, COUNT);
                part(out, p);
            }
            Op::AppendMulti(parts) => {
                variant(out, 1, COUNT);
                vec(out, parts, part);
            }
            Op::ReadStream { stream, from } => {
                variant(out, 2, COUNT);
                out.extend_from_slice(&[*stream, *from]);
            }
            Op::ReadStreamBackwards { stream, from } => {
                variant(out, 3, COUNT);
                out.push(*stream);
                match from {
                    Some(f) => out.extend_from_slice(&[1, *f]),
                    None => out.push(0),
                }
            }
            Op::ReadAll { from } => {
                variant(out, 4, COUNT);
                out.extend_from_slice(&from.to_le_bytes());
            }
            Op::ReadCategory { category, from } => {
                variant(out, 5, COUNT);
                out.push(*category);
                out.extend_from_slice(&from.to_le_bytes());
            }
            Op::ReadEventType { event_type, from } => {
                variant(out, 6, COUNT);
                out.push(*event_type);
                out.extend_from_slice(&from.to_le_bytes());
            }
            Op::Reopen { other_separator } => {
                variant(out, 7, COUNT);
                out.push(u8::from(*other_separator));
            }
            Op::ReopenWithoutIndex => variant(out, 8, COUNT),
            Op::DamageTableHeader { table, at, xor } => {
                variant(out, 9, COUNT);
                out.push(*table);
                out.extend_from_slice(&at.to_le_bytes());
                out.push(*xor);
            }
            Op::DamageTablePage { table, at, xor } => {
                variant(out, 10, COUNT);
                out.push(*table);
                out.extend_from_slice(&at.to_le_bytes());
                out.push(*xor);
            }
            Op::CorruptTail { at, bytes } => {
                variant(out, 11, COUNT);
                out.extend_from_slice(&at.to_le_bytes());
                vec(out, bytes, |out, b| out.push(*b));
            }
        }
    }

    /// The bytes `Input::arbitrary` decodes into `input`.
    pub fn input(input: &Input) -> Vec<u8> {
        let mut out = vec![u8::from(input.small_cache), u8::from(input.buffered), u8::from(input.collide)];
        vec(&mut out, &input.ops, op);
        out
    }
}

/// Decodes the fuzzer's bytes.
pub fn decode(data: &[u8]) -> Option<Input> {
    Input::arbitrary(&mut arbitrary::Unstructured::new(data)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample() -> Input {
        let ev =
            |t: u8, len: u16| Ev { event_type: t, data_len: len, fill: 7, metadata: vec![1, 2], id: None, codec: 3 };
        Input {
            small_cache: true,
            buffered: false,
            collide: true,
            ops: vec![
                Op::Append(Part { stream: 0, expected: Expected::NoStream, events: vec![ev(0, 10), ev(1, 2000)] }),
                Op::AppendMulti(vec![
                    Part { stream: 1, expected: Expected::Any, events: vec![ev(2, 3000)] },
                    Part { stream: 0, expected: Expected::Exact(1), events: vec![ev(7, 0)] },
                ]),
                Op::ReadStream { stream: 0, from: 1 },
                Op::ReadStreamBackwards { stream: 0, from: None },
                Op::ReadAll { from: 0 },
                Op::ReadCategory { category: 0, from: 1 },
                Op::ReadEventType { event_type: 2, from: 0 },
                Op::Reopen { other_separator: true },
                Op::ReadCategory { category: 5, from: 0 },
                Op::CorruptTail { at: 5, bytes: vec![0xff; 9] },
                Op::DamageTableHeader { table: 1, at: 9, xor: 1 },
                Op::DamageTablePage { table: 0, at: 9000, xor: 1 },
                Op::ReopenWithoutIndex,
            ],
        }
    }

    #[test]
    fn the_seed_encoder_matches_arbitrary() {
        let input = sample();
        assert_eq!(decode(&encode::input(&input)), Some(input));
    }

    #[test]
    fn the_sample_runs() {
        run(&sample());
    }
}
