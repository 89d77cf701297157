//! Shared helpers of the scenario tests: owned copies of recorded events, whole-store state snapshots, an
//! in-memory model of what the store must hold, raw access to the segment files for damaging them, and a small
//! deterministic random generator (so a failing run can be repeated exactly).
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code, reason = "each test binary uses a different subset of the helpers")]

pub mod disk;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use annals::{AppendResult, Error, EventData, Options, RecordedEvent, Store};
use uuid::Uuid;

/// The index directory inside a store directory.
pub const INDEX_DIR: &str = "index";
/// Bytes of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 64;
/// Bytes of a frame header.
pub const FRAME_HEADER_LEN: usize = 88;

/// Options with small segments, so that a few dozen events span several of them.
pub fn small_options(segment_size_bytes: u64) -> Options {
    Options { segment_size_bytes, ..Default::default() }
}

/// Everything a reader can learn about one recorded event, owned (so it can be compared after a reopen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub stream: String,
    pub offset: u64,
    pub position: u64,
    pub event_type: String,
    pub event_id: Uuid,
    pub timestamp_nanos: u64,
    pub data: Vec<u8>,
    pub metadata: Vec<u8>,
    pub codec: u8,
}

impl From<annals::EventRef<'_>> for Owned {
    fn from(event: annals::EventRef<'_>) -> Self {
        Owned {
            stream: event.stream().to_owned(),
            offset: event.offset(),
            position: event.position(),
            event_type: event.event_type().to_owned(),
            event_id: event.event_id(),
            timestamp_nanos: event.timestamp_nanos(),
            data: event.data().to_vec(),
            metadata: event.metadata().to_vec(),
            codec: event.codec(),
        }
    }
}

impl From<&RecordedEvent> for Owned {
    fn from(event: &RecordedEvent) -> Self {
        Owned {
            stream: event.stream().to_owned(),
            offset: event.offset(),
            position: event.position(),
            event_type: event.event_type().to_owned(),
            event_id: event.event_id(),
            timestamp_nanos: event.timestamp_nanos(),
            data: event.data().to_vec(),
            metadata: event.metadata().to_vec(),
            codec: event.codec(),
        }
    }
}

/// Collects an iterator of recorded events, failing the test on the first error.
pub fn collect(events: impl Iterator<Item = annals::Result<RecordedEvent>>) -> Vec<Owned> {
    events.map(|event| Owned::from(&event.expect("reading an intact store succeeds"))).collect()
}

/// `read_all(from)`, collected.
pub fn read_all(store: &Store, from: u64) -> Vec<Owned> {
    collect(store.read_all(from).expect("read_all"))
}

/// `read_stream(stream, from)`, collected.
pub fn read_stream(store: &Store, stream: &str, from: u64) -> Vec<Owned> {
    collect(store.read_stream(stream, from).expect("read_stream"))
}

/// `read_stream_backwards(stream, from)`, collected.
pub fn read_stream_backwards(store: &Store, stream: &str, from: Option<u64>) -> Vec<Owned> {
    collect(store.read_stream_backwards(stream, from).expect("read_stream_backwards"))
}

/// Everything observable about a store, for "nothing changed" and "identical after reopen" checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub head_position: Option<u64>,
    pub stream_count: usize,
    pub all: Vec<Owned>,
    /// Per stream (every stream found in the log, plus the extra names asked for): version and events.
    pub streams: BTreeMap<String, (Option<u64>, Vec<Owned>)>,
}

/// Snapshots the whole observable state of `store`, including the streams named in `extra` (which may not
/// exist: their absence is then part of the state).
pub fn state(store: &Store, extra: &[&str]) -> State {
    let all = read_all(store, 0);
    let mut names: BTreeSet<String> = all.iter().map(|event| event.stream.clone()).collect();
    names.extend(extra.iter().map(|name| (*name).to_owned()));
    let streams = names
        .into_iter()
        .map(|name| {
            let version = store.stream_version(&name);
            let events = read_stream(store, &name, 0);
            (name, (version, events))
        })
        .collect();
    State { head_position: store.head_position(), stream_count: store.stream_count(), all, streams }
}

