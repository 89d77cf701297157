//! The per-stream sparse offset index: for each stream its last offset, the locator of its last record, and
//! the locator of every `interval`-th record. Derived data: rebuilt from the log when missing or stale.
//!
//! Streams are keyed by a 64-bit hash of their name (foldhash, randomly seeded per open, never persisted). The name itself is
//! not kept in memory: it is in every record, so a lookup confirms it by reading the stream's last record.
//! Names that share a hash move to a small side table that keeps them beside their states.
//!
//! Memory: a stream with fewer than `interval` events costs one 32-byte hash-table slot plus a control byte
//! (about 35 to 70 bytes with the table's growth slack); each further `interval` events add one 8-byte locator.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use foldhash::fast::RandomState;

use crate::log::frame::NO_PREV;

/// Reads stream names out of the log for the index, which holds only locators.
pub trait Names {
    /// Whether the record at `locator` belongs to `stream`.
    fn is(&self, locator: u64, stream: &str) -> bool;
    /// The stream name of the record at `locator`.
    fn name(&self, locator: u64) -> String;
}

/// The locators of a stream's every `interval`-th record: one pointer, null for the many short streams.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[expect(clippy::box_collection, reason = "one pointer instead of a Vec's three words, in every stream's slot")]
pub struct Sparse(Option<Box<Vec<u64>>>);

impl Sparse {
    pub fn from_vec(locators: Vec<u64>) -> Self {
        Sparse((!locators.is_empty()).then(|| Box::new(locators)))
    }

    pub fn as_slice(&self) -> &[u64] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }

    fn push(&mut self, locator: u64) {
        self.0.get_or_insert_with(Box::default).push(locator);
    }
}

/// What the index knows of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    /// Offset of the stream's last event.
    pub last_offset: u64,
    /// Locator of the stream's last record.
    pub head: u64,
    /// `sparse[i]` is the locator of the record at offset `(i + 1) * interval`.
    pub sparse: Sparse,
}
const _: () = assert!(std::mem::size_of::<StreamState>() == 24);

impl StreamState {
    /// The indexed record nearest at or after `offset` (which must be ≤ `last_offset`): (its offset, its
    /// locator). Walking `prev` pointers back from there reaches `offset` in fewer than `interval` steps.
    pub fn walk_start(&self, offset: u64, interval: u32) -> (u64, u64) {
        assert!(offset <= self.last_offset);
        let interval = u64::from(interval);
        let slot = offset.div_ceil(interval).max(1);
        match usize::try_from(slot - 1).ok().and_then(|i| self.sparse.as_slice().get(i)) {
            Some(&locator) => (slot * interval, locator),
            None => (self.last_offset, self.head),
        }
    }

    fn advance(&mut self, offset: u64, locator: u64, interval: u32) {
        assert_eq!(offset, self.last_offset + 1, "offsets must be dense");
        self.last_offset = offset;
        self.head = locator;
        if offset.is_multiple_of(u64::from(interval)) {
            self.sparse.push(locator);
            debug_assert_eq!(self.sparse.as_slice().len() as u64, offset / u64::from(interval));
        }
    }

    fn fresh(offset: u64, locator: u64) -> Self {
        assert_eq!(offset, 0, "a new stream starts at offset 0");
        StreamState { last_offset: 0, head: locator, sparse: Sparse::default() }
    }
}

/// The hash table's keys are already hashes: pass them through.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys are hashed")
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type ByHash<V> = HashMap<u64, V, BuildHasherDefault<PassThrough>>;

/// The index of every stream. Not synchronized: the store wraps it in a lock.
pub struct Index {
    /// Streams alone in their hash; the name is confirmed against the log.
    streams: ByHash<StreamState>,
    /// Streams whose hash another stream shares, with their names. Such a hash is never in `streams`.
    collided: ByHash<Vec<(Box<str>, StreamState)>>,
    salt: RandomState,
    hash_mask: u64,
    interval: u32,
    count: usize,
}

