//! The index costs what the work costs, not what the store holds. With a store of 100,000 streams behind it:
//! - a segment roll writes index bytes in proportion to that segment's records only (its table), and none of
//!   the store's other streams;
//! - a clean close writes the entries of the last segment only;
//! - an open after a clean close reads a few KiB of the log per index table (to check each against the log)
//!   and the zeros after the end of the log, not the log and not the streams.
//!
//! Bytes are counted with the fault injector, which sees every write and every `pread` of the engine. (Times
//! are measured by the W9 benchmark, not here.)

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use annals::{EventData, ExpectedVersion, FaultInjector, IoOp, Options, Store, StreamAppend};

const STREAMS: u64 = 100_000;
const SEGMENT_BYTES: u64 = 1 << 20;

#[derive(Default)]
struct Counters {
    index_bytes_written: AtomicU64,
    log_bytes_read: AtomicU64,
    log_reads: AtomicU64,
}

fn options(counters: &Arc<Counters>) -> Options {
    let counters = counters.clone();
    let injector = FaultInjector::observing(move |call| {
        let in_index = call.path.components().any(|part| part.as_os_str() == "index");
        match call.op {
            IoOp::Write if in_index => {
                counters.index_bytes_written.fetch_add(call.len, Ordering::SeqCst);
            }
            IoOp::Read if !in_index => {
                counters.log_bytes_read.fetch_add(call.len, Ordering::SeqCst);
                counters.log_reads.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
        None
    });
    Options { segment_size_bytes: SEGMENT_BYTES, fault_injector: Some(injector), ..Default::default() }
}

fn fill(dir: &Path, counters: &Arc<Counters>) {
    let store = Store::open_with(dir, options(counters)).unwrap();
    for batch in (0..STREAMS).collect::<Vec<_>>().chunks(500) {
        let appends: Vec<StreamAppend> = batch
            .iter()
            .map(|n| StreamAppend {
                stream: format!("order-{n:012}"),
                expected: ExpectedVersion::NoStream,
                events: vec![EventData::new("Placed", vec![1u8; 100])],
            })
            .collect();
        store.append_multi(&appends).unwrap();
    }
    store.close().unwrap();
}

fn tables(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("index")).unwrap().count()
}

#[test]
fn rolls_closes_and_opens_cost_what_their_segment_holds() {
    let dir = tempfile::tempdir().unwrap();
    let counters = Arc::new(Counters::default());
    fill(dir.path(), &counters);

    // A roll: small events to a few streams until the active segment rolls, then wait for its table.
    let store = Store::open_with(dir.path(), options(&counters)).unwrap();
    let (index_before, tables_before) = (counters.index_bytes_written.load(Ordering::SeqCst), tables(dir.path()));
    let segments = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
            .count()
    };
    let segments_before = segments(dir.path());
    let mut appended = 0u64;
    while segments(dir.path()) == segments_before {
        let events: Vec<EventData> = (0..100).map(|_| EventData::new("Ticked", vec![0u8; 200])).collect();
        store.append(&format!("clock-{}", appended % 3), ExpectedVersion::Any, &events).unwrap();
        appended += 100;
    }
    let started = std::time::Instant::now();
    while tables(dir.path()) == tables_before {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "the sealed segment's table is written");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let at_roll = counters.index_bytes_written.load(Ordering::SeqCst) - index_before;
    // The sealed segment held at most what 1 MiB of 300-byte records can: about 3,500 records. Its table is
    // about 100 bytes a record, plus a few pages, whatever the store holds besides.
    let records_in_segment = SEGMENT_BYTES / 300;
    assert!(at_roll <= records_in_segment * 100 + (64 << 10), "{at_roll} index bytes written at a roll");

    // A close: the active segment's entries only.
    let index_before = counters.index_bytes_written.load(Ordering::SeqCst);
    store.close().unwrap();
    let at_close = counters.index_bytes_written.load(Ordering::SeqCst) - index_before;
    assert!(at_close <= records_in_segment * 100 + (64 << 10), "{at_close} index bytes written at a close");

    // An open after a clean close: one or two reads of the log per table, not the log.
    let (bytes_before, reads_before) =
        (counters.log_bytes_read.load(Ordering::SeqCst), counters.log_reads.load(Ordering::SeqCst));
    let store = Store::open_with(dir.path(), options(&counters)).unwrap();
    let (bytes, reads) = (
        counters.log_bytes_read.load(Ordering::SeqCst) - bytes_before,
        counters.log_reads.load(Ordering::SeqCst) - reads_before,
    );
    let tables = tables(dir.path()) as u64;
    assert_eq!(store.recovery_report().records_replayed, 0);
    assert!(reads <= 2 * tables + 1, "{reads} reads of the log for {tables} tables");
    // Each table's check reads a few KiB; the end of the log is looked past for 64 KiB of zeros (the proof
    // search of format-spec §8.6), read in windows that grow from 64 KiB.
    assert!(bytes <= tables * (16 << 10) + (256 << 10), "{bytes} bytes of the log read at open for {reads} reads");
    assert_eq!(store.stream_count(), STREAMS as usize + 3);
}