/// One event as the model expects it. `event_id` is checked only when the test chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEvent {
    pub stream: String,
    pub offset: u64,
    pub position: u64,
    pub event_type: String,
    pub event_id: Option<Uuid>,
    pub data: Vec<u8>,
    pub metadata: Vec<u8>,
    pub codec: u8,
}

impl ModelEvent {
    /// Fails the test (with `context`) unless `actual` is this event.
    pub fn assert_matches(&self, actual: &Owned, context: &str) {
        let id_ok = self.event_id.is_none_or(|id| id == actual.event_id);
        let same = self.stream == actual.stream
            && self.offset == actual.offset
            && self.position == actual.position
            && self.event_type == actual.event_type
            && id_ok
            && self.data == actual.data
            && self.metadata == actual.metadata
            && self.codec == actual.codec;
        assert!(same, "{context}: expected {self:?}, read {actual:?}");
    }
}

/// What the store must hold: every event in position order, and each stream's positions in offset order.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub all: Vec<ModelEvent>,
    pub streams: BTreeMap<String, Vec<u64>>,
}

impl Model {
    /// The stream's last offset, `None` if it does not exist.
    pub fn version(&self, stream: &str) -> Option<u64> {
        self.streams.get(stream).map(|positions| positions.len() as u64 - 1)
    }

    /// Position of the last event, `None` when empty.
    pub fn head(&self) -> Option<u64> {
        (self.all.len() as u64).checked_sub(1)
    }

    /// Records a committed append of `events` to `stream` and returns the result the store must have given.
    pub fn append(&mut self, stream: &str, events: &[EventData]) -> AppendResult {
        let first_position = self.all.len() as u64;
        let positions = self.streams.entry(stream.to_owned()).or_default();
        let first_offset = positions.len() as u64;
        for (i, event) in events.iter().enumerate() {
            let position = first_position + i as u64;
            positions.push(position);
            self.all.push(ModelEvent {
                stream: stream.to_owned(),
                offset: first_offset + i as u64,
                position,
                event_type: event.event_type().to_owned(),
                event_id: event.id(),
                data: event.data().to_vec(),
                metadata: event.metadata().to_vec(),
                codec: 0,
            });
        }
        let count = events.len() as u64;
        AppendResult {
            first_offset,
            last_offset: first_offset + count - 1,
            first_position,
            last_position: first_position + count - 1,
        }
    }

    /// The stream's events from `from` on.
    pub fn stream_from(&self, stream: &str, from: u64) -> Vec<&ModelEvent> {
        let positions = self.streams.get(stream).map(Vec::as_slice).unwrap_or_default();
        positions.iter().skip(usize::try_from(from).unwrap_or(usize::MAX)).map(|&p| &self.all[p as usize]).collect()
    }

    /// The stream's events from `from` (`None`: the last) back to offset 0; a `from` past the end starts at the
    /// last event.
    pub fn stream_backwards(&self, stream: &str, from: Option<u64>) -> Vec<&ModelEvent> {
        let positions = self.streams.get(stream).map(Vec::as_slice).unwrap_or_default();
        let Some(last) = positions.len().checked_sub(1) else { return Vec::new() };
        let first = from.map_or(last, |from| usize::try_from(from).unwrap_or(usize::MAX).min(last));
        positions[..=first].iter().rev().map(|&p| &self.all[p as usize]).collect()
    }

    /// Every event from position `from` on.
    pub fn all_from(&self, from: u64) -> Vec<&ModelEvent> {
        self.all.iter().skip(usize::try_from(from).unwrap_or(usize::MAX)).collect()
    }
}

/// Fails the test unless `actual` is exactly `expected`, event by event.
pub fn assert_events(actual: &[Owned], expected: &[&ModelEvent], context: &str) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "{context}: read {} events, expected {}; read positions {:?}",
        actual.len(),
        expected.len(),
        actual.iter().map(|event| event.position).collect::<Vec<_>>()
    );
    for (actual, expected) in actual.iter().zip(expected) {
        expected.assert_matches(actual, context);
    }
}

