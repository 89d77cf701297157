//! Records that recovery reads back but that nothing proves were synced are made durable before the store
//! opens, so that readers never see an event that a power cut could still take away, and no later record
//! vouches for bytes that are not on disk.
//!
//! A [`DiskModel`] watches every write and sync and keeps what the disk really holds. An append whose
//! `fdatasync` fails poisons the store; its records stay in the page cache. Reopened in the same process (the
//! same boot), recovery reads them back from the cache:
//! - with a kernel that keeps the failed pages dirty (as after a process killed between the write and the
//!   sync), a power cut right after the reopen takes them away unless the open synced them;
//! - with a kernel that marks the failed pages clean (Linux after EIO, the fsyncgate case), a plain `fdatasync`
//!   writes nothing for them: they reach the disk only if the open writes them again before it syncs.
//!
//! In both cases every event a reader sees after the reopen must be in the power-cut image, and an image taken
//! after later appends must open (no `Corrupt` from a later record's `synced_before`) and hold every event.

mod support;

use annals::{Error, EventData, ExpectedVersion, Options, Store};
use support::disk::{DiskModel, FailedSync};

fn event(n: u64) -> EventData {
    EventData::new("MoneyDeposited", format!("deposit {n}").into_bytes())
}

fn positions_and_payloads(store: &Store) -> Vec<(u64, String, u64, Vec<u8>)> {
    store
        .read_all(0)
        .unwrap()
        .map(|event| {
            let event = event.unwrap();
            (event.position(), event.stream().to_owned(), event.offset(), event.data().to_vec())
        })
        .collect()
}

fn scenario(mode: FailedSync) {
    let dir = tempfile::tempdir().unwrap();
    let model = DiskModel::new(mode);
    let options = || Options { fault_injector: Some(model.injector()), ..Default::default() };

    let store = Store::open_with(dir.path(), options()).unwrap();
    for n in 0..5 {
        store.append("account-1", ExpectedVersion::Any, &[event(n)]).unwrap();
    }
    // A two-event append whose sync fails: the store is poisoned, the records stay in the page cache.
    model.fail_next_syncs(1);
    let failed = store.append("account-2", ExpectedVersion::Any, &[event(5), event(6)]);
    assert!(matches!(failed, Err(Error::Poisoned { .. })), "{failed:?}");
    assert!(matches!(store.close(), Err(Error::Poisoned { .. })));

    // Reopened in the same boot: recovery reads the failed records back from the page cache.
    let store = Store::open_with(dir.path(), options()).unwrap();
    let seen = positions_and_payloads(&store);
    let image = model.power_cut(dir.path());
    let after_cut = Store::open(image.path()).expect("a power cut right after the reopen leaves a store that opens");
    assert_eq!(
        positions_and_payloads(&after_cut),
        seen,
        "{mode:?}: readers of the reopened store saw events that a power cut takes away"
    );
    after_cut.close().unwrap();

    // Later appends: their `synced_before` vouches for every earlier position.
    for n in 7..10 {
        store.append("account-1", ExpectedVersion::Any, &[event(n)]).unwrap();
    }
    let seen = positions_and_payloads(&store);
    assert_eq!(seen.len(), 10, "the recovered records were kept and the new ones follow them");
    let image = model.power_cut(dir.path());
    let after_cut = Store::open(image.path())
        .unwrap_or_else(|err| panic!("{mode:?}: a power cut after later appends leaves a store that opens: {err}"));
    assert_eq!(positions_and_payloads(&after_cut), seen, "{mode:?}: every acknowledged event survives the power cut");
    assert!(after_cut.verify().unwrap().is_ok());
}

#[test]
fn records_of_a_failed_sync_are_durable_before_a_reopened_store_shows_them() {
    scenario(FailedSync::KeepsDirty);
}

#[test]
fn a_reopen_in_the_same_boot_rewrites_pages_the_kernel_dropped_after_a_failed_sync() {
    scenario(FailedSync::DropsPages);
}

#[test]
fn a_clean_reopen_rewrites_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("account-1", ExpectedVersion::Any, &[event(0), event(1)]).unwrap();
    store.close().unwrap();
    let model = DiskModel::new(FailedSync::DropsPages);
    let store =
        Store::open_with(dir.path(), Options { fault_injector: Some(model.injector()), ..Default::default() }).unwrap();
    assert_eq!(store.recovery_report().records_resynced, 0);
    assert_eq!(model.syncs(), 0, "a store closed cleanly is opened without a sync");
}
