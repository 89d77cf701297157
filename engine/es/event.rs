//! Typed events: their stored names and schema versions, the upcasters that read old versions, and the
//! codec that turns them into [`EventData`] and back.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::es::codec::{decode_tagged, BincodeCodec, Codec, CodecError};
use crate::es::erasure::Erasure;
use crate::{EventData, RecordedEvent};

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

pub(super) fn stored_event_type(name: &str, version: u32) -> Cow<'_, str> {
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
    /// The key store that [`Personal`](crate::Personal) fields are sealed and opened with, if any.
    pub(super) erasure: Option<Erasure>,
}

impl<E: Event, C: Codec + Default> Default for EventCodec<E, C> {
    fn default() -> Self {
        Self::new(C::default())
    }
}

impl<E: Event, C: Codec + fmt::Debug> fmt::Debug for EventCodec<E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventCodec")
            .field("codec", &self.codec)
            .field("upcasters", &self.upcasters)
            .field("erasure", &self.erasure)
            .finish()
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
        EventCodec { codec, upcasters, erasure: None }
    }

    /// Seals and opens the [`Personal`](crate::Personal) fields of events with `erasure`'s keys. Without it
    /// (the default), an event with a personal field fails to encode and to decode, unless the call runs
    /// inside an [`Erasure::scope`].
    ///
    /// ```
    /// use annals::{Erasure, Event, EventCodec, EventError, Personal, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open(dir.path()).unwrap();
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// enum Signup { SignedUp { email: Personal<String> } }
    /// impl Event for Signup {}
    ///
    /// let event = Signup::SignedUp { email: Personal::new("user-1", "ada@example.com".into()) };
    /// let plain = EventCodec::<Signup>::default();
    /// assert!(matches!(plain.encode(&event), Err(EventError::Encode { .. })), "no key store: nothing in the clear");
    /// let sealed = EventCodec::<Signup>::default().with_erasure(Erasure::open(&store).unwrap());
    /// assert_eq!(sealed.encode(&event).unwrap().event_type(), "SignedUp");
    /// ```
    pub fn with_erasure(mut self, erasure: Erasure) -> Self {
        self.erasure = Some(erasure);
        self
    }

    /// The key store given with [`with_erasure`](Self::with_erasure).
    ///
    /// ```
    /// # #[derive(serde::Serialize, serde::Deserialize)] enum Ping { Ping }
    /// # impl annals::Event for Ping {}
    /// assert!(annals::EventCodec::<Ping>::default().erasure().is_none());
    /// ```
    pub fn erasure(&self) -> Option<&Erasure> {
        self.erasure.as_ref()
    }

    /// Runs `f`, which encodes, inside the key store's scope, if there is one.
    pub(super) fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.erasure {
            Some(erasure) => erasure.scope(f),
            None => f(),
        }
    }

    /// Runs `f`, which decodes one value (an event, a state), inside the key store's scope for one read, if
    /// there is one: each subject's fields all read as of one moment.
    pub(super) fn in_scope_for_one_read<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.erasure {
            Some(erasure) => erasure.scope_for_one_read(f),
            None => f(),
        }
    }

    /// The codec that writes.
    pub fn codec(&self) -> &C {
        &self.codec
    }

    /// Encodes `event` as an [`EventData`] ready to append, tagged with its name, version and codec.
    ///
    /// Errors: `Encode` if the codec refuses the event; `Erasure` if a personal field of a new subject needed a
    /// key and the key file could not be written (see [`Erasure`]).
    pub fn encode(&self, event: &E) -> Result<EventData, EventError> {
        let Some(erasure) = &self.erasure else { return self.encode_in_scope(event) };
        let (encoded, failure) = erasure.scope_reporting_for_one_write(|| self.encode_in_scope(event));
        match (encoded, failure) {
            (Err(EventError::Encode { event_type, .. }), Some(source)) => {
                Err(EventError::Erasure { event_type, source })
            }
            (encoded, _) => encoded,
        }
    }

    fn encode_in_scope(&self, event: &E) -> Result<EventData, EventError> {
        let name = event.name();
        debug_assert_eq!(split_event_type(name), (name, 1), "an event name must not end in .v<digits>");
        let data = self.codec.encode(event).map_err(|source| EventError::Encode { event_type: name, source })?;
        Ok(EventData::new(stored_event_type(name, E::SCHEMA_VERSION), data).with_codec(C::ID))
    }

    /// Decodes a recorded event with the codec that wrote it, upcasting an old version.
    ///
    /// Errors: the payload is not an `E` (`Decode`), its version is newer than this build's
    /// (`NewerVersion`) or older than the oldest upcaster (`NoUpcaster`), or it decodes as an event whose
    /// name differs from the stored type (`TypeMismatch`). A personal field whose subject was forgotten is
    /// no error: it decodes as [`Personal::forgotten`](crate::Personal::forgotten). A decode that runs while
    /// a subject is forgotten reads all of that subject's fields in the event from one moment: every one of
    /// them as its value, or every one as forgotten.
    pub fn decode(&self, recorded: &RecordedEvent) -> Result<E, EventError> {
        self.in_scope_for_one_read(|| self.decode_in_scope(recorded))
    }

    fn decode_in_scope(&self, recorded: &RecordedEvent) -> Result<E, EventError> {
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
    /// A personal field of a new subject needed a key, and the key store could not make it durably (the key
    /// file could not be written, or the [`Erasure`] is poisoned or read-only), or its subject id is invalid.
    /// Nothing was encoded.
    #[error("could not seal a personal field of a {event_type} event: {source}")]
    Erasure {
        /// The event's name.
        event_type: &'static str,
        /// The key store's error.
        source: crate::Error,
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

/// Finds the serde name of an enum variant or struct by serializing into a serializer that stops there.
pub(super) mod variant_name {
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
