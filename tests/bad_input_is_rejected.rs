//! Bad input is refused with a typed error before anything is written. Stream names and event types that are
//! empty, longer than 1024 bytes (also by one byte of a multi-byte character) or hold control characters are
//! `InvalidStreamName` / `InvalidEventType` (also for reads); an event larger than `event_size_bytes_max` or
//! than a segment is `EventTooLarge` with its size and the limit; an atomic append larger than a segment is
//! `TransactionTooLarge`; no events (or no streams) is `EmptyAppend`; unusable options are `InvalidOptions`
//! and create nothing. One bad event or part refuses the whole call. Each refusal leaves the store exactly as
//! it was, and it keeps accepting appends; the limits themselves (exactly 1024 bytes, exactly the maximum
//! event size, a transaction of exactly one segment) are accepted.

mod support;

use annals::{Error, EventData, ExpectedVersion, Options, Store, StreamAppend};
use support::{read_all, read_stream, small_options, state, State};

const KNOWN: [&str; 3] = ["good", "s", "other"];

fn event() -> EventData {
    EventData::new("Fine", &b"fine"[..])
}

/// An event of stream `s`, type `t`, whose encoded frame is exactly `frame_len` bytes.
fn event_of_frame_len(frame_len: usize) -> EventData {
    EventData::new("t", vec![7u8; frame_len - 88 - "s".len() - "t".len()])
}

fn bad_names() -> Vec<(String, &'static str)> {
    vec![
        (String::new(), "empty"),
        ("x".repeat(1025), "1025 bytes"),
        (format!("{}x", "é".repeat(512)), "1025 bytes of two-byte characters"),
        (format!("{}€", "x".repeat(1022)), "1025 bytes ending in a three-byte character"),
        ("line\nbreak".into(), "newline"),
        ("tab\there".into(), "tab"),
        ("nul\0".into(), "NUL"),
        ("\u{1b}[31mred".into(), "escape"),
        ("del\u{7f}".into(), "DEL"),
        ("next\u{85}line".into(), "C1 control NEL"),
        ("\u{9f}".into(), "C1 control APC"),
    ]
}

/// Runs `refused`, which must fail as `check` says, and checks that nothing changed and appends still work.
fn assert_refused<T: std::fmt::Debug>(
    store: &Store,
    what: &str,
    refused: impl FnOnce() -> annals::Result<T>,
    check: impl FnOnce(&Error) -> bool,
) {
    let before: State = state(store, &KNOWN);
    match refused() {
        Err(err) => assert!(check(&err), "{what}: wrong error {err:?}"),
        Ok(value) => panic!("{what}: accepted: {value:?}"),
    }
    assert_eq!(state(store, &KNOWN), before, "{what}: a refused call changed the store");
}

#[test]
fn invalid_stream_names_are_refused_for_appends_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("good", ExpectedVersion::NoStream, &[event()]).unwrap();
    for (name, why) in bad_names() {
        let is_invalid_name = |err: &Error| matches!(err, Error::InvalidStreamName { name: n, .. } if *n == name);
        assert_refused(&store, why, || store.append(&name, ExpectedVersion::Any, &[event()]), is_invalid_name);
        assert_refused(&store, why, || store.append(&name, ExpectedVersion::NoStream, &[event()]), is_invalid_name);
        let multi = || {
            store.append_multi(&[
                StreamAppend { stream: "good".into(), expected: ExpectedVersion::Any, events: vec![event()] },
                StreamAppend { stream: name.clone(), expected: ExpectedVersion::Any, events: vec![event()] },
            ])
        };
        assert_refused(&store, why, multi, is_invalid_name);
        assert!(matches!(store.read_stream(&name, 0).map(|_| ()), Err(Error::InvalidStreamName { .. })), "{why}");
        let backwards = store.read_stream_backwards(&name, None).map(|_| ());
        assert!(matches!(backwards, Err(Error::InvalidStreamName { .. })), "{why}");
        assert_eq!(store.stream_version(&name), None, "{why}");
    }
    let result = store.append("good", ExpectedVersion::Exact(0), &[event()]).unwrap();
    assert_eq!((result.first_offset, result.first_position), (1, 1));
}

#[test]
fn invalid_event_types_are_refused_with_the_whole_append() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("good", ExpectedVersion::NoStream, &[event()]).unwrap();
    for (event_type, why) in bad_names() {
        let is_invalid_type =
            |err: &Error| matches!(err, Error::InvalidEventType { event_type: t, .. } if *t == event_type);
        let bad = EventData::new(event_type.clone(), &b"data"[..]);
        // The bad event comes after good ones: none of them is written.
        let events = [event(), event(), bad.clone()];
        assert_refused(&store, why, || store.append("good", ExpectedVersion::Any, &events), is_invalid_type);
        assert_refused(&store, why, || store.append("s", ExpectedVersion::NoStream, &events), is_invalid_type);
        let multi = || {
            store.append_multi(&[
                StreamAppend { stream: "s".into(), expected: ExpectedVersion::Any, events: vec![event()] },
                StreamAppend { stream: "other".into(), expected: ExpectedVersion::Any, events: vec![bad.clone()] },
            ])
        };
        assert_refused(&store, why, multi, is_invalid_type);
    }
    let result = store.append("good", ExpectedVersion::Exact(0), &[event()]).unwrap();
    assert_eq!((result.first_offset, result.first_position), (1, 1));
}

