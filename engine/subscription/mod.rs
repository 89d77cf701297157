//! Subscriptions: read the log from a position, then follow new commits live, with no gap and no duplicate
//! at the switch.
//!
//! A subscription never holds a buffer that the writer fills: it reads the log itself, in *rounds*. A round
//! covers the positions from where the subscription stands to the committed end it saw when the round began,
//! through the category and event-type indexes where the filter allows, else by scanning. When a round ends
//! and nothing more is committed, the subscription waits for the writer's next commit ([`notify::Notifier`])
//! and starts the next round where the last one ended. So:
//!
//! - every matching event is delivered once, in position order: rounds are contiguous ranges of positions;
//! - only committed events are delivered (under `SyncData`, only synced ones): a round ends at the committed
//!   end;
//! - a slow subscriber costs the writer nothing and holds no queue: its backlog stays in the log, and it reads
//!   it at its own pace (reporting [`SubscriptionMessage::FellBehind`] when that backlog grows past
//!   [`FALL_BEHIND_POSITIONS`], and [`SubscriptionMessage::CaughtUp`] when it reaches the end again).
//!
//! Durable subscriptions keep their checkpoint in the store, as an event of the system stream
//! `$checkpoint-<name>` (`format-spec.md` §15).

pub(crate) mod notify;

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::{Error, Result};
use crate::read::RecordedEvent;
use crate::store::Store;
use crate::{EventData, ExpectedVersion, StreamAppend};

use self::notify::Woken;

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscribeFrom {
    /// From position 0: the whole history, then live.
    Start,
    /// From the committed end when the subscription is made: live events only.
    End,
    /// After the given position (exclusive): resume after the last event processed.
    After(u64),
}

/// Which events a subscription delivers.
///
/// Streams whose names begin with `$` are annals' own (subscription checkpoints live in `$checkpoint-<name>`):
/// `All` and a `StreamPrefix` that does not itself begin with `$` leave them out. Every other filter names
/// what it wants, so it gets system events only if it names them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Filter {
    /// Every event (system streams excepted).
    All,
    /// The events of one stream.
    Stream(String),
    /// The events of every stream of a category (`account` for `account-42`, with the store's
    /// `category_separator`); read through the category index.
    Category(String),
    /// The events of these types (any stream); read through the event-type index.
    EventTypes(Vec<String>),
    /// The events of every stream whose name starts with this prefix. Read through the category index when the
    /// prefix holds the category separator (`account-4` lies in category `account`), else by scanning the log.
    StreamPrefix(String),
}

/// What a subscription yields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SubscriptionMessage {
    /// A matching event, in position order.
    Event(RecordedEvent),
    /// The subscription has delivered everything committed so far and now follows new commits live. Sent once
    /// the history is read, and again after each [`FellBehind`](Self::FellBehind).
    CaughtUp,
    /// A live subscription's backlog grew past [`FALL_BEHIND_POSITIONS`]: it reads the log to catch up, and
    /// says [`CaughtUp`](Self::CaughtUp) again when it has.
    FellBehind,
    /// Progress through events the filter skipped: every matching event at or before this position has been
    /// delivered. Save it as a checkpoint like the position of a delivered event. Sent after every
    /// [`CHECKPOINT_EVERY_POSITIONS`] positions without a delivered event, and before `CaughtUp` when events were
    /// skipped since the last report.
    Checkpoint(u64),
}

/// A live subscription whose unread backlog (committed positions after its own) exceeds this reports
/// [`SubscriptionMessage::FellBehind`].
pub const FALL_BEHIND_POSITIONS: u64 = 4096;

/// A filtered subscription reports a [`SubscriptionMessage::Checkpoint`] after this many positions without a
/// delivered event.
pub const CHECKPOINT_EVERY_POSITIONS: u64 = 1024;

/// Prefix of the system streams that hold durable subscriptions' checkpoints.
pub const CHECKPOINT_STREAM_PREFIX: &str = "$checkpoint-";
/// Event type of a checkpoint event; its data is the position, a little-endian u64.
pub const CHECKPOINT_EVENT_TYPE: &str = "$checkpoint";

