//! Projections: read models folded from a subscription, kept up to date by a runner that catches up, follows
//! live, and checkpoints its state together with its position.
//!
//! The runner's checkpoint is one event of the system stream `$projection-<name>` holding the position and the
//! whole state, so a crash keeps both or neither: after a restart the state is exactly what a replay from
//! zero up to that position gives (exactly-once, for a read model kept in the store). Its layout is in
//! `format-spec.md` §15.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock, RwLockReadGuard};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::erasure::Erasure;
use super::event::{Event, EventCodec};
use crate::es::codec::{decode_tagged, BincodeCodec, Codec};
use crate::subscription::{Filter, SubscribeFrom, Subscription, SubscriptionMessage, Wait};
use crate::{Error, EventData, ExpectedVersion, RecordedEvent, Result, Store};

/// Prefix of the system streams that hold projections' checkpoints.
pub const PROJECTION_STREAM_PREFIX: &str = "$projection-";
/// Event type of a projection checkpoint.
pub const PROJECTION_EVENT_TYPE: &str = "$projection";
/// Layout version of a projection checkpoint's data (`format-spec.md` §15.2).
const CHECKPOINT_FORMAT: u8 = 1;

/// A read model: state folded from the events a [`Filter`] selects, decoded as `Self::Event` (upcasters
/// included).
///
/// `apply` must not fail: an event that happened is folded in. The state is serialized whole at every
/// checkpoint, so a projection whose state is large (more than a few MiB) is better kept outside the store,
/// fed by a [`Subscription`].
///
/// ```
/// use annals::{Event, Filter, Projection, RecordedEvent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// enum AccountEvent { Deposited { cents: i64 }, Withdrawn { cents: i64 } }
/// impl Event for AccountEvent {}
///
/// /// Money in the bank: the sum over every account.
/// #[derive(Serialize, Deserialize, Default)]
/// struct Total { cents: i64 }
///
/// impl Projection for Total {
///     type Event = AccountEvent;
///     fn filter() -> Filter { Filter::Category("account".into()) }
///     fn apply(&mut self, event: AccountEvent, _: &RecordedEvent) {
///         match event {
///             AccountEvent::Deposited { cents } => self.cents += cents,
///             AccountEvent::Withdrawn { cents } => self.cents -= cents,
///         }
///     }
/// }
/// ```
pub trait Projection: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The events it reads.
    type Event: Event;

    /// The events it subscribes to.
    fn filter() -> Filter;

    /// Folds one event into the state.
    fn apply(&mut self, event: Self::Event, recorded: &RecordedEvent);
}

/// When a [`ProjectionRunner`] checkpoints (besides the moment it catches up, and when it stops).
///
/// ```
/// let options = annals::ProjectionOptions { checkpoint_every_events: 100, ..Default::default() };
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectionOptions {
    /// After this many applied events. Default 1,000; at least 1.
    pub checkpoint_every_events: u64,
    /// This long after the first event applied since the last checkpoint. Default 1 s.
    pub checkpoint_every: Duration,
}

impl Default for ProjectionOptions {
    fn default() -> Self {
        ProjectionOptions { checkpoint_every_events: 1_000, checkpoint_every: Duration::from_secs(1) }
    }
}

/// What the runner's thread shares with its handle.
struct Shared<P> {
    name: String,
    state: RwLock<P>,
    progress: Mutex<Progress>,
    changed: Condvar,
    stop: AtomicBool,
    rebuild: AtomicBool,
}

#[derive(Debug, Default)]
struct Progress {
    /// Every matching event below this position is applied to the state.
    position: u64,
    /// Whether the runner has read everything committed at least once since it started (or rebuilt).
    caught_up: bool,
    /// Why the runner stopped, if it failed.
    failed: Option<String>,
    stopped: bool,
}

/// Runs a [`Projection`] on its own thread: loads its last checkpoint, catches up from there, follows live,
/// and checkpoints every [`ProjectionOptions::checkpoint_every_events`] events or
/// [`ProjectionOptions::checkpoint_every`], when it catches up, and when it stops.
///
/// ```
/// # use annals::{Event, Filter, Projection, RecordedEvent};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] enum AccountEvent { Deposited { cents: i64 } }
/// # impl Event for AccountEvent {}
/// # #[derive(Serialize, Deserialize, Default)] struct Total { cents: i64 }
/// # impl Projection for Total {
/// #     type Event = AccountEvent;
/// #     fn filter() -> Filter { Filter::Category("account".into()) }
/// #     fn apply(&mut self, AccountEvent::Deposited { cents }: AccountEvent, _: &RecordedEvent) { self.cents += cents }
/// # }
/// use annals::{EventCodec, ExpectedVersion, ProjectionRunner, Store};
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path()).unwrap();
/// let totals = ProjectionRunner::<Total>::start(&store, "totals", Default::default()).unwrap();
/// let events = EventCodec::<AccountEvent>::default();
/// let deposit = events.encode(&AccountEvent::Deposited { cents: 250 }).unwrap();
/// let appended = store.append("account-7", ExpectedVersion::Any, &[deposit]).unwrap();
/// // Read your own writes: wait until the read model has seen the append.
/// totals.wait_for(appended.last_position).unwrap();
/// assert_eq!(totals.state().cents, 250);
/// totals.stop().unwrap();
/// ```
pub struct ProjectionRunner<P: Projection> {
    shared: Arc<Shared<P>>,
    store: Store,
    thread: Option<JoinHandle<()>>,
}

