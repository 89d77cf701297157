//! Injected I/O failures through `Options::fault_injector` prove the error paths of the writer:
//! a failed sync or write poisons the store (the failing append and every later one get `Poisoned`, every
//! waiting appender returns, nothing hangs), reopening recovers every acknowledged event; running out of space
//! while creating a segment is a clean `Io` error that leaves the store readable and, once space is back,
//! writable.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use annals::{Error, EventData, ExpectedVersion, FaultInjector, IoOp, Options, Store};

/// Fails every operation of kind `op` while `armed` is set.
fn injector(op: IoOp, armed: Arc<AtomicBool>, errno: i32) -> FaultInjector {
    FaultInjector::new(move |seen| {
        (seen == op && armed.load(Ordering::SeqCst)).then(|| std::io::Error::from_raw_os_error(errno))
    })
}

fn event(i: u64) -> EventData {
    EventData::new("MoneyDeposited", format!("payload {i}"))
}

fn read_all(store: &Store) -> Vec<(String, u64, Vec<u8>)> {
    store
        .read_all(0)
        .unwrap()
        .map(|event| {
            let event = event.unwrap();
            (event.stream().to_owned(), event.offset(), event.data().to_vec())
        })
        .collect()
}

fn poisoning(op: IoOp) {
    let dir = tempfile::tempdir().unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let options = Options {
        segment_size_bytes: 64 << 10,
        fault_injector: Some(injector(op, armed.clone(), libc_eio())),
        ..Default::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    let acknowledged = Arc::new(parking_lot::Mutex::new(BTreeMap::new()));
    let counter = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|thread| {
            let (store, acknowledged, counter, armed) =
                (store.clone(), acknowledged.clone(), counter.clone(), armed.clone());
            std::thread::spawn(move || {
                let stream = format!("account-{thread}");
                let mut poisoned = 0;
                for _ in 0..200 {
                    let i = counter.fetch_add(1, Ordering::SeqCst);
                    if i == 300 {
                        armed.store(true, Ordering::SeqCst);
                    }
                    match store.append(&stream, ExpectedVersion::Any, &[event(i)]) {
                        Ok(result) => {
                            acknowledged.lock().insert((stream.clone(), result.first_offset), format!("payload {i}"));
                        }
                        Err(Error::Poisoned { .. }) => poisoned += 1,
                        Err(other) => panic!("expected Poisoned, got {other}"),
                    }
                }
                poisoned
            })
        })
        .collect();
    // Every thread returns: no appender waits forever on a failed group.
    let poisoned: u64 = threads.into_iter().map(|thread| thread.join().unwrap()).sum();
    assert!(poisoned > 0, "the injected failure must poison the store");
    assert!(matches!(store.append("late", ExpectedVersion::Any, &[event(0)]), Err(Error::Poisoned { .. })));
    // Reads still work on a poisoned store, and show only acknowledged events.
    let seen = read_all(&store);
    assert_eq!(seen.len(), acknowledged.lock().len());
    assert!(matches!(store.close(), Err(Error::Poisoned { .. })));

    // Reopened without faults: every acknowledged event is there, byte-identical, and appends work again.
    let store = Store::open_with(dir.path(), Options { segment_size_bytes: 64 << 10, ..Default::default() }).unwrap();
    let on_disk: BTreeMap<(String, u64), String> = read_all(&store)
        .into_iter()
        .map(|(stream, offset, data)| ((stream, offset), String::from_utf8(data).unwrap()))
        .collect();
    for (key, payload) in acknowledged.lock().iter() {
        assert_eq!(on_disk.get(key), Some(payload), "acknowledged event {key:?} lost or altered");
    }
    let before = store.head_position();
    let result = store.append("account-0", ExpectedVersion::Any, &[event(9999)]).unwrap();
    assert_eq!(Some(result.first_position), before.map(|head| head + 1).or(Some(0)));
    assert!(store.verify().unwrap().is_ok());
}

fn libc_eio() -> i32 {
    5 // EIO
}

#[test]
fn a_failed_sync_poisons_the_store_and_every_waiter_returns() {
    poisoning(IoOp::SyncData);
}