/// What a step does when the subscription is live and nothing new is committed.
pub(crate) enum Wait<'a, 'b> {
    /// Block the thread until the next commit.
    Block,
    /// Return `Pending` at once.
    Never,
    /// Register the task's waker and return `Pending`.
    Task(&'a mut Context<'b>),
}

impl PartialEq for Wait<'_, '_> {
    fn eq(&self, other: &Self) -> bool {
        matches!(
            (self, other),
            (Wait::Block, Wait::Block) | (Wait::Never, Wait::Never) | (Wait::Task(_), Wait::Task(_))
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    CatchingUp,
    Live,
}

/// The reading of one range of positions.
struct Round {
    events: Box<dyn Iterator<Item = Result<RecordedEvent>> + Send>,
    /// Positions below this are committed; the round reads none at or after it.
    end: u64,
}

/// A subscription: a blocking [`Iterator`] of [`SubscriptionMessage`]s, made by [`Store::subscribe`] and
/// [`Store::subscribe_durable`]; [`into_stream`](Self::into_stream) turns it into an async
/// [`futures_core::Stream`] of the same messages.
///
/// The blocking `next` waits for the next commit when the subscription has caught up; the stream registers
/// the task's waker instead, which the writer wakes on its next commit (no thread, no runtime needed). An
/// `Err` item ends the subscription: `Closed` when the store is closed while it waits, `Corrupt` for damage
/// found while reading. Dropping the subscription ends it.
///
/// ```
/// use annals::{EventData, ExpectedVersion, Filter, Store, SubscribeFrom, SubscriptionMessage};
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path()).unwrap();
/// store.append("account-1", ExpectedVersion::Any, &[EventData::new("Deposited", &b"5"[..])]).unwrap();
/// let mut subscription = store.subscribe(SubscribeFrom::Start, Filter::Category("account".into())).unwrap();
/// assert!(matches!(subscription.next(), Some(Ok(SubscriptionMessage::Event(e))) if e.position() == 0));
/// assert!(matches!(subscription.next(), Some(Ok(SubscriptionMessage::CaughtUp))));
/// // Live from here: the next `next()` returns when the next account event is committed.
/// store.append("account-2", ExpectedVersion::Any, &[EventData::new("Deposited", &b"7"[..])]).unwrap();
/// assert!(matches!(subscription.next(), Some(Ok(SubscriptionMessage::Event(e))) if e.stream() == "account-2"));
/// ```
pub struct Subscription {
    store: Store,
    filter: Filter,
    /// The category index serves a `StreamPrefix` that holds the separator: the prefix's category.
    prefix_category: Option<String>,
    /// The first position not yet read.
    next: u64,
    /// Positions below this have been reported (as a delivered event or a checkpoint).
    reported: u64,
    phase: Phase,
    round: Option<Round>,
    queued: VecDeque<SubscriptionMessage>,
    /// The checkpoint stream of a durable subscription.
    checkpoint_stream: Option<String>,
    /// Where it stands, for `Store::metrics`.
    progress: std::sync::Arc<crate::metrics::SubscriptionProgress>,
    waiter: Option<u64>,
    ended: bool,
}

impl Subscription {
    pub(crate) fn new(
        store: Store,
        from: SubscribeFrom,
        filter: Filter,
        checkpoint_stream: Option<String>,
    ) -> Result<Self> {
        let filter = match filter {
            Filter::Stream(stream) => {
                crate::store::validate_stream_name(&stream)?;
                Filter::Stream(stream)
            }
            Filter::EventTypes(mut types) => {
                types.sort();
                types.dedup();
                Filter::EventTypes(types)
            }
            other => other,
        };
        let separator = store.category_separator();
        let prefix_category = match &filter {
            Filter::StreamPrefix(prefix) => prefix.split_once(separator).map(|(category, _)| category.to_owned()),
            _ => None,
        };
        let committed = store.committed_position();
        let next = match from {
            SubscribeFrom::Start => 0,
            SubscribeFrom::End => committed,
            // After u64::MAX there is nothing: no position can be that large.
            SubscribeFrom::After(position) => position.saturating_add(1),
        };
        let progress = store.stats().register(
            format!("{filter:?}"),
            checkpoint_stream.as_ref().map(|stream| stream[CHECKPOINT_STREAM_PREFIX.len()..].to_owned()),
            next,
        );
        Ok(Subscription {
            progress,
            store,
            filter,
            prefix_category,
            next,
            reported: next,
            phase: Phase::CatchingUp,
            round: None,
            queued: VecDeque::new(),
            checkpoint_stream,
            waiter: None,
            ended: false,
        })
    }

