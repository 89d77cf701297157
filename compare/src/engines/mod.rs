//! What the workloads need from an engine, and one adapter per engine.
//!
//! Every adapter stores the same record (stream, version, type, commit time, 16-byte id, payload), gives each
//! event a dense global position and a dense per-stream version, checks the version (a conflicting append
//! fails), and returns from `append` only after the batch is on stable storage, in that engine's best
//! documented durable configuration (see each module).

use std::ops::ControlFlow;
use std::path::Path;

use crate::event::Pending;
use crate::Result;

pub mod annals;
pub mod fjall;
pub mod postgres;
pub mod redb;
pub mod sqlite;

/// One engine: how to open (or create) a store in a directory.
pub trait Engine: Sync {
    /// Short lowercase name used in the table, the JSON and `--only`.
    fn name(&self) -> &'static str;

    /// Whether the engine runs inside the application's process (M1 measures only those). A server engine is
    /// crashed in process with [`Store::crash`]; an embedded one by killing a child process.
    fn embedded(&self) -> bool {
        true
    }

    /// Whether the engine runs W10: annals (its subscriptions), PostgreSQL (`LISTEN/NOTIFY`) and SQLite (polled),
    /// the peers `WORKLOADS.md` names for it.
    fn subscribes(&self) -> bool {
        false
    }

    /// Why the engine cannot run on this machine, if it cannot (the harness then skips it and says why).
    fn unavailable(&self) -> Option<String> {
        None
    }

    /// Opens the store in `dir`, creating it if `dir` is empty or missing, recovering it if needed.
    fn open(&self, dir: &Path) -> Result<Box<dyn Store>>;
}

/// An open store. Shared by reference between the writer threads of W2.
pub trait Store: Send + Sync {
    /// A writer for the calling thread (SQLite and PostgreSQL: a connection of its own).
    fn writer(&self) -> Result<Box<dyn Writer + '_>>;

    /// Reads every event in global position order, decoding every field and handing the payload to `visit`.
    /// Returns how many events it read.
    fn scan_all(&self, visit: &mut dyn FnMut(&[u8])) -> Result<u64>;

    /// Reads at most `max_events` events of `stream` from its first, in version order. Returns how many.
    fn read_stream(&self, stream: &str, max_events: u64, visit: &mut dyn FnMut(&[u8])) -> Result<u64>;

    /// Closes the store cleanly.
    fn close(self: Box<Self>) -> Result<()>;

    /// Bytes on disk of what finds a stream's events (W9): annals' index tables, SQLite's and PostgreSQL's
    /// `UNIQUE(stream, version)` index, the key-value peers' `streams` keyspace or table. `None` if the engine
    /// cannot tell.
    fn index_bytes(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    /// W10: readies a fresh store for live subscribers, before any is made (PostgreSQL: the trigger that
    /// notifies each committed row); a no-op where subscribing needs nothing. Off the clock.
    fn prepare_subscriptions(&self) -> Result<()> {
        Err("this engine has no subscriptions in the harness".into())
    }

    /// W10: a subscriber to the events that `filter` matches, from the start of the log or from its end. Made
    /// before the writers start (a connection of its own for the peers), then moved to its own thread.
    fn subscribe(&self, filter: Follow, from: FollowFrom) -> Result<Box<dyn Subscriber + '_>> {
        let _ = (filter, from);
        Err("this engine has no subscriptions in the harness".into())
    }

    /// Stops the store without a clean shutdown, as a crash would. Only server engines can do this in process.
    fn crash(self: Box<Self>) -> Result<()> {
        Err("this engine is crashed by killing the process that has it open".into())
    }
}

/// Appends for one thread.
pub trait Writer {
    /// Appends `batch` atomically at the next version of each event's stream, and returns once it is durable.
    fn append(&mut self, batch: &[Pending]) -> Result<()>;
}

/// W10's filters. The peers turn one into an SQL `WHERE` condition over their `events` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Every event.
    All,
    /// The events of the streams `{category}-…` (annals: its category index).
    Category(&'static str),
    /// The events of one type (annals: its event-type index).
    EventType(&'static str),
}

impl Follow {
    /// Whether an event of `stream` and `event_type` matches: what a subscriber must receive.
    pub fn matches(self, stream: &str, event_type: &str) -> bool {
        match self {
            Follow::All => true,
            Follow::Category(category) => stream.split_once('-').is_some_and(|(head, _)| head == category),
            Follow::EventType(wanted) => event_type == wanted,
        }
    }

    /// The same filter as an SQL condition, in the dialect SQLite and PostgreSQL share. The names are the
    /// harness' own constants (no quote, no `%` or `_`), so they are written in place.
    pub fn sql(self) -> String {
        match self {
            Follow::All => "TRUE".to_owned(),
            Follow::Category(category) => format!("stream LIKE '{category}-%'"),
            Follow::EventType(event_type) => format!("type = '{event_type}'"),
        }
    }
}

/// Where a W10 subscriber starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowFrom {
    /// Position 0: the catch-up over W3's log.
    Start,
    /// The end of the log when the subscriber is made: the live subscribers.
    End,
}

