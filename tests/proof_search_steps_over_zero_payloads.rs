//! Damage to a synced record is reported, not cut silently, even when a record near it carries a long run of
//! zero bytes in its payload. The proof search (format-spec §8.6) takes 64 KiB of zeros as the unwritten end of
//! the log; it must step over intact frames whole instead of counting the zeros inside them, and must not count
//! the zeros inside the damaged frame's own extent.
//!
//! Each case is a crash image taken with every append acknowledged (so every record is synced, and no
//! checkpoint covers them), with one bit flipped in one record. Later records prove, through their
//! `synced_before`, that the damaged one was synced: the open must fail with `Corrupt` at the damaged record.

mod support;

use std::path::Path;

use annals::{EventData, ExpectedVersion, Store};
use support::{assert_corrupt_at, copy_dir, find_frame, flip_byte, FRAME_HEADER_LEN};

const ZERO_PAYLOAD_BYTES: usize = 96 << 10;

fn small(n: u64) -> EventData {
    EventData::new("MoneyDeposited", format!("deposit {n}").into_bytes())
}

fn zeros() -> EventData {
    EventData::new("DocumentAttached", vec![0u8; ZERO_PAYLOAD_BYTES])
}

/// Appends 8 small events, then `group` as one transaction (positions 8 and 9), then 9 small events; copies
/// the files while the store is still open (a crash image) and returns it.
fn crash_image(group: [EventData; 2]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for n in 0..8 {
        store.append("account-1", ExpectedVersion::Any, &[small(n)]).unwrap();
    }
    store.append("account-1", ExpectedVersion::Any, &group).unwrap();
    for n in 10..19 {
        store.append("account-1", ExpectedVersion::Any, &[small(n)]).unwrap();
    }
    let image = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), image.path());
    drop(store);
    assert!(!image.path().join(support::CHECKPOINT).exists(), "no checkpoint covers the records");
    image
}

fn assert_damage_reported(image: &Path, position: u64, byte_in_frame: usize, context: &str) {
    let (segment, frame) = find_frame(image, position);
    flip_byte(&segment, frame.at + byte_in_frame, 0x10);
    let opened = Store::open(image);
    assert_corrupt_at(&opened.map(|_| ()), &segment, frame.at, context);
}

#[test]
fn damage_before_a_record_with_a_long_zero_payload_is_reported() {
    let image = crash_image([small(8), zeros()]);
    // A flipped bit in the data of position 8; position 9 is 96 KiB of zeros; 10 to 18 prove 8 was synced.
    let (_, frame) = find_frame(image.path(), 8);
    assert_damage_reported(image.path(), 8, frame.len - 1, "damaged record before a zero payload");
}

#[test]
fn damage_to_a_record_with_a_long_zero_payload_is_reported() {
    let image = crash_image([zeros(), small(9)]);
    // A flipped bit in the timestamp of position 8, whose own payload is 96 KiB of zeros.
    assert_damage_reported(image.path(), 8, 40, "damaged zero-payload record");
    let image = crash_image([zeros(), small(9)]);
    // And one inside its zeros.
    assert_damage_reported(image.path(), 8, FRAME_HEADER_LEN + 50_000, "damage inside the zeros");
}
