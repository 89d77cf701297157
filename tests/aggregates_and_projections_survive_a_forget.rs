//! After a subject is forgotten, the typed layer keeps working: a repository loads the aggregate (from its
//! events and from a snapshot of a state with personal fields), runs commands and saves, with the personal
//! fields forgotten and every other field intact; a projection runner keeps following, its state's personal
//! values are written as forgotten by its next checkpoint and read so after a restart or a rebuild, and its
//! position never moves back. Nothing of either reaches the disk in the clear.

mod erasure_support;

use erasure_support::fresh;

use annals::{
    Aggregate, Event, EventCodec, ExpectedVersion, Filter, Loaded, Personal, Projection, ProjectionOptions,
    ProjectionRunner, RecordedEvent, Repository, SnapshotPolicy, Store,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum AccountEvent {
    Opened { holder: Personal<String>, phone: Personal<String> },
    Deposited { cents: i64 },
    Renamed { holder: Personal<String> },
}
impl Event for AccountEvent {}

/// An account: a balance, and its holder's name (personal, in the state, so in snapshots too).
#[derive(Serialize, Deserialize, Default, Debug)]
struct Account {
    holder: Option<Personal<String>>,
    balance: i64,
    events: u64,
}

impl Aggregate for Account {
    type Event = AccountEvent;
    type Error = String;
    const CATEGORY: &'static str = "account";
    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { holder, .. } | AccountEvent::Renamed { holder } => {
                self.holder = Some(holder.clone())
            }
            AccountEvent::Deposited { cents } => self.balance += cents,
        }
        self.events += 1;
    }
}

impl Account {
    fn deposit(&self, cents: i64) -> Result<Vec<AccountEvent>, String> {
        Ok(vec![AccountEvent::Deposited { cents }])
    }
}

fn holder(n: u64) -> Personal<String> {
    Personal::new(format!("holder-{n}"), format!("Grace Hopper {n}"))
}

fn opened(n: u64) -> AccountEvent {
    AccountEvent::Opened { holder: holder(n), phone: Personal::new(format!("holder-{n}"), "+44 20 7946 0000".into()) }
}

#[test]
fn a_repository_loads_commands_and_saves_after_a_forget_from_events_and_snapshots() {
    let (_dir, store, erasure) = fresh();
    let accounts = Repository::<Account>::new(store.clone())
        .with_erasure(erasure.clone())
        .with_snapshot_policy(SnapshotPolicy::every(3));
    for n in 1..=2 {
        let mut account = Loaded::new(n);
        let events = vec![opened(n), AccountEvent::Deposited { cents: 100 }, AccountEvent::Deposited { cents: 50 }];
        let saved = accounts.save(&mut account, events).unwrap();
        assert_eq!(saved.snapshot, Some(2), "{:?}", saved.snapshot_error);
    }
    let loaded = accounts.load(1).unwrap();
    assert_eq!((loaded.snapshot_offset(), loaded.state().holder.as_ref()), (Some(2), Some(&holder(1))));
    let positions: Vec<u64> = store.read_all(0).unwrap().map(|event| event.unwrap().position()).collect::<Vec<_>>();

    assert!(erasure.forget("holder-1").unwrap());

    // From the snapshot (its state's holder was sealed with the forgotten key) ...
    let account = accounts.load(1).unwrap();
    assert_eq!(account.snapshot_offset(), Some(2), "the snapshot is still used");
    assert_eq!(account.state().holder, Some(Personal::forgotten("holder-1")));
    assert_eq!((account.state().balance, account.state().events), (150, 3));
    // ... and from the events alone.
    let replayed = accounts.load_from_events(1).unwrap();
    assert_eq!(replayed.state().holder, Some(Personal::forgotten("holder-1")));
    assert_eq!(replayed.state().balance, 150);
    // Commands and saves go on, snapshots included (this one written after the forget).
    let account = accounts.execute(1, |account| account.deposit(25)).unwrap();
    assert_eq!(account.state().balance, 175);
    let saved = accounts.save(&mut accounts.load(1).unwrap(), vec![AccountEvent::Deposited { cents: 1 }; 2]).unwrap();
    assert_eq!(saved.snapshot, Some(5), "{:?}", saved.snapshot_error);
    let account = accounts.load(1).unwrap();
    assert_eq!((account.snapshot_offset(), account.state().balance), (Some(5), 177));
    assert_eq!(account.state().holder, Some(Personal::forgotten("holder-1")));
    // The other holder is untouched, and the log's old positions are where they were.
    assert_eq!(accounts.load(2).unwrap().state().holder, Some(holder(2)));
    let now: Vec<u64> = store.read_all(0).unwrap().map(|event| event.unwrap().position()).collect();
    assert_eq!(now[..positions.len()], positions);
    // The holder comes back under a new key: new events read, old ones stay forgotten.
    let renamed = accounts.execute(1, |_| Ok(vec![AccountEvent::Renamed { holder: holder(1) }])).unwrap();
    assert_eq!(renamed.state().holder, Some(holder(1)));
    let first = store.read_stream("account-1", 0).unwrap().next().unwrap().unwrap();
    let AccountEvent::Opened { holder, phone } = accounts.events().decode(&first).unwrap() else { panic!() };
    assert!(holder.is_forgotten() && phone.is_forgotten());
}

