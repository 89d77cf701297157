//! Schema evolution of typed events: an event type's payload changed twice, and streams hold all three
//! versions. Proves that upcasters chained v1 → v2 → v3 read every old event as today's type (including a
//! renamed event type), with either codec and with a stream that mixes codecs; that an aggregate loads from
//! such a history; that an event of a version newer than the reader, or older than its oldest upcaster, or
//! whose payload is another event than its stored type, is a typed error; and that a broken chain (a gap,
//! types that do not connect) is refused when the codec is built, not on the first old event.

use annals::{
    Aggregate, BincodeCodec, Codec, Event, EventCodec, EventData, EventError, ExpectedVersion, JsonCodec, Repository,
    Store, Upcasters,
};
use serde::{Deserialize, Serialize};

/// The events as version 1 of the application wrote them.
mod v1 {
    use super::*;

    #[derive(Serialize, Deserialize, Debug)]
    pub enum AccountEvent {
        AccountOpened { owner: String },
        MoneyDeposited { amount: i64 },
    }

    impl Event for AccountEvent {}
}

/// Version 2 added a currency to deposits.
mod v2 {
    use super::*;

    #[derive(Serialize, Deserialize, Debug)]
    pub enum AccountEvent {
        AccountOpened { owner: String },
        MoneyDeposited { amount: i64, currency: String },
    }

    impl Event for AccountEvent {
        const SCHEMA_VERSION: u32 = 2;
    }

    impl From<v1::AccountEvent> for AccountEvent {
        fn from(old: v1::AccountEvent) -> Self {
            match old {
                v1::AccountEvent::AccountOpened { owner } => AccountEvent::AccountOpened { owner },
                v1::AccountEvent::MoneyDeposited { amount } => {
                    AccountEvent::MoneyDeposited { amount, currency: "EUR".into() }
                }
            }
        }
    }
}

/// Today's version 3: money is a struct, deposits are renamed `FundsDeposited`, accounts have a tier.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct Money {
    cents: i64,
    currency: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
enum AccountEvent {
    AccountOpened { owner: String, tier: u8 },
    FundsDeposited { amount: Money },
}

impl Event for AccountEvent {
    const SCHEMA_VERSION: u32 = 3;

    fn upcasters<C: Codec>() -> Upcasters<Self, C> {
        Upcasters::new().step(1, |old: v1::AccountEvent| v2::AccountEvent::from(old)).step(
            2,
            |old: v2::AccountEvent| match old {
                v2::AccountEvent::AccountOpened { owner } => AccountEvent::AccountOpened { owner, tier: 1 },
                v2::AccountEvent::MoneyDeposited { amount, currency } => {
                    AccountEvent::FundsDeposited { amount: Money { cents: amount, currency } }
                }
            },
        )
    }
}

fn eur(cents: i64) -> AccountEvent {
    AccountEvent::FundsDeposited { amount: Money { cents, currency: "EUR".into() } }
}

/// Appends one event as the application at that version would, with codec `C`.
fn append<E: Event, C: Codec + Default>(store: &Store, stream: &str, event: E) {
    store.append(stream, ExpectedVersion::Any, &[EventCodec::<E, C>::default().encode(&event).unwrap()]).unwrap();
}

/// A history written over three releases: v1 with codec `C1`, v2 with `C2`, v3 with `C3`.
fn write_history<C1: Codec + Default, C2: Codec + Default, C3: Codec + Default>(store: &Store, stream: &str) {
    append::<_, C1>(store, stream, v1::AccountEvent::AccountOpened { owner: "Ada".into() });
    append::<_, C1>(store, stream, v1::AccountEvent::MoneyDeposited { amount: 100 });
    append::<_, C2>(store, stream, v2::AccountEvent::MoneyDeposited { amount: 20, currency: "USD".into() });
    append::<_, C3>(store, stream, eur(3));
}

fn expected_history() -> Vec<AccountEvent> {
    vec![
        AccountEvent::AccountOpened { owner: "Ada".into(), tier: 1 },
        eur(100),
        AccountEvent::FundsDeposited { amount: Money { cents: 20, currency: "USD".into() } },
        eur(3),
    ]
}

fn read<C: Codec + Default>(store: &Store, stream: &str) -> Vec<AccountEvent> {
    let events = EventCodec::<AccountEvent, C>::default();
    store.read_stream(stream, 0).unwrap().map(|recorded| events.decode(&recorded.unwrap()).unwrap()).collect()
}

#[test]
fn every_old_version_reads_as_todays_type_with_either_codec() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    write_history::<BincodeCodec, BincodeCodec, BincodeCodec>(&store, "bincode");
    write_history::<JsonCodec, JsonCodec, JsonCodec>(&store, "json");
    write_history::<JsonCodec, BincodeCodec, JsonCodec>(&store, "mixed");

    let types: Vec<String> =
        store.read_stream("mixed", 0).unwrap().map(|event| event.unwrap().event_type().to_owned()).collect();
    assert_eq!(types, ["AccountOpened", "MoneyDeposited", "MoneyDeposited.v2", "FundsDeposited.v3"]);
    for stream in ["bincode", "json", "mixed"] {
        assert_eq!(read::<BincodeCodec>(&store, stream), expected_history(), "{stream}, bincode reader");
        assert_eq!(read::<JsonCodec>(&store, stream), expected_history(), "{stream}, JSON reader");
    }
}

