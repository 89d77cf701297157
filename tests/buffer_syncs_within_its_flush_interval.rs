//! Under `Durability::Buffer { flush_interval }`, an append returns without waiting for a sync, and the sync of
//! what it wrote then comes by itself, with no further call to the store.
//!
//! A `FaultInjector` logs every write and data sync of the segment and can hold data syncs at a gate. After a
//! warm-up append (the first group after an open also zeroes and syncs the segment's tail), whose own flush
//! must follow, the gate closes and one more append must return while no sync can complete; its event is
//! readable at once (Buffer publishes after the write). Then a sync must arrive at the gate by itself (the
//! timer's flush), and once the gate opens, the log must show a sync after the append's write. Waits are
//! bounded by generous timeouts that turn a missing flush, or an append stuck behind a sync, into a failure.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::{Durability, EventData, ExpectedVersion, FaultInjector, IoOp, Options, Store};
// Mutexes without poisoning: a failing assertion must not make the writer thread panic in the injector.
use parking_lot::{Condvar, Mutex};

const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// How long the test waits for something that should come within `FLUSH_INTERVAL`: a bound on a hang, not a
/// measurement.
const PATIENCE: Duration = Duration::from_secs(30);
/// How long a sync stays held at a closed gate before the injector gives up and lets it through (the test
/// then fails): longer than `PATIENCE`.
const HOLD_MAX: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Gate {
    closed: bool,
    /// Syncs waiting at the closed gate now.
    waiting: usize,
    /// A sync was held for `HOLD_MAX` and let through.
    gave_up: bool,
}

/// What the injector shares with the test: the log of segment writes and syncs, in order, and the gate.
#[derive(Default)]
struct Watch {
    log: Mutex<Vec<IoOp>>,
    gate: Mutex<Gate>,
    changed: Condvar,
}

impl Watch {
    fn injector(self: &Arc<Self>) -> FaultInjector {
        let watch = self.clone();
        FaultInjector::observing(move |call| {
            let segment = call.path.extension().is_some_and(|ext| ext == "seg");
            if segment && call.op == IoOp::SyncData {
                watch.hold_while_closed();
            }
            if segment && matches!(call.op, IoOp::Write | IoOp::SyncData) {
                watch.log.lock().push(call.op);
            }
            None
        })
    }

    /// Runs on the writer thread before each sync of a segment: waits while the gate is closed.
    fn hold_while_closed(&self) {
        let mut gate = self.gate.lock();
        gate.waiting += 1;
        self.changed.notify_all();
        if self.changed.wait_while_for(&mut gate, |gate| gate.closed, HOLD_MAX).timed_out() {
            gate.gave_up = true;
        }
        gate.waiting -= 1;
    }

    fn set_closed(&self, closed: bool) {
        self.gate.lock().closed = closed;
        self.changed.notify_all();
    }

    /// Waits until a sync is held at the gate; false if none came within `PATIENCE`.
    fn wait_for_held_sync(&self) -> bool {
        let mut gate = self.gate.lock();
        self.changed.wait_while_for(&mut gate, |gate| gate.waiting == 0, PATIENCE);
        gate.waiting > 0
    }

    /// Whether the last logged operation on the segment is a sync (every write so far is followed by one).
    fn synced_after_last_write(&self) -> bool {
        let log = self.log.lock();
        let last_write = log.iter().rposition(|&op| op == IoOp::Write);
        let last_sync = log.iter().rposition(|&op| op == IoOp::SyncData);
        last_write.is_some() && last_sync > last_write
    }

    /// Polls until every write is followed by a sync; false if that did not happen within `PATIENCE`.
    fn wait_for_sync_after_last_write(&self) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while !self.synced_after_last_write() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

/// Opens the gate when dropped: a failing test never leaves the writer thread held (and `close` waiting on it).
struct OpenOnDrop(Arc<Watch>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.set_closed(false);
    }
}

fn stream_payloads(store: &Store, stream: &str) -> Vec<Vec<u8>> {
    store.read_stream(stream, 0).unwrap().map(|event| event.unwrap().data().to_vec()).collect()
}

fn open(dir: &Path, watch: &Arc<Watch>) -> Store {
    let options = Options {
        segment_size_bytes: 1 << 20,
        durability: Durability::Buffer { flush_interval: FLUSH_INTERVAL },
        fault_injector: Some(watch.injector()),
        ..Default::default()
    };
    Store::open_with(dir, options).unwrap()
}

#[test]
fn a_buffered_append_returns_before_its_sync_and_the_sync_follows_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let watch = Arc::new(Watch::default());
    let _open_gate = OpenOnDrop(watch.clone());
    let store = open(dir.path(), &watch);

    store.append("account", ExpectedVersion::Any, &[EventData::new("Deposited", &b"warm-up"[..])]).unwrap();
    assert!(
        watch.wait_for_sync_after_last_write(),
        "no sync followed the warm-up append within {PATIENCE:?} (flush interval {FLUSH_INTERVAL:?}): {:?}",
        watch.log.lock()
    );

    // No sync can complete now: an append that waited for one would return only after `HOLD_MAX`.
    watch.set_closed(true);
    let writes_before = watch.log.lock().iter().filter(|&&op| op == IoOp::Write).count();
    store.append("account", ExpectedVersion::Any, &[EventData::new("Deposited", &b"buffered"[..])]).unwrap();
    assert!(!watch.gate.lock().gave_up, "the buffered append waited for a sync");
    let writes = watch.log.lock().iter().filter(|&&op| op == IoOp::Write).count();
    assert_eq!(writes, writes_before + 1, "the append returned after its one write");
    assert!(!watch.synced_after_last_write(), "no sync can have completed while the gate was closed");
    assert_eq!(stream_payloads(&store, "account"), [&b"warm-up"[..], &b"buffered"[..]], "readable after the write");

    // The flush comes by itself: nothing calls the store while the test waits for a sync at the gate.
    assert!(watch.wait_for_held_sync(), "no flush came within {PATIENCE:?} of a buffered append");
    watch.set_closed(false);
    assert!(
        watch.wait_for_sync_after_last_write(),
        "the flush held at the gate did not complete within {PATIENCE:?}: {:?}",
        watch.log.lock()
    );
    assert!(!watch.gate.lock().gave_up);
    store.close().unwrap();
}
