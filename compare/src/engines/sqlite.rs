//! SQLite (rusqlite, bundled) as `WORKLOADS.md` fixes it: one table
//! `events(pos INTEGER PRIMARY KEY, stream TEXT, version INTEGER, type TEXT, ts INTEGER, id BLOB, data BLOB,
//! UNIQUE(stream, version))`, `journal_mode=WAL`, `synchronous=FULL` (every commit syncs the WAL), one
//! connection per writer thread, each append one `BEGIN IMMEDIATE … COMMIT` transaction.
//!
//! The version of an appended event is computed inside the transaction from the stream's current last version
//! (the unique index makes that one B-tree probe), as annals assigns the next offset; `pos` is the rowid.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, TransactionBehavior};

use super::{Engine, Store, Writer};
use crate::event::{now_nanos, Pending, EVENT_TYPE};
use crate::Result;

pub struct Sqlite;

const FILE: &str = "events.sqlite";

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS events(pos INTEGER PRIMARY KEY, stream TEXT, version INTEGER, \
                      type TEXT, ts INTEGER, id BLOB, data BLOB, UNIQUE(stream, version))";

const INSERT: &str = "INSERT INTO events(stream, version, type, ts, id, data) \
                      SELECT ?1, COALESCE(MAX(version) + 1, 0), ?2, ?3, ?4, ?5 FROM events WHERE stream = ?1";

const SELECT_STREAM: &str =
    "SELECT pos, stream, version, type, ts, id, data FROM events WHERE stream = ?1 ORDER BY version LIMIT ?2";

const SELECT_ALL: &str = "SELECT pos, stream, version, type, ts, id, data FROM events ORDER BY pos";

fn connect(path: &Path) -> Result<Connection> {
    let connection = Connection::open(path)?;
    let mode: String = connection.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("SQLite refused WAL mode (got {mode})").into());
    }
    connection.pragma_update(None, "synchronous", "FULL")?;
    // 16 writers contend for the one write lock; SQLite's busy handler makes them wait their turn.
    connection.busy_timeout(Duration::from_secs(600))?;
    Ok(connection)
}

impl Engine for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn open(&self, dir: &Path) -> Result<Box<dyn Store>> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE);
        let reader = connect(&path)?;
        reader.execute_batch(SCHEMA)?;
        Ok(Box::new(SqliteStore { path, reader: Mutex::new(reader) }))
    }
}

struct SqliteStore {
    path: PathBuf,
    reader: Mutex<Connection>,
}

/// Decodes every column of a row and hands the payload on.
fn visit_row(row: &rusqlite::Row<'_>, visit: &mut dyn FnMut(&[u8])) -> rusqlite::Result<()> {
    let pos: i64 = row.get(0)?;
    let stream = row.get_ref(1)?.as_str()?;
    let version: i64 = row.get(2)?;
    let event_type = row.get_ref(3)?.as_str()?;
    let ts: i64 = row.get(4)?;
    let id = row.get_ref(5)?.as_blob()?;
    std::hint::black_box((pos, stream, version, event_type, ts, id));
    visit(row.get_ref(6)?.as_blob()?);
    Ok(())
}

impl Store for SqliteStore {
    fn writer(&self) -> Result<Box<dyn Writer + '_>> {
        Ok(Box::new(SqliteWriter { connection: connect(&self.path)? }))
    }

    fn scan_all(&self, visit: &mut dyn FnMut(&[u8])) -> Result<u64> {
        let reader = self.reader.lock().map_err(|_| "reader lock poisoned")?;
        let mut statement = reader.prepare_cached(SELECT_ALL)?;
        let mut rows = statement.query([])?;
        let mut count = 0;
        while let Some(row) = rows.next()? {
            visit_row(row, visit)?;
            count += 1;
        }
        Ok(count)
    }

    fn read_stream(&self, stream: &str, max_events: u64, visit: &mut dyn FnMut(&[u8])) -> Result<u64> {
        let reader = self.reader.lock().map_err(|_| "reader lock poisoned")?;
        let mut statement = reader.prepare_cached(SELECT_STREAM)?;
        let limit = i64::try_from(max_events).unwrap_or(-1);
        let mut rows = statement.query(params![stream, limit])?;
        let mut count = 0;
        while let Some(row) = rows.next()? {
            visit_row(row, visit)?;
            count += 1;
        }
        Ok(count)
    }

    /// The pages of the `UNIQUE(stream, version)` index (`sqlite_autoindex_events_1`), from the `dbstat`
    /// virtual table (compiled into the bundled SQLite).
    fn index_bytes(&self) -> Result<Option<u64>> {
        let reader = self.reader.lock().map_err(|_| "reader lock poisoned")?;
        let bytes: i64 = reader.query_row(
            "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name = 'sqlite_autoindex_events_1'",
            [],
            |row| row.get(0),
        )?;
        Ok(Some(u64::try_from(bytes)?))
    }

    fn close(self: Box<Self>) -> Result<()> {
        let reader = self.reader.into_inner().map_err(|_| "reader lock poisoned")?;
        reader.close().map_err(|(_, err)| err)?;
        Ok(())
    }
}

struct SqliteWriter {
    connection: Connection,
}

impl Writer for SqliteWriter {
    fn append(&mut self, batch: &[Pending]) -> Result<()> {
        let transaction = self.connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = transaction.prepare_cached(INSERT)?;
            for pending in batch {
                let ts = now_nanos();
                insert.execute(params![
                    pending.stream,
                    EVENT_TYPE,
                    ts,
                    &pending.event.id[..],
                    &pending.event.data[..]
                ])?;
            }
        }
        transaction.commit()?;
        Ok(())
    }
}
