//! The event-sourcing layer: typed events with a name and a schema version, upcasters that turn old versions
//! into the current one on read, aggregates rebuilt from their events, and a repository that loads them from
//! the latest snapshot plus the tail of their stream and saves new events with optimistic concurrency.
//!
//! Everything here is built on the public [`Store`] API and the snapshot files; nothing knows the log's bytes.
//!
//! # How a typed event is stored
//!
//! - event type: the event's [`name`](Event::name), followed by `.v{n}` when its schema version `n` is 2 or
//!   more (`MoneyDeposited`, `MoneyDeposited.v2`). A type that never changed carries no suffix, and a stream
//!   written before its type had versions reads as version 1. [`split_event_type`] parses it.
//! - codec id: the [`Codec`] that wrote the payload ([`EventData::with_codec`]), so a reader decodes with that
//!   codec, whatever it writes with.
//! - payload: the whole event value in that codec.
//!
//! A snapshot's state is the codec id (one byte) followed by the aggregate's state in that codec, written with
//! the aggregate's [`SNAPSHOT_VERSION`](Aggregate::SNAPSHOT_VERSION) as the snapshot's schema version.

pub(crate) mod codec;

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::es::codec::{decode_tagged, BincodeCodec, Codec, CodecError};
use crate::snapshot::{SkipReason, SkippedSnapshot, SnapshotOptions, SNAPSHOTS_KEPT_DEFAULT};
use crate::{AppendResult, EventData, ExpectedVersion, RecordedEvent, Store, StreamAppend};

/// A typed domain event: a serde type (usually an enum with one variant per event type) with a schema
/// version and the upcasters that read its older versions.
///
/// The defaults suit an externally tagged enum (serde's default representation): each variant's serde name
/// (its Rust name, or its `#[serde(rename)]`) is the stored event type, and the schema version is 1.
///
/// ```
/// use annals::Event;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// enum AccountEvent {
///     AccountOpened { owner: String },
///     #[serde(rename = "MoneyDeposited")]
///     Deposited { amount: i64 },
/// }
/// impl Event for AccountEvent {}
///
/// assert_eq!(AccountEvent::AccountOpened { owner: "Ada".into() }.name(), "AccountOpened");
/// assert_eq!(AccountEvent::Deposited { amount: 5 }.name(), "MoneyDeposited");
/// ```
pub trait Event: Serialize + DeserializeOwned + 'static {
    /// The version of this type's encoding. Raise it when a change would stop old payloads from decoding
    /// (and register an upcaster from the old version). Default 1.
    const SCHEMA_VERSION: u32 = 1;

    /// The event type stored with this value. Default: the serde name of the enum variant (or of the struct).
    ///
    /// # Panics
    /// The default panics for a value that serde does not serialize as a variant or a struct; implement the
    /// method for such a type. A name must not end in `.v` and digits, which would read as a version.
    fn name(&self) -> &'static str {
        variant_name::of(self).unwrap_or_else(|| {
            panic!(
                "Event::name: {} is not serialized as an enum variant or a struct; implement Event::name",
                std::any::type_name::<Self>()
            )
        })
    }

    /// The upcasters from every older schema version still found in streams to
    /// [`SCHEMA_VERSION`](Self::SCHEMA_VERSION). Default none. Called once per [`EventCodec`].
    fn upcasters<C: Codec>() -> Upcasters<Self, C> {
        Upcasters::new()
    }
}

/// Splits a stored event type into the event's name and its schema version (see the module documentation).
///
/// ```
/// assert_eq!(annals::split_event_type("MoneyDeposited"), ("MoneyDeposited", 1));
/// assert_eq!(annals::split_event_type("MoneyDeposited.v3"), ("MoneyDeposited", 3));
/// assert_eq!(annals::split_event_type("Odd.v1"), ("Odd.v1", 1), "version 1 is never written as a suffix");
/// ```
pub fn split_event_type(stored: &str) -> (&str, u32) {
    if let Some((name, digits)) = stored.rsplit_once(".v") {
        if !digits.is_empty() && !digits.starts_with('0') && digits.bytes().all(|byte| byte.is_ascii_digit()) {
            if let Ok(version @ 2..) = digits.parse::<u32>() {
                return (name, version);
            }
        }
    }
    (stored, 1)
}

fn stored_event_type(name: &str, version: u32) -> Cow<'_, str> {
    if version == 1 {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(format!("{name}.v{version}"))
    }
}