    /// The async form: a [`futures_core::Stream`] of the same messages.
    pub fn into_stream(self) -> SubscriptionStream {
        SubscriptionStream(self)
    }

    /// The filter this subscription delivers. (Named apart from `Iterator::filter`.)
    pub fn subscribed_filter(&self) -> &Filter {
        &self.filter
    }

    /// Every matching event below this position has been delivered: where the subscription stands. (Named
    /// apart from `Iterator::position`, which a `&mut Subscription` would otherwise call.)
    pub fn current_position(&self) -> u64 {
        self.next.max(self.reported)
    }

    /// Saves `position` as this durable subscription's checkpoint: the next [`Store::subscribe_durable`] with
    /// the same name resumes after it. Appended to the store (with its durability) as an event of
    /// `$checkpoint-<name>`. Processing is then *at least once*: events handled after the last saved checkpoint
    /// are delivered again after a crash. For *exactly once*, commit the read model's own events and the
    /// checkpoint in one [`Store::append_multi`] with [`checkpoint_append`](Self::checkpoint_append).
    ///
    /// Errors: `InvalidCheckpoint` if the subscription is not durable or `position` is not committed yet;
    /// the errors of an append.
    pub fn save_checkpoint(&self, position: u64) -> Result<()> {
        let append = self.checkpoint_append(position)?;
        self.store.append(&append.stream, append.expected, &append.events).map(|_| ())
    }

    /// The part of an atomic [`Store::append_multi`] that saves `position` as this durable subscription's
    /// checkpoint: commit it together with the events that processing up to `position` produced, and a crash
    /// keeps both or neither (exactly-once processing for read models kept in the store).
    pub fn checkpoint_append(&self, position: u64) -> Result<StreamAppend> {
        let Some(stream) = &self.checkpoint_stream else {
            return Err(Error::InvalidCheckpoint { reason: "the subscription is not durable".into() });
        };
        let committed = self.store.committed_position();
        if position >= committed {
            return Err(Error::InvalidCheckpoint {
                reason: format!("position {position} is not committed (the log ends before {committed})"),
            });
        }
        Ok(StreamAppend {
            stream: stream.clone(),
            expected: ExpectedVersion::Any,
            events: vec![EventData::new(CHECKPOINT_EVENT_TYPE, position.to_le_bytes().to_vec())],
        })
    }

    /// Whether `event` (read by a round) is one to deliver.
    fn matches(&self, event: &RecordedEvent) -> bool {
        let stream = event.stream();
        match &self.filter {
            Filter::All => !stream.starts_with('$'),
            Filter::StreamPrefix(prefix) => {
                stream.starts_with(prefix.as_str()) && (prefix.starts_with('$') || !stream.starts_with('$'))
            }
            // The other rounds read only matching records.
            _ => true,
        }
    }

    /// The reading of positions `from..end`.
    fn round(&self, from: u64, end: u64) -> Result<Round> {
        let store = &self.store;
        let events: Box<dyn Iterator<Item = Result<RecordedEvent>> + Send> = match (&self.filter, &self.prefix_category)
        {
            (Filter::All, _) | (Filter::StreamPrefix(_), None) => Box::new(store.read_all_until(from, end)?),
            (Filter::Category(category), _) | (Filter::StreamPrefix(_), Some(category)) => {
                Box::new(store.read_category_until(category, from, end)?)
            }
            (Filter::EventTypes(types), _) => {
                let reads = types
                    .iter()
                    .map(|event_type| store.read_event_type_until(event_type, from, end))
                    .collect::<Result<Vec<_>>>()?;
                Box::new(MergeByPosition::new(reads))
            }
            (Filter::Stream(stream), _) => Box::new(store.read_stream_from_position(stream, from, end)?),
        };
        Ok(Round { events, end })
    }

