//! redb with its default options: an `events` table keyed by position (`u64`, which redb orders as the
//! big-endian bytes would sort) and a `streams` table keyed by stream name + 0 + big-endian version (value: the
//! position). Each append is one write transaction with `Durability::Immediate` (redb's default): `commit`
//! returns after the file is synced.
//!
//! redb runs one write transaction at a time, so the next position (the last key + 1) and each stream's next
//! version (the last key of its range) are read inside the transaction.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{
    decode_record, encode_record, next_version_after, stream_key, stream_key_range, visit_record, Engine, Store, Writer,
};
use crate::event::Pending;
use crate::Result;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const STREAMS: TableDefinition<&[u8], u64> = TableDefinition::new("streams");
const FILE: &str = "events.redb";

pub struct Redb;

impl Engine for Redb {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn open(&self, dir: &Path) -> Result<Box<dyn Store>> {
        std::fs::create_dir_all(dir)?;
        let db = Database::create(dir.join(FILE))?;
        // Create both tables so that readers never find them missing.
        let transaction = db.begin_write()?;
        transaction.open_table(EVENTS)?;
        transaction.open_table(STREAMS)?;
        transaction.commit()?;
        Ok(Box::new(RedbStore { db }))
    }
}

struct RedbStore {
    db: Database,
}

impl Store for RedbStore {
    fn writer(&self) -> Result<Box<dyn Writer + '_>> {
        Ok(Box::new(RedbWriter { db: &self.db, record: Vec::new() }))
    }

    fn scan_all(&self, visit: &mut dyn FnMut(&[u8])) -> Result<u64> {
        let transaction = self.db.begin_read()?;
        let events = transaction.open_table(EVENTS)?;
        let mut count = 0;
        for entry in events.iter()? {
            let (_, value) = entry?;
            visit_record(&decode_record(value.value())?, visit);
            count += 1;
        }
        Ok(count)
    }

    fn read_stream(&self, stream: &str, max_events: u64, visit: &mut dyn FnMut(&[u8])) -> Result<u64> {
        let transaction = self.db.begin_read()?;
        let events = transaction.open_table(EVENTS)?;
        let streams = transaction.open_table(STREAMS)?;
        let (low, high) = stream_key_range(stream);
        let mut count = 0;
        for entry in streams.range::<&[u8]>(low.as_slice()..high.as_slice())? {
            if count == max_events {
                break;
            }
            let (_, position) = entry?;
            let value = events.get(position.value())?.ok_or("stream index points at a missing event")?;
            visit_record(&decode_record(value.value())?, visit);
            count += 1;
        }
        Ok(count)
    }

    /// The `streams` table's pages: stored keys and values, branch pages and metadata, and fragmentation.
    fn index_bytes(&self) -> Result<Option<u64>> {
        let transaction = self.db.begin_read()?;
        let stats = transaction.open_table(STREAMS)?.stats()?;
        Ok(Some(stats.stored_bytes() + stats.metadata_bytes() + stats.fragmented_bytes()))
    }

    fn close(self: Box<Self>) -> Result<()> {
        drop(self.db);
        Ok(())
    }
}

struct RedbWriter<'a> {
    db: &'a Database,
    record: Vec<u8>,
}

impl Writer for RedbWriter<'_> {
    fn append(&mut self, batch: &[Pending]) -> Result<()> {
        let mut transaction = self.db.begin_write()?;
        transaction.set_durability(Durability::Immediate)?;
        {
            let mut events = transaction.open_table(EVENTS)?;
            let mut streams = transaction.open_table(STREAMS)?;
            let first_position = match events.last()? {
                Some((key, _)) => key.value() + 1,
                None => 0,
            };
            let mut previous: Option<(&str, u64)> = None;
            for (position, pending) in (first_position..).zip(batch) {
                let version = match previous {
                    Some((stream, version)) if stream == pending.stream => version + 1,
                    _ => {
                        let (low, high) = stream_key_range(&pending.stream);
                        let last = streams.range::<&[u8]>(low.as_slice()..high.as_slice())?.next_back();
                        match last {
                            Some(entry) => next_version_after(entry?.0.value())?,
                            None => 0,
                        }
                    }
                };
                encode_record(&mut self.record, &pending.stream, version, pending.event.event_type, pending);
                events.insert(position, self.record.as_slice())?;
                streams.insert(stream_key(&pending.stream, version).as_slice(), position)?;
                previous = Some((&pending.stream, version));
            }
        }
        transaction.commit()?;
        Ok(())
    }
}
