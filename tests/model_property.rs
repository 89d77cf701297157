//! Random sequences of operations give the same answers as an in-memory model (each stream a `Vec` of events,
//! plus the global `Vec` in position order). Operations: appends with random expected versions (right and
//! wrong ones), multi-stream appends (with conflicts and duplicate streams), reads of a stream forwards and
//! backwards, of the whole log, of a category and of an event type from random (also past-the-end) starts,
//! clean close and reopen, drop and reopen with the index deleted (rebuilt from the log), and reopen with
//! another bound on mapped segments (1, 2 or 64). Every result and error is compared with the model's, and
//! after each case every read from every start is. Segments are 4 KiB, so segment rolls, index tables
//! written at each roll and merged, and segments unmapped and mapped again all happen.
//! `PROPTEST_CASES` changes the number of cases (default 256).

mod support;

use annals::{AppendResult, Error, EventData, ExpectedVersion, Options, Store, StreamAppend};
use proptest::prelude::*;
use support::{assert_events, assert_store_matches_model, read_all, read_stream, read_stream_backwards, Model};
use uuid::Uuid;

const STREAMS: u8 = 6;
const OPEN_SEGMENTS: [usize; 3] = [1, 2, 64];
const CATEGORIES: [&str; 3] = ["account", "order", "cart"];
const TYPES: usize = 4;

fn stream_name(stream: u8) -> String {
    format!("{}-{stream}", CATEGORIES[usize::from(stream) % CATEGORIES.len()])
}

/// An expected version, resolved against the model when the operation runs, so that right and wrong
/// expectations both happen whatever the stream holds.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Any,
    NoStream,
    StreamExists,
    /// The stream's current version (for a missing stream: `Exact(0)`, which is wrong).
    Current,
    /// The current version plus this (wrong unless it cancels out at 0).
    Off(i8),
}

impl Expect {
    fn resolve(self, version: Option<u64>) -> ExpectedVersion {
        match self {
            Expect::Any => ExpectedVersion::Any,
            Expect::NoStream => ExpectedVersion::NoStream,
            Expect::StreamExists => ExpectedVersion::StreamExists,
            Expect::Current => ExpectedVersion::Exact(version.unwrap_or(0)),
            Expect::Off(delta) => ExpectedVersion::Exact(version.unwrap_or(0).saturating_add_signed(i64::from(delta))),
        }
    }
}

/// One event to append: sizes and a seed for its bytes; `id` chooses whether the test gives the id.
#[derive(Debug, Clone, Copy)]
struct Ev {
    type_no: u8,
    data_len: u16,
    metadata_len: u8,
    seed: u8,
    give_id: bool,
}

/// Sizes are bounded so that any transaction of 3 parts × 3 events fits into one 4 KiB segment: each frame
/// is at most 88 + 8 + 5 + 300 + 40 = 441 bytes, 448 padded, and 9 × 448 = 4032.
fn ev() -> impl Strategy<Value = Ev> {
    (0..4u8, 0..=300u16, 0..=40u8, any::<u8>(), any::<bool>()).prop_map(
        |(type_no, data_len, metadata_len, seed, give_id)| Ev { type_no, data_len, metadata_len, seed, give_id },
    )
}

#[derive(Debug, Clone)]
enum Op {
    Append { stream: u8, expect: Expect, events: Vec<Ev> },
    AppendMulti { parts: Vec<(u8, Expect, Vec<Ev>)> },
    ReadStream { stream: u8, from: u64 },
    ReadStreamBackwards { stream: u8, from: Option<u64> },
    ReadAll { from: u64 },
    CloseAndReopen,
    DropAndReopenWithoutIndex,
    ReadCategory { category: usize, from: u64 },
    ReadEventType { type_no: u8, from: u64 },
    ReopenWithOpenSegments(usize),
}

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        3 => Just(Expect::Any),
        1 => Just(Expect::NoStream),
        1 => Just(Expect::StreamExists),
        3 => Just(Expect::Current),
        1 => prop_oneof![Just(-2i8), Just(-1), Just(1), Just(2)].prop_map(Expect::Off),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let stream = 0..STREAMS;
    prop_oneof![
        10 => (stream.clone(), expect(), prop::collection::vec(ev(), 1..=3))
            .prop_map(|(stream, expect, events)| Op::Append { stream, expect, events }),
        3 => prop::collection::vec((stream.clone(), expect(), prop::collection::vec(ev(), 1..=3)), 1..=3)
            .prop_map(|parts| Op::AppendMulti { parts }),
        3 => (stream.clone(), 0..40u64).prop_map(|(stream, from)| Op::ReadStream { stream, from }),
        2 => (stream, prop::option::of(0..40u64)).prop_map(|(stream, from)| Op::ReadStreamBackwards { stream, from }),
        2 => (0..150u64).prop_map(|from| Op::ReadAll { from }),
        1 => Just(Op::CloseAndReopen),
        1 => Just(Op::DropAndReopenWithoutIndex),
        2 => (0..CATEGORIES.len(), 0..150u64).prop_map(|(category, from)| Op::ReadCategory { category, from }),
        2 => (0..TYPES as u8, 0..150u64).prop_map(|(type_no, from)| Op::ReadEventType { type_no, from }),
        1 => (0..OPEN_SEGMENTS.len()).prop_map(Op::ReopenWithOpenSegments),
    ]
}