    /// One step: the next message, or the end, or `Pending` when the subscription is live and nothing new is
    /// committed: then `wait` says what to do (block, register the task's waker, or return at once).
    pub(crate) fn step(&mut self, mut wait: Wait<'_, '_>) -> Poll<Option<Result<SubscriptionMessage>>> {
        loop {
            if let Some(message) = self.queued.pop_front() {
                return Poll::Ready(Some(Ok(message)));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            if let Some(round) = &mut self.round {
                let (read, end) = (round.events.next(), round.end);
                match read {
                    Some(Ok(event)) if event.position() < end => {
                        let position = event.position();
                        if self.matches(&event) {
                            self.reported = position + 1;
                            return Poll::Ready(Some(Ok(SubscriptionMessage::Event(event))));
                        }
                        // A scan that skips: report progress now and then.
                        if position + 1 - self.reported >= CHECKPOINT_EVERY_POSITIONS {
                            self.reported = position + 1;
                            return Poll::Ready(Some(Ok(SubscriptionMessage::Checkpoint(position))));
                        }
                    }
                    Some(Err(err)) => {
                        self.ended = true;
                        self.round = None;
                        return Poll::Ready(Some(Err(err)));
                    }
                    // The end of the round (an index read may see a record past it: it stops there).
                    Some(Ok(_)) | None => {
                        self.round = None;
                        self.next = end;
                        if end - self.reported >= CHECKPOINT_EVERY_POSITIONS {
                            self.reported = end;
                            return Poll::Ready(Some(Ok(SubscriptionMessage::Checkpoint(end - 1))));
                        }
                    }
                }
                continue;
            }
            let committed = self.store.committed_position();
            if committed > self.next {
                if self.phase == Phase::Live && committed - self.next > FALL_BEHIND_POSITIONS {
                    self.phase = Phase::CatchingUp;
                    self.queued.push_back(SubscriptionMessage::FellBehind);
                }
                match self.round(self.next, committed) {
                    Ok(round) => self.round = Some(round),
                    Err(err) => {
                        self.ended = true;
                        return Poll::Ready(Some(Err(err)));
                    }
                }
                continue;
            }
            if self.phase == Phase::CatchingUp {
                self.phase = Phase::Live;
                if self.next > self.reported {
                    self.reported = self.next;
                    self.queued.push_back(SubscriptionMessage::Checkpoint(self.next - 1));
                }
                self.queued.push_back(SubscriptionMessage::CaughtUp);
                continue;
            }
            // Live and caught up: wait for the next commit.
            let woken = match &mut wait {
                Wait::Block => self.store.wait_past(self.next, None),
                Wait::Never => match self.store.committed_position() > self.next || self.store.notifier().is_closed() {
                    true => Woken::Committed,
                    false => return Poll::Pending,
                },
                Wait::Task(cx) => {
                    let waiter = *self.waiter.get_or_insert_with(|| self.store.notifier().waiter_id());
                    match self.store.register_past(self.next, waiter, cx.waker()) {
                        Some(woken) => woken,
                        None => return Poll::Pending,
                    }
                }
            };
            if wait == Wait::Never && self.store.notifier().is_closed() && self.store.committed_position() <= self.next
            {
                self.ended = true;
                return Poll::Ready(Some(Err(Error::Closed)));
            }
            if woken == Woken::Closed && self.store.committed_position() <= self.next {
                self.ended = true;
                return Poll::Ready(Some(Err(Error::Closed)));
            }
        }
    }
}

impl Iterator for Subscription {
    type Item = Result<SubscriptionMessage>;

