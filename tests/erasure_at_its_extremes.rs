//! Erasure at its extremes: empty values (an empty string, an empty vector, a unit), a value of several MiB,
//! subject ids of 1 and of 255 bytes (256 and 0 are refused) and non-ASCII ones, and thousands of subjects:
//! added in one rewrite, sealed, some forgotten, and all still right after a reopen, with a key file of exactly
//! the size the spec gives.

mod erasure_support;

use erasure_support::fresh;

use annals::{Erasure, Error, Event, EventCodec, ExpectedVersion, Personal, Store, SUBJECT_BYTES_MAX};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Kept {
    Text { value: Personal<String> },
    Blob { value: Personal<Vec<u8>> },
    Nothing { value: Personal<()> },
}
impl Event for Kept {}

fn round_trip(store: &Store, events: &EventCodec<Kept>, stream: &str, event: &Kept) -> Kept {
    let appended = store.append(stream, ExpectedVersion::Any, &[events.encode(event).unwrap()]).unwrap();
    let recorded = store.read_stream(stream, appended.last_offset).unwrap().next().unwrap().unwrap();
    events.decode(&recorded).unwrap()
}

#[test]
fn empty_and_large_values_round_trip_and_are_forgotten() {
    let (_dir, store, erasure) = fresh();
    let events = EventCodec::<Kept>::default().with_erasure(erasure.clone());
    let large: Vec<u8> = (0..6 << 20).map(|i: u32| (i % 251) as u8).collect();
    let cases = [
        Kept::Text { value: Personal::new("s", String::new()) },
        Kept::Blob { value: Personal::new("s", Vec::new()) },
        Kept::Nothing { value: Personal::new("s", ()) },
        Kept::Blob { value: Personal::new("s", large.clone()) },
    ];
    for (n, case) in cases.iter().enumerate() {
        assert_eq!(&round_trip(&store, &events, &format!("kept-{n}"), case), case);
    }
    let recorded = store.read_stream("kept-3", 0).unwrap().next().unwrap().unwrap();
    assert!(recorded.data().len() < large.len() + 100, "a sealed value is 49 bytes longer than its plaintext");
    assert!(!erasure_support::contains(&recorded.data()[..4096], &large[1000..1064]));

    erasure.forget("s").unwrap();
    for n in 0..cases.len() {
        let recorded = store.read_stream(&format!("kept-{n}"), 0).unwrap().next().unwrap().unwrap();
        let forgotten = match events.decode(&recorded).unwrap() {
            Kept::Text { value } => value.is_forgotten(),
            Kept::Blob { value } => value.is_forgotten(),
            Kept::Nothing { value } => value.is_forgotten(),
        };
        assert!(forgotten, "case {n}");
    }
}

#[test]
fn subject_ids_from_one_to_255_bytes_and_not_beyond() {
    let (_dir, store, erasure) = fresh();
    let events = EventCodec::<Kept>::default().with_erasure(erasure.clone());
    let longest = "é".repeat(SUBJECT_BYTES_MAX / 2) + "x";
    assert_eq!(longest.len(), SUBJECT_BYTES_MAX);
    for subject in ["a", "客户-7", "with space\tand\ncontrol", longest.as_str()] {
        let event = Kept::Text { value: Personal::new(subject, format!("value of {subject}")) };
        assert_eq!(round_trip(&store, &events, "subjects", &event), event, "{subject:?}");
    }
    assert!(erasure.forget(&longest).unwrap());
    for subject in [String::new(), "x".repeat(SUBJECT_BYTES_MAX + 1), "é".repeat(128)] {
        let refused = erasure.add_subjects([subject.as_str()]);
        assert!(matches!(refused, Err(Error::InvalidSubject { .. })), "{} bytes", subject.len());
    }
    assert_eq!(erasure.subject_count(), 3);
}

#[test]
fn thousands_of_subjects_in_one_rewrite_some_forgotten_all_right_after_a_reopen() {
    const SUBJECTS: u64 = 20_000;
    let (dir, store, erasure) = fresh();
    let subjects: Vec<String> = (0..SUBJECTS).map(erasure_support::subject).collect();
    assert_eq!(erasure.add_subjects(&subjects).unwrap(), SUBJECTS as usize);
    let events = EventCodec::<Kept>::default().with_erasure(erasure.clone());
    // One event for every tenth subject: their keys exist already, so no rewrite is needed.
    let data: Vec<_> = (0..SUBJECTS)
        .step_by(10)
        .map(|n| events.encode(&Kept::Text { value: Personal::new(&subjects[n as usize], n.to_string()) }).unwrap())
        .collect();
    store.append("many", ExpectedVersion::Any, &data).unwrap();
    // Every hundredth subject is forgotten: each forget rewrites the whole file (about 800 KB).
    let forgotten = |n: u64| n.is_multiple_of(100);
    for n in (0..SUBJECTS).filter(|&n| forgotten(n)) {
        assert!(erasure.forget(&subjects[n as usize]).unwrap());
    }
    let key_file_len = std::fs::metadata(erasure.key_file()).unwrap().len();
    let expected_len = 20
        + subjects
            .iter()
            .enumerate()
            .filter(|(n, _)| !forgotten(*n as u64))
            .map(|(_, subject)| 41 + subject.len() as u64)
            .sum::<u64>();
    assert_eq!(key_file_len, expected_len);

    drop((events, erasure));
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let erasure = Erasure::open(&store).unwrap();
    let events = EventCodec::<Kept>::default().with_erasure(erasure.clone());
    for (i, recorded) in store.read_stream("many", 0).unwrap().enumerate() {
        let n = i as u64 * 10;
        let Kept::Text { value } = events.decode(&recorded.unwrap()).unwrap() else { panic!() };
        assert_eq!(value.subject(), subjects[n as usize]);
        let expected = (!forgotten(n)).then(|| n.to_string());
        assert_eq!(value.value(), expected.as_ref(), "subject {n}");
    }
    assert_eq!(erasure.subject_count(), SUBJECTS as usize - SUBJECTS as usize / 100);
}
