//! PostgreSQL, the server from Debian's packages (`apt-get install -y postgresql`), started by the harness for
//! each store directory: `initdb` once, then `postgres` with `fsync=on`, `synchronous_commit=on` (the
//! defaults, set explicitly) and `listen_addresses=''`, reached only over a Unix socket in the directory. The
//! client is the `postgres` crate (synchronous), one connection per writer thread.
//!
//! The schema is `WORKLOADS.md`'s, in PostgreSQL's types: `pos BIGSERIAL PRIMARY KEY` (for SQLite's
//! `INTEGER PRIMARY KEY`), `BIGINT` for `INTEGER`, `BYTEA` for `BLOB`. An append is one statement in its own
//! implicit transaction, so one round trip and one WAL flush: a single `INSERT … SELECT` for one event, an
//! `INSERT … SELECT … FROM unnest($arrays)` for a batch. The version is computed in the statement from the
//! stream's last version, as annals assigns the next offset.
//!
//! "Open" means starting the server and connecting; "close" is a fast shutdown (SIGINT: checkpoint, exit);
//! "crash" is an immediate shutdown (SIGQUIT: no checkpoint, so the next start replays the WAL). PostgreSQL
//! refuses to run as root, so as root the server runs as an unprivileged user (`annalsbench`, created with
//! `useradd` if missing, else `nobody`) that owns the directory.
//!
//! W10's subscribers use `LISTEN/NOTIFY`, as Marten-style daemons do: a trigger on `events` sends each inserted
//! row's position on the channel `events` (`pg_notify`, delivered when the writer's transaction commits, in
//! commit order); each subscriber `LISTEN`s on a connection of its own, and when notifications arrive it reads
//! the notified rows that match its filter (`WHERE pos = ANY($positions) AND <filter>`). Reading by the
//! notified positions rather than `pos > last` matters: a `BIGSERIAL` position is drawn at insert, not at
//! commit, so with 16 writers a row can commit after a higher position and a `pos > last` reader would skip
//! it. Catch-up from the start reads pages of `pos > last` (no writer runs then).

use std::ffi::CString;
use std::fs::File;
use std::ops::ControlFlow;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Statement};

use super::{Delivery, Engine, Follow, FollowFrom, Store, Subscriber, Writer};
use crate::event::{now_nanos, Pending};
use crate::Result;

/// Names the socket file (`.s.PGSQL.54329`); no TCP port is opened.
const PORT: u16 = 54329;
const DATABASE_USER: &str = "annals";
const OS_USER: &str = "annalsbench";

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS events(pos BIGSERIAL PRIMARY KEY, stream TEXT, version BIGINT, \
                      type TEXT, ts BIGINT, id BYTEA, data BYTEA, UNIQUE(stream, version))";

const INSERT_ONE: &str = "INSERT INTO events(stream, version, type, ts, id, data) \
                          SELECT $1::text, COALESCE(MAX(version) + 1, 0), $2::text, $3::int8, $4::bytea, $5::bytea \
                          FROM events WHERE stream = $1::text";

const INSERT_MANY: &str = "INSERT INTO events(stream, version, type, ts, id, data) \
     SELECT u.stream, COALESCE((SELECT MAX(e.version) FROM events e WHERE e.stream = u.stream) + 1, 0), \
            u.type, u.ts, u.id, u.data \
     FROM unnest($1::text[], $2::text[], $3::int8[], $4::bytea[], $5::bytea[]) WITH ORDINALITY \
          AS u(stream, type, ts, id, data, n) \
     ORDER BY u.n";