    /// The next message; blocks while the subscription is live and nothing new is committed.
    fn next(&mut self) -> Option<Self::Item> {
        match self.step(Wait::Block) {
            Poll::Ready(message) => {
                self.progress.position.store(self.current_position(), std::sync::atomic::Ordering::Relaxed);
                message
            }
            Poll::Pending => unreachable!("a blocking step never returns Pending"),
        }
    }
}

/// The async form of a [`Subscription`]: a [`futures_core::Stream`] of the same messages, made by
/// [`Subscription::into_stream`]. When it has caught up, `poll_next` registers the task's waker, which the
/// writer wakes at its next commit: no thread is blocked or spawned, and any executor works.
///
/// ```
/// use annals::{EventData, ExpectedVersion, Filter, Store, SubscribeFrom, SubscriptionMessage};
/// use futures::StreamExt;
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path()).unwrap();
/// store.append("order-7", ExpectedVersion::Any, &[EventData::new("Placed", &b"{}"[..])]).unwrap();
/// let mut orders = store.subscribe(SubscribeFrom::Start, Filter::Category("order".into())).unwrap().into_stream();
/// futures::executor::block_on(async {
///     assert!(matches!(orders.next().await, Some(Ok(SubscriptionMessage::Event(e))) if e.stream() == "order-7"));
///     assert!(matches!(orders.next().await, Some(Ok(SubscriptionMessage::CaughtUp))));
/// });
/// ```
#[derive(Debug)]
pub struct SubscriptionStream(Subscription);

impl SubscriptionStream {
    /// The subscription behind the stream (to save a checkpoint, or to read its position).
    pub fn subscription(&self) -> &Subscription {
        &self.0
    }
}

impl futures_core::Stream for SubscriptionStream {
    type Item = Result<SubscriptionMessage>;

    /// The next message, or `Pending` with the task's waker registered for the writer's next commit.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let subscription = &mut self.get_mut().0;
        let polled = subscription.step(Wait::Task(cx));
        subscription.progress.position.store(subscription.current_position(), std::sync::atomic::Ordering::Relaxed);
        polled
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(waiter) = self.waiter {
            self.store.notifier().unregister(waiter);
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("filter", &self.filter)
            .field("position", &self.next)
            .field("durable", &self.checkpoint_stream)
            .finish()
    }
}

/// The events of several position-ordered reads, merged into one position order (a record matches at most
/// one event type, so no position comes twice).
struct MergeByPosition<I: Iterator<Item = Result<RecordedEvent>>> {
    reads: Vec<std::iter::Peekable<I>>,
}

impl<I: Iterator<Item = Result<RecordedEvent>>> MergeByPosition<I> {
    fn new(reads: Vec<I>) -> Self {
        MergeByPosition { reads: reads.into_iter().map(Iterator::peekable).collect() }
    }
}

impl<I: Iterator<Item = Result<RecordedEvent>>> Iterator for MergeByPosition<I> {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        // An error comes first: the merge ends there.
        let mut best: Option<(usize, u64)> = None;
        for (i, read) in self.reads.iter_mut().enumerate() {
            match read.peek() {
                Some(Err(_)) => return read.next(),
                Some(Ok(event)) if best.is_none_or(|(_, position)| event.position() < position) => {
                    best = Some((i, event.position()));
                }
                _ => {}
            }
        }
        self.reads[best?.0].next()
    }
}

/// The checkpoint stream of the durable subscription `name`.
pub(crate) fn checkpoint_stream(name: &str) -> Result<String> {
    if name.is_empty() {
        return Err(Error::InvalidCheckpoint { reason: "a durable subscription needs a name".into() });
    }
    let stream = format!("{CHECKPOINT_STREAM_PREFIX}{name}");
    crate::store::validate_stream_name(&stream)?;
    Ok(stream)
}

/// The position a checkpoint event holds.
pub(crate) fn decode_checkpoint(event: &RecordedEvent) -> Result<u64> {
    let bytes: [u8; 8] = event.data()[..].try_into().map_err(|_| Error::InvalidCheckpoint {
        reason: format!(
            "the checkpoint event at position {} of {:?} holds {} bytes, not 8",
            event.position(),
            event.stream(),
            event.data().len()
        ),
    })?;
    if event.event_type() != CHECKPOINT_EVENT_TYPE {
        return Err(Error::InvalidCheckpoint {
            reason: format!("the event at position {} of {:?} is no checkpoint", event.position(), event.stream()),
        });
    }
    Ok(u64::from_le_bytes(bytes))
}
