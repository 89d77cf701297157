//! Readers running beside writers never see a gap, a reordering, a duplicate, a torn event or part of a
//! transaction.
//!
//! Three writer threads append single events, multi-event appends and `append_multi` transactions across
//! their own streams (with exact expected versions) and shared streams (with `Any`), into small segments so
//! that segments roll under the readers. At the same time, forward `read_stream` readers, backward
//! `read_stream_backwards` readers and `read_all` readers read from random starting points, for a bounded
//! number of reads. Every payload carries a hash of itself and a marker (transaction, index and count in the
//! transaction, index and count in its stream part), so each reader checks, on every read:
//!
//! - offsets (per stream) and positions (whole log) dense and in order, from where the read started;
//! - every payload intact;
//! - whole transactions: `read_all` never ends inside a transaction and shows every transaction's events at
//!   consecutive positions; a stream read never ends inside the transaction's part in that stream;
//! - each read's snapshot is at least as new as the version or head seen just before it was created;
//! - whatever a reader saw at a position is exactly what is there at the end.
//!
//! Writers wait half-way until every reader has read a few times, so reads overlap the writes. A reader that
//! detects a bug panics, and the writers then stop waiting for it: a detected bug fails the test, never hangs it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use annals::{EventData, ExpectedVersion, Options, RecordedEvent, Store, StreamAppend};

mod support;
use support::{fnv, Rng};

const WRITERS: usize = 3;
const TXNS_PER_WRITER: usize = 400;
const FORWARD_READERS: usize = 2;
const BACKWARD_READERS: usize = 1;
const ALL_READERS: usize = 2;
const READERS: usize = FORWARD_READERS + BACKWARD_READERS + ALL_READERS;
/// Reads each reader makes at most: a safety net, as each stops once the writers are done and it has read
/// once more.
const READS_MAX: usize = 1_000_000;
/// Reads every reader completes before the writers go past half-way.
const READS_BEFORE_HALF_WAY: usize = 3;
const SHARED_STREAMS: [&str; 3] = ["shared-0", "shared-1", "shared-2"];

fn all_streams() -> Vec<String> {
    let mut streams: Vec<String> = SHARED_STREAMS.iter().map(|s| (*s).to_owned()).collect();
    for writer in 0..WRITERS {
        streams.extend((0..2).map(|k| format!("own-{writer}-{k}")));
    }
    streams
}

/// What an event's payload says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Marker {
    txn: String,
    index: usize,
    count: usize,
    part_index: usize,
    part_count: usize,
}

/// `<hash of the rest, 16 hex digits>|TXN <txn> <index> <count> <part index> <part count> <filler>`.
fn payload(rng: &mut Rng, marker: &Marker) -> Vec<u8> {
    let Marker { txn, index, count, part_index, part_count } = marker;
    let mut body = format!("TXN {txn} {index} {count} {part_index} {part_count} ").into_bytes();
    let filler = rng.range(0, 600) as usize;
    body.extend((0..filler).map(|_| b'a' + (rng.next() % 26) as u8));
    let mut data = format!("{:016x}|", fnv(&body)).into_bytes();
    data.extend(body);
    data
}

/// Checks the payload's own hash and parses its marker; `Err` says what is wrong.
fn parse(event: &RecordedEvent) -> Result<Marker, String> {
    let data = event.data();
    let torn = || format!("torn event at position {} ({} bytes)", event.position(), data.len());
    if data.len() < 17 || data[16] != b'|' {
        return Err(torn());
    }
    let hash = std::str::from_utf8(&data[..16]).ok().and_then(|hex| u64::from_str_radix(hex, 16).ok());
    if hash != Some(fnv(&data[17..])) {
        return Err(torn());
    }
    let text = std::str::from_utf8(&data[17..]).map_err(|_| torn())?;
    let fields: Vec<&str> = text.splitn(7, ' ').collect();
    if fields.len() != 7 || fields[0] != "TXN" {
        return Err(torn());
    }
    let number = |i: usize| fields[i].parse::<usize>().map_err(|_| torn());
    Ok(Marker {
        txn: fields[1].to_owned(),
        index: number(2)?,
        count: number(3)?,
        part_index: number(4)?,
        part_count: number(5)?,
    })
}

