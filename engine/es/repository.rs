//! The repository: loads aggregates from their latest snapshot plus the events after it, and saves new
//! events with optimistic concurrency.

use std::fmt;
use std::path::Path;

use super::aggregate::{Aggregate, Loaded, SnapshotPolicy};
use super::erasure::Erasure;
use super::event::{EventCodec, EventError};
use crate::es::codec::{decode_tagged, BincodeCodec, Codec, CodecError};
use crate::snapshot::{SkipReason, SkippedSnapshot, SnapshotOptions};
use crate::{AppendResult, ExpectedVersion, Store, StreamAppend};

/// What a [`Repository::save`] did.
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
/// use annals::{Loaded, Repository, SnapshotPolicy, Store};
/// # let dir = tempfile::tempdir().unwrap();
/// let repository = Repository::<Counter>::new(Store::open(dir.path()).unwrap())
///     .with_snapshot_policy(SnapshotPolicy::every(2));
/// let mut counter = Loaded::new("b");
/// let saved = repository.save(&mut counter, vec![CounterEvent::Incremented { by: 1 }]).unwrap();
/// assert_eq!((saved.appended.map(|a| a.last_offset), saved.snapshot), (Some(0), None));
/// let saved = repository.save(&mut counter, vec![CounterEvent::Incremented { by: 1 }]).unwrap();
/// assert_eq!(saved.snapshot, Some(1), "the stream reached 2 events");
/// assert!(saved.snapshot_error.is_none());
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct Saved {
    /// Where the events landed; `None` when there were none to save.
    pub appended: Option<AppendResult>,
    /// The offset of the snapshot written after the append, if the policy asked for one and it was written.
    pub snapshot: Option<u64>,
    /// Why the snapshot the policy asked for was not written. The events are committed all the same, so this
    /// is never an error of the save (the next snapshot will be tried at the next multiple); it is also
    /// logged as a warning.
    pub snapshot_error: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// A repository's operation failed.
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
/// use annals::{Repository, RepositoryError, Store};
/// # let dir = tempfile::tempdir().unwrap();
/// let repository = Repository::<Counter>::new(Store::open(dir.path()).unwrap());
/// let missing = repository.load("nobody");
/// assert!(matches!(missing, Err(RepositoryError::NotFound { ref stream }) if stream == "counter-nobody"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepositoryError<E> {
    /// The aggregate's stream does not exist.
    #[error("aggregate stream {stream:?} does not exist")]
    NotFound {
        /// The stream looked for.
        stream: String,
    },
    /// The command was refused by a domain rule ([`Repository::execute`]).
    #[error("{0}")]
    Domain(E),
    /// The store failed; `WrongExpectedVersion` means another writer saved the aggregate since it was loaded
    /// (see [`is_conflict`](Self::is_conflict)): load it again and retry the command.
    #[error(transparent)]
    Store(#[from] crate::Error),
    /// An event could not be encoded or decoded.
    #[error(transparent)]
    Event(#[from] EventError),
}

impl<E> RepositoryError<E> {
    /// Whether another writer saved the aggregate since it was loaded (a `WrongExpectedVersion` from the
    /// store). Nothing was written.
    pub fn is_conflict(&self) -> bool {
        matches!(self, RepositoryError::Store(crate::Error::WrongExpectedVersion { .. }))
    }
}

/// Loads aggregates from their streams and saves their new events.
///
/// `load` starts from the latest trustworthy snapshot and replays only the events after it, so its cost is
/// the tail's, not the stream's. `save` appends with `ExpectedVersion::Exact` of the version loaded, so a
/// concurrent writer makes it fail with `WrongExpectedVersion`, never overwrite; then it writes a snapshot if
/// the [`SnapshotPolicy`] says so.
///
/// `Send + Sync`: share one across threads (by reference or in an `Arc`). Durability is the store's: a save
/// returns when its events are as durable as the store's `Durability` makes appends.
///
/// ```
/// use annals::{Aggregate, Event, Loaded, Repository, RepositoryError, Store};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Debug)]
/// enum LampEvent { SwitchedOn, SwitchedOff }
/// impl Event for LampEvent {}
///
/// #[derive(Serialize, Deserialize, Default)]
/// struct Lamp { on: bool, switches: u32 }
/// impl Aggregate for Lamp {
///     type Event = LampEvent;
///     type Error = &'static str;
///     const CATEGORY: &'static str = "lamp";
///     fn apply(&mut self, event: &LampEvent) {
///         self.on = matches!(event, LampEvent::SwitchedOn);
///         self.switches += 1;
///     }
/// }
/// impl Lamp {
///     fn switch_on(&self) -> Result<Vec<LampEvent>, &'static str> {
///         if self.on { Err("already on") } else { Ok(vec![LampEvent::SwitchedOn]) }
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let repository = Repository::<Lamp>::new(Store::open(dir.path())?);
/// repository.save(&mut Loaded::new(1), vec![LampEvent::SwitchedOff])?;
///
/// let lamp = repository.execute(1, |lamp| lamp.switch_on())?;
/// assert!(lamp.state().on);
/// let refused = repository.execute(1, |lamp| lamp.switch_on());
/// assert!(matches!(refused, Err(RepositoryError::Domain("already on"))));
///
/// // Two writers loaded version 1; the first save wins, the second is refused.
/// let (mut first, mut second) = (repository.load(1)?, repository.load(1)?);
/// repository.save(&mut first, vec![LampEvent::SwitchedOff])?;
/// let late = repository.save(&mut second, vec![LampEvent::SwitchedOff]);
/// assert!(late.is_err_and(|error| error.is_conflict()));
/// # Ok(())
/// # }
/// ```
pub struct Repository<A: Aggregate, C: Codec = BincodeCodec> {
    store: Store,
    events: EventCodec<A::Event, C>,
    policy: SnapshotPolicy,
}

impl<A: Aggregate> Repository<A> {
    /// A repository over `store` that writes bincode, with the default [`SnapshotPolicy`].
    pub fn new(store: Store) -> Self {
        Repository::with_codec(store, BincodeCodec)
    }
}

impl<A: Aggregate, C: Codec> Repository<A, C> {
    /// A repository that writes events and snapshots with `codec` (reads follow each payload's codec id).
    pub fn with_codec(store: Store, codec: C) -> Self {
        Repository { store, events: EventCodec::new(codec), policy: SnapshotPolicy::default() }
    }

    /// Seals and opens the [`Personal`](crate::Personal) fields of the aggregate's events, and of its state in
    /// snapshots, with `erasure`'s keys (see [`EventCodec::with_erasure`]). After a subject is forgotten its
    /// fields load as forgotten, from events and snapshots alike.
    ///
    /// ```
    /// use annals::{Aggregate, Erasure, Event, Loaded, Personal, Repository, Store};
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Serialize, Deserialize, Debug)]
    /// enum PatientEvent { Admitted { name: Personal<String> } }
    /// impl Event for PatientEvent {}
    ///
    /// #[derive(Serialize, Deserialize, Default)]
    /// struct Patient { name: Option<Personal<String>> }
    /// impl Aggregate for Patient {
    ///     type Event = PatientEvent;
    ///     type Error = String;
    ///     const CATEGORY: &'static str = "patient";
    ///     fn apply(&mut self, PatientEvent::Admitted { name }: &PatientEvent) { self.name = Some(name.clone()) }
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let erasure = Erasure::open(&store)?;
    /// let patients = Repository::<Patient>::new(store).with_erasure(erasure.clone());
    /// let admitted = PatientEvent::Admitted { name: Personal::new("patient-1", "Ada".into()) };
    /// patients.save(&mut Loaded::new(1), vec![admitted])?;
    ///
    /// erasure.forget("patient-1")?;
    /// let patient = patients.load(1)?; // still loads: the name reads as forgotten
    /// assert!(patient.state().name.as_ref().is_some_and(Personal::is_forgotten));
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_erasure(mut self, erasure: Erasure) -> Self {
        self.events.erasure = Some(erasure);
        self
    }

    /// Sets when snapshots are written.
    ///
    /// # Panics
    /// If `policy.keep_last` is 0.
    pub fn with_snapshot_policy(mut self, policy: SnapshotPolicy) -> Self {
        assert!(policy.keep_last >= 1, "SnapshotPolicy::keep_last must be at least 1");
        self.policy = policy;
        self
    }

    /// The store underneath.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The event codec, for reading the aggregate's events outside the repository (projections, audits).
    pub fn events(&self) -> &EventCodec<A::Event, C> {
        &self.events
    }

    /// Loads the aggregate `id`: the latest trustworthy snapshot, then the events after it.
    ///
    /// Errors: `NotFound` if its stream does not exist; `Event` if an event does not decode; `Store`.
    pub fn load(&self, id: impl fmt::Display) -> Result<Loaded<A>, RepositoryError<A::Error>> {
        self.load_inner(id.to_string(), true)
    }

    /// Loads the aggregate `id` from its events alone, ignoring snapshots: what `load` would return without
    /// them, at the cost of the whole stream. For checks and measurements.
    pub fn load_from_events(&self, id: impl fmt::Display) -> Result<Loaded<A>, RepositoryError<A::Error>> {
        self.load_inner(id.to_string(), false)
    }

    fn load_inner(&self, id: String, use_snapshots: bool) -> Result<Loaded<A>, RepositoryError<A::Error>> {
        let mut loaded = Loaded::<A>::new(id);
        if self.store.stream_version(&loaded.stream).is_none() {
            return Err(RepositoryError::NotFound { stream: loaded.stream });
        }
        if use_snapshots {
            let search = self.store.find_latest_snapshot(&loaded.stream)?;
            loaded.skipped_snapshots = search.skipped().to_vec();
            let path = search.snapshot_path().map(Path::to_path_buf).unwrap_or_default();
            if let Some(snapshot) = search.into_snapshot() {
                let state = if snapshot.schema_version() != A::SNAPSHOT_VERSION {
                    Err(SkipReason::SchemaVersion { found: snapshot.schema_version(), expected: A::SNAPSHOT_VERSION })
                } else {
                    self.decode_state(snapshot.state()).map_err(|error| SkipReason::Undecodable(error.to_string()))
                };
                match state {
                    Ok(state) => {
                        loaded.state = state;
                        loaded.version = Some(snapshot.offset());
                        loaded.snapshot_offset = Some(snapshot.offset());
                    }
                    Err(reason) => {
                        let skipped = SkippedSnapshot { path, reason };
                        ::log::warn!("annals: {skipped}");
                        loaded.skipped_snapshots.push(skipped);
                    }
                }
            }
        }
        let from = loaded.version.map_or(0, |version| version + 1);
        for recorded in self.store.read_stream(&loaded.stream, from)? {
            let recorded = recorded?;
            let event = self.events.decode(&recorded)?;
            loaded.state.apply(&event);
            loaded.version = Some(recorded.offset());
            loaded.events_replayed += 1;
        }
        Ok(loaded)
    }

    /// Appends `events` to the aggregate's stream if nobody else has since it was loaded
    /// (`ExpectedVersion::Exact` of its version, `NoStream` for a new one), applies them to the state, and
    /// writes a snapshot if the policy says so. No events: nothing happens.
    ///
    /// Errors: `Store(WrongExpectedVersion)` on a concurrent write ([`RepositoryError::is_conflict`]), and
    /// other store errors; `Event` if an event does not encode. On error nothing was appended and `loaded`
    /// is unchanged. A failed snapshot is not an error: see [`Saved::snapshot_error`].
    pub fn save(&self, loaded: &mut Loaded<A>, events: Vec<A::Event>) -> Result<Saved, RepositoryError<A::Error>> {
        let mut saved = Saved { appended: None, snapshot: None, snapshot_error: None };
        if events.is_empty() {
            return Ok(saved);
        }
        let data = events.iter().map(|event| self.events.encode(event)).collect::<Result<Vec<_>, _>>()?;
        let expected = loaded.version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let appended = self.store.append(&loaded.stream, expected, &data)?;
        assert_eq!(
            appended.first_offset,
            loaded.version.map_or(0, |version| version + 1),
            "an exact-version append lands right after it"
        );
        for event in &events {
            loaded.state.apply(event);
        }
        loaded.version = Some(appended.last_offset);
        saved.appended = Some(appended);
        if self.policy.due(appended.first_offset, appended.last_offset + 1) {
            match self.write_snapshot(loaded) {
                Ok(()) => saved.snapshot = Some(appended.last_offset),
                Err(error) => {
                    ::log::warn!(
                        "annals: snapshot of {:?} at offset {} not written: {error}",
                        loaded.stream,
                        appended.last_offset
                    );
                    saved.snapshot_error = Some(error);
                }
            }
        }
        Ok(saved)
    }

    /// The [`StreamAppend`] that [`save`](Self::save) would make of `events`: the events encoded, expecting
    /// the loaded version. For changing several aggregates in one atomic [`Store::append_multi`] (a transfer
    /// between two accounts). `loaded` is not changed and no snapshot is written: load the aggregates again
    /// to see their new state.
    pub fn stream_append(&self, loaded: &Loaded<A>, events: &[A::Event]) -> Result<StreamAppend, EventError> {
        Ok(StreamAppend {
            stream: loaded.stream.clone(),
            expected: loaded.version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact),
            events: events.iter().map(|event| self.events.encode(event)).collect::<Result<_, _>>()?,
        })
    }

    /// Loads the aggregate `id`, runs `command` on its state, and saves the events it returns.
    ///
    /// Errors: `Domain` if the command refuses, and those of [`load`](Self::load) and [`save`](Self::save).
    /// A conflict is returned, not retried: whether to retry a command on newer state is the caller's call.
    pub fn execute(
        &self,
        id: impl fmt::Display,
        command: impl FnOnce(&A) -> Result<Vec<A::Event>, A::Error>,
    ) -> Result<Loaded<A>, RepositoryError<A::Error>> {
        let mut loaded = self.load(id)?;
        let events = command(loaded.state()).map_err(RepositoryError::Domain)?;
        self.save(&mut loaded, events)?;
        Ok(loaded)
    }

    /// Writes a snapshot of `loaded` at its version now, whatever the policy says.
    ///
    /// Errors: the state does not encode, or the store cannot write the file.
    pub fn write_snapshot(&self, loaded: &Loaded<A>) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let Some(version) = loaded.version else {
            return Err("an aggregate that was never saved has no snapshot".into());
        };
        let mut state = vec![C::ID];
        state.extend(self.events.in_scope(|| self.events.codec().encode(&loaded.state))?);
        let options = SnapshotOptions { schema_version: A::SNAPSHOT_VERSION, keep_last: self.policy.keep_last };
        self.store.write_snapshot_with(&loaded.stream, version, &state, options)?;
        Ok(())
    }

    fn decode_state(&self, state: &[u8]) -> Result<A, CodecError> {
        let Some((&codec_id, bytes)) = state.split_first() else {
            return Err(CodecError::Decode {
                codec: "snapshot",
                cause: "the state is empty, without a codec id".into(),
            });
        };
        self.events.in_scope_for_one_read(|| decode_tagged(self.events.codec(), codec_id, bytes))
    }
}