impl Index {
    /// An empty index that keeps every `interval`-th locator. `hash_mask` is `u64::MAX` except in tests that
    /// force hash collisions.
    pub fn new(interval: u32, hash_mask: u64) -> Self {
        assert!(interval > 0);
        Index {
            streams: ByHash::default(),
            collided: ByHash::default(),
            salt: RandomState::default(),
            hash_mask,
            interval,
            count: 0,
        }
    }

    /// Makes room for `additional` more streams at once (loading a checkpoint), instead of growing by doubling.
    pub fn reserve(&mut self, additional: usize) {
        self.streams.reserve(additional);
    }

    pub fn interval(&self) -> u32 {
        self.interval
    }

    /// How many streams exist.
    pub fn stream_count(&self) -> usize {
        self.count
    }

    fn hash(&self, stream: &str) -> u64 {
        self.salt.hash_one(stream) & self.hash_mask
    }

    /// The state of `stream`, if it exists.
    pub fn get(&self, stream: &str, names: &dyn Names) -> Option<&StreamState> {
        let hash = self.hash(stream);
        if let Some(state) = self.streams.get(&hash) {
            return names.is(state.head, stream).then_some(state);
        }
        if self.collided.is_empty() {
            return None;
        }
        self.collided.get(&hash)?.iter().find(|(name, _)| &**name == stream).map(|(_, state)| state)
    }

    /// The entry that may be `stream`'s, copied, without reading the log: `(true, state)` when the name is
    /// known (a collided hash keeps names), `(false, state)` when it must still be confirmed against the name
    /// in the record at `state.head`. For callers that must not read the log while they hold the index's lock.
    pub fn candidates(&self, stream: &str) -> Option<(bool, StreamState)> {
        let hash = self.hash(stream);
        if let Some(state) = self.streams.get(&hash) {
            return Some((false, state.clone()));
        }
        let entries = self.collided.get(&hash)?;
        entries.iter().find(|(name, _)| &**name == stream).map(|(_, state)| (true, state.clone()))
    }

    /// Records that `stream`'s event at `offset`, whose back-link is `prev`, is at `locator`; `Err(())` (and
    /// nothing recorded) if it does not continue the stream: offset 0 with no back-link for a new stream, else
    /// the next offset linking back to the stream's head.
    ///
    /// The back-link identifies the stream: a record that links to the head of the stream in its hash slot
    /// belongs to that stream, so the name is read back from the log only when a slot holds another stream
    /// (replaying a million records used to read a million names back).
    pub fn append(&mut self, stream: &str, offset: u64, prev: u64, locator: u64, names: &dyn Names) -> Result<(), ()> {
        let hash = self.hash(stream);
        let continues = |state: &StreamState| offset == state.last_offset + 1 && prev == state.head;
        let starts = offset == 0 && prev == NO_PREV;
        if let Some(state) = self.streams.get_mut(&hash) {
            if prev != NO_PREV && prev == state.head {
                if !continues(state) {
                    return Err(());
                }
                state.advance(offset, locator, self.interval);
                return Ok(());
            }
            // Not linked to this slot's head: this stream is new (with another in its slot), or the record
            // is wrong (which needs the name to tell).
            if !starts || names.is(state.head, stream) {
                return Err(());
            }
        } else if let Some(entries) = self.collided.get_mut(&hash) {
            match entries.iter_mut().find(|(name, _)| &**name == stream) {
                Some((_, state)) if continues(state) => state.advance(offset, locator, self.interval),
                Some(_) => return Err(()),
                None if starts => {
                    entries.push((stream.into(), StreamState::fresh(offset, locator)));
                    self.count += 1;
                }
                None => return Err(()),
            }
            return Ok(());
        } else if !starts {
            return Err(());
        }
        self.insert_new(hash, stream, StreamState::fresh(offset, locator), names)
    }

    /// Puts a whole stream state in place (loading a checkpoint). The stream must not exist yet.
    /// `Err(())` (and nothing changed) if the stream is already there: a checkpoint naming a stream twice is
    /// damaged, and is rejected rather than trusted.
    pub fn insert(&mut self, stream: &str, state: StreamState, names: &dyn Names) -> Result<(), ()> {
        let hash = self.hash(stream);
        if let Some(entries) = self.collided.get_mut(&hash) {
            if entries.iter().any(|(name, _)| &**name == stream) {
                return Err(());
            }
            entries.push((stream.into(), state));
            self.count += 1;
            Ok(())
        } else {
            self.insert_new(hash, stream, state, names)
        }
    }

