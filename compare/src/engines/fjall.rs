//! fjall with its default options: an `events` keyspace keyed by big-endian position and a `streams` keyspace
//! keyed by stream name + 0 + big-endian version (value: the position). Each append is one atomic cross-keyspace
//! `WriteBatch` with `durability(Some(PersistMode::SyncData))`: fjall writes it to its journal and `fdatasync`s
//! the journal before `commit` returns.
//!
//! fjall has no notion of a next position or version, so the adapter keeps the next position in memory (read
//! from the last key at open) and looks up each stream's last version in the index, both under one mutex that
//! serialises appends (fjall serialises journal writes and syncs under its own journal lock anyway).

use std::path::Path;
use std::sync::Mutex;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{
    decode_record, encode_record, next_version_after, stream_key, stream_key_range, visit_record, Engine, Store, Writer,
};
use crate::event::Pending;
use crate::Result;

pub struct Fjall;

impl Engine for Fjall {
    fn name(&self) -> &'static str {
        "fjall"
    }

    fn open(&self, dir: &Path) -> Result<Box<dyn Store>> {
        let db = Database::builder(dir).open()?;
        let events = db.keyspace("events", KeyspaceCreateOptions::default)?;
        let streams = db.keyspace("streams", KeyspaceCreateOptions::default)?;
        let next_position = match events.last_key_value() {
            Some(guard) => u64::from_be_bytes((*guard.key()?).try_into()?) + 1,
            None => 0,
        };
        Ok(Box::new(FjallStore { db, events, streams, next_position: Mutex::new(next_position) }))
    }
}

struct FjallStore {
    db: Database,
    events: Keyspace,
    streams: Keyspace,
    next_position: Mutex<u64>,
}

impl FjallStore {
    fn next_version(&self, stream: &str) -> Result<u64> {
        let (low, high) = stream_key_range(stream);
        match self.streams.range(low..high).next_back() {
            Some(guard) => next_version_after(&guard.key()?),
            None => Ok(0),
        }
    }
}

impl Store for FjallStore {
    fn writer(&self) -> Result<Box<dyn Writer + '_>> {
        Ok(Box::new(FjallWriter { store: self, record: Vec::new() }))
    }

    fn scan_all(&self, visit: &mut dyn FnMut(&[u8])) -> Result<u64> {
        let mut count = 0;
        for guard in self.events.iter() {
            let (_, value) = guard.into_inner()?;
            visit_record(&decode_record(&value)?, visit);
            count += 1;
        }
        Ok(count)
    }

    fn read_stream(&self, stream: &str, max_events: u64, visit: &mut dyn FnMut(&[u8])) -> Result<u64> {
        let (low, high) = stream_key_range(stream);
        let mut count = 0;
        for guard in self.streams.range(low..high) {
            if count == max_events {
                break;
            }
            let position = guard.value()?;
            let value = self.events.get(&*position)?.ok_or("stream index points at a missing event")?;
            visit_record(&decode_record(&value)?, visit);
            count += 1;
        }
        Ok(count)
    }

    /// The `streams` keyspace's disk space (its tables; fjall's journal is shared and not counted).
    fn index_bytes(&self) -> Result<Option<u64>> {
        Ok(Some(self.streams.disk_space()))
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.persist(PersistMode::SyncAll)?;
        // Dropping the last handle stops fjall's background workers.
        drop(self);
        Ok(())
    }
}

struct FjallWriter<'a> {
    store: &'a FjallStore,
    record: Vec<u8>,
}

impl Writer for FjallWriter<'_> {
    fn append(&mut self, batch: &[Pending]) -> Result<()> {
        let store = self.store;
        let mut next_position = store.next_position.lock().map_err(|_| "append lock poisoned")?;
        let mut write = store.db.batch().durability(Some(PersistMode::SyncData));
        let mut position = *next_position;
        let mut previous: Option<(&str, u64)> = None;
        for pending in batch {
            let version = match previous {
                Some((stream, version)) if stream == pending.stream => version + 1,
                _ => store.next_version(&pending.stream)?,
            };
            encode_record(&mut self.record, &pending.stream, version, pending.event.event_type, pending);
            write.insert(&store.events, position.to_be_bytes(), self.record.as_slice());
            write.insert(&store.streams, stream_key(&pending.stream, version), position.to_be_bytes());
            previous = Some((&pending.stream, version));
            position += 1;
        }
        write.commit()?;
        *next_position = position;
        Ok(())
    }
}
