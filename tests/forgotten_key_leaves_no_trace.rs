//! A forgotten key leaves no trace in the store directory: after `forget` the key file (decoded by the byte
//! map of `format-spec.md` §18.2) holds neither the subject, nor its key id, nor its key, no other file holds
//! the key (it never reached the log, the index or a snapshot), and no temporary file is left, also after a
//! rewrite that failed and after a crash that left a temporary file holding keys. The key file and its
//! directory are its owner's alone.

mod erasure_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use annals::{Erasure, FaultInjector, IoOp, Options, Repository, SnapshotPolicy, Store};
use erasure_support::*;

/// Names under the store directory that are temporary, or copies of the key file.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = files_under(dir)
        .iter()
        .map(|path| path.strip_prefix(dir).unwrap().display().to_string())
        .filter(|name| name.contains(".tmp"))
        .collect();
    if dir.join("keys.tmp").exists() {
        names.push("keys.tmp/".into());
    }
    names
}

#[test]
fn the_key_file_after_a_forget_holds_no_trace_of_the_key_and_nothing_else_ever_did() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), Options { segment_size_bytes: 1 << 16, ..Default::default() }).unwrap();
    let erasure = Erasure::open(&store).unwrap();
    let codec = codec(&erasure);
    for n in 0..20 {
        append(&store, &codec, n, &[registered(n), moved(n, "3 Baker St")]);
    }
    store.write_snapshot(&stream(3), 1, b"a snapshot beside the log").unwrap();
    let target = entry_of(&erasure, &subject(3)).expect("customer-3 has a key");
    let others: Vec<SpecEntry> = spec_decode(&std::fs::read(erasure.key_file()).unwrap())
        .into_iter()
        .filter(|entry| entry.subject != subject(3))
        .collect();
    assert_eq!(others.len(), 19);
    assert_eq!(files_holding(dir.path(), &target.key), [erasure.key_file().to_owned()], "only the key file");

    assert!(erasure.forget(&subject(3)).unwrap());
    let after = std::fs::read(erasure.key_file()).unwrap();
    assert_eq!(spec_decode(&after), others, "the other keys are kept, unchanged");
    assert!(!contains(&after, &target.key), "the key");
    assert!(!contains(&after, &target.key_id), "its id");
    assert!(!contains(&after, subject(3).as_bytes()), "its subject");
    assert_eq!(files_holding(dir.path(), &target.key), Vec::<std::path::PathBuf>::new(), "no file anywhere");
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    assert_eq!(read(&store, &codec, 3), [forgotten(&registered(3)), forgotten(&moved(3, ""))]);
}

#[test]
fn the_key_file_and_its_directory_are_the_owners_alone() {
    let (dir, _store, erasure) = fresh();
    erasure.add_subjects(["customer-1"]).unwrap();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(erasure.key_file()), 0o600);
    assert_eq!(mode(&dir.path().join(annals::KEYS_DIR)), 0o700);
}

#[test]
fn a_failed_rewrite_keeps_the_key_leaves_no_temporary_file_and_can_be_retried() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Arc::new(AtomicBool::new(false));
    let flag = failing.clone();
    // Fails the sync of the key file's temporary copy: the write before the rename.
    let injector = FaultInjector::observing(move |call| {
        let temporary = call.path.file_name().is_some_and(|name| name == "subjects.keys.tmp");
        (flag.load(Ordering::SeqCst) && call.op == IoOp::CreateFile && temporary)
            .then(|| std::io::Error::other("injected: the temporary key file does not sync"))
    });
    let store = Store::open_with(dir.path(), Options { fault_injector: Some(injector), ..Default::default() }).unwrap();
    let erasure = Erasure::open(&store).unwrap();
    let codec = codec(&erasure);
    append(&store, &codec, 1, &[registered(1)]);
    let key = entry_of(&erasure, &subject(1)).unwrap();

    failing.store(true, Ordering::SeqCst);
    let error = erasure.forget(&subject(1)).unwrap_err();
    assert!(matches!(error, annals::Error::Io { .. }), "{error}");
    assert_eq!(leftovers(dir.path()), Vec::<String>::new(), "the temporary file is removed");
    assert!(erasure.has_key(&subject(1)), "nothing was forgotten");
    assert_eq!(entry_of(&erasure, &subject(1)), Some(key.clone()));
    assert_eq!(read(&store, &codec, 1), [registered(1)]);
    // A new subject's key that cannot be made durable is never used: the encode fails.
    assert!(codec.encode(&registered(2)).is_err());
    assert!(!erasure.has_key(&subject(2)));

    failing.store(false, Ordering::SeqCst);
    assert!(erasure.forget(&subject(1)).unwrap(), "the retry forgets");
    assert_eq!(files_holding(dir.path(), &key.key), Vec::<std::path::PathBuf>::new());
}

#[test]
fn a_temporary_key_file_left_by_a_crash_is_removed_when_the_keys_are_opened() {
    let (dir, store, erasure) = fresh();
    erasure.add_subjects(["customer-1", "customer-2"]).unwrap();
    let key = entry_of(&erasure, "customer-1").unwrap();
    let file = erasure.key_file().to_owned();
    drop(erasure);
    // As a crash during a rewrite leaves it: a complete copy of the keys under the temporary name.
    let tmp = file.with_file_name("subjects.keys.tmp");
    std::fs::copy(&file, &tmp).unwrap();
    // And a first use interrupted before its rename.
    std::fs::create_dir(dir.path().join("keys.tmp")).unwrap();

    let erasure = Erasure::open(&store).unwrap();
    assert!(!tmp.exists(), "removed at open");
    erasure.forget("customer-1").unwrap();
    assert_eq!(files_holding(dir.path(), &key.key), Vec::<std::path::PathBuf>::new());
    // keys.tmp/ is a leftover of a first use, which this store is past: it holds no key, and is left alone.
    assert!(files_under(&dir.path().join("keys.tmp")).is_empty());
}

#[test]
fn snapshots_of_an_aggregate_with_personal_state_hold_no_plaintext() {
    use annals::{Aggregate, Event, Loaded, Personal};
    #[derive(serde::Serialize, serde::Deserialize, Debug)]
    enum ContactEvent {
        Named { name: Personal<String> },
    }
    impl Event for ContactEvent {}
    #[derive(serde::Serialize, serde::Deserialize, Default)]
    struct Contact {
        names: Vec<Personal<String>>,
    }
    impl Aggregate for Contact {
        type Event = ContactEvent;
        type Error = String;
        const CATEGORY: &'static str = "contact";
        fn apply(&mut self, ContactEvent::Named { name }: &ContactEvent) {
            self.names.push(name.clone());
        }
    }
    let (dir, store, erasure) = fresh();
    let contacts =
        Repository::<Contact>::new(store).with_erasure(erasure).with_snapshot_policy(SnapshotPolicy::every(1));
    let named = ContactEvent::Named { name: Personal::new("contact-1", "Grace Hopper".into()) };
    let saved = contacts.save(&mut Loaded::new(1), vec![named]).unwrap();
    assert_eq!(saved.snapshot, Some(0));
    assert_eq!(files_holding(dir.path(), b"Grace"), Vec::<std::path::PathBuf>::new());
}
