//! Many threads encode and decode personal fields while another forgets their subjects one by one: every decode
//! returns the value it was encoded with or the forgotten marker, for all of a subject's fields in an event at
//! once (never one field of each), never an error, garbage or a panic; every
//! event committed before its subject's forget began reads as forgotten afterwards; events of subjects never
//! forgotten read as written; and concurrent first uses of new subjects all get durable keys.

mod erasure_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use annals::{Erasure, EventCodec, ExpectedVersion};
use erasure_support::*;

const SUBJECTS: u64 = 12;
const FORGOTTEN: u64 = 6;

/// Checks that `event`, of customer `n`, is as registered or forgotten, whole: both fields or neither.
fn check(n: u64, event: &CustomerEvent) -> bool {
    let CustomerEvent::Registered { name, email, customer, country } = event else { panic!("{event:?}") };
    assert_eq!((*customer, country.as_str()), (n, "UK"));
    assert_eq!((name.subject(), email.subject()), (subject(n).as_str(), subject(n).as_str()));
    match (name.value(), email.value()) {
        (Some(name), Some(email)) => {
            assert_eq!((name, email), (&name_of(n), &email_of(n)));
            true
        }
        (None, None) => false,
        _ => panic!("customer {n}: one field forgotten, the other not (both share one key)"),
    }
}

#[test]
fn decodes_racing_forgets_see_the_value_or_the_marker_and_nothing_else() {
    let (_dir, store, erasure) = fresh();
    let codec = Arc::new(codec(&erasure));
    for n in 0..SUBJECTS {
        append(&store, &codec, n, &[registered(n), registered(n)]);
    }
    // A clock of completed steps: an append's completion and a forget's start are stamped with it.
    let clock = Arc::new(AtomicU64::new(0));
    let forget_started: Arc<Mutex<BTreeMap<u64, u64>>> = Arc::default();
    let committed: Arc<Mutex<Vec<(u64, u64, u64)>>> = Arc::default(); // (customer, position, stamp)
    let done = Arc::new(AtomicBool::new(false));

    std::thread::scope(|scope| {
        for writer in 0..2u64 {
            let (store, codec, clock, committed, done) = (&store, codec.clone(), &clock, &committed, &done);
            scope.spawn(move || {
                let mut round = 0;
                while !done.load(Ordering::SeqCst) {
                    let n = (round * 2 + writer) % SUBJECTS;
                    let data = codec.encode(&registered(n)).unwrap();
                    let appended = store.append(&stream(n), ExpectedVersion::Any, &[data]).unwrap();
                    let stamp = clock.fetch_add(1, Ordering::SeqCst);
                    committed.lock().unwrap().push((n, appended.last_position, stamp));
                    round += 1;
                }
            });
        }
        for _ in 0..2 {
            let (store, codec, done) = (&store, codec.clone(), &done);
            scope.spawn(move || {
                let mut decoded = 0u64;
                while !done.load(Ordering::SeqCst) || decoded == 0 {
                    for n in 0..SUBJECTS {
                        for event in store.read_stream(&stream(n), 0).unwrap() {
                            check(n, &codec.decode(&event.unwrap()).unwrap());
                            decoded += 1;
                        }
                    }
                }
            });
        }
        let (erasure, clock, forget_started, done) = (&erasure, &clock, &forget_started, &done);
        scope.spawn(move || {
            for n in 0..FORGOTTEN {
                std::thread::sleep(std::time::Duration::from_millis(15));
                forget_started.lock().unwrap().insert(n, clock.fetch_add(1, Ordering::SeqCst));
                assert!(erasure.forget(&subject(n)).unwrap());
            }
            std::thread::sleep(std::time::Duration::from_millis(15));
            done.store(true, Ordering::SeqCst);
        });
    });

    let forget_started = forget_started.lock().unwrap();
    let committed = committed.lock().unwrap();
    let stamp_of: BTreeMap<u64, u64> = committed.iter().map(|&(_, position, stamp)| (position, stamp)).collect();
    let mut readable_after_forget = 0;
    for n in 0..SUBJECTS {
        for event in store.read_stream(&stream(n), 0).unwrap() {
            let event = event.unwrap();
            let readable = check(n, &codec.decode(&event).unwrap());
            match forget_started.get(&n) {
                None => assert!(readable, "customer {n} was never forgotten"),
                Some(&forgot_at) => {
                    // The first two were appended before the threads started; the others carry their stamp.
                    let before = stamp_of.get(&event.position()).is_none_or(|&stamp| stamp < forgot_at);
                    assert!(
                        !readable || !before,
                        "customer {n}, position {}: committed before the forget",
                        event.position()
                    );
                    readable_after_forget += u64::from(readable);
                }
            }
        }
    }
    // Events sealed after a forget got the subject's new key (forgetting is not a ban).
    println!(
        "{} events committed during the run; {readable_after_forget} of forgotten subjects sealed after",
        committed.len()
    );
}

#[test]
fn concurrent_first_uses_of_new_subjects_all_get_durable_keys() {
    let (_dir, store, erasure) = fresh();
    let codec: EventCodec<CustomerEvent> = codec(&erasure);
    std::thread::scope(|scope| {
        for thread in 0..4u64 {
            let (store, codec) = (&store, &codec);
            scope.spawn(move || {
                for n in (thread * 25)..(thread * 25 + 25) {
                    append(store, codec, n, &[registered(n)]);
                }
            });
        }
    });
    assert_eq!(erasure.subject_count(), 100);
    assert_eq!(spec_decode(&std::fs::read(erasure.key_file()).unwrap()).len(), 100);
    drop((codec, erasure));
    let erasure = Erasure::open(&store).unwrap();
    for n in 0..100 {
        assert_eq!(read(&store, &erasure_support::codec(&erasure), n), [registered(n)]);
    }
}
