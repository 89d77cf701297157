//! # annals
//!
//! An embedded event-stream store. Applications append events to named streams (`account-42`, `order-7`) and
//! read them back in order from any offset, to rebuild state, catch up projections and audit. Events are never
//! modified. Every event gets a dense per-stream **offset** (0, 1, 2, …) and a dense, gap-free global
//! **position** across all streams.
//!
//! Underneath is a segmented log: fixed-size, preallocated, memory-mapped segment files of CRC-framed
//! records; a persistent index of streams, categories, event types and commit times, so that a read costs
//! what it returns; a group-commit writer thread that turns many concurrent appends into one `fdatasync`; and
//! zero-copy reads (payloads are [`bytes::Bytes`] slices of the mapping). `format-spec.md` specifies every
//! byte.
//!
//! On top:
//! - [`Store::subscribe`]: catch up from any position, then follow new commits live, with no gap and no
//!   duplicate at the switch; blocking ([`Subscription`] is an iterator) or async
//!   ([`Subscription::into_stream`], a `futures_core::Stream`, woken by the commit path: no runtime, no thread
//!   per subscriber). [`Store::subscribe_durable`] resumes after a checkpoint kept in the store.
//! - [`Store::append_async`]: an append whose future completes when the writer answers.
//! - Idempotent retries: an append of events with ids the caller gave, retried after a timeout or a crash,
//!   returns the original result instead of writing twice ([`Store::append`]).
//! - The typed layer: [`Event`]s with schema versions and [`Upcasters`], [`Aggregate`]s loaded by a
//!   [`Repository`] from snapshots and events, and [`Projection`]s kept up to date by a [`ProjectionRunner`]
//!   that checkpoints its state and position together (exactly once).
//! - Erasure (GDPR) by crypto-shredding: [`Personal`] fields are sealed with a key per subject, kept by an
//!   [`Erasure`] in `keys/`; [`Erasure::forget`] destroys a subject's key, and its fields then read as
//!   forgotten while every event keeps its position, offset and id.
//!
//! ```
//! use annals::{EventData, ExpectedVersion, Store};
//!
//! # fn main() -> annals::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path())?;
//! let appended = store.append(
//!     "account-42",
//!     ExpectedVersion::NoStream,
//!     &[EventData::new("AccountOpened", &b"{\"owner\":\"Ada\"}"[..]), EventData::new("MoneyDeposited", &b"100"[..])],
//! )?;
//! assert_eq!((appended.first_offset, appended.last_offset), (0, 1));
//!
//! let types: Vec<String> = store
//!     .read_stream("account-42", 0)?
//!     .map(|event| event.map(|event| event.event_type().to_owned()))
//!     .collect::<annals::Result<_>>()?;
//! assert_eq!(types, ["AccountOpened", "MoneyDeposited"]);
//! store.close()?;
//! # Ok(())
//! # }
//! ```

/// Enters a `tracing` span (`info` level) for the rest of the enclosing scope when the `tracing` feature is on;
/// nothing otherwise.
macro_rules! span {
    ($name:literal $(, $($fields:tt)*)?) => {
        #[cfg(feature = "tracing")]
        let _span = tracing::info_span!($name $(, $($fields)*)?).entered();
    };
}

// The storage engine, by layer: the log (frames, segments, the writer, recovery), the index over it, and
// the readers; then the typed event-sourcing layer and the snapshots beside the log.
mod compaction;
mod error;
mod es;
mod index;
mod lifecycle;
mod log;
mod metrics;
mod read;
mod snapshot;
mod store;
mod subscription;

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

pub use crate::error::{Error, Result};
pub use crate::lifecycle::{StreamMetadata, META_EVENT_TYPE, META_STREAM_PREFIX, TOMBSTONE_EVENT_TYPE};
pub use crate::log::io::{FaultInjector, IoCall, IoOp};
pub use crate::log::verify::VerifyReport;
pub use crate::metrics::{Histogram, Metrics, SubscriptionLag};
pub use crate::read::{EventRef, ReadAll, ReadStream, ReadStreamBackwards, RecordedEvent};
pub use crate::store::{AppendFuture, AppendMultiFuture, Store};
pub use crate::subscription::{
    Filter, SubscribeFrom, Subscription, SubscriptionMessage, SubscriptionStream, CHECKPOINT_EVENT_TYPE,
    CHECKPOINT_EVERY_POSITIONS, CHECKPOINT_STREAM_PREFIX, FALL_BEHIND_POSITIONS,
};

#[cfg(feature = "json")]
pub use crate::es::codec::JsonCodec;
pub use crate::es::codec::{decode_tagged, BincodeCodec, Codec, CodecError};
pub use crate::es::{
    split_event_type, Aggregate, Erasure, Event, EventCodec, EventError, Loaded, Personal, Projection,
    ProjectionOptions, ProjectionRunner, Repository, RepositoryError, Saved, SnapshotPolicy, Upcasters,
    ERASURE_EVENT_TYPE, ERASURE_STREAM, KEYS_DIR, KEY_FILE, KEY_FILE_FORMAT_VERSION, PROJECTION_EVENT_TYPE,
    PROJECTION_STREAM_PREFIX, SUBJECT_BYTES_MAX,
};
pub use crate::snapshot::{
    SkipReason, SkippedSnapshot, Snapshot, SnapshotOptions, SnapshotSearch, SNAPSHOTS_KEPT_DEFAULT,
    SNAPSHOT_FORMAT_VERSION,
};

