//! Background work never makes appends wait.
//!
//! - A merge of index tables, however long it takes. (W9 at 10,000,000 streams found a 6.4 s stall: the one
//!   index thread merged a 1 GB table while the writer, at a roll, waited for it to write the frozen memtables
//!   out.) Here the merge is held inside its table write by the fault injector while the writer rolls dozens of
//!   times: every append must complete meanwhile, and the store must be whole after the merge is let go.
//! - The background zero fill of the next segment file. (W9 found rolls waiting ~150 ms for it.) Held the same
//!   way, the writer must roll on with files it prepares itself.
//!
//! Both tests time out (and fail) on the code before the fix; they never hang.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use annals::{EventData, ExpectedVersion, FaultInjector, IoOp, Options, Store};
use parking_lot::{Condvar, Mutex};

const SEGMENT_BYTES: u64 = 8 << 10;
const PATIENCE: Duration = Duration::from_secs(60);

/// Index table files are named `{first:020}-{end:020}`: the number of positions one covers.
fn table_span(path: &std::path::Path) -> Option<u64> {
    let stem = path.file_stem()?.to_str()?;
    let (first, end) = stem.split_once('-')?;
    Some(end.parse::<u64>().ok()? - first.parse::<u64>().ok()?)
}

#[test]
fn appends_go_on_while_a_merge_is_held() {
    let dir = tempfile::tempdir().unwrap();
    // Every event is the same size, so every segment holds the same number of them: a table of one segment
    // covers at most `per_segment` positions, a merged one four times as many.
    let event = || EventData::new("Tick", vec![7u8; 200]);
    let per_segment = {
        let probe = tempfile::tempdir().unwrap();
        let store = Store::open_with(probe.path(), Options { segment_size_bytes: SEGMENT_BYTES, ..Default::default() })
            .unwrap();
        let mut appended = 0;
        while std::fs::read_dir(probe.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
            .count()
            < 2
        {
            store.append("s-0", ExpectedVersion::Any, &[event()]).unwrap();
            appended += 1;
        }
        appended - 1
    };

    let held = Arc::new((Mutex::new(true), Condvar::new()));
    let merging = Arc::new(AtomicBool::new(false));
    let injector = {
        let (held, merging) = (held.clone(), merging.clone());
        FaultInjector::observing(move |call| {
            let merge_output = call.op == IoOp::Write
                && call.path.extension().is_some_and(|ext| ext == "tmp")
                && call.path.parent().and_then(|p| p.file_name()).is_some_and(|name| name == "index")
                && table_span(call.path).is_some_and(|span| span > per_segment);
            if merge_output {
                merging.store(true, Ordering::SeqCst);
                let (lock, released) = &*held;
                let mut hold = lock.lock();
                while *hold {
                    released.wait(&mut hold);
                }
            }
            None
        })
    };
    let options = Options { segment_size_bytes: SEGMENT_BYTES, fault_injector: Some(injector), ..Default::default() };
    let store = Store::open_with(dir.path(), options).unwrap();

    // Appends on their own thread, reporting each roll's worth; the test waits with a timeout.
    let (done, finished) = mpsc::channel();
    let appender = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0..per_segment * 40 {
                store.append(&format!("s-{}", i % 5), ExpectedVersion::Any, &[event()]).unwrap();
            }
            done.send(()).unwrap();
        })
    };
    finished.recv_timeout(PATIENCE).expect("every append completed while the merge was held");
    assert!(merging.load(Ordering::SeqCst), "a merge began (and is still held) during the appends");
    appender.join().unwrap();

    *held.0.lock() = false;
    held.1.notify_all();
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.head_position(), Some(per_segment * 40 - 1));
    assert!(store.verify().unwrap().is_ok());
}

/// Nor does a roll wait for the background spare's zero fill (W9 found rolls waiting ~150 ms for 64 MiB of
/// zeros): here the zero fill is held, and the writer must roll on with foreground files.
#[test]
fn rolls_go_on_while_the_spare_is_zero_filled() {
    let dir = tempfile::tempdir().unwrap();
    let held = Arc::new((Mutex::new(true), Condvar::new()));
    let filling = Arc::new(AtomicBool::new(false));
    let injector = {
        let (held, filling) = (held.clone(), filling.clone());
        FaultInjector::observing(move |call| {
            if call.op == IoOp::Write && call.path.file_name().is_some_and(|name| name == "spare.seg.tmp") {
                filling.store(true, Ordering::SeqCst);
                let (lock, released) = &*held;
                let mut hold = lock.lock();
                while *hold {
                    released.wait(&mut hold);
                }
            }
            None
        })
    };
    let options = Options { segment_size_bytes: SEGMENT_BYTES, fault_injector: Some(injector), ..Default::default() };
    let store = Store::open_with(dir.path(), options).unwrap();
    let (done, finished) = mpsc::channel();
    let appender = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0..2_000u64 {
                store
                    .append("s-1", ExpectedVersion::Any, &[EventData::new("Tick", vec![7u8; 200 + (i % 3) as usize])])
                    .unwrap();
            }
            done.send(()).unwrap();
        })
    };
    finished.recv_timeout(PATIENCE).expect("every append completed while the spare's zero fill was held");
    appender.join().unwrap();
    assert!(filling.load(Ordering::SeqCst), "a spare was being zero-filled during the appends");
    let segments = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
        .count();
    assert!(segments > 20, "the writer rolled {segments} times meanwhile");
    *held.0.lock() = false;
    held.1.notify_all();
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.head_position(), Some(1_999));
    assert!(store.verify().unwrap().is_ok());
}