/// `INSERT_MANY` for a batch in which a stream has several (adjacent) events, as W9's appends of 2 events per
/// stream: every row of one statement sees the same snapshot, so the rows of one stream count up from the
/// stream's last version by their rank in the batch (`INSERT_MANY` would give them all the same version and
/// fail on the unique index). A separate statement, so that W3's batches keep the plain one.
const INSERT_MANY_REPEATING: &str = "INSERT INTO events(stream, version, type, ts, id, data) \
     SELECT u.stream, COALESCE((SELECT MAX(e.version) FROM events e WHERE e.stream = u.stream) + 1, 0) \
            + ROW_NUMBER() OVER (PARTITION BY u.stream ORDER BY u.n) - 1, \
            u.type, u.ts, u.id, u.data \
     FROM unnest($1::text[], $2::text[], $3::int8[], $4::bytea[], $5::bytea[]) WITH ORDINALITY \
          AS u(stream, type, ts, id, data, n) \
     ORDER BY u.n";

const SELECT_STREAM: &str =
    "SELECT pos, stream, version, type, ts, id, data FROM events WHERE stream = $1 ORDER BY version LIMIT $2";

const SELECT_ALL: &str = "SELECT pos, stream, version, type, ts, id, data FROM events ORDER BY pos";

/// W10: each inserted row's position goes to the listeners of `events` when its transaction commits.
const NOTIFY_TRIGGER: &str = "\
    CREATE OR REPLACE FUNCTION notify_event() RETURNS trigger LANGUAGE plpgsql AS $$ \
    BEGIN PERFORM pg_notify('events', NEW.pos::text); RETURN NULL; END $$; \
    CREATE OR REPLACE TRIGGER notify_event AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION notify_event()";

/// Rows a catch-up page reads at most.
const PAGE_ROWS: usize = 1_000;

/// Where the server's programs are and whom to run them as; found once.
#[derive(Debug, Clone)]
struct Setup {
    bin: PathBuf,
    /// `(uid, gid)` to run the server as; `None` when the harness does not run as root.
    owner: Option<(u32, u32)>,
}

#[derive(Default)]
pub struct Postgres {
    setup: OnceLock<std::result::Result<Setup, String>>,
}

impl Postgres {
    fn setup(&self) -> Result<Setup> {
        self.setup.get_or_init(|| find_setup().map_err(|err| err.to_string())).clone().map_err(Into::into)
    }
}

impl Engine for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn embedded(&self) -> bool {
        false
    }

    fn subscribes(&self) -> bool {
        true
    }

    fn unavailable(&self) -> Option<String> {
        self.setup().err().map(|err| err.to_string())
    }

    fn open(&self, dir: &Path) -> Result<Box<dyn Store>> {
        let server = Server::start(&self.setup()?, dir)?;
        let mut reader = server.connect()?;
        reader.batch_execute(SCHEMA)?;
        Ok(Box::new(PostgresStore { reader: Mutex::new(reader), server: Mutex::new(server) }))
    }
}

fn find_setup() -> Result<Setup> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "the PostgreSQL server is not installed (apt-get install -y postgresql)")?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    let (_, bin) =
        versions.pop().ok_or("no /usr/lib/postgresql/<version>/bin/postgres (apt-get install -y postgresql)")?;
    // SAFETY: geteuid has no preconditions.
    let owner = if unsafe { libc::geteuid() } == 0 { Some(unprivileged_user()?) } else { None };
    Ok(Setup { bin, owner })
}

/// The uid and gid of `annalsbench` (created if missing), or of `nobody`.
fn unprivileged_user() -> Result<(u32, u32)> {
    if let Some(ids) = lookup_user(OS_USER) {
        return Ok(ids);
    }
    let created = Command::new("useradd")
        .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OS_USER])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if created {
        if let Some(ids) = lookup_user(OS_USER) {
            return Ok(ids);
        }
    }
    lookup_user("nobody").ok_or_else(|| format!("running as root, and neither {OS_USER} nor nobody exists").into())
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let name = CString::new(name).ok()?;
    // SAFETY: `name` is a valid C string; getpwnam returns null or a pointer to static storage that we read
    // at once, on this thread, before any other getpw* call.
    unsafe {
        let entry = libc::getpwnam(name.as_ptr());
        (!entry.is_null()).then(|| ((*entry).pw_uid, (*entry).pw_gid))
    }
}

