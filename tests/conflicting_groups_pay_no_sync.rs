//! A group whose every transaction is refused (a wrong expected version) writes nothing, so it syncs nothing:
//! its appenders get their `WrongExpectedVersion` without waiting for an `fdatasync`, and a durable append
//! costs exactly one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use annals::{Error, EventData, ExpectedVersion, FaultInjector, IoOp, Options, Store};

#[test]
fn refused_appends_do_not_sync_and_each_durable_append_syncs_once() {
    let dir = tempfile::tempdir().unwrap();
    let syncs = Arc::new(AtomicUsize::new(0));
    let counter = syncs.clone();
    let injector = FaultInjector::new(move |op| {
        if op == IoOp::SyncData {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        None
    });
    let store = Store::open_with(dir.path(), Options { fault_injector: Some(injector), ..Default::default() }).unwrap();
    let event = || EventData::new("E", &b"x"[..]);
    store.append("s", ExpectedVersion::NoStream, &[event()]).unwrap();
    let before = syncs.load(Ordering::SeqCst);
    for _ in 0..10 {
        let refused = store.append("s", ExpectedVersion::NoStream, &[event()]);
        assert!(matches!(refused, Err(Error::WrongExpectedVersion { .. })), "{refused:?}");
    }
    assert_eq!(syncs.load(Ordering::SeqCst), before, "refused appends wrote nothing and must sync nothing");
    for n in 1..=5 {
        store.append("s", ExpectedVersion::Exact(n - 1), &[event()]).unwrap();
        assert_eq!(syncs.load(Ordering::SeqCst), before + n as usize, "one fdatasync per durable append");
    }
}
