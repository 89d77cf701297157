//! `Store::verify` never holds the index's lock while it reads the log: the writer needs that lock to publish
//! every group, and readers queue behind a waiting writer, so a verify that held it across its reads would stall
//! the whole store for as long as it runs.
//!
//! The fault injector parks each of verify's reads of the log (`IoOp::Read`, on the verifying thread only)
//! until the test has made an append and read a stream beside it. Each of those must complete while the read is parked; a
//! stall fails the test (after a generous timeout) instead of hanging it.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals::{EventData, ExpectedVersion, FaultInjector, IoOp, Options, Store};

const VERIFIER: &str = "verifier";
const STREAMS: u64 = 60;
const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn appends_and_reads_complete_while_verify_reads_the_log() {
    let dir = tempfile::tempdir().unwrap();
    // Each parked read reports here and waits for its release.
    let (parked_tx, parked_rx) = mpsc::channel::<mpsc::Sender<()>>();
    let parked_tx = Arc::new(Mutex::new(parked_tx));
    let injector = FaultInjector::observing(move |call| {
        if call.op == IoOp::Read && std::thread::current().name() == Some(VERIFIER) {
            let (release_tx, release_rx) = mpsc::channel();
            if parked_tx.lock().unwrap().send(release_tx).is_ok() {
                // If the test has failed and gone, carry on rather than hang.
                let _ = release_rx.recv_timeout(PATIENCE);
            }
        }
        None
    });
    let options = Options { segment_size_bytes: 16 << 10, fault_injector: Some(injector), ..Default::default() };
    let store = Store::open_with(dir.path(), options).unwrap();
    for n in 0..STREAMS * 3 {
        let stream = format!("account-{}", n % STREAMS);
        store.append(&stream, ExpectedVersion::Any, &[EventData::new("MoneyDeposited", vec![1u8; 64])]).unwrap();
    }

    let verifier = {
        let store = store.clone();
        std::thread::Builder::new().name(VERIFIER.into()).spawn(move || store.verify()).unwrap()
    };
    let mut parked_reads = 0;
    let started = std::time::Instant::now();
    loop {
        let release = match parked_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(release) => release,
            Err(_) if verifier.is_finished() => break,
            Err(_) => {
                assert!(started.elapsed() < PATIENCE, "verify neither read nor finished");
                continue;
            }
        };
        parked_reads += 1;
        // While verify's read is parked, the store must serve an append and a stream read.
        let (done_tx, done_rx) = mpsc::channel();
        let worker = store.clone();
        std::thread::spawn(move || {
            let appended = worker.append("beside", ExpectedVersion::Any, &[EventData::new("Ping", &b"."[..])]);
            let read = worker.read_stream("account-1", 0).map(|events| events.count());
            let _ = done_tx.send((appended.is_ok(), read.ok()));
        });
        let (appended, read) = done_rx
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("an append stalled while verify's read number {parked_reads} was parked"));
        assert!(appended && read == Some(3), "append ok: {appended}, events read: {read:?}");
        release.send(()).unwrap();
    }
    let report = verifier.join().unwrap().unwrap();
    assert!(report.is_ok(), "{:?}", report.problem);
    // The walk reads each segment in windows (the segments here are small, so one window each).
    let segments = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().extension().is_some_and(|ext| ext == "seg"));
    assert!(parked_reads >= segments.count(), "verify read the log with pread {parked_reads} times");
}