type ErasedDecode<C> = Box<dyn Fn(&C, u8, &[u8]) -> Result<Box<dyn Any>, CodecError> + Send + Sync>;
type ErasedConvert = Box<dyn Fn(Box<dyn Any>) -> Box<dyn Any> + Send + Sync>;

/// One step of an upcasting chain: decodes a payload of one version and converts it to the next.
struct Step<C> {
    decode: ErasedDecode<C>,
    convert: ErasedConvert,
    input: (TypeId, &'static str),
    output: (TypeId, &'static str),
}

/// The chain of conversions that turns events stored at an older schema version of `E` into today's `E`:
/// version 1 → 2 → 3 → … → [`E::SCHEMA_VERSION`](Event::SCHEMA_VERSION), one step per version.
///
/// Each step names the Rust type that the old version decodes as (a copy of the type as it was then, kept
/// for this purpose) and converts it into the next version's type; the last step produces `E` itself. An
/// event is decoded once, with the codec that wrote it, and then converted step by step in memory. The chain
/// is checked when an [`EventCodec`] is built: a gap, a type that does not connect, or a last step that does
/// not produce `E` panics there, at start-up, rather than on the first old event.
///
/// `Send + Sync`; built once per [`EventCodec`].
///
/// ```
/// use annals::{BincodeCodec, Codec, Event, EventCodec, Upcasters};
/// use serde::{Deserialize, Serialize};
///
/// // Version 1 had no currency; version 2 added it.
/// #[derive(Serialize, Deserialize)]
/// enum PaymentV1 { Paid { cents: i64 } }
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// enum Payment { Paid { cents: i64, currency: String } }
///
/// impl Event for Payment {
///     const SCHEMA_VERSION: u32 = 2;
///     fn upcasters<C: Codec>() -> Upcasters<Self, C> {
///         Upcasters::new().step(1, |PaymentV1::Paid { cents }| Payment::Paid { cents, currency: "EUR".into() })
///     }
/// }
///
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = annals::Store::open(dir.path()).unwrap();
/// // An event written by the old code, by hand here:
/// let old = annals::EventData::new("Paid", BincodeCodec.encode(&PaymentV1::Paid { cents: 250 }).unwrap())
///     .with_codec(BincodeCodec::ID);
/// store.append("payments", annals::ExpectedVersion::Any, &[old]).unwrap();
///
/// let events = EventCodec::<Payment>::default();
/// let recorded = store.read_stream("payments", 0).unwrap().next().unwrap().unwrap();
/// assert_eq!(events.decode(&recorded).unwrap(), Payment::Paid { cents: 250, currency: "EUR".into() });
/// ```
pub struct Upcasters<E, C = BincodeCodec> {
    steps: BTreeMap<u32, Step<C>>,
    _event: PhantomData<fn() -> E>,
}

impl<E: Event, C: Codec> Default for Upcasters<E, C> {
    fn default() -> Self {
        Upcasters { steps: BTreeMap::new(), _event: PhantomData }
    }
}

impl<E, C> fmt::Debug for Upcasters<E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.steps.iter().map(|(version, step)| (version, format!("{} -> {}", step.input.1, step.output.1))),
            )
            .finish()
    }
}