/// One acknowledged event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    stream: String,
    offset: u64,
    hash: u64,
}

fn write(store: &Store, writer: usize, gate: &Gate) -> Vec<(u64, Seen)> {
    let mut rng = Rng(0x5eed ^ ((writer as u64 + 1) * 0x1234_5678_9abc));
    let own: Vec<String> = (0..2).map(|k| format!("own-{writer}-{k}")).collect();
    let mut versions: HashMap<String, Option<u64>> = own.iter().map(|stream| (stream.clone(), None)).collect();
    let mut acked = Vec::new();
    for n in 0..TXNS_PER_WRITER {
        if n == TXNS_PER_WRITER / 2 {
            gate.wait_for_readers();
        }
        let txn = format!("w{writer}.{n}");
        let pick = |rng: &mut Rng| {
            if rng.percent(50) {
                own[rng.range(0, 2) as usize].clone()
            } else {
                SHARED_STREAMS[rng.range(0, SHARED_STREAMS.len() as u64) as usize].to_owned()
            }
        };
        let shape = rng.range(0, 100);
        let mut streams = vec![pick(&mut rng)];
        if shape >= 65 {
            for _ in 0..rng.range(1, 3) {
                let stream = pick(&mut rng);
                if !streams.contains(&stream) {
                    streams.push(stream);
                }
            }
        }
        let sizes: Vec<usize> = streams
            .iter()
            .map(|_| match shape {
                0..35 => 1,
                35..65 => rng.range(2, 8) as usize,
                _ => rng.range(1, 4) as usize,
            })
            .collect();
        let count = sizes.iter().sum();
        let mut index = 0;
        let mut parts = Vec::new();
        for (stream, &size) in streams.iter().zip(&sizes) {
            let expected = match versions.get(stream) {
                Some(Some(version)) => ExpectedVersion::Exact(*version),
                Some(None) => ExpectedVersion::NoStream,
                None => ExpectedVersion::Any,
            };
            let events = (0..size)
                .map(|part_index| {
                    let marker = Marker { txn: txn.clone(), index, count, part_index, part_count: size };
                    index += 1;
                    EventData::new("Stress", payload(&mut rng, &marker))
                })
                .collect();
            parts.push(StreamAppend { stream: stream.clone(), expected, events });
        }
        let results = if parts.len() == 1 && rng.percent(50) {
            vec![store.append(&parts[0].stream, parts[0].expected, &parts[0].events).unwrap()]
        } else {
            store.append_multi(&parts).unwrap()
        };
        for (part, result) in parts.iter().zip(results) {
            if let Some(version) = versions.get_mut(&part.stream) {
                *version = Some(result.last_offset);
            }
            for (k, event) in part.events.iter().enumerate() {
                let seen = Seen {
                    stream: part.stream.clone(),
                    offset: result.first_offset + k as u64,
                    hash: fnv(event.data()),
                };
                acked.push((result.first_position + k as u64, seen));
            }
        }
    }
    acked
}

/// Holds the writers half-way until every reader has read a few times.
struct Gate {
    reads: Vec<AtomicUsize>,
    /// Set by a reader that failed (panicked): the writers must not wait for it forever.
    reader_failed: AtomicBool,
}

impl Gate {
    fn wait_for_readers(&self) {
        while self.reads.iter().any(|reads| reads.load(Ordering::Acquire) < READS_BEFORE_HALF_WAY) {
            assert!(!self.reader_failed.load(Ordering::Acquire), "a reader failed; its panic says why");
            std::thread::yield_now();
        }
    }
}