/// Checks every read path of `store` against `model`: versions, head, read_all from every position,
/// read_stream from every offset and read_stream_backwards from every offset (and `None`).
pub fn assert_store_matches_model(store: &Store, model: &Model, context: &str) {
    assert_eq!(store.head_position(), model.head(), "{context}: head position");
    assert_eq!(store.stream_count(), model.streams.len(), "{context}: stream count");
    for from in 0..=model.all.len() as u64 {
        assert_events(&read_all(store, from), &model.all_from(from), &format!("{context}: read_all({from})"));
    }
    for (stream, positions) in &model.streams {
        assert_eq!(store.stream_version(stream), model.version(stream), "{context}: version of {stream:?}");
        let len = positions.len() as u64;
        for from in 0..=len {
            let what = format!("{context}: read_stream({stream:?}, {from})");
            assert_events(&read_stream(store, stream, from), &model.stream_from(stream, from), &what);
        }
        for from in (0..len).map(Some).chain([None]) {
            let what = format!("{context}: read_stream_backwards({stream:?}, {from:?})");
            assert_events(&read_stream_backwards(store, stream, from), &model.stream_backwards(stream, from), &what);
        }
    }
}

/// Checks `read_category` and `read_event_type` of every category and event type of `model` (and one that does
/// not exist) from every position, and that each read touches only the records it yields. The category is the
/// stream name before the first `-`.
pub fn assert_indexed_reads_match_model(store: &Store, model: &Model, context: &str) {
    let category_of = |stream: &str| stream.split('-').next().unwrap_or(stream).to_owned();
    let mut categories: BTreeSet<String> = model.all.iter().map(|event| category_of(&event.stream)).collect();
    let mut types: BTreeSet<String> = model.all.iter().map(|event| event.event_type.clone()).collect();
    categories.insert("nobody".into());
    types.insert("NoSuchType".into());
    for from in 0..=model.all.len() as u64 + 1 {
        for category in &categories {
            let expected: Vec<&ModelEvent> =
                model.all_from(from).into_iter().filter(|event| category_of(&event.stream) == *category).collect();
            let before = store.records_read_through_index();
            let read = collect(store.read_category(category, from).expect("read_category"));
            let touched = store.records_read_through_index() - before;
            assert_events(&read, &expected, &format!("{context}: read_category({category:?}, {from})"));
            assert_eq!(touched, read.len() as u64, "{context}: read_category({category:?}, {from}) touched more");
        }
        for event_type in &types {
            let expected: Vec<&ModelEvent> =
                model.all_from(from).into_iter().filter(|event| event.event_type == *event_type).collect();
            let read = collect(store.read_event_type(event_type, from).expect("read_event_type"));
            assert_events(&read, &expected, &format!("{context}: read_event_type({event_type:?}, {from})"));
        }
    }
}

/// The segment files of a store directory, oldest first.
pub fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("listing the store directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    paths.sort();
    paths
}

/// One frame found by walking a segment file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawFrame {
    /// Byte offset of the frame in its segment file.
    pub at: usize,
    /// Bytes of the frame, padding excluded.
    pub len: usize,
    pub position: u64,
    pub offset: u64,
    /// Records of the same transaction that follow this one.
    pub txn_after: u32,
}

