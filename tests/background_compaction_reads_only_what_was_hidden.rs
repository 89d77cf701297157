//! The background compactor's cost grows with what a lifecycle change hid, not with the store: after a small
//! stream is deleted from a store of many segments, it reads (with `pread`, which the fault injector sees)
//! only the segments that hold that stream's events, and compacts them.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use annals::{EventData, ExpectedVersion, FaultInjector, IoOp, Options, Store};

#[test]
fn a_deletion_makes_the_compactor_read_only_the_segments_it_hid_events_in() {
    let reads: Arc<Mutex<Option<BTreeSet<PathBuf>>>> = Arc::new(Mutex::new(None));
    let seen = reads.clone();
    let injector = FaultInjector::observing(move |call| {
        if call.op == IoOp::Read && call.path.extension().is_some_and(|ext| ext == "seg") {
            if let Some(files) = seen.lock().unwrap().as_mut() {
                files.insert(call.path.to_owned());
            }
        }
        None
    });
    let options = Options {
        segment_size_bytes: 16 << 10,
        compaction_dead_percent: 1,
        fault_injector: Some(injector),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options).unwrap();
    let bulk = |store: &Store, n: u64| {
        for i in 0..n {
            let stream = format!("bulk-{}", i % 50);
            store.append(&stream, ExpectedVersion::Any, &[EventData::new("B", vec![i as u8; 200])]).unwrap();
        }
    };
    bulk(&store, 1500);
    let mut tiny_positions = Vec::new();
    for i in 0..20u8 {
        tiny_positions.push(store.append("tiny", ExpectedVersion::Any, &[EventData::new("T", vec![i; 300])]).unwrap());
    }
    bulk(&store, 1500);
    store.flush_index().unwrap();
    let segment_of = |position: u64| {
        let mut bases: Vec<u64> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|entry| entry.unwrap().file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        bases.sort_unstable();
        let base = bases.into_iter().rev().find(|&base| base <= position).unwrap();
        dir.path().join(format!("{base:020}.seg"))
    };
    let holding: BTreeSet<PathBuf> = tiny_positions.iter().map(|result| segment_of(result.first_position)).collect();
    let segments = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
        .count();
    assert!(segments > 20 * holding.len(), "{segments} segments, {} hold tiny", holding.len());

    *reads.lock().unwrap() = Some(BTreeSet::new());
    store.delete_stream("tiny", ExpectedVersion::Any).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while store.metrics().compactions < holding.len() as u64 {
        assert!(std::time::Instant::now() < deadline, "the compactor did not compact tiny's segments");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let read = reads.lock().unwrap().take().unwrap();
    assert_eq!(read, holding, "the compactor read segments that hold nothing the deletion hid");
    assert_eq!(store.read_stream("tiny", 0).unwrap().count(), 0);
    assert_eq!(store.stream_version("tiny"), Some(19));
    assert!(store.verify().unwrap().is_ok());
}
