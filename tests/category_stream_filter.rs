//! Stream naming of the persistent-streams design: one stream per aggregate (`account-123`) versus one
//! category stream for all accounts (`accounts`) read by filtering on the account id. Proves both layouts
//! yield the same events for an account, in the same order, and shows the difference in cost: the
//! per-aggregate read touches only that account's events, the category read touches every account's.

#[path = "../examples/bank/account.rs"]
mod account;

use account::AccountEvent;
use annals::{EventCodec, ExpectedVersion, Store};

#[test]
fn the_category_stream_filtered_by_id_equals_the_aggregate_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let events = EventCodec::<AccountEvent>::default();
    let accounts = [123u64, 456, 789];

    // Every event goes to both layouts, interleaved across accounts.
    for account_id in accounts {
        let opened =
            AccountEvent::AccountOpened { account_id, owner: format!("owner {account_id}"), initial_balance: 0 };
        for stream in [format!("account-{account_id}"), "accounts".to_owned()] {
            store.append(&stream, ExpectedVersion::Any, &[events.encode(&opened).unwrap()]).unwrap();
        }
    }
    for round in 1..=20 {
        for account_id in accounts {
            let event = AccountEvent::MoneyDeposited { account_id, amount: round, transfer_id: None };
            for stream in [format!("account-{account_id}"), "accounts".to_owned()] {
                store.append(&stream, ExpectedVersion::Any, &[events.encode(&event).unwrap()]).unwrap();
            }
        }
    }

    let target = 456;
    let per_aggregate: Vec<AccountEvent> = store
        .read_stream(&format!("account-{target}"), 0)
        .unwrap()
        .map(|recorded| events.decode(&recorded.unwrap()).unwrap())
        .collect();

    let mut touched = 0;
    let mut filtered = Vec::new();
    for recorded in store.read_stream("accounts", 0).unwrap() {
        let recorded = recorded.unwrap();
        touched += 1;
        let event = events.decode(&recorded).unwrap();
        if event.account_id() == target {
            filtered.push(event);
        }
    }

    assert_eq!(filtered, per_aggregate);
    assert_eq!(per_aggregate.len(), 21);
    assert!(matches!(&per_aggregate[0], AccountEvent::AccountOpened { account_id: 456, .. }));
    assert_eq!(touched, 21 * accounts.len(), "the category read touches every account's events");

    // The C# variant filters on the event type before decoding: only opened events, of one account.
    let opened_by_type: Vec<u64> = store
        .read_stream("accounts", 0)
        .unwrap()
        .map(Result::unwrap)
        .filter(|recorded| recorded.event_type() == "AccountOpened")
        .map(|recorded| events.decode(&recorded).unwrap().account_id())
        .collect();
    assert_eq!(opened_by_type, accounts);
}
