//! Personal fields round-trip through the log sealed: what was encoded decodes again, in bincode and in JSON,
//! while the stored payload holds the subject id in the clear and none of the personal values; a new subject's
//! key is durable before its first event exists; a codec without a key store refuses personal fields instead of
//! writing them in the clear, and codecs that never use them are unchanged; a read-only store reads them too.

mod erasure_support;

use annals::{
    Erasure, Error, Event, EventCodec, EventError, ExpectedVersion, JsonCodec, Personal, Store, SUBJECT_BYTES_MAX,
};
use erasure_support::*;

#[test]
fn events_with_personal_fields_round_trip_and_the_log_holds_no_plaintext() {
    let (dir, store, erasure) = fresh();
    let codec = codec(&erasure);
    let events = [registered(1), moved(1, "12 Marylebone Road"), CustomerEvent::Purchased { customer: 1, cents: 99 }];
    append(&store, &codec, 1, &events);
    append(&store, &codec, 2, &[registered(2)]);

    assert_eq!(read(&store, &codec, 1), events);
    assert_eq!(read(&store, &codec, 2), [registered(2)]);
    for (n, recorded) in store.read_stream(&stream(1), 0).unwrap().enumerate() {
        let data = recorded.unwrap().data().to_vec();
        for secret in [name_of(1), email_of(1), "Marylebone".into()] {
            assert!(!contains(&data, secret.as_bytes()), "event {n} holds {secret:?} in the clear");
        }
        if n < 2 {
            assert!(contains(&data, subject(1).as_bytes()), "the subject id is readable without the key");
        }
    }
    for secret in [name_of(1), email_of(2), "Marylebone".into()] {
        assert_eq!(files_holding(dir.path(), secret.as_bytes()), Vec::<std::path::PathBuf>::new(), "{secret}");
    }
}

#[test]
fn json_payloads_show_the_subject_and_hex_sealed_bytes() {
    let (_dir, store, erasure) = fresh();
    let json = EventCodec::<CustomerEvent, JsonCodec>::default().with_erasure(erasure.clone());
    let encoded = json.encode(&registered(7)).unwrap();
    let text = std::str::from_utf8(encoded.data()).unwrap().to_owned();
    assert!(text.contains(r#""name":{"subject":"customer-7","sealed":"01"#), "{text}");
    assert!(!text.contains("Ada"), "{text}");
    store.append(&stream(7), ExpectedVersion::Any, &[encoded]).unwrap();

    // Read back by the JSON codec, and by a bincode codec (reads follow each event's codec id).
    assert_eq!(read(&store, &codec(&erasure), 7), [registered(7)]);
    let recorded = store.read_stream(&stream(7), 0).unwrap().next().unwrap().unwrap();
    assert_eq!(json.decode(&recorded).unwrap(), registered(7));

    erasure.forget(&subject(7)).unwrap();
    assert_eq!(json.decode(&recorded).unwrap(), forgotten(&registered(7)));
}

#[test]
fn a_new_subjects_key_is_durable_before_its_first_event_exists() {
    let (_dir, store, erasure) = fresh();
    assert!(!erasure.has_key(&subject(3)));
    let data = codec(&erasure).encode(&registered(3)).unwrap();
    // Encoded, not yet appended: the key file on disk already holds the key.
    assert!(entry_of(&erasure, &subject(3)).is_some());
    store.append(&stream(3), ExpectedVersion::Any, &[data]).unwrap();
    drop(erasure);
    let store_dir = store.dir().to_owned();
    store.close().unwrap();

    let store = Store::open(&store_dir).unwrap();
    let erasure = Erasure::open(&store).unwrap();
    assert_eq!(read(&store, &codec(&erasure), 3), [registered(3)]);
}

#[test]
fn without_a_key_store_personal_fields_are_refused_and_other_events_are_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let plain = EventCodec::<CustomerEvent>::default();
    let refused = plain.encode(&registered(1)).unwrap_err();
    assert!(matches!(refused, EventError::Encode { event_type: "Registered", .. }), "{refused}");
    assert!(refused.to_string().contains("needs a key store"), "{refused}");

    // An event without personal fields needs no key store, and encodes the same with or without one.
    let purchase = CustomerEvent::Purchased { customer: 1, cents: 5 };
    let erasure = Erasure::open(&store).unwrap();
    assert_eq!(plain.encode(&purchase).unwrap(), codec(&erasure).encode(&purchase).unwrap());

    // A sealed event read without a key store is an error, never garbage.
    append(&store, &codec(&erasure), 1, &[registered(1)]);
    let recorded = store.read_stream(&stream(1), 0).unwrap().next().unwrap().unwrap();
    let error = plain.decode(&recorded).unwrap_err();
    assert!(matches!(error, EventError::Decode { offset: 0, .. }), "{error}");
    // Inside a scope, the same codec reads it.
    assert_eq!(erasure.scope(|| plain.decode(&recorded)).unwrap(), registered(1));
}

#[test]
fn an_invalid_subject_id_is_a_typed_error_and_writes_nothing() {
    let (_dir, _store, erasure) = fresh();
    #[derive(serde::Serialize, serde::Deserialize, Debug)]
    enum Note {
        Noted { text: Personal<String> },
    }
    impl Event for Note {}
    let notes = EventCodec::<Note>::default().with_erasure(erasure.clone());
    for subject in [String::new(), "x".repeat(SUBJECT_BYTES_MAX + 1)] {
        let error = notes.encode(&Note::Noted { text: Personal::new(subject, "hello".into()) }).unwrap_err();
        assert!(
            matches!(&error, EventError::Erasure { event_type: "Noted", source: Error::InvalidSubject { .. } }),
            "{error}"
        );
    }
    assert_eq!(erasure.subject_count(), 0);
}

#[test]
fn a_read_only_store_reads_personal_fields_and_refuses_to_make_keys() {
    let (dir, store, erasure) = fresh();
    append(&store, &codec(&erasure), 1, &[registered(1)]);

    let reader = Store::open_read_only(dir.path()).unwrap();
    let reading = Erasure::open(&reader).unwrap();
    assert!(reading.is_read_only());
    assert_eq!(read(&reader, &codec(&reading), 1), [registered(1)]);
    let error = codec(&reading).encode(&registered(2)).unwrap_err();
    assert!(matches!(error, EventError::Erasure { source: Error::ReadOnly, .. }), "{error}");
    assert!(matches!(reading.forget(&subject(1)), Err(Error::ReadOnly)));

    // The writer forgets; the reader sees it once it opens its key store again.
    erasure.forget(&subject(1)).unwrap();
    let reading = Erasure::open(&reader).unwrap();
    assert_eq!(read(&reader, &codec(&reading), 1), [forgotten(&registered(1))]);
}

#[test]
fn a_read_only_store_that_never_used_erasure_has_no_subjects() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("plain", ExpectedVersion::Any, &[annals::EventData::new("Noted", &b"x"[..])]).unwrap();
    let reader = Store::open_read_only(dir.path()).unwrap();
    let erasure = Erasure::open(&reader).unwrap();
    assert_eq!(erasure.subject_count(), 0);
    assert!(!dir.path().join(annals::KEYS_DIR).exists(), "a read-only open creates nothing");
}
