//! `GetAccountBalance` of the persistent-streams design: an account's balance is computed by reading its
//! stream from offset 0 and folding every event (opened sets it, deposited adds, withdrawn subtracts). Proves
//! the fold gives the balance the operations imply, before and after a restart, and that a reader
//! configured for one codec still reads a stream written with another (each event says which codec wrote
//! it): the same account written in JSON has the same balance.

#[path = "../examples/bank/account.rs"]
mod account;

use account::{AccountEvent, Cents};
use annals::{Codec, EventCodec, ExpectedVersion, JsonCodec, Store};

fn balance<C: Codec>(store: &Store, events: &EventCodec<AccountEvent, C>, account_id: u64) -> Cents {
    let mut balance = 0;
    for recorded in store.read_stream(&format!("account-{account_id}"), 0).unwrap() {
        balance = match events.decode(&recorded.unwrap()).unwrap() {
            AccountEvent::AccountOpened { initial_balance, .. } => initial_balance,
            AccountEvent::MoneyDeposited { amount, .. } => balance + amount,
            AccountEvent::MoneyWithdrawn { amount, .. } => balance - amount,
            AccountEvent::AccountClosed { .. } => balance,
        };
    }
    balance
}

/// Appends a deterministic history to `account-{account_id}` with `codec`; returns the balance it implies.
fn write_history<C: Codec + Default>(store: &Store, account_id: u64) -> Cents {
    let events = EventCodec::<AccountEvent, C>::default();
    let mut expected = 1_000;
    let mut history = vec![AccountEvent::AccountOpened { account_id, owner: "Grace".into(), initial_balance: 1_000 }];
    for i in 1..=200 {
        let amount = (i * 37) % 101 + 1;
        if i % 3 == 0 && expected >= amount {
            expected -= amount;
            history.push(AccountEvent::MoneyWithdrawn { account_id, amount, transfer_id: None });
        } else {
            expected += amount;
            history.push(AccountEvent::MoneyDeposited { account_id, amount, transfer_id: None });
        }
    }
    let stream = format!("account-{account_id}");
    for event in &history {
        store.append(&stream, ExpectedVersion::Any, &[events.encode(event).unwrap()]).unwrap();
    }
    expected
}

#[test]
fn the_balance_is_the_fold_of_the_stream_from_offset_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let binary = write_history::<annals::BincodeCodec>(&store, 7);
    let json = write_history::<JsonCodec>(&store, 8);
    assert_eq!(binary, json, "same history, same balance");

    // One reader, configured for bincode, reads both streams: each event names its codec.
    let reader = EventCodec::<AccountEvent>::default();
    assert_eq!(balance(&store, &reader, 7), binary);
    assert_eq!(balance(&store, &reader, 8), json);
    let first_json = store.read_stream("account-8", 0).unwrap().next().unwrap().unwrap();
    assert_eq!(first_json.codec(), JsonCodec::ID);
    assert!(first_json.data().starts_with(br#"{"AccountOpened":{"account_id":8,"#), "human-readable payload");
    assert_eq!(balance(&store, &reader, 9), 0, "an account without events has nothing to fold");

    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(balance(&store, &reader, 7), binary);
    assert_eq!(balance(&store, &EventCodec::<AccountEvent, JsonCodec>::default(), 7), binary);
}
