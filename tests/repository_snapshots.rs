//! Loading an aggregate from its latest snapshot plus the tail of its stream. Proves that the repository
//! writes a snapshot each time the stream crosses a multiple of the policy's interval and keeps the last K;
//! that a load starts from the newest snapshot and replays only the events after it, with the same state as a
//! replay of every event; and that a snapshot it cannot trust (corrupt, of another schema version, or whose
//! state no longer decodes) costs a longer replay and a reported warning, never a wrong state or an error.
//! A snapshot that fails to write does not fail the save: its events are committed.

#[path = "../examples/bank/account.rs"]
mod account;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use account::{Account, AccountEvent};
use annals::{
    Aggregate, FaultInjector, IoOp, Loaded, Options, Repository, SkipReason, SnapshotOptions, SnapshotPolicy, Store,
};
use serde::{Deserialize, Serialize};

fn deposit_many(repository: &Repository<Account>, id: u64, count: usize) {
    let mut account = repository.load(id).unwrap();
    for _ in 0..count {
        let events = account.state().deposit(1).unwrap();
        repository.save(&mut account, events).unwrap();
    }
}

fn open_account(repository: &Repository<Account>, id: u64) {
    let mut account = Loaded::<Account>::new(id);
    let events = account.state().open(id, "Ada", 0).unwrap();
    repository.save(&mut account, events).unwrap();
}

#[test]
fn load_starts_from_the_latest_snapshot_and_replays_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let policy = SnapshotPolicy { every_events: 10, keep_last: 2 };
    let repository = Repository::<Account>::new(Store::open(dir.path()).unwrap()).with_snapshot_policy(policy);
    open_account(&repository, 1);
    deposit_many(&repository, 1, 44); // 45 events: offsets 0..=44, snapshots at 9, 19, 29, 39

    let store = repository.store();
    let offsets: Vec<String> = store
        .snapshot_paths("account-1")
        .unwrap()
        .iter()
        .map(|path| path.file_stem().unwrap().to_string_lossy().trim_start_matches('0').to_owned())
        .collect();
    assert_eq!(offsets, ["39", "29"], "keep_last 2");

    let loaded = repository.load(1).unwrap();
    assert_eq!((loaded.snapshot_offset(), loaded.events_replayed(), loaded.version()), (Some(39), 5, Some(44)));
    assert_eq!(loaded.state().balance, 44);
    assert!(loaded.skipped_snapshots().is_empty());
    let replayed = repository.load_from_events(1).unwrap();
    assert_eq!((replayed.snapshot_offset(), replayed.events_replayed()), (None, 45));
    assert_eq!(replayed.state(), loaded.state());

    // A batch of events that crosses a multiple snapshots once, at its end.
    let mut account = repository.load(1).unwrap();
    let batch: Vec<AccountEvent> = (0..12).flat_map(|_| account.state().deposit(2).unwrap()).collect();
    let saved = repository.save(&mut account, batch).unwrap();
    assert_eq!(saved.snapshot, Some(56));
    assert_eq!(repository.load(1).unwrap().events_replayed(), 0);

    // And after a restart.
    drop(repository);
    let repository = Repository::<Account>::new(Store::open(dir.path()).unwrap());
    let loaded = repository.load(1).unwrap();
    assert_eq!((loaded.snapshot_offset(), loaded.state().balance), (Some(56), 68));
}