impl<E: Event, C: Codec> Upcasters<E, C> {
    /// No upcasters: every stored event must be at the current version.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the step from `from_version` to `from_version + 1`: events stored at `from_version` decode as
    /// `Old`, and `convert` turns an `Old` into the next version's type (`E` for the last step).
    ///
    /// # Panics
    /// If `from_version` is 0 or not below `E::SCHEMA_VERSION`, or a step from it exists already.
    pub fn step<Old, New>(mut self, from_version: u32, convert: impl Fn(Old) -> New + Send + Sync + 'static) -> Self
    where
        Old: DeserializeOwned + 'static,
        New: 'static,
    {
        assert!(
            (1..E::SCHEMA_VERSION).contains(&from_version),
            "an upcaster of {} from version {from_version}: versions run from 1 to SCHEMA_VERSION {}",
            std::any::type_name::<E>(),
            E::SCHEMA_VERSION
        );
        let step = Step {
            decode: Box::new(|codec: &C, codec_id: u8, bytes: &[u8]| {
                decode_tagged::<C, Old>(codec, codec_id, bytes).map(|old| Box::new(old) as Box<dyn Any>)
            }),
            convert: Box::new(move |value: Box<dyn Any>| {
                let old = value.downcast::<Old>().expect("the chain's types were checked when it was built");
                Box::new(convert(*old)) as Box<dyn Any>
            }),
            input: (TypeId::of::<Old>(), std::any::type_name::<Old>()),
            output: (TypeId::of::<New>(), std::any::type_name::<New>()),
        };
        let previous = self.steps.insert(from_version, step);
        assert!(previous.is_none(), "two upcasters of {} from version {from_version}", std::any::type_name::<E>());
        self
    }

    /// Checks that the steps form one chain from the oldest registered version to `E`.
    fn check_chain(&self) {
        let event = std::any::type_name::<E>();
        let mut steps = self.steps.iter().peekable();
        while let Some((version, step)) = steps.next() {
            match steps.peek() {
                Some((next_version, next)) => {
                    assert!(
                        **next_version == version + 1,
                        "upcasters of {event}: no step from version {} (there are steps from {version} and \
                         {next_version})",
                        version + 1
                    );
                    assert!(
                        step.output.0 == next.input.0,
                        "upcasters of {event}: the step from version {version} produces {} but the step from \
                         version {next_version} takes {}",
                        step.output.1,
                        next.input.1
                    );
                }
                None => {
                    assert!(
                        version + 1 == E::SCHEMA_VERSION,
                        "upcasters of {event}: the last step is from version {version}, but SCHEMA_VERSION is {} \
                         (a step from version {} is missing)",
                        E::SCHEMA_VERSION,
                        version + 1
                    );
                    assert!(
                        step.output.0 == TypeId::of::<E>(),
                        "upcasters of {event}: the last step produces {}, not {event}",
                        step.output.1
                    );
                }
            }
        }
    }

    /// Decodes an event stored at `version` and upcasts it to `E`.
    fn upcast(&self, codec: &C, codec_id: u8, version: u32, bytes: &[u8]) -> Result<E, UpcastError> {
        let oldest = self.steps.first_key_value().map_or(E::SCHEMA_VERSION, |(oldest, _)| *oldest);
        if version < oldest {
            return Err(UpcastError::NoUpcaster { oldest });
        }
        let mut value = (self.steps[&version].decode)(codec, codec_id, bytes).map_err(UpcastError::Codec)?;
        for step in self.steps.range(version..).map(|(_, step)| step) {
            value = (step.convert)(value);
        }
        Ok(*value.downcast::<E>().expect("the chain ends in E: checked when it was built"))
    }
}

enum UpcastError {
    NoUpcaster { oldest: u32 },
    Codec(CodecError),
}

/// Turns typed events into [`EventData`] (name, schema version, codec id, payload) and recorded events back
/// into typed events, upcasting old versions. The typed layer's single door to the payload bytes.
///
/// `C` is the codec that writes; reading follows each event's codec id. `Send + Sync`: share one per type.
///
/// ```
/// use annals::{Event, EventCodec, ExpectedVersion, Store};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// enum OrderEvent { OrderPlaced { order: u64, cents: i64 }, OrderShipped { order: u64 } }
/// impl Event for OrderEvent {}
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// let events = EventCodec::<OrderEvent>::default(); // bincode; EventCodec::<_, JsonCodec>::default() for JSON
/// let placed = events.encode(&OrderEvent::OrderPlaced { order: 7, cents: 1999 })?;
/// assert_eq!(placed.event_type(), "OrderPlaced");
/// store.append("orders", ExpectedVersion::Any, &[placed])?;
///
/// for recorded in store.read_stream("orders", 0)? {
///     let event = events.decode(&recorded?)?;
///     assert_eq!(event, OrderEvent::OrderPlaced { order: 7, cents: 1999 });
/// }
/// # Ok(())
/// # }
/// ```
pub struct EventCodec<E: Event, C: Codec = BincodeCodec> {
    codec: C,
    upcasters: Upcasters<E, C>,
}

impl<E: Event, C: Codec + Default> Default for EventCodec<E, C> {
    fn default() -> Self {
        Self::new(C::default())
    }
}

impl<E: Event, C: Codec + fmt::Debug> fmt::Debug for EventCodec<E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventCodec").field("codec", &self.codec).field("upcasters", &self.upcasters).finish()
    }
}

