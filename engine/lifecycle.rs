//! Stream lifecycle, with KurrentDB's meanings: truncate a stream before an offset, delete it softly (its
//! numbering goes on), tombstone it (its name is retired), and keep only its last `max_count` events or those
//! younger than `max_age`.
//!
//! All of it is recorded in the log itself, so it is durable and atomic like any append and can never
//! outlive or precede what it governs:
//! - a stream's metadata is the last event of the system stream `$meta-<stream>` (type `$metadata`);
//! - a tombstone is an event of type `$tombstone` appended to the stream itself, at its next offset.
//!
//! Readers apply the rules as they read ([`Visibility`]): hidden events are skipped by every read and every
//! subscription, so a reader sees positions with gaps where they were. Nothing is removed from the log (yet):
//! the space of hidden events is not reclaimed (`format-spec.md` §15.5).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::index::Index;
use crate::log::{decode_at, Log, Via};
use crate::read::RecordedEvent;

/// Prefix of the system streams that hold a stream's metadata.
pub const META_STREAM_PREFIX: &str = "$meta-";
/// Event type of a metadata event.
pub const META_EVENT_TYPE: &str = "$metadata";
/// Event type of the event that tombstones a stream.
pub const TOMBSTONE_EVENT_TYPE: &str = "$tombstone";
/// Layout version of a metadata event's data (`format-spec.md` §15.5).
const META_FORMAT: u8 = 1;
const META_BYTES: usize = 26;

/// A stream's lifecycle settings. Every reader honours them; the default keeps everything.
///
/// ```
/// use std::time::Duration;
/// use annals::{EventData, ExpectedVersion, Store, StreamMetadata};
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path()).unwrap();
/// for i in 0..5u8 {
///     store.append("sensor-1", ExpectedVersion::Any, &[EventData::new("Reading", vec![i])]).unwrap();
/// }
/// store.set_stream_metadata("sensor-1", StreamMetadata { max_count: Some(2), ..Default::default() }).unwrap();
/// let offsets: Vec<u64> = store.read_stream("sensor-1", 0).unwrap().map(|e| e.unwrap().offset()).collect();
/// assert_eq!(offsets, [3, 4]);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamMetadata {
    /// Events at lower offsets are hidden.
    pub truncate_before: Option<u64>,
    /// Only the last `max_count` events are visible (0 hides them all).
    pub max_count: Option<u64>,
    /// Only events committed within `max_age` of now are visible. Kept in whole seconds, rounded up (so at
    /// least one second).
    pub max_age: Option<Duration>,
}

impl StreamMetadata {
    /// The metadata event's data: layout version, presence flags, then three u64 (truncate-before offset,
    /// max count, max age in whole seconds, rounded up), little-endian.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut data = Vec::with_capacity(META_BYTES);
        data.push(META_FORMAT);
        let flags = u8::from(self.truncate_before.is_some())
            | (u8::from(self.max_count.is_some()) << 1)
            | (u8::from(self.max_age.is_some()) << 2);
        data.push(flags);
        data.extend_from_slice(&self.truncate_before.unwrap_or(0).to_le_bytes());
        data.extend_from_slice(&self.max_count.unwrap_or(0).to_le_bytes());
        // Whole seconds, rounded up: an age below a second must not become 0, which hides every event at once
        // (and lets compaction remove them for good).
        let seconds = |age: Duration| age.as_secs().saturating_add(u64::from(age.subsec_nanos() > 0));
        data.extend_from_slice(&self.max_age.map_or(0, seconds).to_le_bytes());
        data
    }

    pub(crate) fn decode(event: &RecordedEvent) -> Result<StreamMetadata> {
        let data = &event.data()[..];
        let bad = |reason: &str| {
            Error::corrupt(
                std::path::PathBuf::from(event.stream()),
                event.position(),
                format!("metadata event at position {}: {reason}", event.position()),
            )
        };
        if event.event_type() != META_EVENT_TYPE || data.len() != META_BYTES {
            return Err(bad("not a metadata event of this layout"));
        }
        if data[0] != META_FORMAT || data[1] & !0b111 != 0 {
            return Err(bad("unknown layout version or flags"));
        }
        let u64_at = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
        let flag = |bit: u8| data[1] & (1 << bit) != 0;
        Ok(StreamMetadata {
            truncate_before: flag(0).then(|| u64_at(2)),
            max_count: flag(1).then(|| u64_at(10)),
            max_age: flag(2).then(|| Duration::from_secs(u64_at(18))),
        })
    }
}

/// The system stream holding `stream`'s metadata.
pub(crate) fn meta_stream(stream: &str) -> String {
    format!("{META_STREAM_PREFIX}{stream}")
}