#[test]
fn an_untrustworthy_snapshot_costs_a_replay_and_a_warning_never_a_wrong_state() {
    let dir = tempfile::tempdir().unwrap();
    let repository =
        Repository::<Account>::new(Store::open(dir.path()).unwrap()).with_snapshot_policy(SnapshotPolicy::every(10));
    open_account(&repository, 1);
    deposit_many(&repository, 1, 24); // snapshots at 9 and 19
    let store = repository.store().clone();
    let truth = repository.load_from_events(1).unwrap().into_state();

    // The newest is damaged: the older one is used.
    let newest = store.snapshot_paths("account-1").unwrap()[0].clone();
    let mut bytes = std::fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&newest, bytes).unwrap();
    let loaded = repository.load(1).unwrap();
    assert_eq!((loaded.snapshot_offset(), loaded.events_replayed()), (Some(9), 15));
    assert!(matches!(loaded.skipped_snapshots()[0].reason, SkipReason::Corrupt(_)));
    assert_eq!(loaded.state(), &truth);

    // A snapshot written by another schema version of the state: rebuilt from the events.
    store
        .write_snapshot_with("account-1", 24, b"\x01whatever", SnapshotOptions { schema_version: 9, keep_last: 3 })
        .unwrap();
    let loaded = repository.load(1).unwrap();
    assert_eq!((loaded.snapshot_offset(), loaded.events_replayed()), (None, 25));
    assert_eq!(loaded.skipped_snapshots().last().unwrap().reason, SkipReason::SchemaVersion { found: 9, expected: 1 });
    assert_eq!(loaded.state(), &truth);

    // Right schema version, but bytes that are not an Account.
    store
        .write_snapshot_with("account-1", 24, b"\x01\xff", SnapshotOptions { schema_version: 1, keep_last: 3 })
        .unwrap();
    let loaded = repository.load(1).unwrap();
    assert_eq!(loaded.snapshot_offset(), None);
    assert!(matches!(loaded.skipped_snapshots().last().unwrap().reason, SkipReason::Undecodable(_)));
    assert_eq!(loaded.state(), &truth);
}

/// The state type after a change that needs a new snapshot schema version.
#[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
struct AccountV2 {
    balance: i64,
    deposits: u32,
}

impl Aggregate for AccountV2 {
    type Event = AccountEvent;
    type Error = String;
    const CATEGORY: &'static str = "account";
    const SNAPSHOT_VERSION: u32 = 2;

    fn apply(&mut self, event: &AccountEvent) {
        let mut account = Account { balance: self.balance, ..Default::default() };
        account.apply(event);
        self.balance = account.balance;
        self.deposits += u32::from(matches!(event, AccountEvent::MoneyDeposited { .. }));
    }
}

#[test]
fn a_new_state_schema_ignores_old_snapshots_and_writes_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let old = Repository::<Account>::new(store.clone()).with_snapshot_policy(SnapshotPolicy::every(5));
    open_account(&old, 3);
    deposit_many(&old, 3, 9); // snapshot at offset 4 and 9, schema version 1

    let new = Repository::<AccountV2>::new(store).with_snapshot_policy(SnapshotPolicy::every(5));
    let mut loaded = new.load(3).unwrap();
    assert_eq!(loaded.snapshot_offset(), None, "a version 1 snapshot is not a version 2 state");
    assert_eq!(loaded.state(), &AccountV2 { balance: 9, deposits: 9 });
    new.save(&mut loaded, vec![AccountEvent::MoneyDeposited { account_id: 3, amount: 1, transfer_id: None }; 5])
        .unwrap();
    let loaded = new.load(3).unwrap();
    assert_eq!((loaded.snapshot_offset(), loaded.state().deposits), (Some(14), 14));
}

#[test]
fn a_failed_snapshot_does_not_fail_the_save() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Arc::new(AtomicBool::new(false));
    let test_thread = std::thread::current().id();
    let flag = failing.clone();
    let injector = FaultInjector::new(move |op| {
        (op == IoOp::CreateFile && flag.load(Ordering::SeqCst) && std::thread::current().id() == test_thread)
            .then(|| std::io::Error::other("injected: disk full"))
    });
    let store = Store::open_with(dir.path(), Options { fault_injector: Some(injector), ..Default::default() }).unwrap();
    let repository = Repository::<Account>::new(store).with_snapshot_policy(SnapshotPolicy::every(2));
    open_account(&repository, 1);

    failing.store(true, Ordering::SeqCst);
    let mut account = repository.load(1).unwrap();
    let events = account.state().deposit(10).unwrap();
    let saved = repository.save(&mut account, events).unwrap();
    failing.store(false, Ordering::SeqCst);
    assert_eq!(saved.appended.unwrap().last_offset, 1, "the events are committed");
    assert_eq!(saved.snapshot, None);
    assert!(saved.snapshot_error.unwrap().to_string().contains("injected: disk full"));
    let loaded = repository.load(1).unwrap();
    assert_eq!((loaded.state().balance, loaded.snapshot_offset()), (10, None));
}