impl RawFrame {
    /// Byte offset just past the frame's padding: where the next frame starts.
    pub fn end_aligned(&self) -> usize {
        (self.at + self.len).next_multiple_of(8)
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Walks the frames of an intact segment file (stops at the first zero length).
pub fn raw_frames(path: &Path) -> Vec<RawFrame> {
    let bytes = std::fs::read(path).expect("reading a segment");
    let mut frames = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    while at + FRAME_HEADER_LEN <= bytes.len() {
        let len = u32_at(&bytes, at) as usize;
        if len == 0 {
            break;
        }
        assert!(len >= FRAME_HEADER_LEN && at + len <= bytes.len(), "test walks only intact segments");
        frames.push(RawFrame {
            at,
            len,
            position: u64_at(&bytes, at + 8),
            offset: u64_at(&bytes, at + 16),
            txn_after: u32_at(&bytes, at + 64),
        });
        at = (at + len).next_multiple_of(8);
    }
    frames
}

/// The segment holding `position` and its frame, found by walking every segment.
pub fn find_frame(dir: &Path, position: u64) -> (PathBuf, RawFrame) {
    for path in segment_paths(dir) {
        if let Some(frame) = raw_frames(&path).into_iter().find(|frame| frame.position == position) {
            return (path, frame);
        }
    }
    panic!("no frame holds position {position}");
}

/// Overwrites `bytes` at `at` in the file at `path` (files keep their size).
pub fn overwrite(path: &Path, at: usize, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).expect("opening a file to damage it");
    file.write_all_at(bytes, at as u64).expect("damaging a file");
    file.sync_all().expect("syncing a damaged file");
}

/// XORs one byte of the file at `path`.
pub fn flip_byte(path: &Path, at: usize, mask: u8) {
    let byte = std::fs::read(path).expect("reading a file to damage it")[at];
    overwrite(path, at, &[byte ^ mask]);
}

/// Copies every regular file of `from` into `to` (which must exist), and its subdirectories (the index, the
/// snapshots) with theirs. A file that vanishes while the copy runs (a live store's background thread deletes
/// merged index tables and temporary files) is skipped, as a crash at that moment would not find it either.
pub fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("listing a directory") {
        let entry = entry.expect("directory entry");
        let file_type = entry.file_type().expect("file type");
        if file_type.is_file() {
            match std::fs::copy(entry.path(), to.join(entry.file_name())) {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                copied => {
                    copied.expect("copying a file");
                }
            }
        } else if file_type.is_dir() {
            let target = to.join(entry.file_name());
            std::fs::create_dir_all(&target).expect("creating a directory");
            copy_dir(&entry.path(), &target);
        }
    }
}

/// Removes the persistent index (it is rebuilt from the log at the next open).
pub fn remove_index(dir: &Path) {
    std::fs::remove_dir_all(dir.join(INDEX_DIR)).expect("the store has an index directory");
}

/// The index table files of a store directory, in name (position) order.
pub fn index_tables(dir: &Path) -> Vec<PathBuf> {
    let mut tables: Vec<PathBuf> = std::fs::read_dir(dir.join(INDEX_DIR))
        .expect("the store has an index directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "tbl"))
        .collect();
    tables.sort();
    tables
}

/// Whether the store was opened from its index alone: nothing replayed from the log.
pub fn opened_from_index(store: &Store) -> bool {
    let report = store.recovery_report();
    report.records_replayed == 0 && report.index_rejected.is_none()
}

/// A deterministic generator (SplitMix64): tests that pick "random" bytes stay repeatable from their seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The same as [`next_u64`](Self::next_u64).
    pub fn next(&mut self) -> u64 {
        self.next_u64()
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// Uniform in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(hi > lo);
        lo + self.below(hi - lo)
    }

    /// Uniform in `lo..hi` (`hi > lo`), for indexes and lengths.
    pub fn range_usize(&mut self, lo: usize, hi: usize) -> usize {
        self.range(lo as u64, hi as u64) as usize
    }

    /// True `p` times in 100.
    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range_usize(0, items.len())]
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    /// Random bytes, fewer than `bound` of them.
    pub fn bytes_below(&mut self, bound: u64) -> Vec<u8> {
        let len = self.below(bound) as usize;
        self.bytes(len)
    }
}

/// FNV-1a, 64 bits: a payload hash that a test can recompute.
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Fails the test unless `result` is `Err(Corrupt)` naming `file` and `offset`.
pub fn assert_corrupt_at<T: std::fmt::Debug>(result: &Result<T, Error>, file: &Path, offset: usize, context: &str) {
    match result {
        Err(Error::Corrupt { file: found_file, offset: found_offset, reason }) => {
            assert_eq!(found_file, file, "{context}: Corrupt names the wrong file ({reason})");
            assert_eq!(*found_offset, offset as u64, "{context}: Corrupt names the wrong offset ({reason})");
        }
        other => panic!("{context}: expected Err(Corrupt) at {}:{offset}, got {other:?}", file.display()),
    }
}

/// Starts this test binary again as a child process running only the ignored test `entry` (the child's side
/// of a kill test), with `env` set to `dir`. Its stdout is discarded, its stderr shown.
pub fn spawn_child(entry: &str, env: &str, dir: &Path) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().expect("the test binary's path"))
        .args([entry, "--exact", "--ignored", "--test-threads=1"])
        .env(env, dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("starting the child process")
}