/// The bytes of an event, made from its seed.
fn bytes(seed: u8, salt: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ salt).collect()
}

/// Whether a stream whose last offset is `actual` (`None`: no stream) meets `expected`, decided here and not by
/// the engine's own `ExpectedVersion::admits`: an oracle that calls the code under test decides nothing.
fn model_admits(expected: ExpectedVersion, actual: Option<u64>) -> bool {
    match (expected, actual) {
        (ExpectedVersion::Any, _) => true,
        (ExpectedVersion::NoStream, None) | (ExpectedVersion::StreamExists, Some(_)) => true,
        (ExpectedVersion::Exact(wanted), Some(last)) => wanted == last,
        _ => false,
    }
}

/// A running test case: the store, the model, and a counter for the ids the test gives.
struct Case {
    dir: tempfile::TempDir,
    open_segments_max: usize,
    store: Option<Store>,
    model: Model,
    next_id: u128,
}

impl Case {
    fn options(&self) -> Options {
        Options { open_segments_max: self.open_segments_max, ..support::small_options(4096) }
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("the store is open between operations")
    }

    fn events(&mut self, events: &[Ev]) -> Vec<EventData> {
        events
            .iter()
            .map(|ev| {
                let mut event = EventData::new(format!("Type{}", ev.type_no), bytes(ev.seed, 0, ev.data_len.into()))
                    .with_metadata(bytes(ev.seed, 0x5a, ev.metadata_len.into()));
                if ev.give_id {
                    self.next_id += 1;
                    event = event.with_id(Uuid::from_u128(self.next_id));
                }
                event
            })
            .collect()
    }

    /// What the model says a transaction returns; commits it to the model if it succeeds.
    fn model_transaction(
        &mut self,
        parts: &[(String, ExpectedVersion, Vec<EventData>)],
    ) -> Result<Vec<AppendResult>, String> {
        for (i, (stream, _, _)) in parts.iter().enumerate() {
            if parts[..i].iter().any(|(earlier, _, _)| earlier == stream) {
                return Err(format!("DuplicateStream {stream}"));
            }
        }
        for (stream, expected, _) in parts {
            let actual = self.model.version(stream);
            if !model_admits(*expected, actual) {
                return Err(format!("WrongExpectedVersion {stream} {expected:?} {actual:?}"));
            }
        }
        Ok(parts.iter().map(|(stream, _, events)| self.model.append(stream, events)).collect())
    }

    fn run(&mut self, op: &Op) {
        let context = format!("{op:?}");
        match op {
            Op::Append { stream, expect, events } => {
                let stream = stream_name(*stream);
                let expected = expect.resolve(self.model.version(&stream));
                let events = self.events(events);
                let actual = self.store().append(&stream, expected, &events).map(|result| vec![result]);
                let model = self.model_transaction(&[(stream, expected, events)]);
                compare(actual, model, &context);
            }
            Op::AppendMulti { parts } => {
                let parts: Vec<(String, ExpectedVersion, Vec<EventData>)> = parts
                    .iter()
                    .map(|(stream, expect, events)| {
                        let stream = stream_name(*stream);
                        let expected = expect.resolve(self.model.version(&stream));
                        (stream, expected, self.events(events))
                    })
                    .collect();
                let appends: Vec<StreamAppend> = parts
                    .iter()
                    .map(|(stream, expected, events)| StreamAppend {
                        stream: stream.clone(),
                        expected: *expected,
                        events: events.clone(),
                    })
                    .collect();
                let actual = self.store().append_multi(&appends);
                let model = self.model_transaction(&parts);
                compare(actual, model, &context);
            }
            Op::ReadStream { stream, from } => {
                let stream = stream_name(*stream);
                let read = read_stream(self.store(), &stream, *from);
                assert_events(&read, &self.model.stream_from(&stream, *from), &context);
            }
            Op::ReadStreamBackwards { stream, from } => {
                let stream = stream_name(*stream);
                let read = read_stream_backwards(self.store(), &stream, *from);
                assert_events(&read, &self.model.stream_backwards(&stream, *from), &context);
            }
            Op::ReadAll { from } => {
                let read = read_all(self.store(), *from);
                assert_events(&read, &self.model.all_from(*from), &context);
            }
            Op::ReadCategory { category, from } => {
                let category = CATEGORIES[*category];
                let read = support::collect(self.store().read_category(category, *from).unwrap());
                let expected: Vec<_> = self
                    .model
                    .all_from(*from)
                    .into_iter()
                    .filter(|event| event.stream.split('-').next() == Some(category))
                    .collect();
                assert_events(&read, &expected, &context);
            }
            Op::ReadEventType { type_no, from } => {
                let event_type = format!("Type{type_no}");
                let read = support::collect(self.store().read_event_type(&event_type, *from).unwrap());
                let expected: Vec<_> =
                    self.model.all_from(*from).into_iter().filter(|event| event.event_type == event_type).collect();
                assert_events(&read, &expected, &context);
            }
            Op::CloseAndReopen => {
                self.store.take().unwrap().close().unwrap();
                self.reopen();
                let report = self.store().recovery_report();
                assert!(report.records_replayed == 0 && report.index_rejected.is_none(), "{context}: {report:?}");
            }
            Op::DropAndReopenWithoutIndex => {
                drop(self.store.take());
                support::remove_index(self.dir.path());
                self.reopen();
                let report = self.store().recovery_report();
                assert_eq!(report.index_tables, 0, "{context}: {report:?}");
                assert_eq!(report.records_replayed, self.model.all.len() as u64, "{context}");
            }
            Op::ReopenWithOpenSegments(choice) => {
                drop(self.store.take());
                self.open_segments_max = OPEN_SEGMENTS[*choice];
                self.reopen();
                let report = self.store().recovery_report();
                assert!(report.records_replayed == 0 && report.index_rejected.is_none(), "{context}: {report:?}");
            }
        }
        // Cheap checks after every operation.
        let store = self.store();
        assert_eq!(store.head_position(), self.model.head(), "{context}: head position");
        for stream in 0..STREAMS {
            let name = stream_name(stream);
            assert_eq!(store.stream_version(&name), self.model.version(&name), "{context}: version of {name}");
        }
    }

