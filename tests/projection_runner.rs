//! The projection runner: catches up from its checkpoint, follows live, gives read-your-writes with
//! `wait_for`, checkpoints every N events, when it catches up and when it stops, rebuilds from zero on
//! request, applies upcasters during replay, and stops with `ProjectionFailed` (never skipping) on an event it
//! cannot decode. Its checkpoint holds the state and the position together, so a SIGKILL at any moment leaves a
//! saved state that equals a replay from zero up to the saved position (checked over kill cycles of a child
//! process that appends and projects at once).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use annals::{
    Codec, Error, Event, EventCodec, EventData, ExpectedVersion, Filter, Projection, ProjectionOptions,
    ProjectionRunner, RecordedEvent, Store, Upcasters, PROJECTION_STREAM_PREFIX,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum BankEvent {
    Deposited { cents: i64 },
    Withdrawn { cents: i64 },
}

impl Event for BankEvent {
    const SCHEMA_VERSION: u32 = 2;
    fn upcasters<C: Codec>() -> Upcasters<Self, C> {
        // Version 1 stored deposits in whole euros.
        Upcasters::new().step(1, |OldBankEvent::Deposited { euros }| BankEvent::Deposited { cents: euros * 100 })
    }
}

#[derive(Serialize, Deserialize)]
enum OldBankEvent {
    Deposited { euros: i64 },
}

/// Balance per account and how many events were applied.
#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
struct Balances {
    by_account: BTreeMap<String, i64>,
    applied: u64,
}

impl Projection for Balances {
    type Event = BankEvent;
    fn filter() -> Filter {
        Filter::Category("account".into())
    }
    fn apply(&mut self, event: BankEvent, recorded: &RecordedEvent) {
        let balance = self.by_account.entry(recorded.stream().to_owned()).or_default();
        match event {
            BankEvent::Deposited { cents } => *balance += cents,
            BankEvent::Withdrawn { cents } => *balance -= cents,
        }
        self.applied += 1;
    }
}

/// The state a replay from zero gives, up to and including `through` (everything when `None`).
fn replay(store: &Store, through: Option<u64>) -> Balances {
    let events = EventCodec::<BankEvent>::default();
    let mut state = Balances::default();
    for recorded in store.read_category("account", 0).unwrap() {
        let recorded = recorded.unwrap();
        if through.is_some_and(|through| recorded.position() > through) {
            break;
        }
        state.apply(events.decode(&recorded).unwrap(), &recorded);
    }
    state
}

fn deposit(store: &Store, account: u32, cents: i64) -> annals::AppendResult {
    let event = EventCodec::<BankEvent>::default().encode(&BankEvent::Deposited { cents }).unwrap();
    store.append(&format!("account-{account}"), ExpectedVersion::Any, &[event]).unwrap()
}

fn checkpoints(store: &Store, name: &str) -> usize {
    store.read_stream(&format!("{PROJECTION_STREAM_PREFIX}{name}"), 0).unwrap().count()
}

const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn the_runner_catches_up_follows_live_and_reads_your_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // History, with an event of the old schema and events of another category.
    let old = EventData::new("Deposited", annals::BincodeCodec.encode(&OldBankEvent::Deposited { euros: 3 }).unwrap())
        .with_codec(annals::BincodeCodec::ID);
    store.append("account-0", ExpectedVersion::Any, &[old]).unwrap();
    for i in 0..50 {
        deposit(&store, i % 4, 10);
        store.append("order-1", ExpectedVersion::Any, &[EventData::new("Placed", vec![1])]).unwrap();
    }
    let options = ProjectionOptions { checkpoint_every_events: 20, ..Default::default() };
    let runner = ProjectionRunner::<Balances>::start(&store, "balances", options).unwrap();
    let head = store.head_position().unwrap();
    assert!(runner.wait_for_timeout(head, PATIENCE).unwrap());
    assert_eq!(*runner.state(), replay(&store, None), "caught up: the state of a replay, upcasters included");
    assert_eq!(runner.state().by_account["account-0"], 300 + 13 * 10);
    // 51 events: checkpoints after 20 and 40, and at the moment it caught up.
    let deadline = std::time::Instant::now() + PATIENCE;
    while !runner.caught_up() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    // Live, read-your-writes: a deposit is visible in the read model once `wait_for` returns.
    for i in 0..30 {
        let appended = deposit(&store, 7, i);
        runner.wait_for(appended.last_position).unwrap();
        assert_eq!(runner.state().by_account["account-7"], (0..=i).sum::<i64>());
    }
    runner.stop().unwrap();
    let (saved, position) = ProjectionRunner::<Balances>::saved(&store, "balances").unwrap();
    assert_eq!(saved, replay(&store, None), "stopping checkpoints the final state");
    assert!(position.is_some_and(
        |position| position >= store.read_category("account", 0).unwrap().last().unwrap().unwrap().position()
    ));
    assert!(checkpoints(&store, "balances") >= 4, "every 20 events, when caught up, at stop");

    // A restart resumes from the checkpoint: nothing is applied twice.
    deposit(&store, 1, 1_000);
    let runner = ProjectionRunner::<Balances>::start(&store, "balances", options).unwrap();
    runner.wait_for(store.head_position().unwrap()).unwrap();
    assert_eq!(*runner.state(), replay(&store, None));

    // Rebuild: from zero, with the same result.
    runner.rebuild();
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let head = store.head_position().unwrap();
        if runner.wait_for_timeout(head, Duration::from_millis(10)).unwrap() && runner.caught_up() {
            let state = runner.state().clone();
            if state == replay(&store, None) {
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "the rebuild ends with the replayed state");
    }
    runner.stop().unwrap();
}

