//! Forgetting a subject: its events still decode, each personal field as the forgotten marker, in this process
//! and after the store and its key store are reopened; other subjects read as before; and not one byte, position,
//! offset or id of the log changes. Forgetting is not a ban: a value sealed for the subject afterwards gets a
//! new key, while the old values stay forgotten, also when a copy read before the forget is written again.

mod erasure_support;

use annals::{Erasure, Event, EventCodec, ExpectedVersion, Filter, Personal, Store, SubscribeFrom};
use erasure_support::*;

#[test]
fn a_forgotten_subject_decodes_with_the_marker_across_a_reopen_and_others_are_unaffected() {
    let (dir, store, erasure) = fresh();
    let codec = codec(&erasure);
    let history = |n| vec![registered(n), moved(n, "1 Main St"), CustomerEvent::Purchased { customer: n, cents: 7 }];
    for n in 0..5 {
        append(&store, &codec, n, &history(n));
    }
    let log_before = raw_log(&store);

    assert!(erasure.forget(&subject(2)).unwrap());
    assert!(!erasure.forget(&subject(2)).unwrap(), "forgotten already");
    assert!(!erasure.forget("never-seen").unwrap());

    let expect = |n| if n == 2 { history(n).iter().map(forgotten).collect() } else { history(n) };
    for n in 0..5 {
        assert_eq!(read(&store, &codec, n), expect(n), "customer {n}");
    }
    assert_eq!(raw_log(&store), log_before, "nothing in the log moved or changed");
    let CustomerEvent::Registered { name, email, country, customer } = &read(&store, &codec, 2)[0] else {
        panic!("registered first")
    };
    assert_eq!((name.subject(), name.value(), email.value()), ("customer-2", None, None));
    assert_eq!((country.as_str(), *customer), ("UK", 2), "fields that are not personal are kept");

    drop((codec, erasure));
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let erasure = Erasure::open(&store).unwrap();
    let codec = erasure_support::codec(&erasure);
    for n in 0..5 {
        assert_eq!(read(&store, &codec, n), expect(n), "customer {n} after the reopen");
    }
    assert_eq!(raw_log(&store), log_before, "the reopen appended nothing either");
    assert!(!erasure.has_key(&subject(2)));
    assert_eq!(erasure.subject_count(), 4);
}

#[test]
fn forgetting_is_not_a_ban_but_old_values_never_come_back() {
    let (_dir, store, erasure) = fresh();
    let codec = codec(&erasure);
    append(&store, &codec, 1, &[registered(1)]);
    // A copy read before the forget, as a projection's state would hold it.
    let read_before = read(&store, &codec, 1).remove(0);

    erasure.forget(&subject(1)).unwrap();
    // The customer comes back: new values get a new key and read as written.
    append(&store, &codec, 1, &[moved(1, "2 New St")]);
    assert_eq!(read(&store, &codec, 1), [forgotten(&registered(1)), moved(1, "2 New St")]);

    // The copy read before the forget is written again: it must not be sealed under the new key.
    let rewritten = codec.encode(&read_before).unwrap();
    store.append("copies", ExpectedVersion::Any, &[rewritten]).unwrap();
    let copy = store.read_stream("copies", 0).unwrap().next().unwrap().unwrap();
    assert_eq!(codec.decode(&copy).unwrap(), forgotten(&registered(1)));
    assert!(!contains(copy.data(), name_of(1).as_bytes()));
    // And a forgotten value written again stays forgotten.
    let forgotten_again = codec.encode(&forgotten(&registered(1))).unwrap();
    store.append("copies", ExpectedVersion::Any, &[forgotten_again]).unwrap();
    let copy = store.read_stream("copies", 1).unwrap().next().unwrap().unwrap();
    assert_eq!(codec.decode(&copy).unwrap(), forgotten(&registered(1)));
}

#[test]
fn a_value_read_before_the_forget_is_written_again_under_its_key_until_then() {
    let (_dir, store, erasure) = fresh();
    let codec = codec(&erasure);
    append(&store, &codec, 1, &[registered(1)]);
    let read_once = read(&store, &codec, 1).remove(0);
    store.append("copies", ExpectedVersion::Any, &[codec.encode(&read_once).unwrap()]).unwrap();
    let copy = store.read_stream("copies", 0).unwrap().next().unwrap().unwrap();
    assert_eq!(codec.decode(&copy).unwrap(), registered(1), "sealed again under the same key");

    erasure.forget(&subject(1)).unwrap();
    assert_eq!(codec.decode(&copy).unwrap(), forgotten(&registered(1)), "and forgotten with it");
}

#[test]
fn nested_personal_values_are_forgotten_by_their_own_subject() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    enum Referral {
        Referred { by: Personal<(String, Personal<String>)> },
    }
    impl Event for Referral {}
    let (_dir, store, erasure) = fresh();
    let codec = EventCodec::<Referral>::default().with_erasure(erasure.clone());
    let inner = Personal::new("friend-1", "Charles".to_owned());
    let event = Referral::Referred { by: Personal::new("customer-1", ("Ada".to_owned(), inner)) };
    store.append("referrals", ExpectedVersion::Any, &[codec.encode(&event).unwrap()]).unwrap();
    let recorded = store.read_stream("referrals", 0).unwrap().next().unwrap().unwrap();
    assert_eq!(codec.decode(&recorded).unwrap(), event);

    erasure.forget("friend-1").unwrap();
    let Referral::Referred { by } = codec.decode(&recorded).unwrap();
    let (name, friend) = by.value().unwrap();
    assert_eq!((name.as_str(), friend), ("Ada", &Personal::forgotten("friend-1")));

    erasure.forget("customer-1").unwrap();
    assert_eq!(codec.decode(&recorded).unwrap(), Referral::Referred { by: Personal::forgotten("customer-1") });
}

#[test]
fn the_erasure_stream_holds_one_event_and_subscriptions_skip_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append(&store, &codec(&Erasure::open(&store).unwrap()), 1, &[registered(1)]);
    // Reopening the key store appends nothing more.
    let erasure = Erasure::open(&store).unwrap();
    erasure.forget(&subject(1)).unwrap();
    assert_eq!(store.stream_version(annals::ERASURE_STREAM), Some(0));

    let mut delivered = Vec::new();
    for message in store.subscribe(SubscribeFrom::Start, Filter::All).unwrap() {
        match message.unwrap() {
            annals::SubscriptionMessage::Event(event) => delivered.push(event.stream().to_owned()),
            annals::SubscriptionMessage::CaughtUp => break,
            _ => {}
        }
    }
    assert_eq!(delivered, [stream(1)]);
}
