//! SQLite (rusqlite, bundled) as `WORKLOADS.md` fixes it: one table
//! `events(pos INTEGER PRIMARY KEY, stream TEXT, version INTEGER, type TEXT, ts INTEGER, id BLOB, data BLOB,
//! UNIQUE(stream, version))`, `journal_mode=WAL`, `synchronous=FULL` (every commit syncs the WAL), one
//! connection per writer thread, each append one `BEGIN IMMEDIATE … COMMIT` transaction.
//!
//! The version of an appended event is computed inside the transaction from the stream's current last version
//! (the unique index makes that one B-tree probe), as annals assigns the next offset; `pos` is the rowid.
//!
//! W10's subscribers poll, as an embedded store without notifications forces: each has a connection of its own
//! and every 10 ms ([`POLL_INTERVAL`]) asks for the rows after the last one it delivered that match its filter
//! (`WHERE pos > ?last AND <filter> ORDER BY pos LIMIT 1000`), at once again while a page comes back full.
//! Writers hold the one write lock from `BEGIN IMMEDIATE` to the commit, so positions are committed in order
//! and a poll never skips a row that commits later below its `last`.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, TransactionBehavior};

use super::{Delivery, Engine, Follow, FollowFrom, Store, Subscriber, Writer};
use crate::event::{now_nanos, Pending};
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

/// How often a W10 subscriber polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Rows a poll reads at most; a full page is followed by the next poll at once.
const POLL_PAGE_ROWS: usize = 1_000;

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

    fn subscribes(&self) -> bool {
        true
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

/// One row, every column decoded: what a read hands on (the version, type and time are checked and dropped).
struct Decoded<'r> {
    pos: i64,
    stream: &'r str,
    id: &'r [u8],
    data: &'r [u8],
}

fn decode_row<'r>(row: &'r rusqlite::Row<'_>) -> rusqlite::Result<Decoded<'r>> {
    let pos: i64 = row.get(0)?;
    let stream = row.get_ref(1)?.as_str()?;
    let version: i64 = row.get(2)?;
    let event_type = row.get_ref(3)?.as_str()?;
    let ts: i64 = row.get(4)?;
    let id = row.get_ref(5)?.as_blob()?;
    std::hint::black_box((version, event_type, ts));
    Ok(Decoded { pos, stream, id, data: row.get_ref(6)?.as_blob()? })
}

/// Decodes every column of a row and hands the payload on.
fn visit_row(row: &rusqlite::Row<'_>, visit: &mut dyn FnMut(&[u8])) -> rusqlite::Result<()> {
    let decoded = decode_row(row)?;
    std::hint::black_box((decoded.pos, decoded.stream, decoded.id));
    visit(decoded.data);
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

    fn prepare_subscriptions(&self) -> Result<()> {
        Ok(())
    }

    fn subscribe(&self, filter: Follow, from: FollowFrom) -> Result<Box<dyn Subscriber + '_>> {
        let connection = connect(&self.path)?;
        let last = match from {
            FollowFrom::Start => 0,
            FollowFrom::End => {
                connection.query_row("SELECT COALESCE(MAX(pos), 0) FROM events", [], |row| row.get(0))?
            }
        };
        let poll = format!(
            "SELECT pos, stream, version, type, ts, id, data FROM events WHERE pos > ?1 AND ({}) ORDER BY pos \
             LIMIT {POLL_PAGE_ROWS}",
            filter.sql()
        );
        Ok(Box::new(SqlitePoller { connection, poll, last }))
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
                    pending.event.event_type,
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

/// A W10 subscriber: polls its own connection every [`POLL_INTERVAL`].
struct SqlitePoller {
    connection: Connection,
    poll: String,
    /// The position of the last row delivered.
    last: i64,
}

impl Subscriber for SqlitePoller {
    fn follow(&mut self, visit: &mut dyn FnMut(Delivery<'_>) -> ControlFlow<()>) -> Result<()> {
        loop {
            let polled = Instant::now();
            let mut read = 0;
            {
                let mut statement = self.connection.prepare_cached(&self.poll)?;
                let mut rows = statement.query([self.last])?;
                while let Some(row) = rows.next()? {
                    let decoded = decode_row(row)?;
                    self.last = decoded.pos;
                    read += 1;
                    let id = decoded.id.try_into()?;
                    if visit(Delivery::Event { id, stream: decoded.stream, data: decoded.data }).is_break() {
                        return Ok(());
                    }
                }
            }
            if read == POLL_PAGE_ROWS {
                continue;
            }
            if visit(Delivery::CaughtUp).is_break() {
                return Ok(());
            }
            std::thread::sleep(POLL_INTERVAL.saturating_sub(polled.elapsed()));
        }
    }
}
