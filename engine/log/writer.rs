//! The group-commit writer thread: appenders queue transactions; the thread takes everything pending (up to
//! `batch_bytes_max`), checks expected versions in order, encodes the frames into one buffer, writes it with
//! one `pwrite`, syncs once, publishes the new head to readers, and wakes every appender with its own result.
//!
//! Nothing waits on a timer when one appender is alone: the thread sleeps only while the queue is empty.
//! While it syncs, new transactions pile up and form the next group.
//!
//! A failed write or sync poisons the store: that group and every later append get `Poisoned`. No appender can
//! wait forever: a [`Responder`] that is dropped unanswered (writer shut down or panicked) answers `Closed`.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::index::memtable::Record;
use crate::index::Index;
use crate::log::frame::{self, Header, NO_PREV};
use crate::log::head::HeadWriter;
use crate::log::io::Io;
use crate::log::segment::{locator, Segment, Spare, ZeroFill, SEGMENT_HEADER_LEN};
use crate::log::Log;
use crate::metrics::Stats;
use crate::subscription::notify::Notifier;
use crate::{AppendResult, Durability, EventData, ExpectedVersion, Options};

/// One validated stream part of a transaction. Every event has its id assigned.
pub(crate) struct Part {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<EventData>,
    /// Whether the caller gave every event's id: only then can the part be a retry of an earlier append.
    pub ids_given: bool,
}

/// One atomic append, as queued.
pub(crate) struct Txn {
    pub parts: Vec<Part>,
    /// When the appender queued it (for the append latency metric).
    pub queued: Instant,
    /// Encoded bytes of all its frames, padding included.
    pub bytes: u64,
    pub responder: Responder,
}

/// Where an appender waits for its transaction's result: blocked on the condition variable, or (async) with
/// its task's waker registered.
pub(crate) struct Completion {
    slot: Mutex<Slot>,
    ready: Condvar,
}

#[derive(Default)]
struct Slot {
    result: Option<Result<Vec<AppendResult>>>,
    waker: Option<Waker>,
}

impl Completion {
    pub fn new() -> Arc<Self> {
        Arc::new(Completion { slot: Mutex::new(Slot::default()), ready: Condvar::new() })
    }

    /// Blocks until the writer answers.
    pub fn wait(&self) -> Result<Vec<AppendResult>> {
        let mut slot = self.slot.lock();
        loop {
            if let Some(result) = slot.result.take() {
                return result;
            }
            self.ready.wait(&mut slot);
        }
    }