/// Marks the gate failed if the reader holding it panics, so that a bug a reader detects fails the test
/// instead of leaving the writers waiting for it.
struct FailOnPanic<'a>(&'a Gate);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.reader_failed.store(true, Ordering::Release);
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum ReaderKind {
    Forward,
    Backward,
    All,
}

/// What one reader saw: every position it read, and how many reads it made.
struct ReaderLog {
    kind: ReaderKind,
    positions: HashMap<u64, Seen>,
    reads: usize,
    events: usize,
}

impl ReaderLog {
    /// Records what is at a position; the same position must always hold the same event.
    fn saw(&mut self, event: &RecordedEvent, ctx: &str) {
        let seen = Seen { stream: event.stream().to_owned(), offset: event.offset(), hash: fnv(event.data()) };
        match self.positions.get(&event.position()) {
            Some(before) => assert_eq!(before, &seen, "{ctx}: position {} changed between reads", event.position()),
            None => {
                self.positions.insert(event.position(), seen);
            }
        }
        self.events += 1;
    }
}

fn collect<I: Iterator<Item = annals::Result<RecordedEvent>>>(events: I, ctx: &str) -> Vec<(RecordedEvent, Marker)> {
    events
        .map(|event| {
            let event = event.unwrap_or_else(|err| panic!("{ctx}: the read yielded {err}"));
            let marker = parse(&event).unwrap_or_else(|err| panic!("{ctx}: {err}"));
            (event, marker)
        })
        .collect()
}

fn read_forward(store: &Store, rng: &mut Rng, log: &mut ReaderLog, streams: &[String]) {
    let stream = &streams[rng.range(0, streams.len() as u64) as usize];
    let before = store.stream_version(stream);
    let from = match before {
        Some(version) if rng.percent(60) => rng.range(0, version + 2),
        _ => 0,
    };
    let ctx = format!("read_stream({stream}, {from}) after version {before:?}");
    let events = collect(store.read_stream(stream, from).unwrap(), &ctx);
    if let Some(version) = before.filter(|&version| version >= from) {
        let last = events.last().map(|(event, _)| event.offset());
        assert!(last >= Some(version), "{ctx}: the read ended at {last:?}, before the version seen before it");
    }
    let mut part: Option<(String, usize, usize)> = None;
    let mut previous_position = None;
    for (k, (event, marker)) in events.iter().enumerate() {
        assert_eq!(event.stream(), stream, "{ctx}: an event of another stream");
        assert_eq!(event.offset(), from + k as u64, "{ctx}: a gap, duplicate or reordering");
        assert!(previous_position < Some(event.position()), "{ctx}: positions go backwards within the stream");
        previous_position = Some(event.position());
        log.saw(event, &ctx);
        // Parts whole: the first one may have started before `from`.
        match &mut part {
            Some((txn, next, count)) => {
                assert!(
                    *txn == marker.txn && *next == marker.part_index && *count == marker.part_count,
                    "{ctx}: offset {} is {marker:?}, expected part index {next} of {txn}",
                    event.offset()
                );
                *next += 1;
            }
            None => {
                assert!(
                    marker.part_index == 0 || k == 0,
                    "{ctx}: offset {} starts in the middle of {marker:?}",
                    event.offset()
                );
                part = Some((marker.txn.clone(), marker.part_index + 1, marker.part_count));
            }
        }
        if matches!(&part, Some((_, next, count)) if next == count) {
            part = None;
        }
    }
    assert!(part.is_none(), "{ctx}: the read ended inside a transaction's part: {part:?}");
}