/// One running server; stopped (fast shutdown) when dropped, so that a panic never leaves it running.
struct Server {
    sock: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Server {
    fn command(setup: &Setup, program: &str) -> Command {
        let mut command = Command::new(setup.bin.join(program));
        command.env("LC_ALL", "C").env("LANG", "C").stdin(Stdio::null());
        if let Some((uid, gid)) = setup.owner {
            command.uid(uid).gid(gid);
        }
        command
    }

    fn chown(setup: &Setup, path: &Path) -> Result<()> {
        if let Some((uid, gid)) = setup.owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    /// Starts the server on `dir` (running `initdb` first if `dir` holds no cluster) and waits until it
    /// accepts connections.
    fn start(setup: &Setup, dir: &Path) -> Result<Server> {
        let data = dir.join("pgdata");
        let sock = dir.join("sock");
        let log = dir.join("server.log");
        if !data.join("PG_VERSION").exists() {
            std::fs::create_dir_all(&sock)?;
            // The server's user must also reach the directory: the harness makes the scratch root searchable.
            Server::chown(setup, dir)?;
            Server::chown(setup, &sock)?;
            let output = Server::command(setup, "initdb")
                .args(["-D"])
                .arg(&data)
                .args(["-U", DATABASE_USER, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
                .output()?;
            if !output.status.success() {
                return Err(format!(
                    "initdb failed: {}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                )
                .into());
            }
        }
        let log_file = File::options().create(true).append(true).open(&log)?;
        Server::chown(setup, &log)?;
        let child = Server::command(setup, "postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &PORT.to_string(), "-k"])
            .arg(&sock)
            .args(["-c", "listen_addresses=", "-c", "fsync=on", "-c", "synchronous_commit=on"])
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()?;
        let mut server = Server { sock, log, child: Some(child) };
        server.wait_ready()?;
        Ok(server)
    }

    fn config(&self) -> postgres::Config {
        let mut config = postgres::Config::new();
        config.host_path(&self.sock).port(PORT).user(DATABASE_USER).dbname("postgres");
        config
    }

    /// Polls the socket every millisecond, so that W6 and W7 time the server's real start-up, not a sleep.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(300);
        let config = self.config();
        loop {
            match config.connect(NoTls) {
                Ok(mut client) => match client.simple_query("SELECT 1") {
                    Ok(_) => return Ok(()),
                    Err(_) if Instant::now() < deadline => {}
                    Err(err) => return Err(err.into()),
                },
                Err(err) => {
                    let exited = self.child.as_mut().expect("running").try_wait()?;
                    if let Some(status) = exited {
                        return Err(format!("postgres exited ({status}) at start: {}", self.log_tail()).into());
                    }
                    if Instant::now() > deadline {
                        return Err(format!("postgres did not accept connections: {err}").into());
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    fn connect(&self) -> Result<Client> {
        Ok(self.config().connect(NoTls)?)
    }

    /// Sends `signal` to the postmaster and waits for it to exit.
    fn stop(&mut self, signal: libc::c_int) -> Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let pid = libc::pid_t::try_from(child.id())?;
        // SAFETY: `pid` is our own child, not yet reaped, so the id cannot have been reused.
        unsafe { libc::kill(pid, signal) };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                return Err(format!("postgres did not stop on signal {signal}; killed").into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(err) = self.stop(libc::SIGINT) {
            eprintln!("stopping postgres: {err}");
        }
    }
}

struct PostgresStore {
    reader: Mutex<Client>,
    server: Mutex<Server>,
}

/// One row, every column decoded: what a read hands on (the version, type and time are checked and dropped).
struct Decoded<'r> {
    pos: i64,
    stream: &'r str,
    id: &'r [u8],
    data: &'r [u8],
}

fn decode_row(row: &postgres::Row) -> Result<Decoded<'_>> {
    let pos: i64 = row.try_get(0)?;
    let stream: &str = row.try_get(1)?;
    let version: i64 = row.try_get(2)?;
    let event_type: &str = row.try_get(3)?;
    let ts: i64 = row.try_get(4)?;
    let id: &[u8] = row.try_get(5)?;
    std::hint::black_box((version, event_type, ts));
    Ok(Decoded { pos, stream, id, data: row.try_get(6)? })
}

fn visit_rows(mut rows: postgres::RowIter<'_>, visit: &mut dyn FnMut(&[u8])) -> Result<u64> {
    let mut count = 0;
    while let Some(row) = rows.next()? {
        let decoded = decode_row(&row)?;
        std::hint::black_box((decoded.pos, decoded.stream, decoded.id));
        visit(decoded.data);
        count += 1;
    }
    Ok(count)
}

impl Store for PostgresStore {
    fn writer(&self) -> Result<Box<dyn Writer + '_>> {
        let mut client = self.server.lock().map_err(|_| "server lock poisoned")?.connect()?;
        let one = client.prepare(INSERT_ONE)?;
        let many = client.prepare(INSERT_MANY)?;
        let many_repeating = client.prepare(INSERT_MANY_REPEATING)?;
        Ok(Box::new(PostgresWriter { client, one, many, many_repeating }))
    }

    fn scan_all(&self, visit: &mut dyn FnMut(&[u8])) -> Result<u64> {
        let mut reader = self.reader.lock().map_err(|_| "reader lock poisoned")?;
        let rows = reader.query_raw(SELECT_ALL, std::iter::empty::<&(dyn ToSql + Sync)>())?;
        visit_rows(rows, visit)
    }

    fn read_stream(&self, stream: &str, max_events: u64, visit: &mut dyn FnMut(&[u8])) -> Result<u64> {
        let mut reader = self.reader.lock().map_err(|_| "reader lock poisoned")?;
        let limit = i64::try_from(max_events).unwrap_or(i64::MAX);
        let params: [&(dyn ToSql + Sync); 2] = [&stream, &limit];
        let rows = reader.query_raw(SELECT_STREAM, params)?;
        visit_rows(rows, visit)
    }

    /// The `UNIQUE(stream, version)` index (`events_stream_version_key`), from `pg_relation_size`.
    fn index_bytes(&self) -> Result<Option<u64>> {
        let mut reader = self.reader.lock().map_err(|_| "reader lock poisoned")?;
        let row = reader.query_one("SELECT pg_relation_size('events_stream_version_key')", &[])?;
        Ok(Some(u64::try_from(row.try_get::<_, i64>(0)?)?))
    }

    fn prepare_subscriptions(&self) -> Result<()> {
        self.reader.lock().map_err(|_| "reader lock poisoned")?.batch_execute(NOTIFY_TRIGGER)?;
        Ok(())
    }

    fn subscribe(&self, filter: Follow, from: FollowFrom) -> Result<Box<dyn Subscriber + '_>> {
        let mut client = self.server.lock().map_err(|_| "server lock poisoned")?.connect()?;
        client.batch_execute("LISTEN events")?;
        let columns = "SELECT pos, stream, version, type, ts, id, data FROM events";
        let condition = filter.sql();
        let page =
            client.prepare(&format!("{columns} WHERE pos > $1 AND ({condition}) ORDER BY pos LIMIT {PAGE_ROWS}"))?;
        let notified =
            client.prepare(&format!("{columns} WHERE pos = ANY($1::int8[]) AND ({condition}) ORDER BY pos"))?;
        Ok(Box::new(PostgresSubscriber { client, page, notified, catch_up: from == FollowFrom::Start }))
    }

    fn close(self: Box<Self>) -> Result<()> {
        let store = *self;
        drop(store.reader);
        store.server.into_inner().map_err(|_| "server lock poisoned")?.stop(libc::SIGINT)
    }

    fn crash(self: Box<Self>) -> Result<()> {
        let store = *self;
        drop(store.reader);
        store.server.into_inner().map_err(|_| "server lock poisoned")?.stop(libc::SIGQUIT)
    }
}

struct PostgresWriter {
    client: Client,
    one: Statement,
    many: Statement,
    many_repeating: Statement,
}

impl Writer for PostgresWriter {
    fn append(&mut self, batch: &[Pending]) -> Result<()> {
        if let [pending] = batch {
            let ts = now_nanos();
            self.client.execute(
                &self.one,
                &[&pending.stream, &pending.event.event_type, &ts, &&pending.event.id[..], &&pending.event.data[..]],
            )?;
            return Ok(());
        }
        let streams: Vec<&str> = batch.iter().map(|pending| pending.stream.as_str()).collect();
        let types: Vec<&str> = batch.iter().map(|pending| pending.event.event_type).collect();
        let ts = now_nanos();
        let timestamps: Vec<i64> = vec![ts; batch.len()];
        let ids: Vec<&[u8]> = batch.iter().map(|pending| &pending.event.id[..]).collect();
        let data: Vec<&[u8]> = batch.iter().map(|pending| &pending.event.data[..]).collect();
        let repeating = batch.windows(2).any(|pair| pair[0].stream == pair[1].stream);
        let statement = if repeating { &self.many_repeating } else { &self.many };
        self.client.execute(statement, &[&streams, &types, &timestamps, &ids, &data])?;
        Ok(())
    }
}

/// A W10 subscriber: a connection that `LISTEN`s on `events`.
struct PostgresSubscriber {
    client: Client,
    /// The next page after a position (catch-up).
    page: Statement,
    /// The matching rows among notified positions (live).
    notified: Statement,
    /// Whether to read the log from the start before following notifications.
    catch_up: bool,
}

/// Hands each row to `visit`, and says whether `visit` asked to stop.
fn deliver(rows: &[postgres::Row], visit: &mut dyn FnMut(Delivery<'_>) -> ControlFlow<()>) -> Result<ControlFlow<()>> {
    for row in rows {
        let decoded = decode_row(row)?;
        let id = decoded.id.try_into()?;
        std::hint::black_box(decoded.pos);
        if visit(Delivery::Event { id, stream: decoded.stream, data: decoded.data }).is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }
    Ok(ControlFlow::Continue(()))
}

impl PostgresSubscriber {
    /// The positions notified since the last call: blocks for the first, then takes those already received.
    fn notified_positions(&mut self) -> Result<Vec<i64>> {
        let mut notifications = self.client.notifications();
        let first = notifications.blocking_iter().next()?.ok_or("the notification stream ended")?;
        let mut positions = vec![first.payload().parse()?];
        let mut more = notifications.iter();
        while let Some(notification) = more.next()? {
            positions.push(notification.payload().parse()?);
        }
        Ok(positions)
    }
}

impl Subscriber for PostgresSubscriber {
    fn follow(&mut self, visit: &mut dyn FnMut(Delivery<'_>) -> ControlFlow<()>) -> Result<()> {
        if self.catch_up {
            let mut last = 0i64;
            loop {
                let rows = self.client.query(&self.page, &[&last])?;
                if deliver(&rows, visit)?.is_break() {
                    return Ok(());
                }
                match rows.last() {
                    Some(row) if rows.len() == PAGE_ROWS => last = row.try_get(0)?,
                    _ => break,
                }
            }
            self.catch_up = false;
        }
        loop {
            if visit(Delivery::CaughtUp).is_break() {
                return Ok(());
            }
            let positions = self.notified_positions()?;
            let rows = self.client.query(&self.notified, &[&positions])?;
            if deliver(&rows, visit)?.is_break() {
                return Ok(());
            }
        }
    }
}