/// What a subscriber hands its callback.
#[derive(Debug)]
pub enum Delivery<'a> {
    /// A matching event, every field decoded (`stream` and `data` shown; the rest checked and dropped).
    Event { id: [u8; 16], stream: &'a str, data: &'a [u8] },
    /// Everything committed when the subscriber last looked has been delivered.
    CaughtUp,
}

/// A W10 subscriber on its own thread.
pub trait Subscriber: Send {
    /// Delivers matching events in position order (PostgreSQL: commit order) to `visit`, and `CaughtUp` when it
    /// has read to the end, until `visit` returns `Break`.
    fn follow(&mut self, visit: &mut dyn FnMut(Delivery<'_>) -> ControlFlow<()>) -> Result<()>;
}

/// Every engine the harness knows, in table order (annals first: the ratios are to it).
pub fn all() -> Vec<Box<dyn Engine>> {
    vec![
        Box::new(annals::Annals),
        Box::new(sqlite::Sqlite),
        Box::new(postgres::Postgres::default()),
        Box::new(fjall::Fjall),
        Box::new(redb::Redb),
    ]
}

/// Encodes one event for the key-value peers (fjall, redb), which store it as a value keyed by position:
/// `ts: i64 BE | id: 16 | version: u64 BE | stream_len: u16 BE | stream | type_len: u16 BE | type | data`.
pub fn encode_record(out: &mut Vec<u8>, stream: &str, version: u64, event_type: &str, pending: &Pending) {
    out.clear();
    out.extend_from_slice(&crate::event::now_nanos().to_be_bytes());
    out.extend_from_slice(&pending.event.id);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&u16::try_from(stream.len()).expect("stream names are short").to_be_bytes());
    out.extend_from_slice(stream.as_bytes());
    out.extend_from_slice(&u16::try_from(event_type.len()).expect("event types are short").to_be_bytes());
    out.extend_from_slice(event_type.as_bytes());
    out.extend_from_slice(&pending.event.data);
}

/// A decoded record of the key-value peers; every field is parsed so that reads do the same work as the
/// other engines' (annals checks and decodes every field of a frame).
pub struct Record<'a> {
    pub timestamp_nanos: i64,
    pub id: [u8; 16],
    pub version: u64,
    pub stream: &'a str,
    pub event_type: &'a str,
    pub data: &'a [u8],
}

/// Decodes what [`encode_record`] wrote.
pub fn decode_record(bytes: &[u8]) -> Result<Record<'_>> {
    fn take<'a>(bytes: &mut &'a [u8], len: usize) -> Result<&'a [u8]> {
        if bytes.len() < len {
            return Err("truncated record".into());
        }
        let (head, tail) = bytes.split_at(len);
        *bytes = tail;
        Ok(head)
    }
    let mut rest = bytes;
    let timestamp_nanos = i64::from_be_bytes(take(&mut rest, 8)?.try_into()?);
    let id = take(&mut rest, 16)?.try_into()?;
    let version = u64::from_be_bytes(take(&mut rest, 8)?.try_into()?);
    let stream_len = u16::from_be_bytes(take(&mut rest, 2)?.try_into()?);
    let stream = std::str::from_utf8(take(&mut rest, stream_len.into())?)?;
    let type_len = u16::from_be_bytes(take(&mut rest, 2)?.try_into()?);
    let event_type = std::str::from_utf8(take(&mut rest, type_len.into())?)?;
    Ok(Record { timestamp_nanos, id, version, stream, event_type, data: rest })
}

/// The stream-index key of the key-value peers: the stream name, a 0 byte (names never contain one, so no
/// name's keys fall inside another's range), and the big-endian version.
pub fn stream_key(stream: &str, version: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(stream.len() + 9);
    key.extend_from_slice(stream.as_bytes());
    key.push(0);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

/// The bounds of one stream's keys in the stream index: `[name 0, name 1)`.
pub fn stream_key_range(stream: &str) -> (Vec<u8>, Vec<u8>) {
    let mut low = Vec::with_capacity(stream.len() + 1);
    low.extend_from_slice(stream.as_bytes());
    low.push(0);
    let mut high = low.clone();
    *high.last_mut().expect("just pushed") = 1;
    (low, high)
}

/// The version after the one an index key names.
pub fn next_version_after(key: &[u8]) -> Result<u64> {
    let at = key.len().checked_sub(8).ok_or("stream index key too short")?;
    Ok(u64::from_be_bytes(key[at..].try_into()?) + 1)
}

/// Hands a record's payload to `visit` after checking that every field decoded, so the compiler cannot skip
/// the decode.
pub fn visit_record(record: &Record<'_>, visit: &mut dyn FnMut(&[u8])) {
    std::hint::black_box((record.timestamp_nanos, record.id, record.version, record.stream, record.event_type));
    visit(record.data);
}
