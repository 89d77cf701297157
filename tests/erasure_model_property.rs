//! Random sequences of seals, forgets, re-encodes of values read earlier, and reopens of the store and its key
//! store, checked against a model of keys: a value reads back exactly when the key it was sealed with is the
//! subject's key now (the subject was not forgotten since), and as forgotten otherwise; a value read earlier
//! and written again keeps that rule (it never comes back under a newer key); the log's positions never move.
//!
//! `PROPTEST_CASES` changes the number of cases (default 64: each case syncs the key file many times).

mod erasure_support;

use annals::{Erasure, Event, EventCodec, ExpectedVersion, Personal, Store};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Noted {
    Noted { text: Personal<String> },
}
impl Event for Noted {}

#[derive(Debug, Clone)]
enum Op {
    /// Seal a new value for subject `s`.
    Seal(u8),
    /// Forget subject `s`.
    Forget(u8),
    /// Read the event at `index` (modulo how many there are) and append it again as it was read.
    Copy(usize),
    /// Close and reopen the store and the key store.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..4).prop_map(Op::Seal),
        2 => (0u8..4).prop_map(Op::Forget),
        2 => any::<usize>().prop_map(Op::Copy),
        1 => Just(Op::Reopen),
    ]
}

/// The model: each subject's current key generation (`None`: no key), and for each event the subject and the
/// generation its value was sealed with (`None`: written as forgotten) and the text it holds.
#[derive(Default)]
struct Model {
    keys: [Option<u32>; 4],
    next_generation: u32,
    events: Vec<(u8, Option<u32>, String)>,
}

impl Model {
    fn expected(&self, index: usize) -> Noted {
        let (subject, sealed_with, text) = &self.events[index];
        let name = format!("subject-{subject}");
        let readable = sealed_with.is_some() && *sealed_with == self.keys[usize::from(*subject)];
        Noted::Noted { text: if readable { Personal::new(name, text.clone()) } else { Personal::forgotten(name) } }
    }
}

fn run(ops: &[Op]) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let mut erasure = Erasure::open(&store).unwrap();
    let mut events = EventCodec::<Noted>::default().with_erasure(erasure.clone());
    let mut model = Model::default();
    let read = |store: &Store, events: &EventCodec<Noted>, index: usize| {
        let recorded = store.read_stream("notes", index as u64).unwrap().next().unwrap().unwrap();
        assert_eq!(recorded.position(), index as u64 + 1, "position 0 is the $erasure event; nothing moves");
        events.decode(&recorded).unwrap()
    };
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Seal(subject) => {
                let text = format!("text {step}");
                let event = Noted::Noted { text: Personal::new(format!("subject-{subject}"), text.clone()) };
                store.append("notes", ExpectedVersion::Any, &[events.encode(&event).unwrap()]).unwrap();
                let key = &mut model.keys[usize::from(subject)];
                if key.is_none() {
                    *key = Some(model.next_generation);
                    model.next_generation += 1;
                }
                model.events.push((subject, *key, text));
            }
            Op::Forget(subject) => {
                let had = erasure.forget(&format!("subject-{subject}")).unwrap();
                assert_eq!(had, model.keys[usize::from(subject)].take().is_some());
            }
            Op::Copy(index) if !model.events.is_empty() => {
                let index = index % model.events.len();
                let copy = read(&store, &events, index);
                store.append("notes", ExpectedVersion::Any, &[events.encode(&copy).unwrap()]).unwrap();
                let (subject, sealed_with, text) = model.events[index].clone();
                let still = sealed_with.filter(|generation| Some(*generation) == model.keys[usize::from(subject)]);
                model.events.push((subject, still, text));
            }
            Op::Copy(_) => {}
            Op::Reopen => {
                drop((events, erasure));
                store.close().unwrap();
                store = Store::open(dir.path()).unwrap();
                erasure = Erasure::open(&store).unwrap();
                events = EventCodec::default().with_erasure(erasure.clone());
            }
        }
        for index in 0..model.events.len() {
            assert_eq!(read(&store, &events, index), model.expected(index), "event {index} after step {step}: {op:?}");
        }
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn reads_follow_the_model_of_keys(ops in proptest::collection::vec(op(), 1..40)) {
        run(&ops);
    }
}

#[test]
fn a_scripted_sequence_with_every_kind_of_step() {
    use Op::*;
    run(&[
        Seal(0),
        Seal(1),
        Copy(0),
        Forget(0),
        Copy(0),
        Seal(0),
        Reopen,
        Copy(2),
        Forget(1),
        Seal(1),
        Reopen,
        Copy(5),
    ]);
}
