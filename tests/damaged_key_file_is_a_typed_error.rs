//! A damaged or missing key file is a typed error, never a panic and never a silent loss of keys: a key file
//! cut at any byte or with any bit flipped is `Corrupt` (or `UnsupportedFormat` where the version changed), one
//! of a newer format is `UnsupportedFormat`, and a missing one is `KeyFileMissing` once the store has used
//! keys, also in a copy of the log restored without them; only a store that never had keys starts empty.
//! `open_after_key_loss` accepts a loss explicitly; `Erasure::backup` beside `Store::backup` keeps the keys; a
//! second key store of the same store is `Locked`; and a rewrite whose directory sync fails poisons the key
//! store's writes until it is opened again.

mod erasure_support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use annals::{Erasure, Error, FaultInjector, IoOp, Options, Store};
use erasure_support::*;

/// A store whose key file holds three subjects, each with an event; returns the key file's bytes.
fn store_with_keys(dir: &Path) -> (Store, Vec<u8>) {
    let store = Store::open(dir).unwrap();
    let erasure = Erasure::open(&store).unwrap();
    for n in 0..3 {
        append(&store, &codec(&erasure), n, &[registered(n)]);
    }
    let bytes = std::fs::read(erasure.key_file()).unwrap();
    (store, bytes)
}

fn key_file(dir: &Path) -> std::path::PathBuf {
    dir.join(annals::KEYS_DIR).join(annals::KEY_FILE)
}

#[test]
fn a_key_file_cut_at_any_byte_or_with_any_bit_flipped_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let (store, bytes) = store_with_keys(dir.path());
    let open_with = |content: &[u8]| {
        std::fs::write(key_file(dir.path()), content).unwrap();
        Erasure::open(&store).map(|_| ())
    };
    for len in 0..bytes.len() {
        let error = open_with(&bytes[..len]).unwrap_err();
        assert!(
            matches!(&error, Error::Corrupt { file, .. } if file == &key_file(dir.path())),
            "cut at {len}: {error}"
        );
    }
    for bit in 0..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let error = open_with(&damaged).unwrap_err();
        let version_bytes = 8..12;
        match error {
            Error::Corrupt { .. } => {}
            Error::UnsupportedFormat { found, supported: 1, .. } if version_bytes.contains(&(bit / 8)) => {
                assert_ne!(found, 1)
            }
            other => panic!("bit {bit}: {other}"),
        }
    }
    open_with(&bytes).expect("the intact file opens");
}

#[test]
fn damage_reports_the_offset_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut bytes) = store_with_keys(dir.path());
    let crc_at = bytes.len() - 4;
    bytes[20] ^= 0xff;
    std::fs::write(key_file(dir.path()), &bytes).unwrap();
    let error = Erasure::open(&store).unwrap_err();
    assert!(
        matches!(&error, Error::Corrupt { offset, reason, .. } if *offset == crc_at as u64 && reason.contains("CRC")),
        "{error}"
    );
}

#[test]
fn a_key_file_of_a_newer_format_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_keys(dir.path());
    let mut newer = [&b"ANNLKEYS"[..], &2u32.to_le_bytes(), &0u32.to_le_bytes()].concat();
    newer.extend_from_slice(&crc32fast::hash(&newer).to_le_bytes());
    std::fs::write(key_file(dir.path()), newer).unwrap();
    let error = Erasure::open(&store).unwrap_err();
    assert!(matches!(error, Error::UnsupportedFormat { found: 2, supported: 1, .. }), "{error}");
}

#[test]
fn a_missing_key_file_is_missing_keys_and_accepting_the_loss_is_explicit() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_keys(dir.path());
    std::fs::remove_file(key_file(dir.path())).unwrap();
    let error = Erasure::open(&store).unwrap_err();
    assert!(matches!(&error, Error::KeyFileMissing { file } if file == &key_file(dir.path())), "{error}");

    // The whole directory gone: the log still says keys were made.
    std::fs::remove_dir_all(dir.path().join(annals::KEYS_DIR)).unwrap();
    assert!(matches!(Erasure::open(&store), Err(Error::KeyFileMissing { .. })));
    let reader = Store::open_read_only(dir.path()).unwrap();
    assert!(matches!(Erasure::open(&reader), Err(Error::KeyFileMissing { .. })), "read-only too");

    let erasure = Erasure::open_after_key_loss(&store).unwrap();
    assert_eq!(erasure.subject_count(), 0);
    for n in 0..3 {
        assert_eq!(read(&store, &codec(&erasure), n), [forgotten(&registered(n))]);
    }
    drop(erasure);
    Erasure::open(&store).expect("an empty key file is a key file");
}

