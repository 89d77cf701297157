//! The audit log of the persistent-streams design: an account's stream read from offset 0 is its audit
//! trail, one entry per event with its offset, type, commit timestamp, event id and data; and the same
//! restricted to a time period. Proves the trail lists every event once in offset order with distinct ids,
//! non-decreasing timestamps and human-readable data (the account is written with the JSON codec), and that
//! the period filter (inclusive bounds, as in the C# design) returns exactly the events committed within it.

#[path = "../examples/bank/account.rs"]
mod account;

use std::time::{Duration, SystemTime};

use account::{Account, AccountEvent};
use annals::{JsonCodec, Loaded, Repository, Store};
use uuid::Uuid;

#[derive(Debug)]
struct AuditEntry {
    offset: u64,
    event_type: String,
    timestamp: SystemTime,
    event_id: Uuid,
    data: serde_json::Value,
}

fn audit_log(store: &Store, account_id: u64) -> Vec<AuditEntry> {
    store
        .read_stream(&format!("account-{account_id}"), 0)
        .unwrap()
        .map(|recorded| {
            let recorded = recorded.unwrap();
            AuditEntry {
                offset: recorded.offset(),
                event_type: recorded.event_type().to_owned(),
                timestamp: recorded.timestamp(),
                event_id: recorded.event_id(),
                // JSON payloads need no knowledge of the Rust types to be shown.
                data: serde_json::from_slice(recorded.data()).unwrap(),
            }
        })
        .collect()
}

fn audit_log_for_period(store: &Store, account_id: u64, from: SystemTime, to: SystemTime) -> Vec<AuditEntry> {
    audit_log(store, account_id).into_iter().filter(|entry| entry.timestamp >= from && entry.timestamp <= to).collect()
}

#[test]
fn the_stream_is_the_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let repository = Repository::<Account, JsonCodec>::with_codec(Store::open(dir.path()).unwrap(), JsonCodec);
    let mut account = Loaded::<Account>::new(5);
    let opened = account.state().open(5, "Lin", 10).unwrap();
    repository.save(&mut account, opened).unwrap();
    let pause = || std::thread::sleep(Duration::from_millis(20));

    pause();
    let period_start = SystemTime::now();
    for amount in [1, 2, 3] {
        repository.execute(5, |account| account.deposit(amount)).unwrap();
        // Another account's events in the same period stay out of this account's trail.
        let mut other = Loaded::<Account>::new(100 + amount as u64);
        let opened = other.state().open(100 + amount as u64, "Max", amount).unwrap();
        repository.save(&mut other, opened).unwrap();
    }
    let period_end = SystemTime::now();
    pause();
    repository.execute(5, |account| account.withdraw(16)).unwrap();
    repository.execute(5, Account::close).unwrap();

    let trail = audit_log(repository.store(), 5);
    let types: Vec<&str> = trail.iter().map(|entry| entry.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["AccountOpened", "MoneyDeposited", "MoneyDeposited", "MoneyDeposited", "MoneyWithdrawn", "AccountClosed"]
    );
    assert_eq!(trail.iter().map(|entry| entry.offset).collect::<Vec<_>>(), (0..6).collect::<Vec<_>>());
    assert!(trail.windows(2).all(|pair| pair[0].timestamp <= pair[1].timestamp), "timestamps never go back");
    let mut ids: Vec<Uuid> = trail.iter().map(|entry| entry.event_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "every event has its own id");
    assert!(trail.iter().all(|entry| !entry.event_id.is_nil()));
    assert_eq!(trail[0].data["AccountOpened"]["owner"], "Lin");
    assert_eq!(trail[4].data["MoneyWithdrawn"]["amount"], 16);

    let period = audit_log_for_period(repository.store(), 5, period_start, period_end);
    assert_eq!(period.iter().map(|entry| entry.offset).collect::<Vec<_>>(), [1, 2, 3]);
    let amounts: Vec<i64> =
        period.iter().map(|entry| entry.data["MoneyDeposited"]["amount"].as_i64().unwrap()).collect();
    assert_eq!(amounts, [1, 2, 3]);

    // Inclusive bounds: a period from one event's timestamp to another's holds both.
    let exact = audit_log_for_period(repository.store(), 5, trail[1].timestamp, trail[4].timestamp);
    assert_eq!(exact.iter().map(|entry| entry.offset).collect::<Vec<_>>(), [1, 2, 3, 4]);

    // And the typed view of the same trail.
    let typed =
        repository.events().decode(&repository.store().read_stream("account-5", 5).unwrap().next().unwrap().unwrap());
    assert_eq!(typed.unwrap(), AccountEvent::AccountClosed { account_id: 5 });
}
