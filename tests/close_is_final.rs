//! `close` returns only once the store is closed: its final sync done (or its failure known) and the directory
//! lock released, whichever handle calls it and however many call it at once. A second `close` used to return
//! `Ok(())` at once, before the first had synced or unlocked, even on a poisoned store.

use std::sync::{Arc, Barrier};

use annals::{Error, EventData, ExpectedVersion, FaultInjector, IoOp, Options, Store};

#[test]
fn concurrent_closes_all_wait_and_all_report_the_outcome() {
    for poisoned in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = fail.clone();
        let injector = FaultInjector::new(move |op| {
            (op == IoOp::SyncData && flag.load(std::sync::atomic::Ordering::SeqCst))
                .then(|| std::io::Error::from_raw_os_error(5))
        });
        let store =
            Store::open_with(dir.path(), Options { fault_injector: Some(injector), ..Default::default() }).unwrap();
        store.append("s", ExpectedVersion::Any, &[EventData::new("E", &b"x"[..])]).unwrap();
        if poisoned {
            fail.store(true, std::sync::atomic::Ordering::SeqCst);
            assert!(store.append("s", ExpectedVersion::Any, &[EventData::new("E", &b"y"[..])]).is_err());
        }
        let start = Arc::new(Barrier::new(4));
        let closers: Vec<_> = (0..4)
            .map(|_| {
                let (store, start) = (store.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    store.close()
                })
            })
            .collect();
        drop(store);
        for closer in closers {
            let result = closer.join().unwrap();
            if poisoned {
                assert!(matches!(result, Err(Error::Poisoned { .. })), "every close reports the poison: {result:?}");
            } else {
                assert!(result.is_ok(), "{result:?}");
            }
            // Once any close has returned, the store is closed: the directory can be opened again.
            let reopened = Store::open(dir.path()).expect("the lock is released when close returns");
            if poisoned {
                // The append whose sync failed has an unknown outcome: kept whole or dropped whole.
                assert!(matches!(reopened.head_position(), Some(0 | 1)), "{:?}", reopened.head_position());
            } else {
                assert_eq!(reopened.head_position(), Some(0));
            }
            reopened.close().unwrap();
        }
    }
}
