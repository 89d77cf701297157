//! Aggregates: state folded from a stream's events, the snapshot policy, and an aggregate as loaded.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::event::Event;
use crate::snapshot::{SkippedSnapshot, SNAPSHOTS_KEPT_DEFAULT};

/// A consistency boundary rebuilt from its events: the state that commands check their rules against.
///
/// `apply` folds one event into the state and must not fail or check rules (the event happened). Commands
/// are ordinary methods that read the state and return the events to append, or a domain error; the
/// [`Repository`](crate::Repository) appends them. The state is serde-serializable so that it can be snapshotted.
///
/// ```
/// use annals::{Aggregate, Event};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Debug)]
/// enum CounterEvent { Incremented { by: u32 } }
/// impl Event for CounterEvent {}
///
/// #[derive(Serialize, Deserialize, Default)]
/// struct Counter { total: u64 }
///
/// impl Aggregate for Counter {
///     type Event = CounterEvent;
///     type Error = String;
///     const CATEGORY: &'static str = "counter";
///     fn apply(&mut self, CounterEvent::Incremented { by }: &CounterEvent) {
///         self.total += u64::from(*by);
///     }
/// }
///
/// impl Counter {
///     // A command: checks a rule, returns the events.
///     fn increment(&self, by: u32) -> Result<Vec<CounterEvent>, String> {
///         if self.total + u64::from(by) > 100 { return Err(format!("{} would pass 100", self.total + u64::from(by))) }
///         Ok(vec![CounterEvent::Incremented { by }])
///     }
/// }
///
/// let mut counter = Counter::default();
/// for event in counter.increment(60).unwrap() { counter.apply(&event) }
/// assert!(counter.increment(41).is_err());
/// assert_eq!(Counter::stream_name("a"), "counter-a");
/// ```
pub trait Aggregate: Default + Serialize + DeserializeOwned + 'static {
    /// The aggregate's events.
    type Event: Event;
    /// What a command returns when a rule refuses it.
    type Error: fmt::Debug + fmt::Display;
    /// The first part of the stream names: the aggregate `42` lives in stream `{CATEGORY}-42`.
    const CATEGORY: &'static str;
    /// The version of the state's encoding in snapshots. Raise it when the state's type changes: snapshots of
    /// another version are skipped (with a warning) and the state is rebuilt from the events. Default 1.
    const SNAPSHOT_VERSION: u32 = 1;

    /// Folds one event into the state.
    fn apply(&mut self, event: &Self::Event);

    /// The stream of the aggregate with this id. Default `{CATEGORY}-{id}`.
    fn stream_name(id: &str) -> String {
        format!("{}-{id}", Self::CATEGORY)
    }
}

/// When a [`Repository`](crate::Repository) writes snapshots, and how many it keeps.
///
/// ```
/// use annals::SnapshotPolicy;
/// let policy = SnapshotPolicy::every(10_000);
/// assert_eq!((policy.every_events, policy.keep_last), (10_000, 3));
/// assert_eq!(SnapshotPolicy::default(), SnapshotPolicy::every(100));
/// assert_eq!(SnapshotPolicy::NEVER.every_events, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// A save writes a snapshot (of the state after it) when the stream's length crosses a multiple of this
    /// many events; 0: never. Default 100.
    pub every_events: u64,
    /// Snapshots kept per stream, at least 1. Default [`SNAPSHOTS_KEPT_DEFAULT`] (3).
    pub keep_last: usize,
}

impl SnapshotPolicy {
    /// Never write snapshots (existing ones are still used by `load`).
    pub const NEVER: SnapshotPolicy = SnapshotPolicy { every_events: 0, keep_last: SNAPSHOTS_KEPT_DEFAULT };

    /// A snapshot every `events` events, keeping the default number.
    pub fn every(events: u64) -> Self {
        SnapshotPolicy { every_events: events, keep_last: SNAPSHOTS_KEPT_DEFAULT }
    }

    /// Whether a save that took the stream from `before` to `after` events should write a snapshot.
    pub(super) fn due(&self, before: u64, after: u64) -> bool {
        self.every_events > 0 && after / self.every_events > before / self.every_events
    }
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy::every(100)
    }
}

/// An aggregate as loaded from (or about to be created in) its stream: its id, its state, and the version it
/// was loaded at, which the next save expects.
///
/// A plain value, `Send` if the state is. Not shared between writers: two writers load their own.
///
/// ```
/// # use annals::{Aggregate, Event};
/// # #[derive(serde::Serialize, serde::Deserialize, Debug)] enum CounterEvent { Incremented { by: u32 } }
/// # impl Event for CounterEvent {}
/// # #[derive(serde::Serialize, serde::Deserialize, Default)] struct Counter { total: u64 }
/// # impl Aggregate for Counter {
/// #     type Event = CounterEvent; type Error = String; const CATEGORY: &'static str = "counter";
/// #     fn apply(&mut self, CounterEvent::Incremented { by }: &CounterEvent) { self.total += u64::from(*by) }
/// # }
/// use annals::{Loaded, Repository, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let repository = Repository::<Counter>::new(Store::open(dir.path())?);
/// let mut counter = Loaded::<Counter>::new("a");
/// assert_eq!((counter.stream(), counter.version()), ("counter-a", None));
/// repository.save(&mut counter, vec![CounterEvent::Incremented { by: 2 }, CounterEvent::Incremented { by: 3 }])?;
/// assert_eq!((counter.state().total, counter.version()), (5, Some(1)));
///
/// let again = repository.load("a")?;
/// assert_eq!((again.state().total, again.version(), again.events_replayed()), (5, Some(1), 2));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Loaded<A> {
    pub(super) id: String,
    pub(super) stream: String,
    pub(super) state: A,
    pub(super) version: Option<u64>,
    pub(super) snapshot_offset: Option<u64>,
    pub(super) events_replayed: u64,
    pub(super) skipped_snapshots: Vec<SkippedSnapshot>,
}

impl<A: Aggregate> Loaded<A> {
    /// A new aggregate, not stored yet: the default state, no version. Saving it creates its stream, and
    /// fails with `WrongExpectedVersion` if the stream exists already.
    pub fn new(id: impl fmt::Display) -> Self {
        let id = id.to_string();
        Loaded {
            stream: A::stream_name(&id),
            id,
            state: A::default(),
            version: None,
            snapshot_offset: None,
            events_replayed: 0,
            skipped_snapshots: Vec::new(),
        }
    }

    /// The aggregate's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The aggregate's stream.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The state.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// The state, owned.
    pub fn into_state(self) -> A {
        self.state
    }

    /// The offset of the last event in the state; `None` for an aggregate not stored yet. The next save
    /// appends with `ExpectedVersion::Exact` of it (or `NoStream`).
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// The offset of the snapshot the load started from; `None` if it replayed from offset 0.
    pub fn snapshot_offset(&self) -> Option<u64> {
        self.snapshot_offset
    }

    /// How many events the load replayed (after the snapshot, if any).
    pub fn events_replayed(&self) -> u64 {
        self.events_replayed
    }

    /// The snapshots the load did not trust, newest first, with why: each was also logged as a warning.
    pub fn skipped_snapshots(&self) -> &[SkippedSnapshot] {
        &self.skipped_snapshots
    }
}
