//! `Store::backup` takes a consistent copy while appends go on: the copy opens, passes `verify`, and holds
//! exactly the events below the reported position, byte for byte, with the original's positions, offsets and
//! ids (so checkpoints stay valid), and none after it; it links sealed segments and index tables instead of
//! copying them, so the copy opens from its index; it works from a read-only store beside the writer; and it
//! refuses a destination that is not empty.

mod support;

use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use annals::{Error, EventData, ExpectedVersion, Store};

fn events(store: &Store) -> Vec<(u64, String, u64, uuid::Uuid, Vec<u8>)> {
    store
        .read_all(0)
        .unwrap()
        .map(|event| {
            let event = event.unwrap();
            (event.position(), event.stream().to_owned(), event.offset(), event.event_id(), event.data().to_vec())
        })
        .collect()
}

#[test]
fn a_backup_taken_during_16_writers_holds_exactly_the_events_up_to_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), support::small_options(64 << 10)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..16)
        .map(|writer| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) || i < 50 {
                    let data = format!("{{\"writer\":{writer},\"i\":{i}}}");
                    store
                        .append(
                            &format!("account-{writer}-{}", i % 4),
                            ExpectedVersion::Any,
                            &[EventData::new("D", data)],
                        )
                        .unwrap();
                    i += 1;
                }
            })
        })
        .collect();
    // Tables are written by the index's own thread after a roll; wait for one, so that what the copy must
    // link is there whatever the machine's speed (a fast CI machine once backed up before the first table).
    while store.head_position().is_none_or(|head| head < 2_000) || store.metrics().index_tables == 0 {
        std::thread::yield_now();
    }
    let copies: Vec<(std::path::PathBuf, u64)> = (0..3)
        .map(|k| {
            let copy = backups.path().join(format!("copy-{k}"));
            let position = store.backup(&copy).unwrap().expect("the store holds events");
            (copy, position)
        })
        .collect();
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().unwrap();
    }
    let original = events(&store);
    for (copy, position) in copies {
        assert!((position as usize) < original.len());
        let restored = Store::open(&copy).unwrap();
        assert_eq!(restored.head_position(), Some(position), "{}", copy.display());
        assert!(restored.verify().unwrap().is_ok());
        assert_eq!(events(&restored), original[..=position as usize], "exactly the events up to the position");
        let report = restored.recovery_report();
        assert!(report.index_tables > 0, "the copy opens from its index tables: {report:?}");
        // Nothing is cut. (The copy's last group carries no later record proving it synced, so recovery writes
        // it again and syncs it, as after any crash: the same bytes, `records_resynced`.)
        assert_eq!(report.tail_bytes_cut, 0, "{report:?}");
        // New appends continue the original's numbering.
        let next = restored.append("account-0-0", ExpectedVersion::Any, &[EventData::new("D", &b"after"[..])]).unwrap();
        assert_eq!(next.first_position, position + 1);
    }
}

#[test]
fn sealed_segments_are_linked_not_copied_and_a_read_only_store_can_back_up() {
    let dir = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir_in(dir.path().parent().unwrap()).unwrap();
    let writer = Store::open_with(dir.path(), support::small_options(16 << 10)).unwrap();
    for i in 0..500u64 {
        writer
            .append(
                &format!("order-{}", i % 7),
                ExpectedVersion::Any,
                &[EventData::new("Placed", i.to_le_bytes().to_vec())],
            )
            .unwrap();
    }
    writer.write_snapshot("order-1", 3, b"state").unwrap();
    let reader = Store::open_read_only_with(dir.path(), support::small_options(16 << 10)).unwrap();
    let copy = backups.path().join("copy");
    let position = reader.backup(&copy).unwrap();
    assert_eq!(position, Some(499));
    let segments = support::segment_paths(dir.path());
    let linked =
        segments[..segments.len() - 1].iter().filter(|path| std::fs::metadata(path).unwrap().nlink() > 1).count();
    assert_eq!(linked, segments.len() - 1, "every sealed segment is shared with the copy");
    let restored = Store::open(&copy).unwrap();
    assert_eq!(events(&restored), events(&writer));
    assert!(restored.latest_snapshot("order-1").unwrap().is_some(), "snapshots come along");

    // Refused: a destination that holds anything.
    assert!(matches!(writer.backup(&copy), Err(Error::Io { .. })));
    // An empty store: nothing to hold.
    let empty = tempfile::tempdir().unwrap();
    let store = Store::open(empty.path()).unwrap();
    assert_eq!(store.backup(backups.path().join("empty")).unwrap(), None);
    assert_eq!(Store::open(backups.path().join("empty")).unwrap().head_position(), None);
}