/// Longest stream name, in bytes of UTF-8.
pub const STREAM_NAME_BYTES_MAX: usize = log::frame::STREAM_NAME_BYTES_MAX;
/// Longest event type, in bytes of UTF-8.
pub const EVENT_TYPE_BYTES_MAX: usize = log::frame::EVENT_TYPE_BYTES_MAX;
/// The format version of the segments the writer makes (format-spec §4.1).
pub const FORMAT_VERSION: u32 = log::segment::FORMAT_VERSION;
/// The format version of a segment compaction rewrote, the newest this build reads (format-spec §4.5).
pub const COMPACTED_FORMAT_VERSION: u32 = log::segment::COMPACTED_FORMAT_VERSION;

/// An event to append: its type, payload, optional metadata and optional id.
///
/// ```
/// use annals::EventData;
/// let event = EventData::new("MoneyDeposited", &b"{\"amount\":100}"[..])
///     .with_metadata(&b"{\"correlation\":\"7f3a\"}"[..])
///     .with_id(uuid::Uuid::nil());
/// assert_eq!(event.event_type(), "MoneyDeposited");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventData {
    event_type: String,
    data: Bytes,
    metadata: Bytes,
    id: Option<Uuid>,
    codec: u8,
}

impl EventData {
    /// An event of `event_type` carrying `data`, with empty metadata; the store assigns a UUIDv7 id.
    pub fn new(event_type: impl Into<String>, data: impl Into<Bytes>) -> Self {
        EventData { event_type: event_type.into(), data: data.into(), metadata: Bytes::new(), id: None, codec: 0 }
    }

    /// Gives the event this id instead of a fresh UUIDv7.
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = Some(id);
        self
    }

    /// Attaches metadata (correlation and causation ids, and the like).
    pub fn with_metadata(mut self, metadata: impl Into<Bytes>) -> Self {
        self.metadata = metadata.into();
        self
    }

    /// Tags the payload with the codec that wrote it (0, the default, means opaque bytes). Stored with the
    /// event and returned by [`RecordedEvent::codec`].
    pub fn with_codec(mut self, codec: u8) -> Self {
        self.codec = codec;
        self
    }

    /// The event type.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The payload.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The metadata.
    pub fn metadata(&self) -> &Bytes {
        &self.metadata
    }

    /// The id given with [`with_id`](Self::with_id), if any.
    pub fn id(&self) -> Option<Uuid> {
        self.id
    }
}

/// What an append expects of the stream's current state (optimistic concurrency).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must exist.
    StreamExists,
    /// The stream's last event must be at exactly this offset.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream whose last offset is `actual` (`None`: no stream) satisfies this expectation.
    pub fn admits(self, actual: Option<u64>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual.is_none(),
            ExpectedVersion::StreamExists => actual.is_some(),
            ExpectedVersion::Exact(offset) => actual == Some(offset),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("an existing stream"),
            ExpectedVersion::Exact(offset) => write!(f, "last offset {offset}"),
        }
    }
}

/// Where an append landed: the offsets within the stream and the global positions, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AppendResult {
    /// Offset of the first appended event in its stream.
    pub first_offset: u64,
    /// Offset of the last appended event in its stream.
    pub last_offset: u64,
    /// Global position of the first appended event.
    pub first_position: u64,
    /// Global position of the last appended event.
    pub last_position: u64,
}

/// One stream's part of an atomic multi-stream append ([`Store::append_multi`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAppend {
    /// The stream.
    pub stream: String,
    /// What the stream's state must be for the transaction to commit.
    pub expected: ExpectedVersion,
    /// The events to append to it, at least one.
    pub events: Vec<EventData>,
}

/// When an append returns, relative to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// `append` returns after the events are on stable storage (`fdatasync` completed). Readers see only
    /// synced events. The default.
    SyncData,
    /// `append` returns after the events are written to the page cache; a background sync runs at least every
    /// `flush_interval`. A crash of the machine (not of the process) may lose the last interval of appends.
    Buffer {
        /// Longest time written events stay unsynced.
        flush_interval: Duration,
    },
}