#[test]
fn a_failed_write_poisons_the_store_and_every_waiter_returns() {
    poisoning(IoOp::Write);
}

#[test]
fn out_of_space_creating_a_segment_is_a_clean_error() {
    const ENOSPC: i32 = 28;
    let dir = tempfile::tempdir().unwrap();
    let armed = Arc::new(AtomicBool::new(true));
    let options = Options {
        segment_size_bytes: 4096,
        fault_injector: Some(injector(IoOp::Allocate, armed.clone(), ENOSPC)),
        ..Default::default()
    };
    // The first segment of a new store can not be created: opening fails cleanly.
    let empty = tempfile::tempdir().unwrap();
    let opened = Store::open_with(empty.path(), options.clone());
    assert!(matches!(&opened, Err(Error::Io { source, .. }) if source.raw_os_error() == Some(ENOSPC)));

    armed.store(false, Ordering::SeqCst);
    let store = Store::open_with(dir.path(), options).unwrap();
    armed.store(true, Ordering::SeqCst);
    let mut acknowledged = Vec::new();
    let mut failures = 0;
    // About 30 events fill a 4 KiB segment. The first roll may use the spare file prepared before the fault
    // was armed; the roll after it has to create a file and must fail.
    for i in 0..200u64 {
        match store.append("account-1", ExpectedVersion::Any, &[event(i)]) {
            Ok(result) => acknowledged.push((result.first_offset, format!("payload {i}"))),
            Err(Error::Io { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(ENOSPC));
                failures += 1;
            }
            Err(other) => panic!("expected an Io error, got {other}"),
        }
    }
    assert!(failures > 0, "200 events fill several 4 KiB segments, so a roll without a spare must have been tried");
    // Failed appends wrote nothing: offsets stay dense and reads show exactly the acknowledged events.
    let offsets: Vec<u64> = acknowledged.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(offsets, (0..acknowledged.len() as u64).collect::<Vec<_>>());
    assert_eq!(read_all(&store).len(), acknowledged.len());

    // Space is back: the next append rolls to a new segment and the store goes on.
    armed.store(false, Ordering::SeqCst);
    let result = store.append("account-1", ExpectedVersion::Any, &[event(100)]).unwrap();
    assert_eq!(result.first_offset, acknowledged.len() as u64);
    for i in 0..100 {
        store.append("account-2", ExpectedVersion::Any, &[event(i)]).unwrap();
    }
    assert!(store.verify().unwrap().is_ok());
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.stream_version("account-1"), Some(acknowledged.len() as u64));
    assert_eq!(store.stream_version("account-2"), Some(99));
}

#[test]
fn a_poisoned_store_under_buffer_durability_still_closes() {
    // Under `Buffer`, a flush falls due after the interval; once a sync has failed it can never succeed,
    // and the writer must not keep trying (it used to spin, and `close` never returned).
    let dir = tempfile::tempdir().unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let options = Options {
        durability: annals::Durability::Buffer { flush_interval: std::time::Duration::from_millis(20) },
        fault_injector: Some(injector(IoOp::SyncData, armed.clone(), libc_eio())),
        ..Default::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    store.append("account-1", ExpectedVersion::Any, &[event(0)]).unwrap();
    armed.store(true, Ordering::SeqCst);
    store.append("account-1", ExpectedVersion::Any, &[event(1)]).unwrap();
    // Let the background flush fail and poison the store.
    let mut poisoned = false;
    for i in 2..200 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        if let Err(err) = store.append("account-1", ExpectedVersion::Any, &[event(i)]) {
            assert!(matches!(err, Error::Poisoned { .. }), "{err}");
            poisoned = true;
            break;
        }
    }
    assert!(poisoned, "the failed background sync must poison the store");
    // The hang guard: close must come back (with the poison) rather than block forever.
    let (done, closed) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(store.close()).unwrap());
    let result = closed.recv_timeout(std::time::Duration::from_secs(60)).expect("close hung on a poisoned store");
    assert!(matches!(result, Err(Error::Poisoned { .. })));
}
