//! The cache of stream heads (a stream's last offset and record) the writer consults for every append.
//!
//! At 10 million streams it holds as many entries as its budget allows (about 400,000 in 32 MiB), and it
//! is churned by every new stream: an entry per allocation (the `lru` crate's node plus a boxed name) made
//! it cost a quarter of a loading writer's CPU in `malloc` and `free`, and 130 ms to drop at close (W9).
//! Here entries live in one vector, names of up to [`INLINE_NAME_BYTES`] bytes inside them, and a hash
//! table of slot numbers finds them; eviction is CLOCK (second chance), which needs no list to relink on a
//! hit. Dropping the cache frees two allocations (plus the rare long name).

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::Head;

/// Names up to this long are kept inside their slot (stream names are mostly `category-id`, short).
pub const INLINE_NAME_BYTES: usize = 23;

/// A stream name, inline when short.
#[derive(Debug)]
enum Name {
    Inline { len: u8, bytes: [u8; INLINE_NAME_BYTES] },
    Heap(Box<str>),
}

impl Name {
    fn new(name: &str) -> Name {
        if name.len() <= INLINE_NAME_BYTES {
            let mut bytes = [0; INLINE_NAME_BYTES];
            bytes[..name.len()].copy_from_slice(name.as_bytes());
            Name::Inline { len: name.len() as u8, bytes }
        } else {
            Name::Heap(name.into())
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Name::Inline { len, bytes } => &bytes[..*len as usize],
            Name::Heap(name) => name.as_bytes(),
        }
    }

    /// Bytes held outside the slot.
    fn heap_bytes(&self) -> u64 {
        match self {
            Name::Inline { .. } => 0,
            Name::Heap(name) => name.len() as u64,
        }
    }
}

#[derive(Debug)]
struct Slot {
    hash: u64,
    name: Name,
    /// `None`: the stream is known not to exist.
    head: Option<Head>,
    /// Used since the clock hand last passed.
    referenced: bool,
    /// False for a slot freed by an eviction and not reused yet.
    live: bool,
}

/// The last offset and record of streams used lately, within a budget of bytes. Holds `None` for a stream
/// known not to exist. Only the writer fills it; it keeps every entry true as it publishes.
pub struct HeadCache {
    /// Slot numbers, by the hash of their name.
    table: HashTable<u32>,
    slots: Vec<Slot>,
    /// Slots freed by evictions, reused first.
    free: Vec<u32>,
    /// The CLOCK hand: the next slot eviction considers.
    hand: usize,
    bytes: u64,
    bytes_max: u64,
    /// Most slots (slot numbers are u32): past it, an entry is evicted for each new one, whatever the budget.
    slots_max: usize,
    hasher: foldhash::fast::RandomState,
}

impl HeadCache {
    /// Bytes one entry costs besides a long name's heap bytes: its slot, its table entry and the table's
    /// spare capacity.
    pub const ENTRY_BYTES: u64 = (std::mem::size_of::<Slot>() + 16) as u64;

    pub fn new(bytes_max: u64) -> Self {
        HeadCache {
            table: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            hand: 0,
            bytes: 0,
            bytes_max,
            slots_max: u32::MAX as usize,
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn find(&self, stream: &str) -> Option<usize> {
        self.find_hashed(self.hasher.hash_one(stream), stream)
    }

    fn find_hashed(&self, hash: u64, stream: &str) -> Option<usize> {
        let slots = &self.slots;
        self.table.find(hash, |&i| slots[i as usize].name.as_bytes() == stream.as_bytes()).map(|&i| i as usize)
    }

    /// The cached head of `stream`, marking it used.
    pub fn get(&mut self, stream: &str) -> Option<Option<Head>> {
        let i = self.find(stream)?;
        self.slots[i].referenced = true;
        Some(self.slots[i].head)
    }

    /// The cached head of `stream`, without marking it used.
    pub fn peek(&self, stream: &str) -> Option<Option<Head>> {
        self.find(stream).map(|i| self.slots[i].head)
    }

    /// Caches `head` for `stream`, evicting entries unused lately to stay within the budget. A stream whose
    /// entry alone would exceed the budget is not cached.
    pub fn put(&mut self, stream: &str, head: Option<Head>) {
        let hash = self.hasher.hash_one(stream);
        if let Some(i) = self.find_hashed(hash, stream) {
            self.slots[i].head = head;
            self.slots[i].referenced = true;
            return;
        }
        let name = Name::new(stream);
        let cost = Self::ENTRY_BYTES + name.heap_bytes();
        if cost > self.bytes_max {
            return;
        }
        while self.bytes + cost > self.bytes_max || (self.free.is_empty() && self.slots.len() >= self.slots_max) {
            self.evict_one();
        }
        let slot = Slot { hash, name, head, referenced: false, live: true };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                u32::try_from(self.slots.len() - 1).expect("at most slots_max (u32::MAX) slots")
            }
        };
        let slots = &self.slots;
        self.table.insert_unique(hash, i, |&j| slots[j as usize].hash);
        self.bytes += cost;
    }

