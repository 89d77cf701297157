//! The public `Store`: open and recover a directory, lock it, validate appends and hand them to the writer
//! thread, and create readers.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::SystemTime;

use parking_lot::{Condvar, Mutex};
use uuid::Uuid;

use crate::error::{Error, IoContext, Result};
use crate::index::Kind;
use crate::lifecycle::StreamMetadata;
use crate::log::follow::Follower;
use crate::log::frame::{self, HEADER_LEN};
use crate::log::head::HeadWriter;
use crate::log::io::Io;
use crate::log::recovery::{self, RecoveryReport};
use crate::log::segment::SEGMENT_HEADER_LEN;
use crate::log::writer::{clone_error, Completion, Part, Queue, Responder, Shared, Txn, Writer};
use crate::log::Via;
use crate::metrics::{Gauges, Metrics, Stats};
use crate::read::{EventRef, ReadAll, ReadIndexed, ReadStream, ReadStreamBackwards, RecordedEvent, Source};
use crate::subscription::notify::{Notifier, Woken};
use crate::subscription::{self, Filter, SubscribeFrom, Subscription};
use crate::{
    AppendResult, EventData, ExpectedVersion, Options, StreamAppend, EVENT_TYPE_BYTES_MAX, STREAM_NAME_BYTES_MAX,
};

/// Name of the lock file inside the store directory.
const LOCK_FILE: &str = "LOCK";

/// An open event store.
///
/// `Store` is a cheap handle (`Clone`, `Send + Sync`): clone it into every thread. One writer thread behind it
/// commits appends from all handles in groups; reads run on the calling thread and never block the writer.
/// The directory is locked against other opens (in this or another process) until the store is closed or the
/// last handle is dropped. Dropping the last handle closes the store as [`close`](Self::close) does, ignoring
/// errors.
///
/// ```
/// use annals::{EventData, ExpectedVersion, Store};
/// # fn main() -> annals::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// store.append("order-7", ExpectedVersion::Any, &[EventData::new("OrderPlaced", &b"{}"[..])])?;
/// assert_eq!(store.stream_version("order-7"), Some(0));
/// assert_eq!(store.head_position(), Some(0));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    shared: Arc<Shared>,
    /// The writer thread until the first close joins it, then the outcome of that close. Held for the whole
    /// join, so that every other `close` waits for it and reports the same outcome.
    writer: Mutex<Closing>,
    lock: Mutex<Option<File>>,
    report: RecoveryReport,
    /// The background compactor (writable stores only) and its signal.
    compactor: Mutex<Option<JoinHandle<()>>>,
    compaction: Arc<crate::compaction::Signal>,
}

enum Closing {
    Open(JoinHandle<Result<()>>),
    Closed(Result<()>),
}