fn read_backward(store: &Store, rng: &mut Rng, log: &mut ReaderLog, streams: &[String]) {
    let stream = &streams[rng.range(0, streams.len() as u64) as usize];
    let before = store.stream_version(stream);
    let from = match before {
        Some(version) if rng.percent(50) => Some(rng.range(0, version + 2)),
        _ => None,
    };
    let ctx = format!("read_stream_backwards({stream}, {from:?}) after version {before:?}");
    let events = collect(store.read_stream_backwards(stream, from).unwrap(), &ctx);
    let Some((first, first_marker)) = events.first() else {
        assert_eq!(before, None, "{ctx}: nothing read from an existing stream");
        return;
    };
    let version = before.unwrap();
    match from {
        Some(from) if from <= version => assert_eq!(first.offset(), from, "{ctx}: the read started elsewhere"),
        Some(from) => assert!(
            (version..=from).contains(&first.offset()),
            "{ctx}: the read started at {}, outside {version}..={from}",
            first.offset()
        ),
        None => {
            assert!(first.offset() >= version, "{ctx}: the read started before the version seen before it");
            assert_eq!(
                first_marker.part_index + 1,
                first_marker.part_count,
                "{ctx}: the newest event {} is not the end of its transaction's part",
                first.offset()
            );
        }
    }
    let mut part: Option<(String, usize)> = None;
    let mut previous_position = None;
    for (k, (event, marker)) in events.iter().enumerate() {
        assert_eq!(event.stream(), stream, "{ctx}: an event of another stream");
        assert_eq!(event.offset(), first.offset() - k as u64, "{ctx}: a gap, duplicate or reordering");
        assert!(previous_position.is_none_or(|p| p > event.position()), "{ctx}: positions go forwards going back");
        previous_position = Some(event.position());
        log.saw(event, &ctx);
        match &part {
            Some((txn, next)) => assert!(
                *txn == marker.txn && *next == marker.part_index,
                "{ctx}: offset {} is {marker:?}, expected part index {next} of {txn}",
                event.offset()
            ),
            None => assert!(
                k == 0 || marker.part_index + 1 == marker.part_count,
                "{ctx}: offset {} is not the end of its part: {marker:?}",
                event.offset()
            ),
        }
        part = (marker.part_index > 0).then(|| (marker.txn.clone(), marker.part_index - 1));
    }
    assert_eq!(events.last().unwrap().0.offset(), 0, "{ctx}: the read did not reach offset 0");
    assert!(part.is_none(), "{ctx}: offset 0 is not the start of its part");
}

fn read_all(store: &Store, rng: &mut Rng, log: &mut ReaderLog) {
    let head = store.head_position();
    let from = match head {
        Some(head) if rng.percent(50) => rng.range(0, head + 2),
        _ => 0,
    };
    let ctx = format!("read_all({from}) after head {head:?}");
    let events = collect(store.read_all(from).unwrap(), &ctx);
    if let Some(head) = head.filter(|&head| head >= from) {
        let last = events.last().map(|(event, _)| event.position());
        assert!(last >= Some(head), "{ctx}: the read ended at {last:?}, before the head seen before it");
    }
    let mut txn: Option<(String, usize, usize)> = None;
    let mut next_offsets: HashMap<&str, u64> = HashMap::new();
    for (k, (event, marker)) in events.iter().enumerate() {
        assert_eq!(event.position(), from + k as u64, "{ctx}: a gap, duplicate or reordering");
        if let Some(next) = next_offsets.get(event.stream()) {
            assert_eq!(
                event.offset(),
                *next,
                "{ctx}: offsets of {} out of order at {}",
                event.stream(),
                event.position()
            );
        }
        next_offsets.insert(event.stream(), event.offset() + 1);
        log.saw(event, &ctx);
        match &mut txn {
            Some((id, next, count)) => {
                assert!(
                    *id == marker.txn && *next == marker.index && *count == marker.count,
                    "{ctx}: position {} is {marker:?}, expected index {next} of {id}",
                    event.position()
                );
                *next += 1;
            }
            None => {
                assert!(marker.index == 0 || k == 0, "{ctx}: position {} starts inside {marker:?}", event.position());
                txn = Some((marker.txn.clone(), marker.index + 1, marker.count));
            }
        }
        if matches!(&txn, Some((_, next, count)) if next == count) {
            txn = None;
        }
    }
    assert!(txn.is_none(), "{ctx}: the read ended inside a transaction: {txn:?}");
}