#[test]
fn an_event_that_does_not_decode_stops_the_runner_with_an_error_instead_of_skipping_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    deposit(&store, 1, 5);
    store.append("account-1", ExpectedVersion::Any, &[EventData::new("Deposited", &b"not bincode"[..])]).unwrap();
    deposit(&store, 1, 7);
    let runner = ProjectionRunner::<Balances>::start(&store, "strict", ProjectionOptions::default()).unwrap();
    let waited = runner.wait_for_timeout(store.head_position().unwrap(), PATIENCE);
    assert!(matches!(waited, Err(Error::ProjectionFailed { ref name, .. }) if name == "strict"), "{waited:?}");
    assert_eq!(runner.state().by_account["account-1"], 5, "nothing after the bad event was applied");
    assert!(matches!(runner.stop(), Err(Error::ProjectionFailed { .. })));
    // Its checkpoint holds only what it applied.
    let (saved, _) = ProjectionRunner::<Balances>::saved(&store, "strict").unwrap();
    assert!(saved.applied <= 1);
}

#[test]
fn bad_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(matches!(
        ProjectionRunner::<Balances>::start(&store, "", ProjectionOptions::default()),
        Err(Error::InvalidCheckpoint { .. })
    ));
    assert!(matches!(
        ProjectionRunner::<Balances>::start(&store, &"p".repeat(1_020), ProjectionOptions::default()),
        Err(Error::InvalidStreamName { .. })
    ));
}

// ---------------------------------------------------------------------------------------------------------
// Kill cycles: a child appends deposits and runs the projection (checkpoint every 7 events) until it is
// killed. After each kill the saved checkpoint must equal a replay from zero up to its position, and a new
// runner must reach the replay of the whole log.

const CHILD_DIR_ENV: &str = "ANNALS_PROJECTION_CHILD_DIR";

#[test]
#[ignore = "the child process of the kill-cycle test; idle unless ANNALS_PROJECTION_CHILD_DIR is set"]
fn child_entry() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else { return };
    let store = Store::open(&dir).unwrap();
    let options = ProjectionOptions { checkpoint_every_events: 7, checkpoint_every: Duration::from_millis(5) };
    let _runner = ProjectionRunner::<Balances>::start(&store, "kill", options).unwrap();
    let mut i = store.head_position().map_or(0, |head| head + 1);
    loop {
        deposit(&store, (i % 5) as u32, i as i64 % 97);
        if i.is_multiple_of(3) {
            let withdrawn = EventCodec::<BankEvent>::default().encode(&BankEvent::Withdrawn { cents: 1 }).unwrap();
            store.append("account-0", ExpectedVersion::Any, &[withdrawn]).unwrap();
        }
        i += 1;
    }
}

#[test]
fn after_every_kill_the_saved_state_equals_a_replay_up_to_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = support::Rng::new(0x9e37);
    let mut checked_positions = Vec::new();
    for cycle in 0..6 {
        let mut child = support::spawn_child("child_entry", CHILD_DIR_ENV, dir.path());
        std::thread::sleep(Duration::from_millis(rng.range(100, 400)));
        assert!(child.try_wait().unwrap().is_none(), "cycle {cycle}: the child is still running");
        child.kill().unwrap();
        child.wait().unwrap();

        let store = Store::open(dir.path()).unwrap();
        let (saved, position) = ProjectionRunner::<Balances>::saved(&store, "kill").unwrap();
        assert_eq!(saved, replay(&store, position), "cycle {cycle}: the saved state is a replay up to {position:?}");
        checked_positions.push(position);
        let runner = ProjectionRunner::<Balances>::start(&store, "kill", ProjectionOptions::default()).unwrap();
        runner.wait_for(store.head_position().unwrap()).unwrap();
        assert_eq!(*runner.state(), replay(&store, None), "cycle {cycle}: resumed, the state is a full replay");
        runner.stop().unwrap();
    }
    assert!(checked_positions.iter().flatten().count() >= 5, "checkpoints were saved: {checked_positions:?}");
}