impl Store {
    /// Opens (or creates) the store in `dir` with default [`Options`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(dir, Options::default())
    }

    /// Opens (or creates) the store in `dir`: locks it, recovers the log's end (cutting a torn tail), loads or
    /// rebuilds the index, and starts the writer thread.
    ///
    /// Errors: `Locked` if another store has the directory open, `Corrupt` if synced data is damaged,
    /// `UnsupportedFormat` for files of a newer format, `InvalidOptions`, `Io`.
    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        validate_options(&options)?;
        let dir = dir.as_ref().to_owned();
        span!("annals.open", dir = %dir.display());
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).context(|| format!("creating store directory {}", dir.display()))?;
            // IMPORTANT: sync the parent, or a new store (and every append to it) may vanish after a power cut.
            if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
                Io::default().sync_dir(parent).context(|| format!("syncing {}", parent.display()))?;
            }
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .context(|| format!("opening {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked { dir }),
            Err(std::fs::TryLockError::Error(err)) => {
                return Err(Error::io(format!("locking {}", lock_path.display()), err))
            }
        }
        let io = Io::new(options.fault_injector.clone());
        let (log, index, state, report) = recovery::recover(&dir, &options, &io)?;
        let shared = Arc::new(Shared {
            log,
            index,
            committed: AtomicU64::new(state.next_position),
            // Recovery synced whatever it could not prove was synced.
            durable: AtomicU64::new(state.next_position),
            poison: Mutex::new(None),
            queue: Mutex::new(Queue::default()),
            queue_ready: Condvar::new(),
            notifier: Notifier::default(),
            read_only: false,
            stats: Stats::default(),
            lifecycle: AtomicBool::new(false),
            options,
            io,
            compaction: Mutex::new(()),
        });
        // Whether any stream has lifecycle metadata or a tombstone: one index probe each. Damage in the index
        // is not this open's to report (reads that need the damaged page do): then reads check, to be safe.
        let governed = |kind, key| {
            ReadIndexed::new(Source::new(shared.log.clone(), shared.index.clone()), kind, key, 0, state_end(&shared))
                .map_or(true, |mut read| read.next().is_some())
        };
        if governed(Kind::Category, "$meta") || governed(Kind::EventType, crate::lifecycle::TOMBSTONE_EVENT_TYPE) {
            shared.lifecycle.store(true, Ordering::Release);
        }
        // Recovery made everything it kept durable: read-only openers may show all of it.
        // From here a failed open must stop the index's threads itself: the directory's lock goes with it.
        let head = HeadWriter::open(&dir, state.next_position).inspect_err(|_| shared.index.abandon())?;
        let writer = Writer::new(shared.clone(), state, head);
        let handle = std::thread::Builder::new()
            .name("annals-writer".into())
            .spawn(move || {
                // However the writer ends (even by a panic), later appends must fail fast, not queue forever.
                let _refuse = RefuseOnExit(writer.shared());
                writer.run()
            })
            .context(|| "starting the writer thread".to_owned())
            .inspect_err(|_| shared.index.abandon())?;
        let compaction = Arc::new(crate::compaction::Signal::default());
        let spawned = {
            let (shared, signal) = (shared.clone(), compaction.clone());
            std::thread::Builder::new()
                .name("annals-compact".into())
                .spawn(move || crate::compaction::run_in_background(shared, signal))
                .context(|| "starting the compactor thread".to_owned())
        };
        let compactor = match spawned {
            Ok(compactor) => compactor,
            Err(err) => {
                // The writer runs already: close it (it syncs and stops the index's threads) before failing.
                shared.queue.lock().shutdown = true;
                shared.queue_ready.notify_all();
                let _ = handle.join();
                return Err(err);
            }
        };
        Ok(Store {
            inner: Arc::new(Inner {
                dir,
                shared,
                writer: Mutex::new(Closing::Open(handle)),
                lock: Mutex::new(Some(lock)),
                report,
                compactor: Mutex::new(Some(compactor)),
                compaction,
            }),
        })
    }

    /// Opens the store in `dir` for reading only, with default [`Options`]: see
    /// [`open_read_only_with`](Self::open_read_only_with).
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_read_only_with(dir, Options::default())
    }

    /// Opens the store in `dir` for reading only, beside its writer (in another process, or a `Store` in this
    /// one) or while no one writes it. It takes no lock, and it never writes, creates or deletes a byte, so any
    /// number of read-only openers can neither damage the store nor keep its writer from opening.
    ///
    /// It shows what the writer has made durable (the position its writer records in `HEAD`, format-spec
    /// §16), and follows what the writer syncs next: a thread polls `HEAD` every millisecond and replays the
    /// new records, so `head_position`, reads and subscriptions move on by themselves. Appends, `flush` and
    /// snapshot writes return `Error::ReadOnly`. Use the writer's `category_separator`, or the index is rebuilt
    /// in memory from the whole log.
    ///
    /// Errors: `NoStore` if `dir` holds no segment, `Corrupt` for damage in what it reads, `Io`.
    ///
    /// ```
    /// use annals::{EventData, ExpectedVersion, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let writer = Store::open(dir.path()).unwrap();
    /// writer.append("order-7", ExpectedVersion::Any, &[EventData::new("OrderPlaced", &b"{}"[..])]).unwrap();
    /// let reader = Store::open_read_only(dir.path()).unwrap(); // beside the writer: no lock taken
    /// assert_eq!(reader.stream_version("order-7"), Some(0));
    /// assert!(matches!(reader.append("order-7", ExpectedVersion::Any, &[]), Err(annals::Error::ReadOnly)));
    /// ```
    pub fn open_read_only_with(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        validate_options(&options)?;
        let dir = dir.as_ref().to_owned();
        span!("annals.open", dir = %dir.display(), read_only = true);
        let (follower, report) = Follower::open(&dir, &options)?;
        let next = follower.next_position();
        let shared = Arc::new(Shared {
            log: follower.log().clone(),
            index: follower.index().clone(),
            committed: AtomicU64::new(next),
            durable: AtomicU64::new(next),
            poison: Mutex::new(None),
            queue: Mutex::new(Queue::default()),
            queue_ready: Condvar::new(),
            notifier: Notifier::default(),
            read_only: true,
            stats: Stats::default(),
            // A read-only store follows a writer that may set metadata at any time: it always checks.
            lifecycle: AtomicBool::new(true),
            options,
            io: Io::default(),
            compaction: Mutex::new(()),
        });
        let following = shared.clone();
        let handle = std::thread::Builder::new()
            .name("annals-follower".into())
            .spawn(move || follow(&following, follower))
            .context(|| "starting the follower thread".to_owned())?;
        Ok(Store {
            inner: Arc::new(Inner {
                dir,
                shared,
                writer: Mutex::new(Closing::Open(handle)),
                lock: Mutex::new(None),
                report,
                compactor: Mutex::new(None),
                compaction: Arc::default(),
            }),
        })
    }

    /// Takes a consistent copy of the store into `dest` (a new or empty directory) while appends go on, and
    /// returns the last position the copy holds (`None` for an empty store).
    ///
    /// The copy is exactly the log below the durable position when the call began (under `Buffer`, a writable
    /// store flushes first): sealed segments and the index tables below that position are hard-linked (copied
    /// across file systems), the last segment is copied up to that position, and the snapshot files are
    /// copied; then every file and directory of the copy is synced. It costs about one pass over the last
    /// segment, whatever the store's size. Restoring is opening the copy: positions, offsets and event ids are
    /// the original's, so saved checkpoints stay valid. Works on a read-only store too (from another process).
    ///
    /// ```
    /// use annals::{EventData, ExpectedVersion, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let backups = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path()).unwrap();
    /// store.append("order-7", ExpectedVersion::Any, &[EventData::new("OrderPlaced", &b"{}"[..])]).unwrap();
    /// let copy = backups.path().join("monday");
    /// assert_eq!(store.backup(&copy).unwrap(), Some(0));
    /// assert_eq!(Store::open(&copy).unwrap().stream_version("order-7"), Some(0));
    /// ```
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<Option<u64>> {
        span!("annals.backup", dest = %dest.as_ref().display());
        if !self.inner.shared.read_only {
            self.flush()?;
        }
        crate::log::backup::backup(&self.inner.shared, &self.inner.dir, dest.as_ref())
    }

    /// What the store has done since it was opened and where it stands: appends, events and bytes written,
    /// syncs, group sizes, sync and append latency histograms, rolls, mapped segments and index tables, open
    /// files, head-cache hits, and every live subscription's lag. Cheap: a few atomic loads.
    ///
    /// ```
    /// use annals::{EventData, ExpectedVersion, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path()).unwrap();
    /// store.append("order-7", ExpectedVersion::Any, &[EventData::new("OrderPlaced", &b"{}"[..])]).unwrap();
    /// let metrics = store.metrics();
    /// assert_eq!((metrics.appends, metrics.events_written, metrics.syncs), (1, 1, 1));
    /// println!("p99 append latency: {} µs", metrics.append_latency_micros.quantile(0.99));
    /// ```
    pub fn metrics(&self) -> Metrics {
        let shared = &self.inner.shared;
        let (index_tables, _) = shared.index.shape();
        let (head_cache_hits, head_cache_misses) = shared.index.head_cache_counts();
        let gauges = Gauges {
            segments_mapped: shared.log.mapped_count(),
            index_tables,
            // The lock and the active segment's descriptor (segments and tables are mapped, without one).
            open_files: if shared.read_only || shared.queue.lock().shutdown { 0 } else { 2 },
            head_cache_hits,
            head_cache_misses,
        };
        shared.stats.snapshot(shared.committed.load(Ordering::Acquire), gauges)
    }

    pub(crate) fn stats(&self) -> &Stats {
        &self.inner.shared.stats
    }

    /// Whether this store was opened with [`open_read_only`](Self::open_read_only).
    pub fn is_read_only(&self) -> bool {
        self.inner.shared.read_only
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The write-side I/O layer (fault injection included) for files written beside the log, such as
    /// snapshots; `Closed` once the store is closed, because the directory lock is released then.
    pub(crate) fn io_for_writes(&self) -> Result<&Io> {
        if self.inner.shared.read_only {
            return Err(Error::ReadOnly);
        }
        if self.inner.shared.queue.lock().shutdown {
            return Err(Error::Closed);
        }
        Ok(&self.inner.shared.io)
    }

    /// What recovery did when this store was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// Appends `events` to `stream` atomically (all or none, also across a crash) at consecutive offsets, if
    /// the stream's state matches `expected`.
    ///
    /// Under [`Durability::SyncData`](crate::Durability::SyncData) it returns after the events are on stable
    /// storage. These errors leave the store unchanged: `WrongExpectedVersion`, `EmptyAppend`,
    /// `InvalidStreamName`, `InvalidEventType`, `EventTooLarge`, `TransactionTooLarge`, `Closed`, and `Io` when a
    /// new segment can not be created (out of space). After `Poisoned` (a write or sync failed) the append's
    /// outcome is unknown until the store is reopened: recovery keeps it whole or drops it whole.
    ///
    /// **Retries are idempotent** when every event carries an id given with
    /// [`EventData::with_id`](crate::EventData::with_id): an append whose events, with the same ids in the same
    /// order, already sit where its expectation puts them (right after `Exact(v)`, from offset 0 for
    /// `NoStream`, or as the stream's last events for `Any` and `StreamExists`) writes nothing and returns what
    /// the original append returned (the offsets and positions where those events are). So retrying after a
    /// timeout, after `Poisoned` and a reopen, or after a crash of the caller is safe, with no time window:
    /// the check reads the log. Not a retry, and handled as a new append: events with ids the store assigned;
    /// under `Any`, events that are in the stream but not its last ones (the same ids are then appended again);
    /// any difference in ids or order (under `Exact` or `NoStream` that is a `WrongExpectedVersion`).
    ///
    /// ```
    /// use annals::{Error, EventData, ExpectedVersion, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path()).unwrap();
    /// let opened = EventData::new("AccountOpened", &b"{}"[..]);
    /// store.append("account-1", ExpectedVersion::NoStream, &[opened.clone()]).unwrap();
    /// let again = store.append("account-1", ExpectedVersion::NoStream, &[opened]);
    /// assert!(matches!(again, Err(Error::WrongExpectedVersion { actual: Some(0), .. })));
    /// ```
    pub fn append(&self, stream: &str, expected: ExpectedVersion, events: &[EventData]) -> Result<AppendResult> {
        let part = Part { stream: stream.to_owned(), expected, events: events.to_vec(), ids_given: false };
        let mut results = self.submit(vec![part])?;
        Ok(results.pop().expect("one result per part"))
    }

    /// Appends to several streams in one atomic transaction: every expected version is checked, one conflict
    /// fails the whole transaction, and a crash leaves all of it or none. Results come in the order of `appends`.
    ///
    /// ```
    /// use annals::{EventData, ExpectedVersion, Store, StreamAppend};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path()).unwrap();
    /// let part = |stream: &str, event_type: &str| StreamAppend {
    ///     stream: stream.into(),
    ///     expected: ExpectedVersion::Any,
    ///     events: vec![EventData::new(event_type, &b"{\"amount\":10}"[..])],
    /// };
    /// let results = store
    ///     .append_multi(&[part("account-1", "MoneyWithdrawn"), part("account-2", "MoneyDeposited"), part("transfers", "TransferCompleted")])
    ///     .unwrap();
    /// assert_eq!(results[2].first_position, 2);
    /// ```
    pub fn append_multi(&self, appends: &[StreamAppend]) -> Result<Vec<AppendResult>> {
        self.submit(self.multi_parts(appends)?)
    }

    /// The parts of a multi-stream append, checked for an empty or repeated stream list.
    fn multi_parts(&self, appends: &[StreamAppend]) -> Result<Vec<Part>> {
        if appends.is_empty() {
            return Err(Error::EmptyAppend);
        }
        // A set, not a pairwise check: a transaction over 1,000 streams made 499,500 comparisons (a third of
        // a W3 append, measured).
        let mut seen =
            std::collections::HashSet::with_capacity_and_hasher(appends.len(), foldhash::fast::RandomState::default());
        for append in appends {
            if !seen.insert(append.stream.as_str()) {
                return Err(Error::DuplicateStream { stream: append.stream.clone() });
            }
        }
        let parts = appends
            .iter()
            .map(|append| Part {
                stream: append.stream.clone(),
                expected: append.expected,
                events: append.events.clone(),
                ids_given: false,
            })
            .collect();
        Ok(parts)
    }

    /// Validates a transaction, queues it for the writer, and waits for its result.
    fn submit(&self, parts: Vec<Part>) -> Result<Vec<AppendResult>> {
        self.enqueue(parts)?.wait()
    }

    /// Validates a transaction and queues it for the writer; the writer answers through the returned
    /// completion.
    fn enqueue(&self, parts: Vec<Part>) -> Result<Arc<Completion>> {
        self.enqueue_checked(parts, &[])
    }

    /// [`enqueue`](Self::enqueue), where the parts of the streams in `check_only` may hold no event: their
    /// expectation is checked with the rest of the transaction, and nothing is written to them.
    fn enqueue_checked(&self, mut parts: Vec<Part>, check_only: &[String]) -> Result<Arc<Completion>> {
        if self.inner.shared.read_only {
            return Err(Error::ReadOnly);
        }
        let options = &self.inner.shared.options;
        let capacity = options.segment_size_bytes - SEGMENT_HEADER_LEN as u64;
        let event_max = options.event_size_bytes_max.min(capacity);
        let mut bytes = 0u64;
        let mut count = 0u64;
        for part in &mut parts {
            validate_stream_name(&part.stream)?;
            if part.events.is_empty() && !check_only.contains(&part.stream) {
                return Err(Error::EmptyAppend);
            }
            part.ids_given = !part.events.is_empty() && part.events.iter().all(|event| event.id.is_some());
            for event in &mut part.events {
                validate_event_type(&event.event_type)?;
                let size =
                    frame::frame_len(part.stream.len(), event.event_type.len(), event.metadata.len(), event.data.len())
                        as u64;
                if size > event_max {
                    return Err(Error::EventTooLarge { size, max: event_max });
                }
                bytes += frame::aligned(size as usize) as u64;
                count += 1;
                event.id.get_or_insert_with(Uuid::now_v7);
            }
        }
        if bytes > capacity || count > u64::from(u32::MAX) {
            return Err(Error::TransactionTooLarge { size: bytes, max: capacity });
        }
        let shared = &self.inner.shared;
        if let Some(poisoned) = shared.poisoned() {
            return Err(poisoned);
        }
        let completion = Completion::new();
        {
            let mut queue = shared.queue.lock();
            if queue.shutdown {
                return Err(Error::Closed);
            }
            queue.txns.push_back(Txn {
                parts,
                bytes,
                queued: std::time::Instant::now(),
                responder: Responder::new(&completion),
            });
        }
        shared.queue_ready.notify_one();
        Ok(completion)
    }

    /// [`append`](Self::append) for async code: the returned future completes when the writer answers, without
    /// blocking a thread meanwhile (the writer wakes the task). It works under any executor; no runtime is
    /// needed. The append is validated and queued when this is called, not when the future is first polled,
    /// and dropping the future does not withdraw it: its outcome is then unknown to the caller, and a retry
    /// with the same event ids is safe ([`append`](Self::append) explains idempotent retries).
    ///
    /// ```
    /// use annals::{EventData, ExpectedVersion, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path()).unwrap();
    /// let appended = futures::executor::block_on(store.append_async(
    ///     "order-7",
    ///     ExpectedVersion::NoStream,
    ///     &[EventData::new("OrderPlaced", &b"{}"[..])],
    /// ));
    /// assert_eq!(appended.unwrap().first_position, 0);
    /// ```
    pub fn append_async(&self, stream: &str, expected: ExpectedVersion, events: &[EventData]) -> AppendFuture {
        let part = Part { stream: stream.to_owned(), expected, events: events.to_vec(), ids_given: false };
        AppendFuture(Answer::new(self.enqueue(vec![part])))
    }

    /// [`append_multi`](Self::append_multi) for async code, as [`append_async`](Self::append_async).
    pub fn append_multi_async(&self, appends: &[StreamAppend]) -> AppendMultiFuture {
        AppendMultiFuture(Answer::new(self.multi_parts(appends).and_then(|parts| self.enqueue(parts))))
    }

    /// Subscribes to the events that match `filter`, from `from` on: first the history (through the category
    /// and event-type indexes where the filter allows), then live, with no gap and no duplicate at the switch.
    /// See [`Subscription`] for what it yields and guarantees.
    ///
    /// Errors: `InvalidStreamName` for a `Filter::Stream` with an invalid name.
    pub fn subscribe(&self, from: SubscribeFrom, filter: Filter) -> Result<Subscription> {
        Subscription::new(self.clone(), from, filter, None)
    }

    /// A named subscription that resumes after the position it last saved with
    /// [`Subscription::save_checkpoint`] (from the beginning the first time). The checkpoint is kept in the
    /// store, in the system stream `$checkpoint-<name>`, written with the store's durability.
    ///
    /// ```
    /// use annals::{EventData, ExpectedVersion, Filter, Store, SubscriptionMessage};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path()).unwrap();
    /// for amount in [b"5", b"7"] {
    ///     store.append("account-1", ExpectedVersion::Any, &[EventData::new("Deposited", &amount[..])]).unwrap();
    /// }
    /// let mut totals = store.subscribe_durable("totals", Filter::Category("account".into())).unwrap();
    /// let Some(Ok(SubscriptionMessage::Event(first))) = totals.next() else { panic!() };
    /// totals.save_checkpoint(first.position()).unwrap();
    /// drop(totals);
    /// // Later (or after a restart): it resumes after the saved position.
    /// let mut totals = store.subscribe_durable("totals", Filter::Category("account".into())).unwrap();
    /// assert!(matches!(totals.next(), Some(Ok(SubscriptionMessage::Event(e))) if e.offset() == 1));
    /// ```
    pub fn subscribe_durable(&self, name: &str, filter: Filter) -> Result<Subscription> {
        let stream = subscription::checkpoint_stream(name)?;
        let from = match self.read_stream_backwards(&stream, None)?.next() {
            Some(event) => SubscribeFrom::After(subscription::decode_checkpoint(&event?)?),
            None => SubscribeFrom::Start,
        };
        Subscription::new(self.clone(), from, filter, Some(stream))
    }

    /// The last position saved by the durable subscription `name`, if it saved one.
    pub fn subscription_checkpoint(&self, name: &str) -> Result<Option<u64>> {
        let stream = subscription::checkpoint_stream(name)?;
        self.read_stream_backwards(&stream, None)?
            .next()
            .map(|event| subscription::decode_checkpoint(&event?))
            .transpose()
    }

    pub(crate) fn notifier(&self) -> &Notifier {
        &self.inner.shared.notifier
    }

    /// Blocks until a position after `position` is committed, the store closes, or `deadline` passes.
    pub(crate) fn wait_past(&self, position: u64, deadline: Option<std::time::Instant>) -> Woken {
        let shared = &self.inner.shared;
        shared.notifier.wait_past(&shared.committed, position, deadline)
    }

    /// Async form of [`wait_past`](Self::wait_past): `None` with `waker` registered under `id`.
    pub(crate) fn register_past(&self, position: u64, id: u64, waker: &Waker) -> Option<Woken> {
        let shared = &self.inner.shared;
        shared.notifier.register_past(&shared.committed, position, id, waker)
    }

    /// Positions below this are committed.
    pub(crate) fn committed_position(&self) -> u64 {
        self.committed()
    }

    pub(crate) fn category_separator(&self) -> char {
        self.inner.shared.index.separator()
    }

    /// `read_all` from `from` up to (not including) `end`, which must not pass the committed end.
    pub(crate) fn read_all_until(&self, from: u64, end: u64) -> Result<ReadAll> {
        let shared = &self.inner.shared;
        Ok(ReadAll::new(shared.log.clone(), &shared.index, from, end)?.with_visibility(self.visibility()))
    }

    /// `read_category` from `from` up to `end`.
    pub(crate) fn read_category_until(&self, category: &str, from: u64, end: u64) -> Result<ReadIndexed> {
        Ok(ReadIndexed::new(self.source(), Kind::Category, category, from, end)?.with_visibility(self.visibility()))
    }

    /// `read_event_type` from `from` up to `end`.
    pub(crate) fn read_event_type_until(&self, event_type: &str, from: u64, end: u64) -> Result<ReadIndexed> {
        Ok(ReadIndexed::new(self.source(), Kind::EventType, event_type, from, end)?.with_visibility(self.visibility()))
    }

    /// The events of `stream` at positions `from..end`.
    pub(crate) fn read_stream_from_position(
        &self,
        stream: &str,
        from: u64,
        end: u64,
    ) -> Result<Box<dyn Iterator<Item = Result<RecordedEvent>> + Send>> {
        let first = if from < end {
            self.first_offset_at_or_after(stream, self.inner.shared.index.locator_of(from)?)?
        } else {
            None
        };
        let first = match (first, self.rules(stream)) {
            (Some(first), Ok(Some(rules))) => Some(first.max(self.visible_start(stream, rules)?)),
            // A tombstoned stream: nothing to deliver.
            (_, Err(Error::StreamDeleted { .. })) => None,
            (_, Err(err)) => return Err(err),
            (first, Ok(_)) => first,
        };
        let reader = ReadStream::new(self.source(), stream, first.unwrap_or(u64::MAX))?;
        Ok(Box::new(reader.stop_before_position(end)))
    }

    /// Makes every append acknowledged so far durable: returns once an `fdatasync` covers them. Under
    /// [`Durability::SyncData`](crate::Durability::SyncData) every acknowledged append already is, and this
    /// returns at once; under `Buffer` it syncs now instead of at the next due flush.
    ///
    /// Errors: `Poisoned` (an earlier or this sync failed), `Closed`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use annals::{Durability, EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let buffered = Options { durability: Durability::Buffer { flush_interval: Duration::from_secs(1) }, ..Default::default() };
    /// let store = Store::open_with(dir.path(), buffered).unwrap();
    /// store.append("audit", ExpectedVersion::Any, &[EventData::new("LoggedIn", &b"{}"[..])]).unwrap();
    /// store.flush().unwrap(); // on stable storage now
    /// ```
    pub fn flush(&self) -> Result<()> {
        let shared = &self.inner.shared;
        if shared.read_only {
            return Err(Error::ReadOnly);
        }
        if let Some(poisoned) = shared.poisoned() {
            return Err(poisoned);
        }
        // Read `committed` first: everything acknowledged before this call is below it.
        let committed = shared.committed.load(Ordering::Acquire);
        if shared.durable.load(Ordering::Acquire) >= committed {
            return Ok(());
        }
        let completion = Completion::new();
        {
            let mut queue = shared.queue.lock();
            if queue.shutdown {
                return Err(Error::Closed);
            }
            queue.flushes.push(Responder::new(&completion));
        }
        shared.queue_ready.notify_one();
        completion.wait().map(|_| ())
    }

    /// Positions below this are on stable storage.
    pub(crate) fn durable_position(&self) -> u64 {
        self.inner.shared.durable.load(Ordering::Acquire)
    }

    fn source(&self) -> Source {
        Source::new(self.inner.shared.log.clone(), self.inner.shared.index.clone())
    }

    fn committed(&self) -> u64 {
        self.inner.shared.committed.load(Ordering::Acquire)
    }

    /// The committed events of `stream` from `from_offset` on, in offset order. A stream that does not exist,
    /// or an offset past its end, yields nothing.
    ///
    /// The iterator is a snapshot of the stream when it was created. Reading costs what the read yields, not
    /// what the stream or the log holds: the index gives the records' places a chunk at a time. Each item is an
    /// error only if the record on disk (or the index entry that points at it) is damaged (`Corrupt`, naming the
    /// place); the iteration ends there.
    pub fn read_stream(&self, stream: &str, from_offset: u64) -> Result<ReadStream> {
        validate_stream_name(stream)?;
        let from = match self.rules(stream)? {
            Some(rules) => from_offset.max(self.visible_start(stream, rules)?),
            None => from_offset,
        };
        ReadStream::new(self.source(), stream, from)
    }

    /// The lifecycle rules of `stream` (`None`: nothing hidden); `StreamDeleted` if it is tombstoned.
    fn rules(&self, stream: &str) -> Result<Option<crate::lifecycle::Rules>> {
        let shared = &self.inner.shared;
        if !shared.lifecycle.load(Ordering::Acquire) {
            return Ok(None);
        }
        match crate::lifecycle::rules_of(&shared.log, &shared.index, stream, SystemTime::now())? {
            Some(rules) if rules.tombstoned => Err(Error::StreamDeleted { stream: stream.to_owned() }),
            rules => Ok(rules),
        }
    }

    /// The first offset of `stream` its rules leave visible: after the truncation and the count, and the first
    /// committed at or after the age limit (found through the time index, not by reading the hidden events).
    fn visible_start(&self, stream: &str, rules: crate::lifecycle::Rules) -> Result<u64> {
        if rules.min_timestamp == 0 {
            return Ok(rules.start);
        }
        let index = &self.inner.shared.index;
        let committed = self.committed();
        let by_age = match index.position_at(rules.min_timestamp, committed)? {
            Some(position) => self.first_offset_at_or_after(stream, index.locator_of(position)?)?.unwrap_or(u64::MAX),
            None => u64::MAX,
        };
        Ok(rules.start.max(by_age))
    }

    /// What multi-stream reads hide, if any stream has lifecycle metadata or a tombstone.
    fn visibility(&self) -> Option<crate::lifecycle::Visibility> {
        let shared = &self.inner.shared;
        shared
            .lifecycle
            .load(Ordering::Acquire)
            .then(|| crate::lifecycle::Visibility::new(shared.log.clone(), shared.index.clone()))
    }

    /// Sets `stream`'s lifecycle metadata (replacing what it had): readers hide what it excludes from then on.
    /// Recorded as an event of `$meta-<stream>`, with the store's durability. The stream need not exist yet.
    /// Compaction ([`Store::compact`], and the background compactor) later gives the space of hidden events back.
    pub fn set_stream_metadata(&self, stream: &str, metadata: StreamMetadata) -> Result<AppendResult> {
        validate_stream_name(stream)?;
        let event = EventData::new(crate::lifecycle::META_EVENT_TYPE, metadata.encode());
        let result = self.append(&crate::lifecycle::meta_stream(stream), ExpectedVersion::Any, &[event])?;
        self.inner.compaction.changed(stream);
        Ok(result)
    }

    /// `stream`'s lifecycle metadata (the default, which hides nothing, if it has none).
    pub fn stream_metadata(&self, stream: &str) -> Result<StreamMetadata> {
        validate_stream_name(stream)?;
        let shared = &self.inner.shared;
        Ok(crate::lifecycle::metadata_of(&shared.log, &shared.index, stream)?.unwrap_or_default())
    }

    /// Hides the events of `stream` below `offset` from every read (its other metadata kept).
    pub fn truncate_before(&self, stream: &str, offset: u64) -> Result<AppendResult> {
        let metadata = StreamMetadata { truncate_before: Some(offset), ..self.stream_metadata(stream)? };
        self.set_stream_metadata(stream, metadata)
    }

    /// Deletes `stream` softly, if its state matches `expected` (checked atomically with the deletion): every
    /// event it holds now is hidden from reads, and a later append continues its numbering (KurrentDB's soft
    /// delete). Returns where the deletion was recorded (in `$meta-<stream>`).
    ///
    /// ```
    /// use annals::{EventData, ExpectedVersion, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path()).unwrap();
    /// store.append("cart-7", ExpectedVersion::Any, &[EventData::new("ItemAdded", &b"{}"[..])]).unwrap();
    /// store.delete_stream("cart-7", ExpectedVersion::Exact(0)).unwrap();
    /// assert_eq!(store.read_stream("cart-7", 0).unwrap().count(), 0);
    /// let again = store.append("cart-7", ExpectedVersion::Any, &[EventData::new("ItemAdded", &b"{}"[..])]).unwrap();
    /// assert_eq!(again.first_offset, 1, "the numbering goes on");
    /// ```
    pub fn delete_stream(&self, stream: &str, expected: ExpectedVersion) -> Result<AppendResult> {
        validate_stream_name(stream)?;
        let next = self.stream_version(stream).map_or(0, |last| last + 1);
        if !expected.admits(next.checked_sub(1)) {
            return Err(Error::WrongExpectedVersion {
                stream: stream.to_owned(),
                expected,
                actual: next.checked_sub(1),
            });
        }
        let metadata = StreamMetadata { truncate_before: Some(next), ..self.stream_metadata(stream)? };
        let event = EventData::new(crate::lifecycle::META_EVENT_TYPE, metadata.encode());
        // The stream's expectation is checked in the same transaction: the stream's own version then, as read.
        let parts = vec![
            Part {
                stream: stream.to_owned(),
                expected: next.checked_sub(1).map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact),
                events: Vec::new(),
                ids_given: false,
            },
            Part {
                stream: crate::lifecycle::meta_stream(stream),
                expected: ExpectedVersion::Any,
                events: vec![event],
                ids_given: false,
            },
        ];
        let mut results = self.enqueue_checked(parts, &[stream.to_owned()])?.wait()?;
        self.inner.compaction.changed(stream);
        Ok(results.pop().expect("one result per part"))
    }

    /// Deletes `stream` for good, if its state matches `expected`: a `$tombstone` event is appended to it, and
    /// from then on reads of it and appends to it fail with `StreamDeleted`, and multi-stream reads and
    /// subscriptions leave its events out (KurrentDB's hard delete). The name can not be used again.
    pub fn tombstone(&self, stream: &str, expected: ExpectedVersion) -> Result<AppendResult> {
        validate_stream_name(stream)?;
        let result =
            self.append(stream, expected, &[EventData::new(crate::lifecycle::TOMBSTONE_EVENT_TYPE, Vec::new())])?;
        self.inner.compaction.changed(stream);
        Ok(result)
    }

    /// The committed events of `stream` from `from_offset` (`None`, or an offset past the end: its last event)
    /// back to offset 0.
    pub fn read_stream_backwards(&self, stream: &str, from_offset: Option<u64>) -> Result<ReadStreamBackwards> {
        validate_stream_name(stream)?;
        let stop = match self.rules(stream)? {
            Some(rules) => self.visible_start(stream, rules)?,
            None => 0,
        };
        Ok(ReadStreamBackwards::new(self.source(), stream, from_offset)?.stopping_below(stop))
    }

    /// Every committed event of every stream from global position `from_position` on, in position order.
    pub fn read_all(&self, from_position: u64) -> Result<ReadAll> {
        let shared = &self.inner.shared;
        Ok(ReadAll::new(shared.log.clone(), &shared.index, from_position, self.committed())?
            .with_visibility(self.visibility()))
    }

    /// Visits every committed event from global position `from_position` on, in position order, with a borrowed
    /// [`EventRef`](crate::EventRef): the same events as [`read_all`](Self::read_all) (each record's CRC checked,
    /// lifecycles honoured), without the reference counts and the allocation each [`RecordedEvent`] costs. The
    /// visitor returns `ControlFlow::Break(())` to stop early. Returns the position a later scan would go on
    /// from: after the last event visited, or the committed end. A damaged record is `Err(Corrupt)`, after the
    /// events before it were visited.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use annals::{EventData, ExpectedVersion, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path()).unwrap();
    /// for amount in [5u8, 7, 9] {
    ///     store.append("account-7", ExpectedVersion::Any, &[EventData::new("Deposited", vec![amount])]).unwrap();
    /// }
    /// let mut total = 0u64;
    /// let next = store.scan(0, |event| {
    ///     total += u64::from(event.data()[0]);
    ///     ControlFlow::Continue(())
    /// }).unwrap();
    /// assert_eq!((total, next), (21, 3));
    /// ```
    pub fn scan(&self, from_position: u64, mut visit: impl FnMut(EventRef<'_>) -> ControlFlow<()>) -> Result<u64> {
        let shared = &self.inner.shared;
        let cursor = ReadAll::new(shared.log.clone(), &shared.index, from_position, self.committed())?;
        crate::read::scan(cursor, from_position, self.visibility(), &mut visit)
    }

    /// The committed events of every stream of `category` from global position `from_position` on, in
    /// position order. A stream's category is the part of its name before the first
    /// [`Options::category_separator`](crate::Options::category_separator) (`account` for `account-42`), or
    /// the whole name if it has none. The read touches only the category's records (through the index), and
    /// is a snapshot of what was committed when it was created.
    ///
    /// ```
    /// use annals::{EventData, ExpectedVersion, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path()).unwrap();
    /// for (stream, event_type) in [("account-1", "Opened"), ("order-9", "Placed"), ("account-2", "Opened")] {
    ///     store.append(stream, ExpectedVersion::Any, &[EventData::new(event_type, &b"{}"[..])]).unwrap();
    /// }
    /// let accounts: Vec<String> =
    ///     store.read_category("account", 0).unwrap().map(|event| event.unwrap().stream().to_owned()).collect();
    /// assert_eq!(accounts, ["account-1", "account-2"]);
    /// ```
    pub fn read_category(
        &self,
        category: &str,
        from_position: u64,
    ) -> Result<impl Iterator<Item = Result<RecordedEvent>> + use<>> {
        Ok(ReadIndexed::new(self.source(), Kind::Category, category, from_position, self.committed())?
            .with_visibility(self.visibility()))
    }

    /// The committed events of type `event_type` (of every stream) from global position `from_position` on,
    /// in position order, touching only those records (through the index).
    ///
    /// ```
    /// use annals::{EventData, ExpectedVersion, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path()).unwrap();
    /// for (stream, event_type) in [("account-1", "Opened"), ("order-9", "Placed"), ("account-2", "Opened")] {
    ///     store.append(stream, ExpectedVersion::Any, &[EventData::new(event_type, &b"{}"[..])]).unwrap();
    /// }
    /// let opened: Vec<u64> =
    ///     store.read_event_type("Opened", 1).unwrap().map(|event| event.unwrap().position()).collect();
    /// assert_eq!(opened, [2]);
    /// ```
    pub fn read_event_type(
        &self,
        event_type: &str,
        from_position: u64,
    ) -> Result<impl Iterator<Item = Result<RecordedEvent>> + use<>> {
        Ok(ReadIndexed::new(self.source(), Kind::EventType, event_type, from_position, self.committed())?
            .with_visibility(self.visibility()))
    }

    /// The first committed position whose commit time is at or after `at`; `None` if every committed event is
    /// older. Commit times never go backwards along positions, so this needs no scan: the index's time entries
    /// narrow it to at most 64 records.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use annals::{EventData, ExpectedVersion, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path()).unwrap();
    /// let before = SystemTime::now() - Duration::from_secs(1);
    /// store.append("audit", ExpectedVersion::Any, &[EventData::new("LoggedIn", &b"{}"[..])]).unwrap();
    /// assert_eq!(store.position_at(before), Some(0));
    /// assert_eq!(store.position_at(SystemTime::now() + Duration::from_secs(60)), None);
    /// ```
    pub fn position_at(&self, at: SystemTime) -> Option<u64> {
        match self.inner.shared.index.position_at(nanos_since_epoch(at), self.committed()) {
            Ok(position) => position,
            Err(err) => {
                ::log::warn!("annals: position_at: {err}");
                None
            }
        }
    }

    /// The committed events of `stream` whose commit time lies between `from` and `to`, both included, in
    /// offset order: the audit log of a period, without reading the stream's earlier or later events.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use annals::{EventData, ExpectedVersion, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path()).unwrap();
    /// let start = SystemTime::now() - Duration::from_secs(1);
    /// store.append("account-7", ExpectedVersion::Any, &[EventData::new("Deposited", &b"5"[..])]).unwrap();
    /// let events = store.read_stream_between("account-7", start, SystemTime::now()).unwrap().count();
    /// assert_eq!(events, 1);
    /// ```
    pub fn read_stream_between(
        &self,
        stream: &str,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<impl Iterator<Item = Result<RecordedEvent>> + use<>> {
        validate_stream_name(stream)?;
        let committed = self.committed();
        let index = &self.inner.shared.index;
        let (from, to) = (nanos_since_epoch(from), nanos_since_epoch(to));
        let start = if from > to { None } else { index.position_at(from, committed)? };
        let end = match to.checked_add(1) {
            Some(after) => index.position_at(after, committed)?.unwrap_or(committed),
            None => committed,
        };
        let first_offset = match start {
            Some(start) if start < end => self.first_offset_at_or_after(stream, index.locator_of(start)?)?,
            _ => None,
        };
        let first_offset = match (first_offset, self.rules(stream)?) {
            (Some(first), Some(rules)) => Some(first.max(self.visible_start(stream, rules)?)),
            (first, _) => first,
        };
        let reader = ReadStream::new(self.source(), stream, first_offset.unwrap_or(u64::MAX))?;
        Ok(reader.stop_before_position(end))
    }

    /// `stream`'s event at `offset`, whether or not its lifecycle hides it; `None` if the stream has none there
    /// (beyond its head, or removed by compaction).
    pub(crate) fn event_at_offset(&self, stream: &str, offset: u64) -> Result<Option<RecordedEvent>> {
        validate_stream_name(stream)?;
        match ReadStream::new(self.source(), stream, offset)?.next() {
            Some(Ok(event)) if event.offset() == offset => Ok(Some(event)),
            Some(Err(err)) => Err(err),
            _ => Ok(None),
        }
    }

    /// The smallest offset of `stream` whose record lies at or after `locator` (locators grow with positions):
    /// a binary search over the stream's offsets, each probe one index lookup.
    pub(crate) fn first_offset_at_or_after(&self, stream: &str, locator: u64) -> Result<Option<u64>> {
        let index = &self.inner.shared.index;
        let Some(head) = index.head(stream, Via::Mapping)? else { return Ok(None) };
        if head.locator < locator {
            return Ok(None);
        }
        let (mut lo, mut hi) = (0, head.last_offset);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            // No record at `mid`: compaction removed it, hidden (so older than any visible record) when it ran.
            // (A gap between kept records, which looser rules can show again, may mislead this search: removal
            // is final, format-spec §4.5.) A missing index entry would be reported by the read.
            let at = index.locator_of_offset(stream, mid, Via::Mapping)?.unwrap_or(0);
            if at < locator {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(Some(lo))
    }

    /// The offset of `stream`'s last committed event; `None` if the stream does not exist. (Also `None` if the
    /// index or the stream's last record is damaged: appends and reads of the stream then report the damage.)
    pub fn stream_version(&self, stream: &str) -> Option<u64> {
        match self.inner.shared.index.head(stream, Via::Mapping) {
            Ok(head) => head.map(|head| head.last_offset),
            Err(err) => {
                ::log::warn!("annals: the last event of {stream:?} can not be found: {err}");
                None
            }
        }
    }

    /// How many index tables and memtables the store uses now (tables, memtables). For tests of what stays in
    /// memory.
    #[doc(hidden)]
    pub fn index_shape(&self) -> (usize, usize) {
        self.inner.shared.index.shape()
    }

    /// How many records reads located through the index (stream, category and event-type reads) have read
    /// since the store was opened. For tests that prove a read touches only what it yields.
    #[doc(hidden)]
    pub fn records_read_through_index(&self) -> u64 {
        self.inner.shared.index.records_read.load(Ordering::Relaxed)
    }

    /// The global position of the last committed event; `None` for an empty store.
    pub fn head_position(&self) -> Option<u64> {
        self.inner.shared.committed.load(Ordering::Acquire).checked_sub(1)
    }

    /// How many streams exist.
    pub fn stream_count(&self) -> usize {
        self.inner.shared.index.stream_count() as usize
    }

    /// Walks the whole committed log read-only: checks every record's CRC, the density of positions and
    /// offsets, every stream's back-links and transaction markers, and every index entry against the log.
    /// Returns the counts and the first problem found (with file and byte offset); `Err` only if the walk
    /// itself could not run.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = annals::Store::open(dir.path()).unwrap();
    /// store.append("s", annals::ExpectedVersion::Any, &[annals::EventData::new("E", &b"x"[..])]).unwrap();
    /// let report = store.verify().unwrap();
    /// assert!(report.is_ok());
    /// assert_eq!(report.records, 1);
    /// ```
    pub fn verify(&self) -> Result<crate::VerifyReport> {
        let _no_compaction = self.inner.shared.compaction.lock();
        crate::log::verify::verify(&self.inner.shared)
    }

    /// Compacts now: rewrites each sealed segment (every one but the last, once the index's tables cover it)
    /// in which the events its streams' lifecycles hide (truncation, soft deletion, `max_count`, `max_age`, a
    /// tombstone) make up at least [`Options::compaction_dead_percent`] of the bytes (any share, when that is
    /// 0), without them. This reads every sealed segment (an operator's full pass); the background compactor
    /// does the same on its own for the segments that hold what each lifecycle change hid, and reads nothing
    /// else. A read-only store never compacts (its report is empty).
    ///
    /// What stays: every event a read can still return, at the same position and offset, with the same id
    /// and bytes; each stream's last event (so that its numbering goes on); system streams (`$…`); each
    /// segment's first and last record. Removed events are gone for good, even if the stream's metadata later
    /// hides less. Global positions then have gaps where they were. Crash-safe: a segment is replaced whole
    /// (format-spec §4.5).
    ///
    /// ```
    /// use annals::{EventData, ExpectedVersion, Options, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// // No background compactor here (0), so that this call does the work.
    /// let options = Options { segment_size_bytes: 16 << 10, compaction_dead_percent: 0, ..Default::default() };
    /// let store = Store::open_with(dir.path(), options).unwrap();
    /// for _ in 0..500 {
    ///     store.append("cart-7", ExpectedVersion::Any, &[EventData::new("ItemAdded", vec![7u8; 100])]).unwrap();
    /// }
    /// store.delete_stream("cart-7", ExpectedVersion::Any).unwrap();
    /// store.flush_index().unwrap();
    /// let report = store.compact().unwrap();
    /// assert!(report.segments > 0 && report.bytes_reclaimed > 0);
    /// ```
    pub fn compact(&self) -> Result<crate::CompactionReport> {
        crate::compaction::compact(&self.inner.shared, self.inner.shared.options.compaction_dead_percent)
    }

    /// Waits until the index's tables cover every sealed segment (they are written in the background after each
    /// roll). Compaction rewrites only segments the tables cover.
    pub fn flush_index(&self) -> Result<()> {
        self.inner.shared.index.wait_for_tables()
    }

    /// Closes the store: waits for queued appends, syncs, writes the index table of what the last segment
    /// holds, stops the writer thread and releases the directory lock. Other handles get `Closed` from then on,
    /// and subscriptions waiting for new events end with `Closed` once they have delivered what was committed.
    pub fn close(self) -> Result<()> {
        self.inner.shutdown()
    }
}

impl Inner {
    /// Stops the writer (it finishes the queue, syncs and writes the last index table) and releases the directory
    /// lock. Every call returns only after that, with the outcome of the first.
    fn shutdown(&self) -> Result<()> {
        let mut writer = self.writer.lock();
        if let Closing::Closed(result) = &*writer {
            return match result {
                Ok(()) => Ok(()),
                Err(err) => Err(clone_error(err)),
            };
        }
        // The compactor first: it reads the log and the index, and writes segment files, under the lock.
        self.compaction.stop();
        if let Some(compactor) = self.compactor.lock().take() {
            let _ = compactor.join();
        }
        self.shared.queue.lock().shutdown = true;
        self.shared.queue_ready.notify_all();
        let Closing::Open(handle) = std::mem::replace(&mut *writer, Closing::Closed(Ok(()))) else {
            unreachable!("checked above")
        };
        let result = match handle.join() {
            Ok(result) => result,
            Err(_) => Err(Error::io("closing the store", std::io::Error::other("the writer thread panicked"))),
        };
        self.lock.lock().take();
        // Nothing more will be committed: subscriptions waiting for it end with `Closed`.
        self.shared.notifier.close();
        let answer = result.as_ref().map(|_| ()).map_err(clone_error);
        *writer = Closing::Closed(result);
        answer
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// The committed end of a store's log (for reads made while it opens).
fn state_end(shared: &Shared) -> u64 {
    shared.committed.load(Ordering::Acquire)
}

/// How often a read-only store looks at the writer's `HEAD` for newly durable records.
const FOLLOW_INTERVAL: std::time::Duration = std::time::Duration::from_millis(1);

/// The follower thread of a read-only store: replays what the writer makes durable, moves the committed
/// position and wakes subscriptions, until the store is closed. A failure (damage in what the writer says is
/// durable) stops the following: what was shown stays, and waiting subscriptions end with `Closed`.
fn follow(shared: &Shared, mut follower: Follower) -> Result<()> {
    let _closes = CloseNotifierOnExit(shared);
    loop {
        {
            let mut queue = shared.queue.lock();
            if !queue.shutdown {
                shared.queue_ready.wait_for(&mut queue, FOLLOW_INTERVAL);
            }
            if queue.shutdown {
                return Ok(());
            }
        }
        match follower.follow() {
            Ok(next) => {
                if next > shared.committed.load(Ordering::Acquire) {
                    shared.durable.store(next, Ordering::Release);
                    shared.committed.store(next, Ordering::Release);
                    shared.notifier.notify();
                }
            }
            Err(err) => {
                ::log::warn!("annals: a read-only store stopped following its writer: {err}");
                return Err(err);
            }
        }
    }
}

/// Closes the notifier when the follower thread ends, however it ends.
struct CloseNotifierOnExit<'a>(&'a Shared);

impl Drop for CloseNotifierOnExit<'_> {
    fn drop(&mut self) {
        self.0.notifier.close();
    }
}

/// Marks the queue shut down and drops what is still in it (its appenders get `Closed`) when dropped.
struct RefuseOnExit(Arc<Shared>);

impl Drop for RefuseOnExit {
    fn drop(&mut self) {
        let orphans = {
            let mut queue = self.0.queue.lock();
            queue.shutdown = true;
            (std::mem::take(&mut queue.txns), std::mem::take(&mut queue.flushes))
        };
        drop(orphans);
        self.0.notifier.close();
    }
}

fn validate_options(options: &Options) -> Result<()> {
    let invalid = |reason: String| Err(Error::InvalidOptions { reason });
    let size = options.segment_size_bytes;
    if !(crate::log::segment::SEGMENT_SIZE_BYTES_MIN..=crate::log::segment::SEGMENT_SIZE_BYTES_MAX).contains(&size)
        || !size.is_multiple_of(frame::FRAME_ALIGN as u64)
    {
        return invalid(format!(
            "segment_size_bytes must be a multiple of 8 from {} to {}, not {size}",
            crate::log::segment::SEGMENT_SIZE_BYTES_MIN,
            crate::log::segment::SEGMENT_SIZE_BYTES_MAX
        ));
    }
    if options.event_size_bytes_max < (HEADER_LEN + 2) as u64 {
        return invalid(format!("event_size_bytes_max must be at least {}", HEADER_LEN + 2));
    }
    if options.open_segments_max == 0 {
        return invalid("open_segments_max must be at least 1".into());
    }
    if options.compaction_dead_percent > 100 {
        return invalid(format!(
            "compaction_dead_percent must be at most 100, not {}",
            options.compaction_dead_percent
        ));
    }
    if options.batch_bytes_max == 0 {
        return invalid("batch_bytes_max must be at least 1".into());
    }
    Ok(())
}

fn check_name(name: &str, max: usize) -> Result<(), &'static str> {
    const _: () = assert!(STREAM_NAME_BYTES_MAX == 1024 && EVENT_TYPE_BYTES_MAX == 1024, "the message below says 1024");
    if name.is_empty() {
        Err("must not be empty")
    } else if name.len() > max {
        Err("is longer than 1024 bytes")
    } else if name.chars().any(char::is_control) {
        Err("must not contain control characters")
    } else {
        Ok(())
    }
}

pub(crate) fn validate_stream_name(stream: &str) -> Result<()> {
    check_name(stream, STREAM_NAME_BYTES_MAX)
        .map_err(|reason| Error::InvalidStreamName { name: stream.to_owned(), reason })
}

fn validate_event_type(event_type: &str) -> Result<()> {
    check_name(event_type, EVENT_TYPE_BYTES_MAX)
        .map_err(|reason| Error::InvalidEventType { event_type: event_type.to_owned(), reason })
}

/// Nanoseconds since the Unix epoch (0 before it, saturating after the year 2554), as commit times are stored.
fn nanos_since_epoch(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

/// The answer to a queued append, for the async forms: an error found before it was queued, or the
/// completion the writer answers through.
enum Answer {
    Refused(Option<Error>),
    Queued(Arc<Completion>),
}

impl Answer {
    fn new(queued: Result<Arc<Completion>>) -> Self {
        match queued {
            Ok(completion) => Answer::Queued(completion),
            Err(err) => Answer::Refused(Some(err)),
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<Vec<AppendResult>>> {
        match self {
            Answer::Refused(err) => {
                Poll::Ready(Err(err.take().expect("an append future is not polled after it completed")))
            }
            Answer::Queued(completion) => completion.poll(cx),
        }
    }
}

/// The future of [`Store::append_async`]: the append's result once the writer has answered.
#[must_use = "the append is queued either way; await the future to learn its outcome"]
pub struct AppendFuture(Answer);

impl Future for AppendFuture {
    type Output = Result<AppendResult>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().0.poll(cx).map(|results| results.map(|mut results| results.pop().expect("one result per part")))
    }
}

/// The future of [`Store::append_multi_async`]: one result per stream, in the order given.
#[must_use = "the append is queued either way; await the future to learn its outcome"]
pub struct AppendMultiFuture(Answer);

impl Future for AppendMultiFuture {
    type Output = Result<Vec<AppendResult>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().0.poll(cx)
    }
}