    /// The writer's answer if it has come, else registers `cx`'s waker for it.
    pub fn poll(&self, cx: &mut Context<'_>) -> Poll<Result<Vec<AppendResult>>> {
        let mut slot = self.slot.lock();
        match slot.result.take() {
            Some(result) => Poll::Ready(result),
            None => {
                match &mut slot.waker {
                    Some(waker) => waker.clone_from(cx.waker()),
                    None => slot.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    fn answer(&self, result: Result<Vec<AppendResult>>) {
        let waker = {
            let mut slot = self.slot.lock();
            slot.result = Some(result);
            slot.waker.take()
        };
        self.ready.notify_one();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The writer's end of a [`Completion`]. Answers `Closed` if dropped unanswered.
pub(crate) struct Responder(Option<Arc<Completion>>);

impl Responder {
    pub fn new(completion: &Arc<Completion>) -> Self {
        Responder(Some(completion.clone()))
    }

    pub fn send(mut self, result: Result<Vec<AppendResult>>) {
        self.0.take().expect("a responder answers once").answer(result);
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(completion) = self.0.take() {
            completion.answer(Err(Error::Closed));
        }
    }
}

#[derive(Default)]
pub(crate) struct Queue {
    pub txns: VecDeque<Txn>,
    /// Callers of `Store::flush`, waiting for a sync of everything written so far.
    pub flushes: Vec<Responder>,
    pub shutdown: bool,
}

/// What the store and its writer thread share. `Send + Sync`.
pub(crate) struct Shared {
    pub log: Arc<Log>,
    pub index: Arc<Index>,
    /// Positions below this are committed (under `SyncData`: durable) and visible to readers.
    pub committed: AtomicU64,
    /// Positions below this are on stable storage (equal to `committed` under `SyncData` once a group is
    /// published; behind it under `Buffer` until the next sync).
    pub durable: AtomicU64,
    pub poison: Mutex<Option<Arc<io::Error>>>,
    pub queue: Mutex<Queue>,
    pub queue_ready: Condvar,
    /// Wakes subscriptions (and anything else waiting for commits) after every publish.
    pub notifier: Notifier,
    /// A read-only store: no writer, appends refused; a follower thread moves `committed` instead.
    pub read_only: bool,
    /// Counters for `Store::metrics`.
    pub stats: Stats,
    /// Some stream has lifecycle metadata or a tombstone: appends check for tombstones, reads for what to
    /// hide. (False in most stores, which then pay nothing for the lifecycle.)
    pub lifecycle: std::sync::atomic::AtomicBool,
    pub options: Options,
    pub io: Io,
    /// Held by a compaction, and by `verify` and `backup` (which read segment files by name, and must not meet
    /// a file compaction replaced under the mapping they measured).
    pub compaction: Mutex<()>,
}

impl Shared {
    pub fn poisoned(&self) -> Option<Error> {
        self.poison.lock().as_ref().map(|cause| Error::Poisoned { cause: cause.clone() })
    }

    fn poison(&self, cause: io::Error) -> Arc<io::Error> {
        self.poison.lock().get_or_insert_with(|| Arc::new(cause)).clone()
    }
}

/// The writer thread's own state: where the log ends.
pub(crate) struct WriterState {
    pub active: Arc<Segment>,
    /// The active segment's file, open for writing (segments themselves hold no descriptor).
    pub active_file: File,
    /// Where the next frame goes in `active`.
    pub write_at: u64,
    pub next_position: u64,
    pub last_timestamp: u64,
    /// Whether the bytes of `active` from `write_at` on are known to be zeros. After recovery they may hold
    /// a torn tail or stale frames, so they are zeroed and synced before the first write (by recovery when it
    /// had records to resync, else by the writer before its first group).
    pub tail_zeroed: bool,
}

/// One record a group encoded, to publish once it is written (and synced): where its stream, part and event
/// are in the group's bodies, and where it went.
struct Staged {
    txn: usize,
    part: usize,
    event: usize,
    offset: u64,
    position: u64,
    locator: u64,
}

/// A group in the making.
#[derive(Default)]
struct Group<'a> {
    outcomes: Vec<Outcome>,
    /// Streams the group wrote to: last offset and head locator after its staged writes.
    heads: HashMap<&'a str, (u64, u64), foldhash::fast::RandomState>,
    /// Records written, not yet published.
    records: Vec<Staged>,
    /// Creating the next segment failed: the rest of the group fails the same way.
    roll_failure: Option<io::Error>,
    /// Transactions and events the group wrote (for the metrics).
    txns_written: u64,
    events_written: u64,
}

/// What one transaction came to within a group.
enum Outcome {
    Committed(Vec<AppendResult>),
    Failed(Error),
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    state: WriterState,
    /// Tells read-only openers how far the log is durable.
    head: HeadWriter,
    /// Positions below this are on stable storage.
    synced_next: u64,
    buffer: Vec<u8>,
    /// When the oldest write not yet synced was made (`Buffer` durability).
    dirty_since: Option<Instant>,
    /// The next segment's file, being reserved and zero-filled in the background.
    spare: Option<JoinHandle<Result<Spare>>>,
    /// Abandons the spare's zero fill (at close).
    spare_cancelled: Arc<std::sync::atomic::AtomicBool>,
    /// Bytes the current group wrote (for the metrics).
    bytes_in_group: u64,
}

/// Name of the spare segment file while it is prepared (removed on open like every `*.tmp`).
pub(crate) const SPARE_NAME: &str = "spare.seg.tmp";

enum Work {
    Group(Vec<Txn>),
    /// A sync: due under `Buffer`, or asked for by `Store::flush` (whose callers wait here).
    Flush(Vec<Responder>),
    Shutdown,
}

impl Writer {
    pub fn new(shared: Arc<Shared>, state: WriterState, head: HeadWriter) -> Self {
        // Recovery proved every recovered record synced, or wrote it again and synced it, before the store
        // opened.
        let synced_next = state.next_position;
        Writer {
            shared,
            state,
            head,
            synced_next,
            buffer: Vec::new(),
            dirty_since: None,
            spare: None,
            spare_cancelled: Arc::default(),
            bytes_in_group: 0,
        }
    }

    /// Starts preparing the next segment's file in the background once the active segment is a quarter full:
    /// early enough to be ready when it fills, late enough not to compete with the appends of a store that
    /// has just been opened.
    fn prepare_spare_if_due(&mut self) {
        if self.spare.is_none() && self.state.write_at > self.state.active.size() / 4 {
            self.prepare_spare();
        }
    }

    fn prepare_spare(&mut self) {
        let (io, dir, size) =
            (self.shared.io.clone(), self.shared.log.dir().to_owned(), self.shared.options.segment_size_bytes);
        // If no thread can be started, the roll creates the segment itself.
        self.spare = std::thread::Builder::new()
            .name("annals-segment-prep".into())
            .spawn({
                let cancelled = self.spare_cancelled.clone();
                move || Spare::prepare(&io, &dir, SPARE_NAME, size, ZeroFill::Yes { cancelled: &cancelled })
            })
            .ok();
    }

    /// The prepared spare file, if its preparation succeeded.
    /// The spare, if it is ready. A spare still being zero-filled is not waited for: a roll that waited for it
    /// stalled every append queued behind it for the ~150 ms it takes to write and sync 64 MiB of zeros
    /// (measured with W9). The roll then prepares its file in the foreground (reserved, not zero-filled), and
    /// the spare serves the next roll.
    fn take_spare(&mut self) -> Option<Spare> {
        if !self.spare.as_ref()?.is_finished() {
            return None;
        }
        self.spare.take()?.join().ok()?.ok()
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// The thread's body. Returns when the store shuts down and the queue is empty, after the final sync and
    /// once the index has written every entry out; their failure is returned to `close`.
    pub fn run(mut self) -> Result<()> {
        loop {
            match self.next_work() {
                Work::Group(txns) => self.commit(txns),
                Work::Flush(waiters) => {
                    let synced = self.sync();
                    for waiter in waiters {
                        waiter.send(synced.as_ref().map(|()| Vec::new()).map_err(clone_error));
                    }
                }
                Work::Shutdown => break,
            }
        }
        let index = self.shared.index.clone();
        let synced = match self.shared.poisoned() {
            Some(poisoned) => Err(poisoned),
            None => self.sync().map(|()| {
                // Everything published is synced: the active memtable becomes a table, so that the next open
                // replays nothing.
                let end = locator(self.state.active.ordinal(), self.state.write_at as u32);
                index.freeze(self.state.next_position, end);
            }),
        };
        // The index thread stops either way; the entries of a poisoned store are rebuilt at the next open.
        let closed = index.close();
        synced.and(closed)
    }

    /// Waits for work: a group of transactions, a due background flush, or shutdown.
    fn next_work(&mut self) -> Work {
        let mut queue = self.shared.queue.lock();
        loop {
            // Under `Buffer`, a flush is due `flush_interval` after the oldest unsynced write, however busy the
            // queue is.
            // An interval too long to add to the clock (`Duration::MAX`) means no timed flush at all: the
            // writer then syncs only at rolls, before checkpoints and at close.
            let flush_due = match (self.shared.options.durability, self.dirty_since) {
                (Durability::Buffer { flush_interval }, Some(since)) => since.checked_add(flush_interval),
                _ => None,
            };
            if flush_due.is_some() && self.shared.poisoned().is_some() {
                // Nothing can be synced any more: never flush again (a due flush would spin here forever).
                self.dirty_since = None;
                continue;
            }
            if !queue.flushes.is_empty() || flush_due.is_some_and(|due| due <= Instant::now()) {
                return Work::Flush(std::mem::take(&mut queue.flushes));
            }
            if !queue.txns.is_empty() {
                let mut bytes = 0;
                let mut group = Vec::new();
                while let Some(txn) = queue.txns.front() {
                    if !group.is_empty() && bytes + txn.bytes > self.shared.options.batch_bytes_max {
                        break;
                    }
                    bytes += txn.bytes;
                    group.push(queue.txns.pop_front().expect("front exists"));
                }
                return Work::Group(group);
            }
            if queue.shutdown {
                return Work::Shutdown;
            }
            match flush_due {
                Some(due) => {
                    self.shared.queue_ready.wait_until(&mut queue, due);
                }
                None => self.shared.queue_ready.wait(&mut queue),
            }
        }
    }

    /// Commits one group: validate and encode each transaction (rolling when one does not fit), write once,
    /// sync once, publish, answer.
    fn commit(&mut self, txns: Vec<Txn>) {
        if let Some(poisoned) = self.shared.poisoned() {
            for txn in txns {
                txn.responder.send(Err(clone_error(&poisoned)));
            }
            return;
        }
        if let Err(cause) = self.zero_tail_once() {
            let cause = self.shared.poison(cause);
            return self.fail_all(txns.into_iter().map(|txn| txn.responder).collect(), cause);
        }
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        // Timestamps never go backwards, whatever the wall clock does.
        let timestamp = now.max(self.state.last_timestamp);
        self.state.last_timestamp = timestamp;

        let mut responders = Vec::with_capacity(txns.len());
        let mut bodies = Vec::with_capacity(txns.len());
        let mut queued = Vec::with_capacity(txns.len());
        for txn in txns {
            responders.push(txn.responder);
            bodies.push((txn.parts, txn.bytes));
            queued.push(txn.queued);
        }
        self.bytes_in_group = 0;
        let mut group = Group::default();
        self.buffer.clear();
        for txn_no in 0..bodies.len() {
            match self.stage(txn_no, &bodies, timestamp, &mut group) {
                Ok(outcome) => group.outcomes.push(outcome),
                Err(cause) => return self.fail_all(responders, cause),
            }
        }

        // A group whose every transaction was refused wrote nothing and has nothing to sync.
        if let Err(cause) = self.write_buffer().and_then(|()| match self.shared.options.durability {
            Durability::SyncData if self.synced_next < self.state.next_position => self.sync_active(),
            Durability::SyncData | Durability::Buffer { .. } => Ok(()),
        }) {
            let cause = self.shared.poison(cause);
            return self.fail_all(responders, cause);
        }
        self.publish(&bodies, &mut group.records, timestamp);
        self.prepare_spare_if_due();
        self.shared.stats.group(group.txns_written, group.events_written, self.bytes_in_group);
        for ((responder, outcome), queued) in responders.into_iter().zip(group.outcomes).zip(queued) {
            self.shared.stats.append_answered(queued.elapsed());
            responder.send(match outcome {
                Outcome::Committed(results) => Ok(results),
                Outcome::Failed(err) => Err(err),
            });
        }
    }

    /// IMPORTANT: once per open, before the first group is encoded, unless recovery did it: zero what lies
    /// after the recovered end (a torn tail, stale frames of a lost group), so that no stale frame can line up
    /// with the frames written from here on, and sync, so that the zeros are durable before the first new byte.
    fn zero_tail_once(&mut self) -> io::Result<()> {
        if self.state.tail_zeroed {
            return Ok(());
        }
        let (file, path, at) = (&self.state.active_file, self.state.active.path(), self.state.write_at);
        self.shared.io.zero_range(file, path, at, self.state.active.size() - at)?;
        self.shared.io.sync_data(file, path)?;
        self.state.tail_zeroed = true;
        Ok(())
    }

    /// Checks transaction `txn_no`'s expectations and encodes it into the group's buffer, rolling first if it
    /// does not fit. `Err` only when the store became poisoned (a failed seal or installation).
    fn stage<'a>(
        &mut self,
        txn_no: usize,
        bodies: &'a [(Vec<Part>, u64)],
        timestamp: u64,
        group: &mut Group<'a>,
    ) -> Result<Outcome, Arc<io::Error>> {
        let (parts, bytes) = (&bodies[txn_no].0, bodies[txn_no].1);
        if let Some(err) = &group.roll_failure {
            return Ok(Outcome::Failed(Error::io("creating the next segment", clone_io(err))));
        }
        let mut heads = Vec::with_capacity(parts.len());
        for part in parts {
            let current = match group.heads.get(part.stream.as_str()) {
                Some(&head) => Some(head),
                None => match self.shared.index.head_for_append(&part.stream) {
                    Ok(head) => head.map(|head| (head.last_offset, head.locator)),
                    Err(err) => return Ok(Outcome::Failed(err)),
                },
            };
            heads.push(current);
        }
        // A retry of an append that was committed (its events, with the same ids in the same order, already
        // sit where the expectation puts them): answer what the original got, write nothing.
        if parts.iter().all(|part| part.ids_given) {
            match self.retry_of(parts, &heads, bodies, group) {
                Ok(Some(original)) => return Ok(Outcome::Committed(original)),
                Ok(None) => {}
                Err(err) => return Ok(Outcome::Failed(err)),
            }
        }
        // A tombstoned stream takes no more events.
        if self.shared.lifecycle.load(Ordering::Acquire) {
            for (part, current) in parts.iter().zip(&heads) {
                match self.tombstoned(current) {
                    Ok(false) => {}
                    Ok(true) => return Ok(Outcome::Failed(Error::StreamDeleted { stream: part.stream.clone() })),
                    Err(err) => return Ok(Outcome::Failed(err)),
                }
            }
        }
        // Check every expectation: one conflict fails the whole transaction.
        for (part, current) in parts.iter().zip(&heads) {
            let actual = current.map(|(offset, _)| offset);
            if !part.expected.admits(actual) {
                let stream = part.stream.clone();
                return Ok(Outcome::Failed(Error::WrongExpectedVersion { stream, expected: part.expected, actual }));
            }
        }
        // A transaction never spans segments: roll first if it does not fit.
        if self.state.write_at + self.buffer.len() as u64 + bytes > self.state.active.size() {
            if self.state.write_at == SEGMENT_HEADER_LEN as u64 && self.buffer.is_empty() {
                // An empty segment (created with a smaller size) can not roll: its successor would get the
                // same base position.
                let max = self.state.active.size() - SEGMENT_HEADER_LEN as u64;
                return Ok(Outcome::Failed(Error::TransactionTooLarge { size: bytes, max }));
            }
            match self.roll(bodies, &mut group.records, timestamp) {
                Ok(()) => {}
                Err(RollError::Poisoned(cause)) => return Err(cause),
                Err(RollError::Create(err)) => {
                    let failed = Error::io("creating the next segment", clone_io(&err));
                    group.roll_failure = Some(err);
                    return Ok(Outcome::Failed(failed));
                }
            }
        }
        group.txns_written += 1;
        Ok(Outcome::Committed(self.encode(txn_no, parts, heads, timestamp, group)))
    }

    /// The original results if every part of the transaction is already committed: its events sit, with the
    /// same ids in the same order, right after the expected version (`Exact`, `NoStream`), or are the stream's
    /// last events (`Any`, `StreamExists`). `heads` are the streams' current heads (last offset, locator).
    fn retry_of(
        &self,
        parts: &[Part],
        heads: &[Option<(u64, u64)>],
        bodies: &[(Vec<Part>, u64)],
        group: &Group<'_>,
    ) -> Result<Option<Vec<AppendResult>>> {
        let mut results = Vec::with_capacity(parts.len());
        for (part, head) in parts.iter().zip(heads) {
            let Some((last_offset, _)) = *head else { return Ok(None) };
            let count = part.events.len() as u64;
            let first = match part.expected {
                ExpectedVersion::Exact(version) => version.checked_add(1),
                ExpectedVersion::NoStream => Some(0),
                ExpectedVersion::Any | ExpectedVersion::StreamExists => (last_offset + 1).checked_sub(count),
            };
            let Some(first) =
                first.filter(|first| first.checked_add(count - 1).is_some_and(|last| last <= last_offset))
            else {
                return Ok(None);
            };
            let mut positions = (0, 0);
            for (k, event) in part.events.iter().enumerate() {
                let Some((id, position)) = self.event_at(&part.stream, first + k as u64, bodies, group)? else {
                    return Ok(None);
                };
                if Some(id) != event.id {
                    return Ok(None);
                }
                if k == 0 {
                    positions.0 = position;
                }
                positions.1 = position;
            }
            results.push(AppendResult {
                first_offset: first,
                last_offset: first + count - 1,
                first_position: positions.0,
                last_position: positions.1,
            });
        }
        Ok(Some(results))
    }

    /// Whether the stream whose head is `head` ends with a tombstone. (A tombstone staged in this group is found
    /// too: its head locator points into the buffer, not yet written, and is read from there.)
    fn tombstoned(&self, head: &Option<(u64, u64)>) -> Result<bool> {
        let Some((_, locator)) = *head else { return Ok(false) };
        let (ordinal, at) = crate::log::segment::split_locator(locator);
        let tombstone = crate::lifecycle::TOMBSTONE_EVENT_TYPE.as_bytes();
        if ordinal == self.state.active.ordinal() && u64::from(at) >= self.state.write_at {
            let at = (u64::from(at) - self.state.write_at) as usize;
            let frame = frame::decode(&self.buffer[at..]).expect("the writer encoded this frame");
            return Ok(&self.buffer[at..][frame.event_type] == tombstone);
        }
        let (segment, at) = self.shared.log.kept(locator)?;
        let frame = crate::log::decode_at(&segment, at)?;
        Ok(&segment.bytes()[at..][frame.event_type] == tombstone)
    }

    /// The id and position of `stream`'s event at `offset`: staged in this group, or committed.
    fn event_at(
        &self,
        stream: &str,
        offset: u64,
        bodies: &[(Vec<Part>, u64)],
        group: &Group<'_>,
    ) -> Result<Option<(uuid::Uuid, u64)>> {
        if group.heads.contains_key(stream) {
            let staged = group
                .records
                .iter()
                .rev()
                .find(|staged| staged.offset == offset && bodies[staged.txn].0[staged.part].stream == stream);
            if let Some(staged) = staged {
                let id = bodies[staged.txn].0[staged.part].events[staged.event].id.expect("ids are assigned");
                return Ok(Some((id, staged.position)));
            }
        }
        let Some(locator) = self.shared.index.locator_of_offset(stream, offset, crate::log::Via::Mapping)? else {
            return Ok(None);
        };
        let Some((segment, at)) = self.shared.log.located(locator)? else { return Ok(None) };
        let frame = crate::log::decode_at(&segment, at)?;
        Ok(Some((frame.header.event_id, frame.header.position)))
    }

    /// Encodes a transaction's frames into the buffer, with consecutive positions, per-stream offsets and
    /// back-links, and `txn_after` counting down to its commit mark.
    fn encode<'a>(
        &mut self,
        txn_no: usize,
        parts: &'a [Part],
        heads: Vec<Option<(u64, u64)>>,
        timestamp: u64,
        group: &mut Group<'a>,
    ) -> Vec<AppendResult> {
        let mut txn_after: u32 = parts.iter().map(|part| part.events.len() as u32).sum();
        let mut results = Vec::with_capacity(parts.len());
        for (part_no, (part, head)) in parts.iter().zip(heads).enumerate() {
            let (mut offset, mut prev) = head.map_or((0, NO_PREV), |(last, head)| (last + 1, head));
            let first = (offset, self.state.next_position);
            for (event_no, event) in part.events.iter().enumerate() {
                txn_after -= 1;
                let here =
                    locator(self.state.active.ordinal(), (self.state.write_at as usize + self.buffer.len()) as u32);
                let header = Header {
                    position: self.state.next_position,
                    offset,
                    prev,
                    synced_before: self.synced_next,
                    timestamp_nanos: timestamp,
                    event_id: event.id.expect("ids are assigned before queueing"),
                    txn_after,
                    codec: event.codec,
                };
                frame::encode(&mut self.buffer, &header, &part.stream, &event.event_type, &event.metadata, &event.data);
                group.records.push(Staged {
                    txn: txn_no,
                    part: part_no,
                    event: event_no,
                    offset,
                    position: self.state.next_position,
                    locator: here,
                });
                prev = here;
                group.events_written += 1;
                self.state.next_position += 1;
                offset += 1;
            }
            if part.events.is_empty() {
                // An expectation-only part (the stream a soft delete is checked against): nothing written.
                results.push(AppendResult {
                    first_offset: first.0,
                    last_offset: first.0,
                    first_position: first.1,
                    last_position: first.1,
                });
                continue;
            }
            group.heads.insert(part.stream.as_str(), (offset - 1, prev));
            results.push(AppendResult {
                first_offset: first.0,
                last_offset: offset - 1,
                first_position: first.1,
                last_position: self.state.next_position - 1,
            });
        }
        results
    }

    /// Makes written (and, under `SyncData`, synced) records visible: adds them to the index and, while readers
    /// are held off, moves the committed position past them, so no reader sees a stream's new event through
    /// the index before a read of the whole log that starts after it would see it too.
    fn publish(&mut self, bodies: &[(Vec<Part>, u64)], records: &mut Vec<Staged>, timestamp: u64) {
        if records.is_empty() {
            return;
        }
        let after_last = locator(self.state.active.ordinal(), self.state.write_at as u32);
        let entries = records.iter().enumerate().map(|(i, staged)| {
            let part = &bodies[staged.txn].0[staged.part];
            let event = &part.events[staged.event];
            let record = Record {
                stream: &part.stream,
                event_type: &event.event_type,
                offset: staged.offset,
                position: staged.position,
                locator: staged.locator,
                timestamp,
                event_id: event.id.expect("ids are assigned before queueing"),
            };
            (record, records.get(i + 1).map_or(after_last, |next| next.locator))
        });
        if !self.shared.lifecycle.load(Ordering::Relaxed) {
            let governs = |staged: &Staged| {
                let part = &bodies[staged.txn].0[staged.part];
                part.stream.starts_with(crate::lifecycle::META_STREAM_PREFIX)
                    || part.events[staged.event].event_type == crate::lifecycle::TOMBSTONE_EVENT_TYPE
            };
            if records.iter().any(governs) {
                self.shared.lifecycle.store(true, Ordering::Release);
            }
        }
        let (committed, next_position) = (&self.shared.committed, self.state.next_position);
        self.shared.index.publish(entries, || committed.store(next_position, Ordering::Release));
        records.clear();
        self.shared.notifier.notify();
    }

    fn fail_all(&mut self, responders: Vec<Responder>, cause: Arc<io::Error>) {
        for responder in responders {
            responder.send(Err(Error::Poisoned { cause: cause.clone() }));
        }
    }

    fn write_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        assert!(
            self.state.write_at + self.buffer.len() as u64 <= self.state.active.size(),
            "a group never overflows its segment"
        );

        let active = &self.state.active;
        self.shared.io.write_at(&self.state.active_file, active.path(), &self.buffer, self.state.write_at)?;
        self.bytes_in_group += self.buffer.len() as u64;
        self.dirty_since.get_or_insert_with(Instant::now);
        self.state.write_at += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    fn sync_active(&mut self) -> io::Result<()> {
        let started = Instant::now();
        self.shared.io.sync_data(&self.state.active_file, self.state.active.path())?;
        self.shared.stats.sync(started.elapsed());
        self.synced_next = self.state.next_position;
        self.shared.durable.store(self.synced_next, Ordering::Release);
        self.head.publish(self.synced_next);
        self.dirty_since = None;
        Ok(())
    }

    /// Syncs whatever is written but not yet synced (background flush, shutdown, checkpoint).
    fn sync(&mut self) -> Result<()> {
        if let Some(poisoned) = self.shared.poisoned() {
            return Err(poisoned);
        }
        if self.synced_next < self.state.next_position {
            if let Err(cause) = self.sync_active() {
                return Err(Error::Poisoned { cause: self.shared.poison(cause) });
            }
        }
        Ok(())
    }

    /// Seals the active segment and starts the next one. The records the group wrote before the roll are
    /// synced by the seal and published here, and the index's memtable is frozen at the new segment's start,
    /// so that its table covers only synced records.
    ///
    /// IMPORTANT: the sealed segment is written and synced before the next one is created, so a segment file
    /// exists only when every record before its base is durable. Recovery relies on this.
    fn roll(
        &mut self,
        bodies: &[(Vec<Part>, u64)],
        records: &mut Vec<Staged>,
        timestamp: u64,
    ) -> Result<(), RollError> {
        span!("annals.roll", base = self.state.next_position);
        let poisoned = |this: &Self, cause| RollError::Poisoned(this.shared.poison(cause));
        self.write_buffer().map_err(|cause| poisoned(self, cause))?;
        if self.synced_next < self.state.next_position {
            self.sync_active().map_err(|cause| poisoned(self, cause))?;
        }
        let ordinal = self
            .state
            .active
            .ordinal()
            .checked_add(1)
            .ok_or_else(|| RollError::Create(io::Error::other("segment ordinals exhausted")))?;
        let spare = self.take_spare();
        let (base, size) = (self.state.next_position, self.shared.options.segment_size_bytes);
        let spare = match spare {
            Some(spare) if spare.size() == size => spare,
            // No spare (its preparation failed or could not start): prepare one here, which also reports why
            // it fails. Nothing is in the directory under a segment's name yet, so a failure (ENOSPC) is a clean
            // error: the store goes on.
            _ => {
                let tmp = format!("{}.tmp", crate::log::segment::file_name(base));
                Spare::prepare(&self.shared.io, self.shared.log.dir(), &tmp, size, ZeroFill::No).map_err(|err| {
                    match err {
                        Error::Io { source, .. } => RollError::Create(source),
                        other => RollError::Create(io::Error::other(other.to_string())),
                    }
                })?
            }
        };
        self.publish(bodies, records, timestamp);
        let (io, dir) = (&self.shared.io, self.shared.log.dir());
        // Installing renames the file to its segment name: a failure from there on (a sync, the rename, the
        // directory sync, the mapping) leaves the directory in doubt, and the store must be reopened.
        let (segment, file) = Segment::install(io, dir, spare, ordinal, base).map_err(|err| {
            let cause = match err {
                Error::Io { source, .. } => source,
                other => io::Error::other(other.to_string()),
            };
            RollError::Poisoned(self.shared.poison(cause))
        })?;
        let segment = Arc::new(segment);
        self.shared.log.push(segment.clone());
        self.state.active = segment;
        self.state.active_file = file;
        self.state.write_at = SEGMENT_HEADER_LEN as u64;
        self.state.tail_zeroed = true;
        // The sealed segment's entries are complete and synced: the index writes them out as a table.
        self.shared.index.freeze(base, locator(ordinal, SEGMENT_HEADER_LEN as u32));
        self.shared.stats.roll();
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // IMPORTANT: the spare's thread must be done before the store is unlocked, or it could write into a
        // directory that another store has opened since. It stops zero-filling at once when asked.
        self.spare_cancelled.store(true, Ordering::Relaxed);
        if let Some(spare) = self.spare.take() {
            if let Ok(Ok(spare)) = spare.join() {
                drop(spare);
                let _ = std::fs::remove_file(self.shared.log.dir().join(SPARE_NAME));
            }
        }
    }
}

enum RollError {
    /// Sealing the old segment failed: the store is poisoned.
    Poisoned(Arc<io::Error>),
    /// Creating the new one failed: nothing is lost, the store stays usable.
    Create(io::Error),
}

fn clone_io(err: &io::Error) -> io::Error {
    match err.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(err.kind(), err.to_string()),
    }
}

/// A copy of an error to hand to one more waiter.
pub(crate) fn clone_error(err: &Error) -> Error {
    match err {
        Error::Poisoned { cause } => Error::Poisoned { cause: cause.clone() },
        Error::Io { context, source } => Error::Io { context: context.clone(), source: clone_io(source) },
        Error::Closed => Error::Closed,
        other => Error::io("writer", io::Error::other(other.to_string())),
    }
}
