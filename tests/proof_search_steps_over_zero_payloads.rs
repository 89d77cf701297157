//! Damage to a synced record is reported, not cut silently, even when a record near it carries a long run of
//! zero bytes in its payload. The proof search (format-spec §8.6) takes 64 KiB of zeros as the unwritten end of
//! the log; it must step over intact frames whole instead of counting the zeros inside them, and must not count
//! the zeros inside the damaged frame's own extent, also when the damage is to the length that gives that
//! extent (a flipped bit in it, or the length zeroed): the header's body lengths still give it.
//!
//! Each case is a crash image taken with every append acknowledged (so every record is synced, and no
//! checkpoint covers them), with one bit flipped in one record, or the first 16 bytes of one record zeroed.
//! Later records prove, through their `synced_before`, that the damaged one was synced: the open must fail
//! with `Corrupt` at the damaged record.

mod support;

use std::path::Path;

use annals::{EventData, ExpectedVersion, Options, Store};
use support::{assert_corrupt_at, copy_dir, find_frame, flip_byte, overwrite, FRAME_HEADER_LEN};

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
    crash_image_with(Options::default(), group)
}

/// [`crash_image`] of a store opened with `options`.
fn crash_image_with(options: Options, group: [EventData; 2]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options).unwrap();
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
    assert!(support::index_tables(image.path()).is_empty(), "no index table covers the records");
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

#[test]
fn damage_to_the_length_of_a_record_with_a_long_zero_payload_is_reported() {
    // 1 MiB segments: a flipped high bit makes the length point past the segment's end, so it claims no extent
    // at all; bit 16 makes it claim one exactly 64 KiB short of the frame's. Either way, 64 KiB of the payload's
    // zeros lie outside what the length claims.
    let options = || Options { segment_size_bytes: 1 << 20, ..Default::default() };
    let pristine = crash_image_with(options(), [zeros(), small(9)]);
    let (_, frame) = find_frame(pristine.path(), 8);
    for bit in 0..32 {
        let image = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), image.path());
        let (segment, _) = find_frame(image.path(), 8);
        flip_byte(&segment, frame.at + bit / 8, 1 << (bit % 8));
        let opened = Store::open_with(image.path(), options());
        let context = format!("bit {bit} of the length ({} bytes) of the zero-payload record flipped", frame.len);
        assert_corrupt_at(&opened.map(|_| ()), &segment, frame.at, &context);
    }
    // Its length, CRC and the low half of its position zeroed (a torn sector of 16 bytes): the length reads as
    // the end of the log.
    let image = tempfile::tempdir().unwrap();
    copy_dir(pristine.path(), image.path());
    let (segment, _) = find_frame(image.path(), 8);
    overwrite(&segment, frame.at, &[0; 16]);
    let opened = Store::open_with(image.path(), options());
    let context = "the first 16 bytes of the zero-payload record zeroed";
    assert_corrupt_at(&opened.map(|_| ()), &segment, frame.at, context);
}