#[test]
fn a_damaged_key_file_is_not_given_up_by_accepting_a_loss() {
    let dir = tempfile::tempdir().unwrap();
    let (store, bytes) = store_with_keys(dir.path());
    std::fs::write(key_file(dir.path()), &bytes[..bytes.len() - 1]).unwrap();
    assert!(matches!(Erasure::open_after_key_loss(&store), Err(Error::Corrupt { .. })));
}

#[test]
fn a_store_that_never_used_keys_starts_empty_and_says_so_in_its_log_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("plain", annals::ExpectedVersion::Any, &[annals::EventData::new("Noted", &b"x"[..])]).unwrap();
    let erasure = Erasure::open(&store).unwrap();
    assert_eq!(erasure.subject_count(), 0);
    assert_eq!(spec_decode(&std::fs::read(erasure.key_file()).unwrap()), Vec::new());
    assert_eq!(store.stream_version(annals::ERASURE_STREAM), Some(0));
    drop(erasure);
    Erasure::open(&store).unwrap();
    assert_eq!(store.stream_version(annals::ERASURE_STREAM), Some(0), "appended once");
}

#[test]
fn a_backup_restored_without_its_keys_says_so_and_one_with_them_reads_everything() {
    let dir = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let (store, _) = store_with_keys(dir.path());
    let without = backups.path().join("without-keys");
    store.backup(&without).unwrap();
    let with = backups.path().join("with-keys");
    store.backup(&with).unwrap();
    let erasure = Erasure::open(&store).unwrap();
    erasure.backup(&with).unwrap();

    let restored = Store::open(&without).unwrap();
    assert!(matches!(Erasure::open(&restored), Err(Error::KeyFileMissing { .. })));
    let restored = Store::open(&with).unwrap();
    let keys = Erasure::open(&restored).unwrap();
    for n in 0..3 {
        assert_eq!(read(&restored, &codec(&keys), n), [registered(n)]);
    }
}

#[test]
fn one_key_store_per_store_at_a_time() {
    let (_dir, store, erasure) = fresh();
    let clone = erasure.clone();
    assert!(matches!(Erasure::open(&store), Err(Error::Locked { .. })));
    drop(erasure);
    assert!(matches!(Erasure::open(&store), Err(Error::Locked { .. })), "a clone still holds it");
    drop(clone);
    Erasure::open(&store).unwrap();
}

#[test]
fn a_failed_directory_sync_after_the_rename_poisons_writes_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Arc::new(AtomicBool::new(false));
    let flag = failing.clone();
    let keys_dir = dir.path().join(annals::KEYS_DIR);
    // Fails the sync of keys/ itself: the rename is done, its durability unknown.
    let injector = FaultInjector::observing(move |call| {
        (flag.load(Ordering::SeqCst) && call.op == IoOp::CreateFile && call.path == keys_dir)
            .then(|| std::io::Error::other("injected: keys/ does not sync"))
    });
    let store = Store::open_with(dir.path(), Options { fault_injector: Some(injector), ..Default::default() }).unwrap();
    let erasure = Erasure::open(&store).unwrap();
    append(&store, &codec(&erasure), 1, &[registered(1)]);

    failing.store(true, Ordering::SeqCst);
    let error = erasure.forget(&subject(1)).unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error}");
    failing.store(false, Ordering::SeqCst);
    assert!(!erasure.has_key(&subject(1)), "the file in place lacks the key: memory follows it");
    assert_eq!(read(&store, &codec(&erasure), 1), [forgotten(&registered(1))]);
    assert!(matches!(erasure.add_subjects(["customer-9"]), Err(Error::Poisoned { .. })));
    assert!(codec(&erasure).encode(&registered(9)).is_err());

    drop(erasure);
    let erasure = Erasure::open(&store).unwrap();
    erasure.add_subjects(["customer-9"]).expect("a reopened key store writes again");
    assert!(!erasure.has_key(&subject(1)));
}