fn run_reader(store: &Store, kind: ReaderKind, seed: u64, done: &AtomicBool, reads: &AtomicUsize) -> ReaderLog {
    let mut rng = Rng(seed);
    let streams = all_streams();
    let mut log = ReaderLog { kind, positions: HashMap::new(), reads: 0, events: 0 };
    // One more read after the writers are done, so the last one sees everything.
    let mut last_round = false;
    while log.reads < READS_MAX {
        last_round |= done.load(Ordering::Acquire);
        match kind {
            ReaderKind::Forward => read_forward(store, &mut rng, &mut log, &streams),
            ReaderKind::Backward => read_backward(store, &mut rng, &mut log, &streams),
            ReaderKind::All => read_all(store, &mut rng, &mut log),
        }
        log.reads += 1;
        reads.store(log.reads, Ordering::Release);
        if last_round {
            break;
        }
        std::thread::yield_now();
    }
    log
}

#[test]
fn readers_beside_writers_see_no_gap_reordering_duplicate_torn_event_or_partial_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_size_bytes: 64 << 10, ..Default::default() };
    let store = Store::open_with(dir.path(), options).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let gate = Arc::new(Gate {
        reads: (0..READERS).map(|_| AtomicUsize::new(0)).collect(),
        reader_failed: AtomicBool::new(false),
    });

    let kinds = [ReaderKind::Forward; FORWARD_READERS]
        .into_iter()
        .chain([ReaderKind::Backward; BACKWARD_READERS])
        .chain([ReaderKind::All; ALL_READERS]);
    let readers: Vec<_> = kinds
        .enumerate()
        .map(|(i, kind)| {
            let (store, done, gate) = (store.clone(), done.clone(), gate.clone());
            std::thread::spawn(move || {
                let _fail_on_panic = FailOnPanic(&gate);
                run_reader(&store, kind, 0xbead ^ i as u64, &done, &gate.reads[i])
            })
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (store, gate) = (store.clone(), gate.clone());
            std::thread::spawn(move || write(&store, writer, &gate))
        })
        .collect();
    let acked: Vec<(u64, Seen)> = writers.into_iter().flat_map(|writer| writer.join().unwrap()).collect();
    done.store(true, Ordering::Release);
    let logs: Vec<ReaderLog> = readers.into_iter().map(|reader| reader.join().unwrap()).collect();

    // The final log: dense, and every acknowledged event where its writer was told.
    let all: Vec<RecordedEvent> = store.read_all(0).unwrap().map(Result::unwrap).collect();
    assert_eq!(all.len(), acked.len(), "every acknowledged event, and nothing else");
    let final_log: HashMap<u64, Seen> = all
        .iter()
        .enumerate()
        .map(|(i, event)| {
            assert_eq!(event.position(), i as u64);
            (i as u64, Seen { stream: event.stream().to_owned(), offset: event.offset(), hash: fnv(event.data()) })
        })
        .collect();
    for (position, seen) in &acked {
        assert_eq!(final_log.get(position), Some(seen), "acknowledged event at position {position}");
    }
    // Whatever any reader saw is what is there.
    for log in &logs {
        for (position, seen) in &log.positions {
            assert_eq!(final_log.get(position), Some(seen), "{:?} reader saw something else at {position}", log.kind);
        }
        assert!(log.reads > READS_BEFORE_HALF_WAY, "{:?} reader made only {} reads", log.kind, log.reads);
        assert!(log.events > 0, "{:?} reader never saw an event", log.kind);
    }
    let summary: Vec<String> =
        logs.iter().map(|log| format!("{:?}: {} reads, {} events", log.kind, log.reads, log.events)).collect();
    println!("{} events in {} transactions; {}", all.len(), WRITERS * TXNS_PER_WRITER, summary.join("; "));
    store.close().unwrap();
}
