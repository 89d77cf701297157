//! Under `Durability::SyncData`, readers never see an event before it is on stable storage: while a group's
//! `fdatasync` is in flight, `head_position`, `stream_version`, `stream_count`, `read_all`, `read_stream` and
//! `read_stream_backwards` all still show the store as it was before the group. The fault injector parks the
//! writer's sync until the test has looked; the events appear once the sync returns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use annals::{EventData, ExpectedVersion, FaultInjector, IoOp, Options, Store, StreamAppend};

const PATIENCE: Duration = Duration::from_secs(60);

fn event(n: u64) -> EventData {
    EventData::new("MoneyDeposited", format!("deposit {n}").into_bytes())
}

/// Everything a reader can see: head, two versions, stream count, events in the log, offsets read forwards
/// and backwards.
#[derive(Debug, PartialEq, Eq)]
struct View(Option<u64>, Option<u64>, Option<u64>, usize, usize, Vec<u64>, Vec<u64>);

fn look(store: &Store) -> View {
    View(
        store.head_position(),
        store.stream_version("account-1"),
        store.stream_version("account-2"),
        store.stream_count(),
        store.read_all(0).unwrap().count(),
        store.read_stream("account-1", 0).unwrap().map(|event| event.unwrap().offset()).collect(),
        store.read_stream_backwards("account-2", None).unwrap().map(|event| event.unwrap().offset()).collect(),
    )
}

#[test]
fn nothing_of_a_group_is_visible_while_its_sync_is_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let (parked_tx, parked_rx) = mpsc::channel::<mpsc::Sender<()>>();
    let parked_tx = Mutex::new(parked_tx);
    let park = armed.clone();
    let injector = FaultInjector::new(move |op| {
        if op == IoOp::SyncData && park.swap(false, Ordering::SeqCst) {
            let (release_tx, release_rx) = mpsc::channel();
            if parked_tx.lock().unwrap().send(release_tx).is_ok() {
                // Released by the test, or at once if the test failed and dropped the sender.
                let _ = release_rx.recv_timeout(PATIENCE);
            }
        }
        None
    });
    let store = Store::open_with(dir.path(), Options { fault_injector: Some(injector), ..Default::default() }).unwrap();
    for n in 0..3 {
        store.append("account-1", ExpectedVersion::Any, &[event(n)]).unwrap();
    }
    let before = look(&store);
    assert_eq!(before, View(Some(2), Some(2), None, 1, 3, vec![0, 1, 2], vec![]));

    armed.store(true, Ordering::SeqCst);
    let appender = {
        let store = store.clone();
        std::thread::spawn(move || {
            store.append_multi(&[
                StreamAppend {
                    stream: "account-1".into(),
                    expected: ExpectedVersion::Exact(2),
                    events: vec![event(3)],
                },
                StreamAppend {
                    stream: "account-2".into(),
                    expected: ExpectedVersion::NoStream,
                    events: vec![event(4), event(5)],
                },
            ])
        })
    };
    let release = parked_rx.recv_timeout(PATIENCE).expect("the group's sync was reached");
    // The group is written (in the page cache) but not synced: nothing of it may show.
    assert_eq!(look(&store), before, "readers saw a group whose sync had not returned");
    release.send(()).unwrap();

    let results = appender.join().unwrap().unwrap();
    assert_eq!((results[1].first_position, results[1].last_position), (4, 5));
    assert_eq!(look(&store), View(Some(5), Some(3), Some(1), 2, 6, vec![0, 1, 2, 3], vec![1, 0]));
}
