//! Every option at the ends of its range opens a store that works: appends are acknowledged, reads return
//! them, a close syncs them and a reopen (after a crash, through recovery and its proof search) finds them.
//! `Durability::Buffer { flush_interval: Duration::MAX }` used to panic the writer thread on the second append
//! (`Instant + Duration` overflowed), and `batch_bytes_max = u64::MAX` overflowed the proof window.
//! (The smallest values and the refused ones are in `bad_input_is_rejected.rs`.)

mod support;

use std::time::Duration;

use annals::{Durability, EventData, ExpectedVersion, Options, Store};
use support::segment_paths;

fn event(n: u64) -> EventData {
    EventData::new("MoneyDeposited", format!("deposit {n}").into_bytes())
}

/// Appends 20 events and reads them back; closes, puts garbage after the end of the log (as a crash in the
/// middle of a write would), reopens (recovery runs its proof search over the garbage and cuts it) and checks
/// them again, then once more after a clean close.
fn works(what: &str, options: Options) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options.clone()).unwrap_or_else(|err| panic!("{what}: open: {err}"));
    for n in 0..20 {
        let result = store.append(&format!("account-{}", n % 3), ExpectedVersion::Any, &[event(n)]);
        assert_eq!(result.unwrap_or_else(|err| panic!("{what}: append {n}: {err}")).first_position, n);
    }
    assert_eq!(store.read_all(0).unwrap().count(), 20, "{what}");
    store.close().unwrap_or_else(|err| panic!("{what}: close: {err}"));

    let last = segment_paths(dir.path()).pop().unwrap();
    support::overwrite(&last, end_of_log(&last), &[0xA5; 300]);
    let store = Store::open_with(dir.path(), options.clone()).unwrap_or_else(|err| panic!("{what}: {err}"));
    // Counted in 8-byte words: the last one holds 4 garbage bytes.
    assert_eq!(store.recovery_report().tail_bytes_cut, 304, "{what}");
    assert_eq!(store.read_all(0).unwrap().count(), 20, "{what}: after the garbage was cut");
    store.append("account-0", ExpectedVersion::Any, &[event(20)]).unwrap();
    store.close().unwrap();

    let store = Store::open_with(dir.path(), options).unwrap();
    assert_eq!(store.head_position(), Some(20), "{what}: after a reopen");
    assert_eq!(store.stream_version("account-2"), Some(5), "{what}");
    assert!(store.verify().unwrap().is_ok(), "{what}");
}

/// The byte offset after the last frame of a segment, from its first 64 KiB (the segment may be 4 GiB).
fn end_of_log(segment: &std::path::Path) -> usize {
    use std::io::Read;
    let mut head = vec![0u8; 64 << 10];
    let read = std::fs::File::open(segment).unwrap().read(&mut head).unwrap();
    let mut at = support::SEGMENT_HEADER_LEN;
    loop {
        let len = u32::from_le_bytes(head[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            return at;
        }
        at += len.next_multiple_of(8);
        assert!(at + 4 <= read, "20 small events fit in 64 KiB");
    }
}

#[test]
fn a_buffer_flush_interval_of_duration_max_never_panics() {
    works(
        "flush_interval MAX",
        Options { durability: Durability::Buffer { flush_interval: Duration::MAX }, ..Default::default() },
    );
}

#[test]
fn a_buffer_flush_interval_of_zero_works() {
    works(
        "flush_interval 0",
        Options { durability: Durability::Buffer { flush_interval: Duration::ZERO }, ..Default::default() },
    );
}

#[test]
fn the_largest_batch_and_event_limits_work() {
    works("batch_bytes_max MAX", Options { batch_bytes_max: u64::MAX, ..Default::default() });
    works("event_size_bytes_max MAX", Options { event_size_bytes_max: u64::MAX, ..Default::default() });
    works(
        "both MAX, under Buffer",
        Options {
            batch_bytes_max: u64::MAX,
            event_size_bytes_max: u64::MAX,
            durability: Durability::Buffer { flush_interval: Duration::MAX },
            ..Default::default()
        },
    );
}

#[test]
fn the_smallest_and_largest_index_intervals_work() {
    works("index interval 1", Options { ..Default::default() });
    works("index interval u32::MAX", Options { ..Default::default() });
}

#[test]
fn the_smallest_and_largest_segments_work() {
    works("segment 4 KiB", Options { segment_size_bytes: 4096, ..Default::default() });
    // 4 GiB − 8: reserved with fallocate (no bytes written), so this costs no time, only reserved space.
    works("segment 4 GiB - 8", Options { segment_size_bytes: (1 << 32) - 8, ..Default::default() });
}
