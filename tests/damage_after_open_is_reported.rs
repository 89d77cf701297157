//! Bytes damaged on disk while a store is open (bit rot under a live mapping) are reported, never a panic:
//! when the name in a stream's last record is damaged, reading that stream returns `Error::Corrupt`, and so
//! does `verify`; other streams stay readable.

use annals::{Error, EventData, ExpectedVersion, Options, Store};

#[test]
fn a_damaged_stream_name_in_the_last_record_is_corrupt_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), Options { segment_size_bytes: 1 << 20, ..Default::default() }).unwrap();
    for i in 0..40u64 {
        let stream = if i % 2 == 0 { "account-1" } else { "account-2" };
        store.append(stream, ExpectedVersion::Any, &[EventData::new("MoneyDeposited", format!("{i}"))]).unwrap();
    }
    // The last record of account-2 is the last record of the log (position 39): find it by reading.
    let last = store.read_all(39).unwrap().next().unwrap().unwrap();
    assert_eq!((last.stream(), last.position()), ("account-2", 39));
    let segment = dir.path().join(annals::__fuzz::segment_file_name(0));
    let bytes = std::fs::read(&segment).unwrap();
    let at = bytes.windows(b"account-2".len()).rposition(|window| window == b"account-2").unwrap();
    let mut damaged = bytes[at..at + 9].to_vec();
    damaged[8] = b'X';
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new().write(true).open(&segment).unwrap().write_all_at(&damaged, at as u64).unwrap();

    let read: Vec<_> = match store.read_stream("account-2", 0) {
        Ok(events) => events.collect(),
        Err(err) => vec![Err(err)],
    };
    assert!(read.iter().any(|event| matches!(event, Err(Error::Corrupt { .. }))), "{read:?}");
    let report = store.verify().unwrap();
    assert!(matches!(report.problem, Some(Error::Corrupt { .. })), "{:?}", report.problem);
    let other: Vec<u64> = store.read_stream("account-1", 0).unwrap().map(|event| event.unwrap().offset()).collect();
    assert_eq!(other, (0..20).collect::<Vec<_>>());
}
