//! A memtable: the index entries of a range of positions that no table holds yet. The writer appends to the
//! active one after every group; at a roll (or a close) it is frozen and written out as a table in the
//! background, and dropped once the table is durable.
//!
//! Keys are the names themselves, not their hashes: a memtable holds at most one segment's records, and
//! keeping the names spares every lookup a read of the log to tell colliding streams apart. Memory is about
//! 8 bytes per event for each of the stream, category and event-type entries, plus each name once.

use std::collections::HashMap;

use foldhash::fast::RandomState;
use uuid::Uuid;

use super::hash::{self, Kind};
use super::table::{Meta, PositionEntry, StreamEntry, POSITION_INTERVAL};
use crate::error::Result;
use crate::log::frame::NO_PREV;

/// What the index needs of one committed record.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub stream: &'a str,
    pub event_type: &'a str,
    pub offset: u64,
    pub position: u64,
    pub locator: u64,
    pub timestamp: u64,
    pub event_id: Uuid,
}

/// One stream's records in the range: consecutive offsets from `first_offset`.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub first_offset: u64,
    pub locators: Vec<u64>,
}

impl Run {
    pub fn last_offset(&self) -> u64 {
        self.first_offset + self.locators.len() as u64 - 1
    }

    pub fn head(&self) -> u64 {
        *self.locators.last().expect("a run holds a record")
    }

    /// The locator of `offset`, if the run holds it.
    pub fn locator(&self, offset: u64) -> Option<u64> {
        let i = offset.checked_sub(self.first_offset)?;
        self.locators.get(usize::try_from(i).ok()?).copied()
    }
}

/// The entries of positions `first_position..end_position`.
#[derive(Debug, Clone)]
pub struct Memtable {
    pub first_position: u64,
    pub end_position: u64,
    /// Where the record at `end_position` goes.
    pub end_locator: u64,
    pub last_locator: u64,
    pub last_event_id: Uuid,
    pub first_timestamp: u64,
    pub last_timestamp: u64,
    pub new_streams: u64,
    streams: HashMap<Box<str>, Run, RandomState>,
    categories: HashMap<Box<str>, Vec<u64>, RandomState>,
    event_types: HashMap<Box<str>, Vec<u64>, RandomState>,
    positions: Vec<PositionEntry>,
    separator: char,
    /// About how many bytes of memory the entries take.
    bytes: usize,
}