impl<E: Event, C: Codec> EventCodec<E, C> {
    /// Writes with `codec`, reads with whatever codec wrote each event, upcasting with `E::upcasters()`.
    ///
    /// # Panics
    /// If `E::upcasters()` is not one unbroken chain ending in `E` (see [`Upcasters`]).
    pub fn new(codec: C) -> Self {
        let upcasters = E::upcasters::<C>();
        upcasters.check_chain();
        EventCodec { codec, upcasters }
    }

    /// The codec that writes.
    pub fn codec(&self) -> &C {
        &self.codec
    }

    /// Encodes `event` as an [`EventData`] ready to append, tagged with its name, version and codec.
    pub fn encode(&self, event: &E) -> Result<EventData, EventError> {
        let name = event.name();
        debug_assert_eq!(split_event_type(name), (name, 1), "an event name must not end in .v<digits>");
        let data = self.codec.encode(event).map_err(|source| EventError::Encode { event_type: name, source })?;
        Ok(EventData::new(stored_event_type(name, E::SCHEMA_VERSION), data).with_codec(C::ID))
    }

    /// Decodes a recorded event with the codec that wrote it, upcasting an old version.
    ///
    /// Errors: the payload is not an `E` (`Decode`), its version is newer than this build's
    /// (`NewerVersion`) or older than the oldest upcaster (`NoUpcaster`), or it decodes as an event whose
    /// name differs from the stored type (`TypeMismatch`).
    pub fn decode(&self, recorded: &RecordedEvent) -> Result<E, EventError> {
        let stored = recorded.event_type();
        let (name, version) = split_event_type(stored);
        let location = || (recorded.stream().to_owned(), recorded.offset(), stored.to_owned());
        if version > E::SCHEMA_VERSION {
            let (stream, offset, event_type) = location();
            return Err(EventError::NewerVersion { stream, offset, event_type, supported: E::SCHEMA_VERSION });
        }
        if version < E::SCHEMA_VERSION {
            // An upcast may rename: the result's name is not compared with the stored one.
            return self.upcasters.upcast(&self.codec, recorded.codec(), version, recorded.data()).map_err(|error| {
                let (stream, offset, event_type) = location();
                match error {
                    UpcastError::NoUpcaster { oldest } => EventError::NoUpcaster { stream, offset, event_type, oldest },
                    UpcastError::Codec(source) => EventError::Decode { stream, offset, event_type, source },
                }
            });
        }
        let event: E = decode_tagged(&self.codec, recorded.codec(), recorded.data()).map_err(|source| {
            let (stream, offset, event_type) = location();
            EventError::Decode { stream, offset, event_type, source }
        })?;
        if event.name() != name {
            let (stream, offset, event_type) = location();
            return Err(EventError::TypeMismatch { stream, offset, event_type, decoded: event.name() });
        }
        Ok(event)
    }
}

/// A typed event could not be encoded or decoded.
///
/// ```
/// use annals::{Event, EventCodec, EventData, EventError, ExpectedVersion, Store};
/// # #[derive(serde::Serialize, serde::Deserialize, Debug)] enum Ping { Ping }
/// # impl Event for Ping {}
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path()).unwrap();
/// // Raw bytes with no codec id cannot be read as a typed event.
/// store.append("pings", ExpectedVersion::Any, &[EventData::new("Ping", &b"?"[..])]).unwrap();
/// let recorded = store.read_stream("pings", 0).unwrap().next().unwrap().unwrap();
/// let error = EventCodec::<Ping>::default().decode(&recorded).unwrap_err();
/// assert!(matches!(error, EventError::Decode { offset: 0, .. }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The codec refused to encode the event.
    #[error("could not encode a {event_type} event: {source}")]
    Encode {
        /// The event's name.
        event_type: &'static str,
        /// The codec's error.
        source: CodecError,
    },
    /// The payload is not a value of the event type (or of its old version's type) in the codec that wrote it.
    #[error("event {offset} of stream {stream:?} ({event_type}) does not decode: {source}")]
    Decode {
        /// The stream.
        stream: String,
        /// The event's offset.
        offset: u64,
        /// The stored event type.
        event_type: String,
        /// The codec's error.
        source: CodecError,
    },
    /// The event was written by newer code, at a schema version this build does not know.
    #[error(
        "event {offset} of stream {stream:?} has type {event_type}, a schema version newer than this build's \
         {supported}: upgrade the reader"
    )]
    NewerVersion {
        /// The stream.
        stream: String,
        /// The event's offset.
        offset: u64,
        /// The stored event type.
        event_type: String,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The event's schema version is older than every registered upcaster.
    #[error(
        "event {offset} of stream {stream:?} has type {event_type}, but upcasters start at version {oldest}: \
         register the missing steps in Event::upcasters"
    )]
    NoUpcaster {
        /// The stream.
        stream: String,
        /// The event's offset.
        offset: u64,
        /// The stored event type.
        event_type: String,
        /// The oldest version that can be read.
        oldest: u32,
    },
    /// The payload decodes, but as an event of another name than the stored type.
    #[error("event {offset} of stream {stream:?} is stored as {event_type} but decodes as a {decoded} event")]
    TypeMismatch {
        /// The stream.
        stream: String,
        /// The event's offset.
        offset: u64,
        /// The stored event type.
        event_type: String,
        /// The name of the decoded event.
        decoded: &'static str,
    },
}