    fn reopen(&mut self) {
        let store = Store::open_with(self.dir.path(), self.options()).unwrap();
        assert_eq!(store.recovery_report().tail_bytes_cut, 0, "a clean shutdown leaves no tail");
        self.store = Some(store);
    }
}

/// Fails unless the store's result is the model's (errors compared by kind and values).
fn compare(actual: annals::Result<Vec<AppendResult>>, model: Result<Vec<AppendResult>, String>, context: &str) {
    let actual = actual.map_err(|err| match err {
        Error::DuplicateStream { stream } => format!("DuplicateStream {stream}"),
        Error::WrongExpectedVersion { stream, expected, actual } => {
            format!("WrongExpectedVersion {stream} {expected:?} {actual:?}")
        }
        other => format!("unexpected error {other:?}"),
    });
    assert_eq!(actual, model, "{context}");
}

fn run_case(open_segments: usize, ops: &[Op]) {
    let dir = tempfile::tempdir().unwrap();
    let open_segments_max = OPEN_SEGMENTS[open_segments];
    let mut case = Case { dir, open_segments_max, store: None, model: Model::default(), next_id: 0 };
    case.store = Some(Store::open_with(case.dir.path(), case.options()).unwrap());
    for op in ops {
        case.run(op);
    }
    assert_store_matches_model(case.store(), &case.model, "after the last operation");
    support::assert_indexed_reads_match_model(case.store(), &case.model, "after the last operation");
    // And once more from the log alone.
    drop(case.store.take());
    support::remove_index(case.dir.path());
    case.reopen();
    assert_store_matches_model(case.store(), &case.model, "rebuilt after the last operation");
    support::assert_indexed_reads_match_model(case.store(), &case.model, "rebuilt after the last operation");
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_operations_match_the_model(
        open_segments in 0..OPEN_SEGMENTS.len(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run_case(open_segments, &ops);
    }
}

#[test]
fn a_long_fixed_sequence_matches_the_model() {
    // A deterministic long run, so that every build exercises many segment rolls whatever proptest draws.
    let mut ops = Vec::new();
    for i in 0..300u16 {
        let ev = Ev {
            type_no: (i % 4) as u8,
            data_len: i % 300,
            metadata_len: (i % 41) as u8,
            seed: i as u8,
            give_id: i % 2 == 0,
        };
        let stream = (i % u16::from(STREAMS)) as u8;
        ops.push(Op::Append {
            stream,
            expect: if i % 7 == 0 { Expect::Off(1) } else { Expect::Current },
            events: vec![ev; 1 + usize::from(i % 3)],
        });
        match i % 50 {
            17 => ops.push(Op::CloseAndReopen),
            33 => ops.push(Op::DropAndReopenWithoutIndex),
            49 => ops.push(Op::AppendMulti {
                parts: vec![
                    (0, Expect::Any, vec![ev]),
                    (1, Expect::Current, vec![ev, ev]),
                    (2, Expect::StreamExists, vec![ev]),
                ],
            }),
            _ => {}
        }
    }
    run_case(1, &ops);
}