    /// Keeps an entry true: a stream that got a record. (Not a use: only lookups mark entries used.)
    pub fn update(&mut self, stream: &str, head: Head) {
        if let Some(i) = self.find(stream) {
            self.slots[i].head = Some(head);
        }
    }

    /// Evicts the first live entry from the hand on that was not used since the hand last passed it.
    fn evict_one(&mut self) {
        assert!(self.bytes > 0, "evicting from an empty head cache");
        loop {
            let i = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            let slot = &mut self.slots[i];
            if !slot.live {
                continue;
            }
            if slot.referenced {
                slot.referenced = false;
                continue;
            }
            slot.live = false;
            let name = std::mem::replace(&mut slot.name, Name::Inline { len: 0, bytes: [0; INLINE_NAME_BYTES] });
            let hash = slot.hash;
            self.bytes -= Self::ENTRY_BYTES + name.heap_bytes();
            let found = self.table.find_entry(hash, |&j| j as usize == i).expect("a live slot is in the table");
            found.remove();
            self.free.push(i as u32);
            return;
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn head(n: u64) -> Head {
        Head { last_offset: n, locator: n * 7 }
    }

    #[test]
    fn puts_are_found_updated_and_kept_apart_by_name() {
        let mut cache = HeadCache::new(1 << 20);
        let long = "a-stream-name-longer-than-twenty-three-bytes";
        cache.put("order-1", Some(head(1)));
        cache.put("order-2", None);
        cache.put(long, Some(head(3)));
        assert_eq!(cache.get("order-1"), Some(Some(head(1))));
        assert_eq!(cache.peek("order-2"), Some(None), "a stream known not to exist");
        assert_eq!(cache.get(long), Some(Some(head(3))));
        assert_eq!(cache.get("order-3"), None);
        assert_eq!(cache.get(""), None);
        cache.update("order-2", head(9));
        cache.update("order-4", head(9));
        assert_eq!(cache.peek("order-2"), Some(Some(head(9))));
        assert_eq!(cache.peek("order-4"), None, "an update caches nothing new");
        cache.put("order-1", Some(head(5)));
        assert_eq!((cache.peek("order-1"), cache.len()), (Some(Some(head(5))), 3));
        // Exactly 23 bytes is inline, 24 is not; both are found.
        let (inline, heap) = ("x".repeat(INLINE_NAME_BYTES), "x".repeat(INLINE_NAME_BYTES + 1));
        cache.put(&inline, Some(head(23)));
        cache.put(&heap, Some(head(24)));
        assert_eq!((cache.peek(&inline), cache.peek(&heap)), (Some(Some(head(23))), Some(Some(head(24)))));
    }

    #[test]
    fn the_budget_holds_and_used_entries_survive_a_sweep() {
        let entries = 1_000;
        let mut cache = HeadCache::new(entries * HeadCache::ENTRY_BYTES);
        for n in 0..entries {
            cache.put(&format!("order-{n}"), Some(head(n)));
        }
        assert_eq!(cache.len() as u64, entries);
        assert!(cache.get("order-0").is_some());
        for n in entries..3 * entries {
            cache.put(&format!("order-{n}"), Some(head(n)));
            assert!(cache.bytes <= cache.bytes_max);
            // Used at every step: the clock always gives it a second chance.
            assert_eq!(cache.get("order-0"), Some(Some(head(0))), "at {n}");
        }
        assert_eq!(cache.len() as u64, entries);
        assert_eq!(cache.peek("order-1"), None, "evicted");
        assert_eq!(cache.peek(&format!("order-{}", 3 * entries - 1)), Some(Some(head(3 * entries - 1))));
        // Slots are reused, not added.
        assert_eq!(cache.slots.len() as u64, entries);
    }

    #[test]
    fn budget_extremes() {
        // Nothing fits: nothing is cached, nothing panics.
        let mut none = HeadCache::new(0);
        none.put("order-1", Some(head(1)));
        assert_eq!((none.peek("order-1"), none.len()), (None, 0));
        // One entry fits: each put replaces the last.
        let mut one = HeadCache::new(HeadCache::ENTRY_BYTES);
        one.put("order-1", Some(head(1)));
        one.put("order-2", Some(head(2)));
        assert_eq!((one.peek("order-1"), one.peek("order-2"), one.len()), (None, Some(Some(head(2))), 1));
        // A long name costs its bytes: one that does not fit is not cached, and evicts nothing.
        let long = "y".repeat(100);
        one.put(&long, Some(head(3)));
        assert_eq!((one.peek(&long), one.peek("order-2")), (None, Some(Some(head(2)))));
        // A long name that fits evicts as many short entries as it must.
        let mut three = HeadCache::new(3 * HeadCache::ENTRY_BYTES);
        for n in 0..3 {
            three.put(&format!("order-{n}"), Some(head(n)));
        }
        let long = "z".repeat(2 * HeadCache::ENTRY_BYTES as usize);
        three.put(&long, Some(head(9)));
        assert_eq!((three.peek(&long), three.len()), (Some(Some(head(9))), 1));
        assert!(three.bytes <= three.bytes_max);
        // Freed slots are reused.
        three.put("order-7", None);
        assert_eq!((three.peek("order-7"), three.len()), (Some(None), 1), "the long name is evicted for it");
        assert!(three.slots.len() <= 3);
    }

    #[test]
    fn slot_numbers_never_run_out_whatever_the_budget() {
        // A budget of u64::MAX would let slot numbers (u32) run out after 2^32 streams: past the most slots,
        // each new entry evicts one. (Three slots here stand for 2^32.)
        let mut cache = HeadCache::new(u64::MAX);
        cache.slots_max = 3;
        for n in 0..10 {
            cache.put(&format!("order-{n}"), Some(head(n)));
        }
        assert_eq!((cache.len(), cache.slots.len()), (3, 3));
        assert_eq!(cache.peek("order-9"), Some(Some(head(9))));
    }

    proptest! {
        /// Against a model map: the cache never answers with anything but the latest value put or updated
        /// for that name, and stays within its budget.
        #[test]
        fn never_answers_stale_heads(
            budget in 0u64..12,
            ops in proptest::collection::vec((0u8..4, 0u64..40, any::<bool>(), 0u64..1000), 1..400),
        ) {
            let mut cache = HeadCache::new(budget * HeadCache::ENTRY_BYTES + budget * 7);
            let mut model: HashMap<String, Option<Head>> = HashMap::new();
            for (op, n, long, value) in ops {
                let name = if long { format!("{}-{n}", "long".repeat(8)) } else { format!("s-{n}") };
                let value = (value % 3 != 0).then(|| head(value));
                match op {
                    0 => {
                        cache.put(&name, value);
                        model.insert(name.clone(), value);
                    }
                    1 => {
                        if let Some(value) = value {
                            cache.update(&name, value);
                            if model.contains_key(&name) {
                                model.insert(name.clone(), Some(value));
                            }
                        }
                    }
                    2 => {
                        if let Some(found) = cache.get(&name) {
                            prop_assert_eq!(Some(&found), model.get(&name));
                        }
                    }
                    _ => {
                        if let Some(found) = cache.peek(&name) {
                            prop_assert_eq!(Some(&found), model.get(&name));
                        }
                    }
                }
                prop_assert!(cache.bytes <= cache.bytes_max);
                prop_assert_eq!(cache.table.len(), cache.slots.iter().filter(|slot| slot.live).count());
            }
        }
    }
}