/// How a store is opened. Public fields with documented defaults; build with struct update syntax:
///
/// ```
/// let options = annals::Options { segment_size_bytes: 1 << 20, ..Default::default() };
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    /// Size of each segment file, header included. Default 64 MiB. At least 4 KiB, at most 4 GiB − 1. Segments
    /// already on disk keep the size they were created with.
    pub segment_size_bytes: u64,
    /// When appends return. Default [`Durability::SyncData`].
    pub durability: Durability,
    /// Largest encoded event (88-byte header, stream name, event type, metadata and data). Default 16 MiB;
    /// also bounded by what one segment holds.
    pub event_size_bytes_max: u64,
    /// Most bytes one group commit writes before it syncs (one atomic append is never split). Default 4 MiB.
    pub batch_bytes_max: u64,
    /// Most segments kept mapped at once; the least recently used are unmapped and mapped again on demand. A
    /// segment a reader still holds (an iterator, or a `Bytes` payload) stays mapped until it lets go, and so
    /// does the active segment, which the writer holds. Segments hold no file descriptor, so open files do not
    /// grow with the log. At least 1. Default 1,024 (64 GiB of default-sized segments; each mapping is one of the
    /// process's `vm.max_map_count` areas, 65,530 by default).
    pub open_segments_max: usize,
    /// Memory for the index's cache of stream heads (last offset and record of recently appended streams),
    /// in bytes. Besides it the index keeps in memory only the entries of the last segment (written out at each
    /// roll) and a few bytes per table. Default 32 MiB.
    pub index_cache_bytes_max: u64,
    /// What ends a stream's category in its name: `account-42` is in category `account` with the default
    /// `'-'` (KurrentDB's convention; a name without it is its own category). Changing it rebuilds the index
    /// at the next open.
    pub category_separator: char,
    /// Compaction rewrites a sealed segment once the events its streams' lifecycles hide make up at least this
    /// share of its bytes, in percent (`Store::compact`, and the background compactor). Default 50. 0 turns
    /// the background compactor off (`Store::compact` then compacts a segment with any hidden event). At most
    /// 100.
    pub compaction_dead_percent: u8,
    /// How often the background compactor looks again at the streams with a `max_age` (whose events expire as
    /// time passes, with no lifecycle change to wake it). Default 10 minutes. `Duration::MAX`: never.
    pub compaction_interval: std::time::Duration,
    /// Test hook: makes chosen write-side system calls fail. Default `None`.
    pub fault_injector: Option<FaultInjector>,
    /// Test hook: stream-name hashes are masked with this (0 forces every stream into one hash slot).
    /// Default `u64::MAX`.
    #[doc(hidden)]
    pub stream_hash_mask: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_size_bytes: 64 << 20,
            durability: Durability::SyncData,
            event_size_bytes_max: 16 << 20,
            batch_bytes_max: 4 << 20,
            open_segments_max: 1024,
            index_cache_bytes_max: 32 << 20,
            category_separator: '-',
            compaction_dead_percent: 50,
            compaction_interval: std::time::Duration::from_secs(600),
            fault_injector: None,
            stream_hash_mask: u64::MAX,
        }
    }
}

pub use crate::compaction::CompactionReport;
pub use crate::log::recovery::RecoveryReport;

/// Entry points for the fuzz targets in `fuzz/`: the decoders over arbitrary bytes. Not a stable API.
#[doc(hidden)]
pub mod __fuzz {
    /// Decodes one frame; must never panic. Returns the frame length on success.
    pub fn decode_frame(bytes: &[u8]) -> Option<usize> {
        crate::log::frame::decode(bytes).ok().map(|frame| frame.len)
    }

    /// Encodes a frame from parts and decodes it again, asserting the round trip.
    pub fn round_trip_frame(stream: &str, event_type: &str, metadata: &[u8], data: &[u8], position: u64, offset: u64) {
        let ok = |name: &str, max| !name.is_empty() && name.len() <= max;
        if !ok(stream, crate::STREAM_NAME_BYTES_MAX) || !ok(event_type, crate::EVENT_TYPE_BYTES_MAX) {
            return;
        }
        let header = crate::log::frame::Header {
            position,
            offset,
            prev: crate::log::frame::NO_PREV,
            synced_before: position,
            timestamp_nanos: 1,
            event_id: uuid::Uuid::nil(),
            txn_after: 0,
            codec: 0,
        };
        let mut out = Vec::new();
        crate::log::frame::encode(&mut out, &header, stream, event_type, metadata, data);
        let frame = crate::log::frame::decode(&out).expect("an encoded frame decodes");
        assert_eq!(frame.header, header);
        assert_eq!(&out[frame.data], data);
        assert_eq!(&out[frame.metadata], metadata);
    }

    /// Opens the index table file at `path` (whatever its bytes), checks every page, and looks up a few keys;
    /// must never panic. Whether everything checked out.
    pub fn check_table(path: &std::path::Path) -> bool {
        use crate::index::table::{Section, Table};
        let Ok(table) = Table::open(path) else { return false };
        let mut ok = table.verify_pages().is_ok();
        for key in [0, 1, u64::MAX / 2, u64::MAX] {
            for section in [Section::Streams, Section::Categories, Section::EventTypes, Section::Positions] {
                ok &= table.lower_bound(section, (key, key)).is_ok();
            }
            ok &= table.may_hold_stream(key).is_ok();
        }
        ok
    }

    /// The file name of the segment starting at `base_position` (for tests that craft directories).
    pub fn segment_file_name(base_position: u64) -> String {
        crate::log::segment::file_name(base_position)
    }
}

/// The README's quick start, compiled and run by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeQuickStart;