/// A consistency boundary rebuilt from its events: the state that commands check their rules against.
///
/// `apply` folds one event into the state and must not fail or check rules (the event happened). Commands
/// are ordinary methods that read the state and return the events to append, or a domain error; the
/// [`Repository`] appends them. The state is serde-serializable so that it can be snapshotted.
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

/// When a [`Repository`] writes snapshots, and how many it keeps.
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
    fn due(&self, before: u64, after: u64) -> bool {
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
    id: String,
    stream: String,
    state: A,
    version: Option<u64>,
    snapshot_offset: Option<u64>,
    events_replayed: u64,
    skipped_snapshots: Vec<SkippedSnapshot>,
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
        state.extend(self.events.codec().encode(&loaded.state)?);
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
        decode_tagged(self.events.codec(), codec_id, bytes)
    }
}

/// Finds the serde name of an enum variant or struct by serializing into a serializer that stops there.
mod variant_name {
    use std::fmt;

    use serde::ser::{self, Impossible, Serialize};

    /// The variant (or struct) name `value` serializes with; `None` for anything else.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Option<&'static str> {
        value.serialize(NameOnly).ok()
    }

    struct NameOnly;

    #[derive(Debug)]
    struct NotNamed;

    impl fmt::Display for NotNamed {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("not an enum variant or a struct")
        }
    }

    impl std::error::Error for NotNamed {}

    impl ser::Error for NotNamed {
        fn custom<T: fmt::Display>(_: T) -> Self {
            NotNamed
        }
    }

    /// Ignores the fields of a compound value and ends with its name.
    struct Named(&'static str);

    macro_rules! not_named {
        ($($method:ident($($ty:ty),*)),* $(,)?) => {
            $(fn $method(self, $(_: $ty),*) -> Result<&'static str, NotNamed> { Err(NotNamed) })*
        };
    }

    impl ser::Serializer for NameOnly {
        type Ok = &'static str;
        type Error = NotNamed;
        type SerializeSeq = Impossible<&'static str, NotNamed>;
        type SerializeTuple = Impossible<&'static str, NotNamed>;
        type SerializeTupleStruct = Named;
        type SerializeTupleVariant = Named;
        type SerializeMap = Impossible<&'static str, NotNamed>;
        type SerializeStruct = Named;
        type SerializeStructVariant = Named;

        not_named!(
            serialize_bool(bool),
            serialize_i8(i8),
            serialize_i16(i16),
            serialize_i32(i32),
            serialize_i64(i64),
            serialize_u8(u8),
            serialize_u16(u16),
            serialize_u32(u32),
            serialize_u64(u64),
            serialize_f32(f32),
            serialize_f64(f64),
            serialize_char(char),
            serialize_str(&str),
            serialize_bytes(&[u8]),
            serialize_none(),
            serialize_unit(),
        );

        fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<&'static str, NotNamed> {
            Err(NotNamed)
        }

        fn serialize_unit_struct(self, name: &'static str) -> Result<&'static str, NotNamed> {
            Ok(name)
        }

        fn serialize_unit_variant(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
        ) -> Result<&'static str, NotNamed> {
            Ok(variant)
        }

        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            name: &'static str,
            _: &T,
        ) -> Result<&'static str, NotNamed> {
            Ok(name)
        }

        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
            _: &T,
        ) -> Result<&'static str, NotNamed> {
            Ok(variant)
        }

        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotNamed> {
            Err(NotNamed)
        }

        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotNamed> {
            Err(NotNamed)
        }

        fn serialize_tuple_struct(self, name: &'static str, _: usize) -> Result<Named, NotNamed> {
            Ok(Named(name))
        }

        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
            _: usize,
        ) -> Result<Named, NotNamed> {
            Ok(Named(variant))
        }

        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotNamed> {
            Err(NotNamed)
        }

        fn serialize_struct(self, name: &'static str, _: usize) -> Result<Named, NotNamed> {
            Ok(Named(name))
        }

        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
            _: usize,
        ) -> Result<Named, NotNamed> {
            Ok(Named(variant))
        }
    }

    impl ser::SerializeTupleStruct for Named {
        type Ok = &'static str;
        type Error = NotNamed;
        fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), NotNamed> {
            Ok(())
        }
        fn end(self) -> Result<&'static str, NotNamed> {
            Ok(self.0)
        }
    }

    impl ser::SerializeTupleVariant for Named {
        type Ok = &'static str;
        type Error = NotNamed;
        fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), NotNamed> {
            Ok(())
        }
        fn end(self) -> Result<&'static str, NotNamed> {
            Ok(self.0)
        }
    }

    impl ser::SerializeStruct for Named {
        type Ok = &'static str;
        type Error = NotNamed;
        fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, _: &T) -> Result<(), NotNamed> {
            Ok(())
        }
        fn end(self) -> Result<&'static str, NotNamed> {
            Ok(self.0)
        }
    }

    impl ser::SerializeStructVariant for Named {
        type Ok = &'static str;
        type Error = NotNamed;
        fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, _: &T) -> Result<(), NotNamed> {
            Ok(())
        }
        fn end(self) -> Result<&'static str, NotNamed> {
            Ok(self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Plain {
        a: u8,
    }

    #[derive(Serialize, Deserialize)]
    struct Newtype(u8);

    #[derive(Serialize, Deserialize)]
    enum Every {
        Unit,
        Newtype(u8),
        Tuple(u8, u8),
        Struct {
            a: u8,
        },
        #[serde(rename = "Renamed")]
        Other,
    }

    #[test]
    fn names_come_from_serde() {
        assert_eq!(variant_name::of(&Plain { a: 1 }), Some("Plain"));
        assert_eq!(variant_name::of(&Newtype(1)), Some("Newtype"));
        assert_eq!(variant_name::of(&Every::Unit), Some("Unit"));
        assert_eq!(variant_name::of(&Every::Newtype(1)), Some("Newtype"));
        assert_eq!(variant_name::of(&Every::Tuple(1, 2)), Some("Tuple"));
        assert_eq!(variant_name::of(&Every::Struct { a: 1 }), Some("Struct"));
        assert_eq!(variant_name::of(&Every::Other), Some("Renamed"));
        assert_eq!(variant_name::of(&7u8), None);
        assert_eq!(variant_name::of("text"), None);
    }

    #[test]
    fn stored_event_types_round_trip() {
        for (name, version) in [("A", 1), ("MoneyDeposited", 2), ("x.v", 17), ("a.v2.b", u32::MAX)] {
            let stored = stored_event_type(name, version);
            assert_eq!(split_event_type(&stored), (name, version), "{stored}");
        }
        for odd in ["A.v", "A.v0", "A.v02", "A.v1", "A.vx", "A.v99999999999"] {
            assert_eq!(split_event_type(odd), (odd, 1));
        }
    }

    impl Event for Every {}

    #[derive(Serialize, Deserialize, Default)]
    struct Total(i64);

    impl Aggregate for Total {
        type Event = Every;
        type Error = String;
        const CATEGORY: &'static str = "total";
        fn apply(&mut self, _: &Every) {
            self.0 += 1;
        }
    }

    #[test]
    fn the_typed_layer_can_be_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Repository<Total>>();
        send_sync::<EventCodec<Every>>();
        send_sync::<Upcasters<Every>>();
        send_sync::<crate::Snapshot>();
    }

    #[test]
    fn the_policy_snapshots_when_a_multiple_is_crossed() {
        let policy = SnapshotPolicy::every(10);
        assert!(!policy.due(0, 9));
        assert!(policy.due(9, 10));
        assert!(policy.due(5, 25));
        assert!(!policy.due(10, 19));
        assert!(!SnapshotPolicy::NEVER.due(0, 1_000));
    }
}