impl<P: Projection> ProjectionRunner<P> {
    /// Loads the projection `name`'s last checkpoint (or starts from an empty state) and starts its thread.
    ///
    /// Errors: `InvalidCheckpoint` for a bad name or a checkpoint that does not decode as `P`; read errors.
    pub fn start(store: &Store, name: &str, options: ProjectionOptions) -> Result<Self> {
        Self::start_inner(store, name, options, EventCodec::default())
    }

    /// Like [`start`](Self::start), and seals and opens the [`Personal`](crate::Personal) fields of the events
    /// and of the state (in its checkpoints) with `erasure`'s keys. After a subject is forgotten, its fields
    /// in the events read as forgotten; values the state already holds are written as forgotten by the next
    /// checkpoint (they read as forgotten after a restart), and [`rebuild`](Self::rebuild) drops them at once.
    ///
    /// ```
    /// use annals::{Erasure, Event, EventCodec, ExpectedVersion, Filter, Personal, Projection, ProjectionRunner};
    /// use annals::{RecordedEvent, Store};
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Serialize, Deserialize)]
    /// enum MemberEvent { Joined { name: Personal<String> } }
    /// impl Event for MemberEvent {}
    ///
    /// /// The members' names, as a list.
    /// #[derive(Serialize, Deserialize, Default)]
    /// struct Members { names: Vec<Personal<String>> }
    /// impl Projection for Members {
    ///     type Event = MemberEvent;
    ///     fn filter() -> Filter { Filter::Category("member".into()) }
    ///     fn apply(&mut self, MemberEvent::Joined { name }: MemberEvent, _: &RecordedEvent) { self.names.push(name) }
    /// }
    ///
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path()).unwrap();
    /// let erasure = Erasure::open(&store).unwrap();
    /// let members = ProjectionRunner::<Members>::start_with_erasure(&store, "members", Default::default(), erasure.clone())
    ///     .unwrap();
    /// let events = EventCodec::<MemberEvent>::default().with_erasure(erasure.clone());
    /// let joined = events.encode(&MemberEvent::Joined { name: Personal::new("member-1", "Ada".into()) }).unwrap();
    /// let appended = store.append("member-1", ExpectedVersion::Any, &[joined]).unwrap();
    /// members.wait_for(appended.last_position).unwrap();
    /// assert_eq!(members.state().names[0].value().map(String::as_str), Some("Ada"));
    /// members.stop().unwrap();
    /// ```
    pub fn start_with_erasure(store: &Store, name: &str, options: ProjectionOptions, erasure: Erasure) -> Result<Self> {
        Self::start_inner(store, name, options, EventCodec::default().with_erasure(erasure))
    }

    fn start_inner(
        store: &Store,
        name: &str,
        options: ProjectionOptions,
        events: EventCodec<P::Event>,
    ) -> Result<Self> {
        let stream = projection_stream(name)?;
        let (state, position) = events.in_scope_for_one_read(|| Self::saved(store, name))?;
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            state: RwLock::new(state),
            progress: Mutex::new(Progress { position: position.map_or(0, |p| p + 1), ..Progress::default() }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            rebuild: AtomicBool::new(false),
        });
        let from = position.map_or(SubscribeFrom::Start, SubscribeFrom::After);
        let subscription = store.subscribe(from, P::filter())?;
        let worker = Worker {
            shared: shared.clone(),
            store: store.clone(),
            stream,
            options: ProjectionOptions { checkpoint_every_events: options.checkpoint_every_events.max(1), ..options },
            events,
            subscription,
            applied_since_checkpoint: 0,
            first_unsaved: None,
        };
        let thread = std::thread::Builder::new()
            .name(format!("annals-projection-{name}"))
            .spawn(move || worker.run())
            .map_err(|err| Error::io("starting a projection thread", err))?;
        Ok(ProjectionRunner { shared, store: store.clone(), thread: Some(thread) })
    }

    /// The state and position the projection `name` last checkpointed (an empty state and `None` if it never
    /// did): what [`start`](Self::start) resumes from. The state is exactly the fold of every matching event at
    /// or before that position. A state with [`Personal`](crate::Personal) fields decodes only inside an
    /// [`Erasure::scope`].
    pub fn saved(store: &Store, name: &str) -> Result<(P, Option<u64>)> {
        let stream = projection_stream(name)?;
        match store.read_stream_backwards(&stream, None)?.next() {
            Some(event) => decode_checkpoint::<P>(&event?),
            None => Ok((P::default(), None)),
        }
    }

    /// The state as of the events applied so far. Hold the guard briefly: the runner waits for it to apply the
    /// next event.
    pub fn state(&self) -> RwLockReadGuard<'_, P> {
        self.shared.state.read()
    }

    /// Every matching event below this position is applied.
    pub fn position(&self) -> u64 {
        self.shared.progress.lock().position
    }

    /// Blocks until every matching event at or before `position` is applied (read-your-writes: pass the
    /// `last_position` of an append). Errors if the runner failed or was stopped first.
    pub fn wait_for(&self, position: u64) -> Result<()> {
        self.wait_for_timeout(position, Duration::MAX).map(|_| ())
    }

    /// [`wait_for`](Self::wait_for) with a timeout: `Ok(false)` if it passed first.
    pub fn wait_for_timeout(&self, position: u64, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now().checked_add(timeout);
        let mut progress = self.shared.progress.lock();
        loop {
            if progress.position > position {
                return Ok(true);
            }
            if let Some(reason) = &progress.failed {
                return Err(Error::ProjectionFailed { name: self.shared.name.clone(), reason: reason.clone() });
            }
            if progress.stopped {
                return Err(Error::Closed);
            }
            match deadline {
                Some(deadline) => {
                    if self.shared.changed.wait_until(&mut progress, deadline).timed_out() {
                        return Ok(progress.position > position);
                    }
                }
                None => self.shared.changed.wait(&mut progress),
            }
        }
    }

    /// Whether the runner has read everything that was committed (since it started, or since the last rebuild).
    pub fn caught_up(&self) -> bool {
        self.shared.progress.lock().caught_up
    }

    /// Starts over from an empty state and position 0 (after a change to `apply`, for example). The empty
    /// state is checkpointed first, so a crash during the rebuild resumes the rebuild, never the old state.
    pub fn rebuild(&self) {
        self.shared.rebuild.store(true, Ordering::SeqCst);
        self.store.notifier().notify();
    }

    /// Stops the runner after a last checkpoint, and returns that checkpoint's outcome (or why the runner had
    /// failed).
    pub fn stop(mut self) -> Result<()> {
        self.halt()
    }

    fn halt(&mut self) -> Result<()> {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the thread if it waits for a commit (other waiters check again and wait on).
        self.store.notifier().notify();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        match &self.shared.progress.lock().failed {
            Some(reason) => Err(Error::ProjectionFailed { name: self.shared.name.clone(), reason: reason.clone() }),
            None => Ok(()),
        }
    }
}