#[derive(Serialize, Deserialize, Default)]
struct Balance {
    cents: i64,
}

impl Aggregate for Balance {
    type Event = AccountEvent;
    type Error = String;
    const CATEGORY: &'static str = "account";

    fn apply(&mut self, event: &AccountEvent) {
        if let AccountEvent::FundsDeposited { amount } = event {
            self.cents += amount.cents;
        }
    }
}

#[test]
fn an_aggregate_loads_from_a_history_of_three_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    write_history::<BincodeCodec, JsonCodec, BincodeCodec>(&store, "account-1");
    let repository = Repository::<Balance>::new(store);
    let loaded = repository.load(1).unwrap();
    assert_eq!((loaded.state().cents, loaded.version()), (123, Some(3)));
}

/// A future release, version 4.
#[derive(Serialize, Deserialize, Debug)]
enum FutureEvent {
    FundsDeposited { amount: Money, memo: String },
}

impl Event for FutureEvent {
    const SCHEMA_VERSION: u32 = 4;
}

/// A reader that forgot the step from version 1.
#[derive(Serialize, Deserialize, Debug)]
enum ForgetfulEvent {
    AccountOpened { owner: String, tier: u8 },
    FundsDeposited { amount: Money },
}

impl Event for ForgetfulEvent {
    const SCHEMA_VERSION: u32 = 3;

    fn upcasters<C: Codec>() -> Upcasters<Self, C> {
        Upcasters::new().step(2, |_: v2::AccountEvent| ForgetfulEvent::AccountOpened { owner: String::new(), tier: 0 })
    }
}

#[test]
fn unreadable_versions_and_mismatched_payloads_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append::<_, BincodeCodec>(
        &store,
        "future",
        FutureEvent::FundsDeposited { amount: Money { cents: 1, currency: "EUR".into() }, memo: "hi".into() },
    );
    append::<_, BincodeCodec>(&store, "old", v1::AccountEvent::MoneyDeposited { amount: 1 });
    let mismatched = BincodeCodec.encode(&eur(5)).unwrap();
    let mislabelled = EventData::new("AccountOpened.v3", mismatched).with_codec(BincodeCodec::ID);
    store.append("mislabelled", ExpectedVersion::Any, &[mislabelled]).unwrap();

    let first = |stream: &str| store.read_stream(stream, 0).unwrap().next().unwrap().unwrap();
    let events = EventCodec::<AccountEvent>::default();
    let newer = events.decode(&first("future"));
    assert!(
        matches!(newer, Err(EventError::NewerVersion { supported: 3, ref event_type, .. }) if event_type == "FundsDeposited.v4"),
        "{newer:?}"
    );
    let no_upcaster = EventCodec::<ForgetfulEvent>::default().decode(&first("old"));
    assert!(matches!(no_upcaster, Err(EventError::NoUpcaster { oldest: 2, offset: 0, .. })), "{no_upcaster:?}");
    let mismatch = events.decode(&first("mislabelled"));
    assert!(matches!(mismatch, Err(EventError::TypeMismatch { decoded: "FundsDeposited", .. })), "{mismatch:?}");
    // The messages say what to do.
    assert!(newer.unwrap_err().to_string().contains("upgrade the reader"));
}

#[derive(Serialize, Deserialize, Debug)]
enum GappyEvent {
    Happened,
}

impl Event for GappyEvent {
    const SCHEMA_VERSION: u32 = 3;

    fn upcasters<C: Codec>() -> Upcasters<Self, C> {
        Upcasters::new().step(1, |_: v1::AccountEvent| GappyEvent::Happened)
    }
}

#[test]
#[should_panic(expected = "a step from version 2 is missing")]
fn a_chain_with_a_gap_is_refused_when_the_codec_is_built() {
    let _ = EventCodec::<GappyEvent>::default();
}

#[derive(Serialize, Deserialize, Debug)]
enum DisconnectedEvent {
    Happened,
}

impl Event for DisconnectedEvent {
    const SCHEMA_VERSION: u32 = 3;

    fn upcasters<C: Codec>() -> Upcasters<Self, C> {
        // Step 1 produces a v2 event, but step 2 takes a v1 event.
        Upcasters::new()
            .step(1, |old: v1::AccountEvent| v2::AccountEvent::from(old))
            .step(2, |_: v1::AccountEvent| DisconnectedEvent::Happened)
    }
}

#[test]
#[should_panic(expected = "but the step from version 2 takes")]
fn a_chain_whose_types_do_not_connect_is_refused_when_the_codec_is_built() {
    let _ = EventCodec::<DisconnectedEvent>::default();
}