#[test]
fn names_of_exactly_1024_bytes_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for name in ["x".repeat(1024), "é".repeat(512), format!("{}€", "x".repeat(1021))] {
        assert_eq!(name.len(), 1024);
        store.append(&name, ExpectedVersion::NoStream, &[EventData::new(name.clone(), &b"!"[..])]).unwrap();
        assert_eq!(read_stream(&store, &name, 0)[0].event_type, name);
    }
}

#[test]
fn events_over_the_maximum_size_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { event_size_bytes_max: 1000, ..small_options(64 << 10) };
    let store = Store::open_with(dir.path(), options).unwrap();
    store.append("s", ExpectedVersion::NoStream, &[event_of_frame_len(1000)]).unwrap();
    let too_large = |size| move |err: &Error| matches!(err, Error::EventTooLarge { size: s, max: 1000 } if *s == size);

    assert_refused(
        &store,
        "1001 bytes",
        || store.append("s", ExpectedVersion::Any, &[event_of_frame_len(1001)]),
        too_large(1001),
    );
    let metadata_too = [EventData::new("t", vec![0u8; 455]).with_metadata(vec![0u8; 456])];
    assert_refused(
        &store,
        "metadata counts",
        || store.append("s", ExpectedVersion::Any, &metadata_too),
        too_large(1001),
    );
    let name_too = [EventData::new("t".repeat(900), vec![0u8; 12])];
    assert_refused(&store, "event type counts", || store.append("s", ExpectedVersion::Any, &name_too), too_large(1001));
    let one_in_many = [event(), event_of_frame_len(5000), event()];
    assert_refused(&store, "one of many", || store.append("s", ExpectedVersion::Any, &one_in_many), too_large(5000));
    let multi = || {
        store.append_multi(&[
            StreamAppend { stream: "other".into(), expected: ExpectedVersion::NoStream, events: vec![event()] },
            StreamAppend { stream: "s".into(), expected: ExpectedVersion::Any, events: vec![event_of_frame_len(1001)] },
        ])
    };
    assert_refused(&store, "in append_multi", multi, too_large(1001));
    let result = store.append("s", ExpectedVersion::Exact(0), &[event_of_frame_len(1000)]).unwrap();
    assert_eq!(result.first_position, 1);
}

#[test]
fn events_and_transactions_larger_than_a_segment_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small_options(4096)).unwrap();
    // One segment holds 4096 − 64 = 4032 bytes of frames.
    store.append("s", ExpectedVersion::NoStream, &[event()]).unwrap();
    let event_too_large = |err: &Error| matches!(err, Error::EventTooLarge { size: 4033, max: 4032 });
    assert_refused(
        &store,
        "event of 4033 bytes",
        || store.append("s", ExpectedVersion::Any, &[event_of_frame_len(4033)]),
        event_too_large,
    );

    let txn_too_large =
        |size| move |err: &Error| matches!(err, Error::TransactionTooLarge { size: s, max: 4032 } if *s == size);
    let halves = [event_of_frame_len(2104), event_of_frame_len(2104)];
    assert_refused(
        &store,
        "two events of 2104 bytes",
        || store.append("s", ExpectedVersion::Any, &halves),
        txn_too_large(4208),
    );
    // Each frame is padded to 8 bytes: 2 × 2017 bytes take 2 × 2024.
    let padded = [event_of_frame_len(2017), event_of_frame_len(2017)];
    assert_refused(&store, "padding counts", || store.append("s", ExpectedVersion::Any, &padded), txn_too_large(4048));
    let multi = || {
        store.append_multi(&[
            StreamAppend { stream: "s".into(), expected: ExpectedVersion::Any, events: vec![event_of_frame_len(2104)] },
            StreamAppend {
                stream: "other".into(),
                expected: ExpectedVersion::Any,
                events: vec![event_of_frame_len(2104)],
            },
        ])
    };
    // The stream name is part of each frame: "other" is 4 bytes longer than "s", 2112 bytes padded.
    assert_refused(&store, "over two streams", multi, txn_too_large(2104 + 2112));
    let many: Vec<EventData> = (0..60).map(|_| event_of_frame_len(96)).collect();
    assert_refused(
        &store,
        "many small events",
        || store.append("s", ExpectedVersion::Any, &many),
        txn_too_large(60 * 96),
    );

    // Exactly one segment's worth is accepted: it rolls to a fresh segment, as one event of 4032 bytes does.
    let exact = [event_of_frame_len(2016), event_of_frame_len(2016)];
    let result = store.append("s", ExpectedVersion::Exact(0), &exact).unwrap();
    assert_eq!((result.first_offset, result.last_offset, result.last_position), (1, 2, 2));
    let result = store.append("s", ExpectedVersion::Exact(2), &[event_of_frame_len(4032)]).unwrap();
    assert_eq!(result.first_position, 3);
    let all = read_all(&store, 0);
    assert_eq!(all.iter().map(|event| event.data.len()).collect::<Vec<_>>(), [4, 1926, 1926, 3942]);
}