impl<P: Projection> Drop for ProjectionRunner<P> {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

impl<P: Projection> std::fmt::Debug for ProjectionRunner<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRunner").field("name", &self.shared.name).finish()
    }
}

/// The runner's thread.
struct Worker<P: Projection> {
    shared: Arc<Shared<P>>,
    store: Store,
    stream: String,
    options: ProjectionOptions,
    events: EventCodec<P::Event>,
    subscription: Subscription,
    applied_since_checkpoint: u64,
    /// When the first event applied since the last checkpoint was applied.
    first_unsaved: Option<Instant>,
}

impl<P: Projection> Worker<P> {
    fn run(mut self) {
        let outcome = self.follow();
        let mut progress = self.shared.progress.lock();
        progress.stopped = true;
        if let Err(err) = outcome {
            if !matches!(err, Error::Closed) {
                ::log::warn!("annals: projection {:?} stopped: {err}", self.shared.name);
                progress.failed = Some(err.to_string());
            }
        }
        drop(progress);
        self.shared.changed.notify_all();
    }

    fn follow(&mut self) -> Result<()> {
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                return self.checkpoint_if_dirty();
            }
            if self.shared.rebuild.swap(false, Ordering::SeqCst) {
                self.start_over()?;
            }
            match self.subscription.step(Wait::Never) {
                Poll::Ready(Some(Ok(SubscriptionMessage::Event(recorded)))) => {
                    let event = self.events.decode(&recorded).map_err(|err| Error::ProjectionFailed {
                        name: self.shared.name.clone(),
                        reason: err.to_string(),
                    })?;
                    self.shared.state.write().apply(event, &recorded);
                    self.applied_since_checkpoint += 1;
                    self.first_unsaved.get_or_insert_with(Instant::now);
                    self.advance(recorded.position() + 1, false);
                    if self.applied_since_checkpoint >= self.options.checkpoint_every_events {
                        self.checkpoint()?;
                    }
                }
                Poll::Ready(Some(Ok(SubscriptionMessage::CaughtUp))) => {
                    self.advance(self.subscription.current_position(), true);
                    self.checkpoint_if_dirty()?;
                }
                Poll::Ready(Some(Ok(_))) => self.advance(self.subscription.current_position(), false),
                Poll::Ready(Some(Err(err))) => return Err(err),
                Poll::Ready(None) => return Err(Error::Closed),
                Poll::Pending => {
                    // Live, and nothing new: publish where it stands, checkpoint if due, wait for a commit.
                    let position = self.subscription.current_position();
                    self.advance(position, true);
                    let due = self.first_unsaved.map(|first| first + self.options.checkpoint_every);
                    if due.is_some_and(|due| due <= Instant::now()) {
                        self.checkpoint()?;
                        continue;
                    }
                    if self.shared.stop.load(Ordering::SeqCst) || self.shared.rebuild.load(Ordering::SeqCst) {
                        continue;
                    }
                    let deadline = due.or_else(|| Instant::now().checked_add(Duration::from_secs(1)));
                    let _ = self.store.wait_past(position, deadline);
                }
            }
        }
    }

    fn advance(&self, position: u64, caught_up: bool) {
        let mut progress = self.shared.progress.lock();
        if position > progress.position || caught_up && !progress.caught_up {
            progress.position = progress.position.max(position);
            progress.caught_up |= caught_up;
            drop(progress);
            self.shared.changed.notify_all();
        }
    }

    fn start_over(&mut self) -> Result<()> {
        *self.shared.state.write() = P::default();
        {
            let mut progress = self.shared.progress.lock();
            progress.position = 0;
            progress.caught_up = false;
        }
        self.subscription = self.store.subscribe(SubscribeFrom::Start, P::filter())?;
        self.save(None)
    }

    fn checkpoint_if_dirty(&mut self) -> Result<()> {
        if self.applied_since_checkpoint > 0 {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Saves the state with the position it stands at.
    fn checkpoint(&mut self) -> Result<()> {
        let position = self.subscription.current_position();
        self.save(position.checked_sub(1))
    }

    fn save(&mut self, position: Option<u64>) -> Result<()> {
        let data = self.events.in_scope(|| encode_checkpoint(&*self.shared.state.read(), position))?;
        self.store.append(&self.stream, ExpectedVersion::Any, &[EventData::new(PROJECTION_EVENT_TYPE, data)])?;
        self.applied_since_checkpoint = 0;
        self.first_unsaved = None;
        Ok(())
    }
}

/// The checkpoint stream of the projection `name`.
fn projection_stream(name: &str) -> Result<String> {
    if name.is_empty() {
        return Err(Error::InvalidCheckpoint { reason: "a projection needs a name".into() });
    }
    let stream = format!("{PROJECTION_STREAM_PREFIX}{name}");
    crate::store::validate_stream_name(&stream)?;
    Ok(stream)
}

/// A checkpoint's data: format byte, position flag and position, codec id, state.
fn encode_checkpoint<P: Serialize>(state: &P, position: Option<u64>) -> Result<Vec<u8>> {
    let bytes = BincodeCodec
        .encode(state)
        .map_err(|err| Error::InvalidCheckpoint { reason: format!("the projection's state does not encode: {err}") })?;
    let mut data = Vec::with_capacity(11 + bytes.len());
    data.push(CHECKPOINT_FORMAT);
    data.push(u8::from(position.is_some()));
    data.extend_from_slice(&position.unwrap_or(0).to_le_bytes());
    data.push(BincodeCodec::ID);
    data.extend_from_slice(&bytes);
    Ok(data)
}

fn decode_checkpoint<P: DeserializeOwned>(event: &RecordedEvent) -> Result<(P, Option<u64>)> {
    let bad = |reason: String| Error::InvalidCheckpoint {
        reason: format!("projection checkpoint at position {} of {:?}: {reason}", event.position(), event.stream()),
    };
    let data = &event.data()[..];
    if event.event_type() != PROJECTION_EVENT_TYPE || data.len() < 11 {
        return Err(bad("not a projection checkpoint".into()));
    }
    if data[0] != CHECKPOINT_FORMAT {
        return Err(bad(format!("unknown checkpoint format {}", data[0])));
    }
    let position = match data[1] {
        0 => None,
        1 => Some(u64::from_le_bytes(data[2..10].try_into().expect("8 bytes"))),
        flag => return Err(bad(format!("bad position flag {flag}"))),
    };
    let state = decode_tagged(&BincodeCodec, data[10], &data[11..])
        .map_err(|err| bad(format!("the state does not decode: {err}")))?;
    Ok((state, position))
}