impl Memtable {
    /// An empty memtable whose first record will be `first_position`, at `first_locator`.
    pub fn new(first_position: u64, first_locator: u64, separator: char) -> Self {
        Memtable {
            first_position,
            end_position: first_position,
            end_locator: first_locator,
            last_locator: NO_PREV,
            last_event_id: Uuid::nil(),
            first_timestamp: 0,
            last_timestamp: 0,
            new_streams: 0,
            streams: HashMap::default(),
            categories: HashMap::default(),
            event_types: HashMap::default(),
            positions: Vec::new(),
            separator,
            bytes: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.end_position == self.first_position
    }

    /// How many streams have records here.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Adds the next record (its position must be `end_position`); `next_locator` is where the record after
    /// it goes.
    pub fn push(&mut self, record: &Record<'_>, next_locator: u64) {
        assert_eq!(record.position, self.end_position, "memtable records come in position order");
        if self.is_empty() {
            self.first_timestamp = record.timestamp;
        }
        match self.streams.get_mut(record.stream) {
            Some(run) => {
                assert_eq!(record.offset, run.last_offset() + 1, "offsets are dense within a stream");
                run.locators.push(record.locator);
            }
            None => {
                self.bytes += record.stream.len() + 64;
                if record.offset == 0 {
                    self.new_streams += 1;
                }
                let run = Run { first_offset: record.offset, locators: vec![record.locator] };
                self.streams.insert(record.stream.into(), run);
            }
        }
        let category = hash::category(record.stream, self.separator);
        for (map, key) in [(&mut self.categories, category), (&mut self.event_types, record.event_type)] {
            match map.get_mut(key) {
                Some(locators) => locators.push(record.locator),
                None => {
                    self.bytes += key.len() + 64;
                    map.insert(key.into(), vec![record.locator]);
                }
            }
        }
        if record.position.is_multiple_of(POSITION_INTERVAL) || record.position == self.first_position {
            self.positions.push(PositionEntry {
                position: record.position,
                locator: record.locator,
                timestamp: record.timestamp,
            });
        }
        self.bytes += 24;
        self.end_position += 1;
        self.end_locator = next_locator;
        self.last_locator = record.locator;
        self.last_event_id = record.event_id;
        self.last_timestamp = record.timestamp;
    }

    /// Skips to `position`: the positions before it are records compaction removed (replaying a compacted
    /// segment), and their entries are gone with them. The memtable still covers them, and its first position
    /// keeps its position entry (at the original offset `end_locator` names, with `timestamp`, the next kept
    /// record's: removed records' times are unknown, and none is later).
    pub fn skip_to(&mut self, position: u64, timestamp: u64, last_locator: u64) {
        assert!(position >= self.end_position, "memtable records come in position order");
        if position == self.end_position {
            return;
        }
        if self.is_empty() {
            self.first_timestamp = timestamp;
            self.positions.push(PositionEntry { position: self.first_position, locator: self.end_locator, timestamp });
        }
        self.end_position = position;
        self.last_locator = last_locator;
        self.last_event_id = uuid::Uuid::nil();
    }

    pub fn run(&self, stream: &str) -> Option<&Run> {
        self.streams.get(stream)
    }

    /// The locators of `category`'s (or, with `Kind::EventType`, the event type's) records, in position order.
    pub fn locators(&self, kind: Kind, key: &str) -> &[u64] {
        let map = match kind {
            Kind::Category => &self.categories,
            Kind::EventType => &self.event_types,
            Kind::Stream => unreachable!("stream records are runs"),
        };
        map.get(key).map_or(&[], Vec::as_slice)
    }

    /// The sparse position entries, in position order.
    pub fn positions(&self) -> &[PositionEntry] {
        &self.positions
    }

    /// The header of the table this memtable becomes.
    pub fn meta(&self, seed: u64, hash_mask: u64) -> Meta {
        Meta {
            seed,
            hash_mask,
            first_position: self.first_position,
            end_position: self.end_position,
            end_locator: self.end_locator,
            last_locator: self.last_locator,
            last_event_id: self.last_event_id,
            first_timestamp: self.first_timestamp,
            last_timestamp: self.last_timestamp,
            new_streams: self.new_streams,
            separator: self.separator,
        }
    }

    /// The stream entries, hashed with `seed` and sorted as a table holds them.
    pub fn sorted_streams(&self, seed: u64, hash_mask: u64) -> Vec<StreamEntry> {
        let mut entries = Vec::with_capacity(self.streams.values().map(|run| run.locators.len()).sum());
        for (name, run) in &self.streams {
            let hash = hash::hash(seed, Kind::Stream, name) & hash_mask;
            entries.extend(run.locators.iter().enumerate().map(|(i, &locator)| StreamEntry {
                hash,
                offset: run.first_offset + i as u64,
                locator,
            }));
        }
        entries.sort_unstable();
        entries
    }

    /// The category (or event type) entries, hashed with `seed` and sorted: (hash, locator).
    pub fn sorted_pairs(&self, seed: u64, hash_mask: u64, kind: Kind) -> Vec<(u64, u64)> {
        let map = if kind == Kind::Category { &self.categories } else { &self.event_types };
        let mut entries = Vec::with_capacity(map.values().map(Vec::len).sum());
        for (key, locators) in map {
            let hash = hash::hash(seed, kind, key) & hash_mask;
            entries.extend(locators.iter().map(|&locator| (hash, locator)));
        }
        entries.sort_unstable();
        entries
    }

    /// The entries as a table's contents (for `table::write`).
    #[allow(clippy::type_complexity, reason = "the four iterators of table::Contents")]
    pub fn contents(
        &self,
        seed: u64,
        hash_mask: u64,
    ) -> super::table::Contents<
        impl Iterator<Item = Result<StreamEntry>>,
        impl Iterator<Item = Result<(u64, u64)>>,
        impl Iterator<Item = Result<(u64, u64)>>,
        impl Iterator<Item = Result<PositionEntry>> + '_,
    > {
        super::table::Contents {
            streams: self.sorted_streams(seed, hash_mask).into_iter().map(Ok),
            categories: self.sorted_pairs(seed, hash_mask, Kind::Category).into_iter().map(Ok),
            event_types: self.sorted_pairs(seed, hash_mask, Kind::EventType).into_iter().map(Ok),
            positions: self.positions.iter().copied().map(Ok),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(stream: &'a str, event_type: &'a str, offset: u64, position: u64) -> Record<'a> {
        Record {
            stream,
            event_type,
            offset,
            position,
            locator: 1000 + position * 100,
            timestamp: position,
            event_id: Uuid::from_u128(u128::from(position)),
        }
    }

    #[test]
    fn runs_categories_types_and_positions() {
        let mut memtable = Memtable::new(128, 1000 + 128 * 100, '-');
        let records = [
            record("account-1", "Opened", 5, 128),
            record("account-2", "Opened", 0, 129),
            record("account-1", "Deposited", 6, 130),
            record("orders", "Placed", 0, 131),
        ];
        for record in &records {
            memtable.push(record, record.locator + 100);
        }
        assert_eq!((memtable.first_position, memtable.end_position, memtable.new_streams), (128, 132, 2));
        let run = memtable.run("account-1").unwrap();
        assert_eq!((run.first_offset, run.last_offset(), run.head()), (5, 6, 1000 + 130 * 100));
        assert_eq!(run.locator(6), Some(1000 + 130 * 100));
        assert_eq!(run.locator(4), None);
        assert_eq!(memtable.locators(Kind::Category, "account"), [13800, 13900, 14000]);
        assert_eq!(memtable.locators(Kind::EventType, "Opened"), [13800, 13900]);
        assert_eq!(memtable.locators(Kind::Category, "orders"), [14100]);
        // The first record and every 64th position.
        assert_eq!(memtable.positions().iter().map(|p| p.position).collect::<Vec<_>>(), [128]);
        let streams = memtable.sorted_streams(9, u64::MAX);
        assert_eq!(streams.len(), 4);
        assert!(streams.windows(2).all(|pair| pair[0] < pair[1]));
        let meta = memtable.meta(9, u64::MAX);
        assert_eq!((meta.end_locator, meta.last_locator, meta.last_timestamp), (14200, 14100, 131));
    }
}