/// What a reader must hide of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rules {
    /// Offsets below this are hidden (truncation, soft delete, max count).
    pub start: u64,
    /// Events committed before this (ns since the epoch) are hidden (max age).
    pub min_timestamp: u64,
    /// The whole stream is gone.
    pub tombstoned: bool,
}

impl Rules {
    pub fn hides(&self, offset: u64, timestamp: u64) -> bool {
        self.tombstoned || offset < self.start || timestamp < self.min_timestamp
    }
}

/// The rules of `stream` as the log says now, `None` if it hides nothing. Reads the stream's head record (a
/// tombstone?) and its metadata stream's last event.
pub(crate) fn rules_of(log: &Log, index: &Index, stream: &str, now: SystemTime) -> Result<Option<Rules>> {
    let Some(head) = index.head(stream, Via::Mapping)? else { return Ok(None) };
    let (segment, at) = log.kept(head.locator)?;
    let last = decode_at(&segment, at)?;
    if &segment.bytes()[at..][last.event_type.clone()] == TOMBSTONE_EVENT_TYPE.as_bytes() {
        return Ok(Some(Rules { start: u64::MAX, min_timestamp: u64::MAX, tombstoned: true }));
    }
    let Some(metadata) = metadata_of(log, index, stream)? else { return Ok(None) };
    let mut start = metadata.truncate_before.unwrap_or(0);
    if let Some(count) = metadata.max_count {
        start = start.max((head.last_offset + 1).saturating_sub(count));
    }
    let min_timestamp = metadata.max_age.map_or(0, |age| {
        let cutoff = now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH);
        cutoff
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    });
    Ok(Some(Rules { start, min_timestamp, tombstoned: false }))
}

/// The last metadata event of `stream`, decoded.
pub(crate) fn metadata_of(log: &Log, index: &Index, stream: &str) -> Result<Option<StreamMetadata>> {
    let meta = meta_stream(stream);
    let Some(head) = index.head(&meta, Via::Mapping)? else { return Ok(None) };
    let (segment, at) = log.kept(head.locator)?;
    let frame = decode_at(&segment, at)?;
    let event = RecordedEvent::new(&segment, at, &frame);
    StreamMetadata::decode(&event).map(Some)
}

/// Decides, event by event, what a multi-stream read (all, category, event type, subscriptions) may show,
/// remembering each stream's rules for the rest of the read.
pub(crate) struct Visibility {
    log: std::sync::Arc<Log>,
    index: std::sync::Arc<Index>,
    now: SystemTime,
    rules: HashMap<Box<str>, Option<Rules>, foldhash::fast::RandomState>,
}

impl Visibility {
    pub fn new(log: std::sync::Arc<Log>, index: std::sync::Arc<Index>) -> Self {
        Visibility { log, index, now: SystemTime::now(), rules: HashMap::default() }
    }

    /// Whether `event` is visible.
    pub fn shows(&mut self, event: &RecordedEvent) -> Result<bool> {
        self.shows_record(event.stream(), event.offset(), event.timestamp_nanos())
    }

    /// Whether the event at `offset` of `stream`, committed at `timestamp` (ns), is visible.
    pub fn shows_record(&mut self, stream: &str, offset: u64, timestamp: u64) -> Result<bool> {
        let rules = match self.rules.get(stream) {
            Some(rules) => *rules,
            None => {
                let rules = rules_of(&self.log, &self.index, stream, self.now)?;
                self.rules.insert(stream.into(), rules);
                rules
            }
        };
        Ok(rules.is_none_or(|rules| !rules.hides(offset, timestamp)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_in_its_layout() {
        for metadata in [
            StreamMetadata::default(),
            StreamMetadata { truncate_before: Some(7), max_count: Some(0), max_age: Some(Duration::from_secs(60)) },
            StreamMetadata { truncate_before: Some(u64::MAX), max_count: None, max_age: Some(Duration::MAX) },
        ] {
            let data = metadata.encode();
            assert_eq!(data.len(), META_BYTES);
            let flags = data[1];
            assert_eq!(flags & 1 != 0, metadata.truncate_before.is_some());
            assert_eq!(flags & 2 != 0, metadata.max_count.is_some());
        }
    }

    #[test]
    fn rules_hide_by_offset_time_and_tombstone() {
        let rules = Rules { start: 5, min_timestamp: 100, tombstoned: false };
        assert!(rules.hides(4, 1_000) && rules.hides(9, 99) && !rules.hides(5, 100));
        assert!(Rules { start: 0, min_timestamp: 0, tombstoned: true }.hides(0, u64::MAX));
    }
}