/// Every holder's name by account, as a read model.
#[derive(Serialize, Deserialize, Default)]
struct Holders {
    names: std::collections::BTreeMap<String, Personal<String>>,
    deposits: u64,
}

impl Projection for Holders {
    type Event = AccountEvent;
    fn filter() -> Filter {
        Filter::Category("account".into())
    }
    fn apply(&mut self, event: AccountEvent, recorded: &RecordedEvent) {
        match event {
            AccountEvent::Opened { holder, .. } | AccountEvent::Renamed { holder } => {
                self.names.insert(recorded.stream().to_owned(), holder);
            }
            AccountEvent::Deposited { .. } => self.deposits += 1,
        }
    }
}

fn open_account(store: &Store, events: &EventCodec<AccountEvent>, n: u64) -> u64 {
    let data = [events.encode(&opened(n)).unwrap(), events.encode(&AccountEvent::Deposited { cents: 1 }).unwrap()];
    store.append(&format!("account-{n}"), ExpectedVersion::Any, &data).unwrap().last_position
}

#[test]
fn a_projection_keeps_following_and_its_checkpoints_forget_too() {
    let (_dir, store, erasure) = fresh();
    let events = EventCodec::<AccountEvent>::default().with_erasure(erasure.clone());
    let options = ProjectionOptions { checkpoint_every_events: 1, ..Default::default() };
    let start =
        || ProjectionRunner::<Holders>::start_with_erasure(&store, "holders", options, erasure.clone()).unwrap();

    let holders = start();
    for n in 1..=3 {
        holders.wait_for(open_account(&store, &events, n)).unwrap();
    }
    assert_eq!(holders.state().names["account-2"], holder(2));
    holders.stop().unwrap();
    let checkpoints =
        || store.read_stream("$projection-holders", 0).unwrap().map(|event| event.unwrap().data().to_vec());
    assert!(checkpoints().all(|data| !erasure_support::contains(&data, b"Grace")), "checkpoints are sealed");

    erasure.forget("holder-2").unwrap();
    let holders = start();
    // The state restored from the checkpoint (sealed before the forget) reads as forgotten.
    assert_eq!(holders.state().names["account-2"], Personal::forgotten("holder-2"));
    assert_eq!(holders.state().names["account-1"], holder(1));
    let position_before = holders.position();
    let last = open_account(&store, &events, 4);
    holders.wait_for(last).unwrap();
    assert!(holders.position() > position_before);
    assert_eq!((holders.state().deposits, holders.state().names.len()), (4, 4));

    // A rebuild replays the events: the forgotten holder stays forgotten, the others are back.
    holders.rebuild();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !(holders.caught_up() && holders.state().names.len() == 4) {
        assert!(std::time::Instant::now() < deadline, "the rebuild did not finish");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(holders.state().names["account-2"], Personal::forgotten("holder-2"));
    assert_eq!(holders.state().names["account-3"], holder(3));
    holders.stop().unwrap();
    let (saved, _) = erasure.scope(|| ProjectionRunner::<Holders>::saved(&store, "holders")).unwrap();
    assert_eq!(saved.names["account-2"], Personal::forgotten("holder-2"));
    assert_eq!(saved.deposits, 4);
}

#[test]
fn a_running_projection_writes_a_value_it_read_before_the_forget_as_forgotten() {
    let (_dir, store, erasure) = fresh();
    let events = EventCodec::<AccountEvent>::default().with_erasure(erasure.clone());
    let options = ProjectionOptions { checkpoint_every_events: 1, ..Default::default() };
    let holders = ProjectionRunner::<Holders>::start_with_erasure(&store, "holders", options, erasure.clone()).unwrap();
    holders.wait_for(open_account(&store, &events, 1)).unwrap();
    assert_eq!(holders.state().names["account-1"], holder(1), "in memory, read before the forget");

    erasure.forget("holder-1").unwrap();
    // The holder comes back, on another account, under a new key; the runner's next checkpoint writes the
    // copy of the old value that it holds in memory.
    let renamed = events.encode(&AccountEvent::Renamed { holder: holder(1) }).unwrap();
    holders.wait_for(store.append("account-9", ExpectedVersion::Any, &[renamed]).unwrap().last_position).unwrap();
    assert!(erasure.has_key("holder-1"), "a new key");
    holders.stop().unwrap();
    let (saved, _) = erasure.scope(|| ProjectionRunner::<Holders>::saved(&store, "holders")).unwrap();
    assert_eq!(saved.names["account-1"], Personal::forgotten("holder-1"), "never sealed under the new key");
    assert_eq!(saved.names["account-9"], holder(1));
}