#[test]
fn empty_appends_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("good", ExpectedVersion::NoStream, &[event()]).unwrap();
    let empty = |err: &Error| matches!(err, Error::EmptyAppend);
    assert_refused(&store, "no events", || store.append("good", ExpectedVersion::Any, &[]), empty);
    assert_refused(&store, "no events, new stream", || store.append("s", ExpectedVersion::NoStream, &[]), empty);
    assert_refused(&store, "no parts", || store.append_multi(&[]), empty);
    let multi = || {
        store.append_multi(&[
            StreamAppend { stream: "s".into(), expected: ExpectedVersion::Any, events: vec![event()] },
            StreamAppend { stream: "other".into(), expected: ExpectedVersion::Any, events: vec![] },
        ])
    };
    assert_refused(&store, "a part without events", multi, empty);
    store.append("s", ExpectedVersion::NoStream, &[event()]).unwrap();
    assert_eq!(store.head_position(), Some(1));
}

#[test]
fn refusals_leave_nothing_behind_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), small_options(4096)).unwrap();
    store.append("good", ExpectedVersion::NoStream, &[event()]).unwrap();
    for (name, _) in bad_names() {
        assert!(store.append(&name, ExpectedVersion::Any, &[event()]).is_err());
        assert!(store.append("good", ExpectedVersion::Any, &[EventData::new(name, &b""[..])]).is_err());
    }
    assert!(store.append("good", ExpectedVersion::Any, &[event_of_frame_len(5000)]).is_err());
    assert!(store.append("good", ExpectedVersion::Any, &[]).is_err());
    let before = state(&store, &KNOWN);
    store.close().unwrap();
    let store = Store::open_with(dir.path(), small_options(4096)).unwrap();
    assert_eq!(state(&store, &KNOWN), before);
    assert_eq!(store.head_position(), Some(0));
}

#[test]
fn unusable_options_are_refused_and_create_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let bad: Vec<(&str, Options)> = vec![
        ("segment of 0 bytes", Options { segment_size_bytes: 0, ..Default::default() }),
        ("segment below 4 KiB", Options { segment_size_bytes: 4088, ..Default::default() }),
        ("segment not a multiple of 8", Options { segment_size_bytes: 4097, ..Default::default() }),
        ("segment of 4 GiB", Options { segment_size_bytes: 1 << 32, ..Default::default() }),
        ("event maximum below one header", Options { event_size_bytes_max: 89, ..Default::default() }),
        ("no segment may be mapped", Options { open_segments_max: 0, ..Default::default() }),
        ("batch maximum 0", Options { batch_bytes_max: 0, ..Default::default() }),
    ];
    for (what, options) in bad {
        let dir = parent.path().join("store");
        let result = Store::open_with(&dir, options);
        assert!(matches!(result, Err(Error::InvalidOptions { .. })), "{what}: {:?}", result.map(|_| ()));
        assert!(!dir.exists(), "{what}: refused options created the directory");
    }
    // The smallest usable values open.
    let options = Options {
        segment_size_bytes: 4096,
        event_size_bytes_max: 90,
        batch_bytes_max: 1,
        open_segments_max: 1,
        index_cache_bytes_max: 0,
        ..Default::default()
    };
    let store = Store::open_with(parent.path().join("store"), options).unwrap();
    store.append("s", ExpectedVersion::NoStream, &[EventData::new("t", Vec::new())]).unwrap();
    let too_large = store.append("s", ExpectedVersion::Any, &[EventData::new("t", vec![0u8])]);
    assert!(matches!(too_large, Err(Error::EventTooLarge { size: 91, max: 90 })), "{too_large:?}");
}

/// The largest value of every option opens a working store: none of them may size an allocation or overflow
/// a computation (an LRU preallocated for `usize::MAX` segments would abort the process).
#[test]
fn the_largest_option_values_open_a_working_store() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        segment_size_bytes: 4096,
        event_size_bytes_max: u64::MAX,
        batch_bytes_max: u64::MAX,
        open_segments_max: usize::MAX,
        index_cache_bytes_max: u64::MAX,
        category_separator: char::MAX,
        ..Default::default()
    };
    let store = Store::open_with(dir.path(), options.clone()).unwrap();
    let name = format!("orders{}7", char::MAX);
    for i in 0..40u64 {
        store.append(&name, ExpectedVersion::Any, &[EventData::new("Placed", i.to_le_bytes().to_vec())]).unwrap();
    }
    assert!(store.recovery_report().index_tables == 0);
    store.close().unwrap();
    let store = Store::open_with(dir.path(), options).unwrap();
    assert!(store.recovery_report().index_tables > 0, "the segments rolled and their tables were written");
    assert_eq!(store.stream_version(&name), Some(39));
    let category: Vec<u64> = store.read_category("orders", 0).unwrap().map(|event| event.unwrap().offset()).collect();
    assert_eq!(category, (0..40).collect::<Vec<_>>());
}
