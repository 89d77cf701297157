//! The per-stream sparse offset index: for each stream its last offset, the locator of its last record, and
//! the locator of every `interval`-th record. Derived data: rebuilt from the log when missing or stale.
//!
//! Streams are keyed by a 64-bit hash of their name (salted per open, never persisted). The name itself is
//! not kept in memory: it is in every record, so a lookup confirms it by reading the stream's last record.
//! When two names share a hash, that slot keeps the names beside their states (the rare collided form).
//!
//! Memory: a stream with fewer than `interval` events costs one hash-table entry (about 50 bytes); each
//! further `interval` events add one 8-byte locator.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

/// Reads stream names out of the log for the index, which holds only locators.
pub trait Names {
    /// Whether the record at `locator` belongs to `stream`.
    fn is(&self, locator: u64, stream: &str) -> bool;
    /// The stream name of the record at `locator`.
    fn name(&self, locator: u64) -> String;
}

/// What the index knows of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    /// Offset of the stream's last event.
    pub last_offset: u64,
    /// Locator of the stream's last record.
    pub head: u64,
    /// `sparse[i]` is the locator of the record at offset `(i + 1) * interval`.
    pub sparse: Vec<u64>,
}

impl StreamState {
    /// The indexed record nearest at or after `offset` (which must be ≤ `last_offset`): (its offset, its
    /// locator). Walking `prev` pointers back from there reaches `offset` in fewer than `interval` steps.
    pub fn walk_start(&self, offset: u64, interval: u32) -> (u64, u64) {
        assert!(offset <= self.last_offset);
        let interval = u64::from(interval);
        let slot = offset.div_ceil(interval).max(1);
        match usize::try_from(slot - 1).ok().and_then(|i| self.sparse.get(i)) {
            Some(&locator) => (slot * interval, locator),
            None => (self.last_offset, self.head),
        }
    }
}

#[derive(Debug, Clone)]
enum Slot {
    /// The common case: one stream has this hash; its name is in its records.
    One(StreamState),
    /// Names that share one hash, with their states.
    #[expect(clippy::box_collection, reason = "boxed, the rare collided form keeps every slot one pointer smaller")]
    Many(Box<Vec<(Box<str>, StreamState)>>),
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

/// The index of every stream. Not synchronized: the store wraps it in a lock.
pub struct Index {
    slots: HashMap<u64, Slot, BuildHasherDefault<PassThrough>>,
    salt: RandomState,
    hash_mask: u64,
    interval: u32,
    streams: usize,
}

impl Index {
    /// An empty index that keeps every `interval`-th locator. `hash_mask` is `u64::MAX` except in tests that
    /// force hash collisions.
    pub fn new(interval: u32, hash_mask: u64) -> Self {
        assert!(interval > 0);
        Index { slots: HashMap::default(), salt: RandomState::new(), hash_mask, interval, streams: 0 }
    }

    pub fn interval(&self) -> u32 {
        self.interval
    }

    /// How many streams exist.
    pub fn stream_count(&self) -> usize {
        self.streams
    }

    fn hash(&self, stream: &str) -> u64 {
        self.salt.hash_one(stream) & self.hash_mask
    }

    /// The state of `stream`, if it exists.
    pub fn get(&self, stream: &str, names: &dyn Names) -> Option<&StreamState> {
        match self.slots.get(&self.hash(stream))? {
            Slot::One(state) => names.is(state.head, stream).then_some(state),
            Slot::Many(entries) => entries.iter().find(|(name, _)| &**name == stream).map(|(_, state)| state),
        }
    }

    /// Records that `stream`'s event at `offset` is at `locator`. Offsets must arrive in order, starting at 0.
    pub fn record(&mut self, stream: &str, offset: u64, locator: u64, names: &dyn Names) {
        let hash = self.hash(stream);
        let interval = u64::from(self.interval);
        let advance = |state: &mut StreamState| {
            assert_eq!(offset, state.last_offset + 1, "stream {stream:?} offsets must be dense");
            state.last_offset = offset;
            state.head = locator;
            if offset.is_multiple_of(interval) {
                state.sparse.push(locator);
                debug_assert_eq!(state.sparse.len() as u64, offset / interval);
            }
        };
        let fresh = || {
            assert_eq!(offset, 0, "a new stream {stream:?} must start at offset 0");
            StreamState { last_offset: 0, head: locator, sparse: Vec::new() }
        };
        match self.slots.get_mut(&hash) {
            None => {
                self.slots.insert(hash, Slot::One(fresh()));
                self.streams += 1;
            }
            Some(Slot::One(state)) if names.is(state.head, stream) => advance(state),
            Some(slot @ Slot::One(_)) => {
                let Slot::One(other) = std::mem::replace(slot, Slot::Many(Box::default())) else { unreachable!() };
                let other_name = names.name(other.head).into_boxed_str();
                *slot = Slot::Many(Box::new(vec![(other_name, other), (stream.into(), fresh())]));
                self.streams += 1;
            }
            Some(Slot::Many(entries)) => match entries.iter_mut().find(|(name, _)| &**name == stream) {
                Some((_, state)) => advance(state),
                None => {
                    entries.push((stream.into(), fresh()));
                    self.streams += 1;
                }
            },
        }
    }

    /// Puts a whole stream state in place (loading a checkpoint). The stream must not exist yet.
    pub fn insert(&mut self, stream: &str, state: StreamState, names: &dyn Names) {
        let hash = self.hash(stream);
        match self.slots.get_mut(&hash) {
            None => {
                self.slots.insert(hash, Slot::One(state));
            }
            Some(slot @ Slot::One(_)) => {
                let Slot::One(other) = std::mem::replace(slot, Slot::Many(Box::default())) else { unreachable!() };
                let other_name = names.name(other.head).into_boxed_str();
                assert_ne!(&*other_name, stream, "stream inserted twice");
                *slot = Slot::Many(Box::new(vec![(other_name, other), (stream.into(), state)]));
            }
            Some(Slot::Many(entries)) => {
                assert!(entries.iter().all(|(name, _)| &**name != stream), "stream inserted twice");
                entries.push((stream.into(), state));
            }
        }
        self.streams += 1;
    }

    /// Every stream with its state, in no particular order (for checkpoints).
    pub fn for_each(&self, names: &dyn Names, mut visit: impl FnMut(&str, &StreamState)) {
        for slot in self.slots.values() {
            match slot {
                Slot::One(state) => visit(&names.name(state.head), state),
                Slot::Many(entries) => entries.iter().for_each(|(name, state)| visit(name, state)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            assert_eq!(b.sparse, vec![13, 25]);
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