    /// Adds a stream that is not in the index, moving a stream of the same hash to the side table. `Err(())`
    /// if the stream is there already.
    fn insert_new(&mut self, hash: u64, stream: &str, state: StreamState, names: &dyn Names) -> Result<(), ()> {
        match self.streams.entry(hash) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(state);
            }
            std::collections::hash_map::Entry::Occupied(slot) => {
                let other_name = names.name(slot.get().head).into_boxed_str();
                if &*other_name == stream {
                    return Err(());
                }
                let other = slot.remove();
                self.collided.insert(hash, vec![(other_name, other), (stream.into(), state)]);
            }
        }
        self.count += 1;
        Ok(())
    }

    /// Every stream with its state, in no particular order (for checkpoints).
    pub fn for_each(&self, names: &dyn Names, mut visit: impl FnMut(&str, &StreamState)) {
        for state in self.streams.values() {
            visit(&names.name(state.head), state);
        }
        for entries in self.collided.values() {
            entries.iter().for_each(|(name, state)| visit(name, state));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Index {
        /// `append` with the back-link looked up: for tests that build an index by hand.
        fn record(&mut self, stream: &str, offset: u64, locator: u64, names: &dyn Names) {
            let prev = self.get(stream, names).map_or(NO_PREV, |state| state.head);
            self.append(stream, offset, prev, locator, names).expect("the record continues its stream");
        }
    }
    use std::collections::HashMap as StdMap;

    /// A fake log: locator → stream name.
    #[derive(Default)]
    struct FakeLog(StdMap<u64, String>);

    impl Names for FakeLog {
        fn is(&self, locator: u64, stream: &str) -> bool {
            self.0[&locator] == stream
        }
        fn name(&self, locator: u64) -> String {
            self.0[&locator].clone()
        }
    }

    fn fill(mask: u64) -> (Index, FakeLog) {
        let mut index = Index::new(4, mask);
        let mut log = FakeLog::default();
        let mut locator = 0;
        for offset in 0..10 {
            for stream in ["a", "b", "c"] {
                log.0.insert(locator, stream.to_owned());
                index.record(stream, offset, locator, &log);
                locator += 1;
            }
        }
        (index, log)
    }

    #[test]
    fn keeps_heads_and_every_nth_locator() {
        for mask in [u64::MAX, 0] {
            let (index, log) = fill(mask);
            assert_eq!(index.stream_count(), 3);
            let b = index.get("b", &log).unwrap();
            assert_eq!((b.last_offset, b.head), (9, 28));
            // Offsets 4 and 8 of "b" are at locators 13 and 25.
            assert_eq!(b.sparse.as_slice(), [13, 25]);
            assert!(index.get("d", &log).is_none());
        }
    }

    #[test]
    fn walk_start_is_the_nearest_indexed_record_at_or_after() {
        let (index, log) = fill(u64::MAX);
        let b = index.get("b", &log).unwrap();
        assert_eq!(b.walk_start(0, 4), (4, 13));
        assert_eq!(b.walk_start(4, 4), (4, 13));
        assert_eq!(b.walk_start(5, 4), (8, 25));
        assert_eq!(b.walk_start(9, 4), (9, 28));
    }

    #[test]
    fn collided_hashes_keep_streams_apart() {
        let (mut index, log) = fill(0);
        let mut seen = Vec::new();
        index.for_each(&log, |name, state| seen.push((name.to_owned(), state.last_offset)));
        seen.sort();
        assert_eq!(seen, [("a".to_owned(), 9), ("b".to_owned(), 9), ("c".to_owned(), 9)]);
        let mut log = log;
        log.0.insert(100, "d".to_owned());
        index.record("d", 0, 100, &log);
        assert_eq!(index.get("d", &log).unwrap().head, 100);
        assert_eq!(index.get("a", &log).unwrap().head, 27);
    }
}
