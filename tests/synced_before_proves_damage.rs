//! A later intact record proves that earlier records were synced, so damage to them is reported as corruption,
//! never cut as a torn tail; damage that no later record proves synced is cut (format-spec §8.6).
//!
//! Each case starts from a crash image: a store's files copied while it is still open, after a script of
//! acknowledged appends (single events, several events of one stream, `append_multi` across streams, a record
//! starting exactly at a page boundary, a record larger than a page), each its own group, so that every record's
//! `synced_before` is the first position of its own transaction and the records of every later transaction prove
//! it synced. No index table covers the checked records: the store never rolled, or it rolled before the script
//! began (and the index table written for that roll is kept, or deleted so that replay starts at the log's start).
//!
//! - Damage to a record of any transaction but the last (one flipped bit anywhere in its frame, in every header
//!   byte of one record; the whole frame zeroed; a whole 4 KiB page zeroed, also one starting at a record's
//!   first byte or lying inside a large record) must fail the open with `Error::Corrupt` naming the last
//!   segment and the byte offset of the first damaged record (the first frame whose bytes differ from the
//!   original: the test's oracle, computed from the bytes).
//! - Damage confined to the last transaction (a flipped bit in any of its records, any one of its frames
//!   zeroed, its first page zeroed while its later frames and its commit mark stay intact, all of it zeroed):
//!   nothing written later proves it synced, so it is a torn tail: the store opens with exactly the earlier
//!   transactions and takes the next append at the cut transaction's position.

mod support;

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use annals::{EventData, ExpectedVersion, Options, Store, StreamAppend};
use support::{assert_corrupt_at, index_tables, raw_frames, segment_paths, RawFrame, Rng, FRAME_HEADER_LEN, INDEX_DIR};

const PAGE_BYTES: usize = 4096;
const SEGMENT_SIZE_BYTES: u64 = 128 << 10;
const STREAMS: [&str; 4] = ["account-1", "account-2", "order-7", "audit"];

fn options() -> Options {
    Options { segment_size_bytes: SEGMENT_SIZE_BYTES, ..Default::default() }
}

fn scratch_dir() -> tempfile::TempDir {
    // tmpfs makes the hundreds of opens cheap; recovery does not depend on the filesystem.
    tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap()
}

/// One acknowledged event as the test appended it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Appended {
    stream: String,
    offset: u64,
    position: u64,
    data: Vec<u8>,
}

/// Every acknowledged transaction, in order, with offsets and positions computed by the test.
#[derive(Default)]
struct Script {
    txns: Vec<Vec<Appended>>,
    versions: HashMap<String, u64>,
    next_position: u64,
}

impl Script {
    /// Appends `parts` as one transaction (one `append` for a single part) and records it.
    fn commit(&mut self, store: &Store, parts: &[(&str, Vec<Vec<u8>>)]) {
        let appends: Vec<StreamAppend> = parts
            .iter()
            .map(|(stream, events)| StreamAppend {
                stream: (*stream).to_owned(),
                expected: ExpectedVersion::Any,
                events: events.iter().map(|data| EventData::new("Recorded", data.clone())).collect(),
            })
            .collect();
        let results = match appends.as_slice() {
            [one] => vec![store.append(&one.stream, one.expected, &one.events).unwrap()],
            _ => store.append_multi(&appends).unwrap(),
        };
        let mut txn = Vec::new();
        for ((stream, events), result) in parts.iter().zip(results) {
            let first_offset = self.versions.get(*stream).map_or(0, |version| version + 1);
            assert_eq!((result.first_offset, result.first_position), (first_offset, self.next_position));
            for (k, data) in events.iter().enumerate() {
                let offset = first_offset + k as u64;
                txn.push(Appended {
                    stream: (*stream).to_owned(),
                    offset,
                    position: self.next_position,
                    data: data.clone(),
                });
                self.versions.insert((*stream).to_owned(), offset);
                self.next_position += 1;
            }
        }
        self.txns.push(txn);
    }

    /// One event whose frame ends exactly at the next page boundary (at least 96 bytes on), so that the next
    /// record starts a page.
    fn pad_to_page(&mut self, store: &Store, dir: &Path) {
        let last = segment_paths(dir).pop().unwrap();
        let end = raw_frames(&last).last().map_or(support::SEGMENT_HEADER_LEN, RawFrame::end_aligned);
        let mut next = end.next_multiple_of(PAGE_BYTES);
        if next - end < 96 {
            next += PAGE_BYTES;
        }
        let data_len = next - end - FRAME_HEADER_LEN - "pad".len() - "Recorded".len();
        self.commit(store, &[("pad", vec![vec![0xAB; data_len]])]);
    }
}

/// Random payload bytes, never empty (the last byte of every frame is then data, never padding).
fn payload(rng: &mut Rng, len: Range<usize>) -> Vec<u8> {
    let len = rng.range_usize(len.start, len.end);
    rng.bytes(len)
}

/// The store's files (the lock and half-written temporary files excluded), by path relative to `dir`.
fn image_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            let nested = image_files(&entry.path());
            files.extend(nested.into_iter().map(|(inner, bytes)| (format!("{name}/{inner}"), bytes)));
        } else if name != "LOCK" && !name.ends_with(".tmp") {
            files.push((name, std::fs::read(entry.path()).unwrap()));
        }
    }
    files
}

/// A crash image and what it holds.
struct Image {
    /// The files as copied from the open store (the lock excluded), by path relative to the store directory.
    files: Vec<(String, Vec<u8>)>,
    /// The last segment's file name and bytes.
    segment: String,
    bytes: Vec<u8>,
    /// The last segment's frames, found by walking its bytes.
    frames: Vec<RawFrame>,
    txns: Vec<Vec<Appended>>,
    /// The first transaction whose damage is checked: all of it and everything after lie in the last segment,
    /// past what any index table in the image covers.
    first_checked: usize,
    with_index: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fixture {
    /// One segment, never rolled: no index table.
    OneSegment,
    /// Rolled once before the script: the index table written for the roll is in the image.
    RolledWithIndex,
    /// Rolled once before the script, index deleted: replay starts at the log's start.
    RolledWithoutIndex,
}

impl Image {
    fn record(fixture: Fixture) -> Image {
        let live = tempfile::tempdir().unwrap();
        let store = Store::open_with(live.path(), options()).unwrap();
        let mut script = Script::default();
        let mut rng = Rng::new(0x5bef_0de1);
        if fixture != Fixture::OneSegment {
            while segment_paths(live.path()).len() < 2 {
                script.commit(&store, &[("filler", vec![vec![0xF1; 8 << 10]])]);
            }
        }
        let first_checked = script.txns.len();
        for i in 0..110 {
            if i == 30 || i == 70 {
                script.pad_to_page(&store, live.path());
            }
            let stream = *rng.pick(&STREAMS);
            match i % 6 {
                // A record larger than a page.
                _ if i == 50 => script.commit(&store, &[(stream, vec![payload(&mut rng, 9000..11000)])]),
                2 => {
                    let events = (0..3).map(|_| payload(&mut rng, 1..250)).collect();
                    script.commit(&store, &[(stream, events)]);
                }
                4 => {
                    let other = STREAMS[(STREAMS.iter().position(|s| *s == stream).unwrap() + 1) % STREAMS.len()];
                    let first = (0..2).map(|_| payload(&mut rng, 1..200)).collect();
                    let second = vec![payload(&mut rng, 1..200)];
                    script.commit(&store, &[(stream, first), (other, second)]);
                }
                _ => script.commit(&store, &[(stream, vec![payload(&mut rng, 1..300)])]),
            }
        }
        // The last transaction starts a page and spans more than one, so that zeroing its first page leaves its
        // later frames (its commit mark among them) intact.
        script.pad_to_page(&store, live.path());
        let big = |rng: &mut Rng| payload(rng, 1800..2200);
        let last = [("account-1", vec![big(&mut rng), big(&mut rng)]), ("new-stream", vec![big(&mut rng)])];
        script.commit(&store, &last);

        if fixture != Fixture::OneSegment {
            // The roll's table is written by the index's background thread: wait for it, so that the image
            // holds it (a table appears whole, renamed into place).
            while index_tables(live.path()).is_empty() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        // The crash image: the files as they are while the store is open.
        let mut files = image_files(live.path());
        drop(store);
        let tables = files.iter().filter(|(name, _)| name.starts_with(&format!("{INDEX_DIR}/"))).count();
        let segments = files.iter().filter(|(name, _)| name.ends_with(".seg")).count();
        match fixture {
            Fixture::OneSegment => assert!(tables == 0 && segments == 1, "{fixture:?}: no roll, no index table"),
            _ => assert!(tables == 1 && segments == 2, "{fixture:?}: one roll, its index table"),
        }
        if fixture == Fixture::RolledWithoutIndex {
            files.retain(|(name, _)| !name.starts_with(&format!("{INDEX_DIR}/")));
        }
        files.sort();
        let (segment, bytes) = files.iter().rfind(|(name, _)| name.ends_with(".seg")).cloned().unwrap();
        // Walk the image's bytes (raw_frames reads a file), not the live segment.
        let path = live.path().join("walked-copy");
        std::fs::write(&path, &bytes).unwrap();
        let frames = raw_frames(&path);
        let image = Image {
            files,
            segment,
            bytes,
            frames,
            txns: script.txns,
            first_checked,
            with_index: fixture == Fixture::RolledWithIndex,
        };
        let first = image.frames_of(first_checked)[0].position;
        assert_eq!(first, image.txns[first_checked][0].position, "the checked transactions lie in the last segment");
        image
    }

    /// The frames of transaction `txn`, in order.
    fn frames_of(&self, txn: usize) -> Vec<RawFrame> {
        let positions: Vec<u64> = self.txns[txn].iter().map(|event| event.position).collect();
        let frames: Vec<RawFrame> =
            self.frames.iter().filter(|frame| positions.contains(&frame.position)).copied().collect();
        assert_eq!(frames.len(), positions.len(), "transaction {txn} lies in the last segment");
        frames
    }

    fn last_txn(&self) -> usize {
        self.txns.len() - 1
    }

    /// Byte range of the checked records that later transactions prove synced: all but the last transaction's.
    fn proven_range(&self) -> Range<usize> {
        self.frames_of(self.first_checked)[0].at..self.frames_of(self.last_txn())[0].at
    }

    /// Writes the image with the last segment replaced by `bytes` into a new directory.
    fn write(&self, bytes: &[u8]) -> tempfile::TempDir {
        let dir = scratch_dir();
        for (name, original) in &self.files {
            let contents = if *name == self.segment { bytes } else { original };
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }
        dir
    }

    /// The first frame (in log order) whose own bytes (its padding excluded) differ in `damaged`.
    fn first_damaged(&self, damaged: &[u8]) -> RawFrame {
        let changed =
            |frame: &&RawFrame| self.bytes[frame.at..frame.at + frame.len] != damaged[frame.at..frame.at + frame.len];
        *self.frames.iter().find(changed).expect("the damage changes a record")
    }

    /// The damage is to a record that a later transaction proves synced: the open must fail with `Corrupt` at it.
    fn expect_corrupt(&self, damaged: &[u8], context: &str) {
        let frame = self.first_damaged(damaged);
        assert!(self.proven_range().contains(&frame.at), "{context}: the test damages a proven-synced record");
        let dir = self.write(damaged);
        let opened = Store::open_with(dir.path(), options()).map(|store| {
            let head = store.head_position();
            format!("opened with head {head:?}")
        });
        let context = format!("{context} (first damaged record: position {} at byte {})", frame.position, frame.at);
        assert_corrupt_at(&opened, &dir.path().join(&self.segment), frame.at, &context);
    }

    /// The damage is confined to the last transaction, which nothing proves synced: it is cut whole, everything
    /// before it is kept, and the next append takes its place.
    fn expect_cut(&self, damaged: &[u8], context: &str) {
        let last = self.frames_of(self.last_txn());
        let first_damaged = self.first_damaged(damaged);
        assert!(first_damaged.at >= last[0].at, "{context}: the test damages only the last transaction");
        let dir = self.write(damaged);
        let store = Store::open_with(dir.path(), options()).unwrap_or_else(|err| panic!("{context}: open: {err}"));
        let kept: Vec<&Appended> = self.txns[..self.last_txn()].iter().flatten().collect();
        let read: Vec<Appended> = store
            .read_all(0)
            .unwrap()
            .map(|event| {
                let event = event.unwrap_or_else(|err| panic!("{context}: read_all: {err}"));
                Appended {
                    stream: event.stream().to_owned(),
                    offset: event.offset(),
                    position: event.position(),
                    data: event.data().to_vec(),
                }
            })
            .collect();
        assert_eq!(read.iter().collect::<Vec<_>>(), kept, "{context}: not exactly the transactions before the last");
        assert_eq!(store.stream_version("new-stream"), None, "{context}: the cut transaction's new stream exists");
        let version = kept.iter().rev().find(|event| event.stream == "account-1").map(|event| event.offset);
        assert_eq!(store.stream_version("account-1"), version, "{context}");
        // What the cut drops (format-spec §8.5): from the cut to the end of the last nonzero 8-byte word.
        let nonzero_end = (last[0].at..damaged.len())
            .step_by(8)
            .rfind(|&word| damaged[word..word + 8].iter().any(|&b| b != 0))
            .map_or(last[0].at, |word| word + 8);
        let report = store.recovery_report();
        assert_eq!(report.tail_bytes_cut, (nonzero_end - last[0].at) as u64, "{context}: {report:?}");

        let result = store.append("account-1", ExpectedVersion::Any, &[EventData::new("After", &b"after"[..])]);
        let result = result.unwrap_or_else(|err| panic!("{context}: append after the cut: {err}"));
        assert_eq!(result.first_position, self.txns[self.last_txn()][0].position, "{context}: position after the cut");
        assert_eq!(result.first_offset, version.map_or(0, |v| v + 1), "{context}: offset after the cut");
        store.close().unwrap();
        let store = Store::open_with(dir.path(), options()).unwrap_or_else(|err| panic!("{context}: reopen: {err}"));
        assert_eq!(store.head_position(), Some(result.first_position), "{context}: reopen after the append");
    }
}

fn with(bytes: &[u8], change: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    change(&mut bytes);
    bytes
}

fn check_proven_damage(fixture: Fixture) {
    let image = Image::record(fixture);
    let mut rng = Rng::new(0xda3a_9e00 ^ fixture as u64);
    let mut cases = 0;
    for txn in image.first_checked..image.last_txn() {
        for frame in image.frames_of(txn) {
            // One flipped bit anywhere in the record.
            let (at, bit) = (rng.range_usize(frame.at, frame.at + frame.len), rng.range_usize(0, 8));
            let damaged = with(&image.bytes, |bytes| bytes[at] ^= 1 << bit);
            image.expect_corrupt(&damaged, &format!("{fixture:?}: bit {bit} of byte {at} flipped"));
            // The whole record zeroed: it reads as the end of the log (or a transaction cut short).
            let damaged = with(&image.bytes, |bytes| bytes[frame.at..frame.at + frame.len].fill(0));
            image.expect_corrupt(&damaged, &format!("{fixture:?}: record {} zeroed", frame.position));
            cases += 2;
        }
    }
    // Every whole page of the proven records zeroed (a lost or misdirected write of synced data).
    let proven = image.proven_range();
    let mut pages_at_a_record_start = 0;
    let mut page = proven.start.next_multiple_of(PAGE_BYTES);
    while page + PAGE_BYTES <= proven.end {
        pages_at_a_record_start += usize::from(image.frames.iter().any(|frame| frame.at == page));
        let damaged = with(&image.bytes, |bytes| bytes[page..page + PAGE_BYTES].fill(0));
        image.expect_corrupt(&damaged, &format!("{fixture:?}: page at byte {page} zeroed"));
        page += PAGE_BYTES;
        cases += 1;
    }
    assert!(pages_at_a_record_start >= 2, "{fixture:?}: the script starts records at page boundaries");
    println!("{fixture:?}: {cases} damaged images refused");
}

#[test]
fn damage_to_records_that_later_records_prove_synced_is_corrupt_in_a_never_rolled_store() {
    check_proven_damage(Fixture::OneSegment);
}

#[test]
fn damage_to_records_that_later_records_prove_synced_is_corrupt_after_a_roll() {
    check_proven_damage(Fixture::RolledWithIndex);
}

#[test]
fn damage_to_records_that_later_records_prove_synced_is_corrupt_after_a_roll_without_index() {
    check_proven_damage(Fixture::RolledWithoutIndex);
}

#[test]
fn a_flipped_bit_in_any_header_byte_of_a_proven_record_is_corrupt() {
    let image = Image::record(Fixture::OneSegment);
    // The middle record of a three-event transaction in the middle of the script: the records before it in its
    // transaction are intact and pending when the scan stops at it.
    let txn = (image.first_checked + 40..image.last_txn()).find(|&txn| image.txns[txn].len() == 3).unwrap();
    let frame = image.frames_of(txn)[1];
    let mut rng = Rng::new(0x4ead);
    for byte in 0..FRAME_HEADER_LEN {
        let bit = rng.range_usize(0, 8);
        let damaged = with(&image.bytes, |bytes| bytes[frame.at + byte] ^= 1 << bit);
        image.expect_corrupt(&damaged, &format!("bit {bit} of header byte {byte} flipped"));
    }
}

#[test]
fn damage_confined_to_the_last_transaction_is_cut_as_a_torn_tail() {
    for fixture in [Fixture::OneSegment, Fixture::RolledWithIndex, Fixture::RolledWithoutIndex] {
        let image = Image::record(fixture);
        let mut rng = Rng::new(0x1a57);
        let last = image.frames_of(image.last_txn());
        let (start, end) = (last[0].at, last.last().map(|frame| frame.at + frame.len).unwrap());
        assert!(start.is_multiple_of(PAGE_BYTES) && end > start + PAGE_BYTES, "the last transaction spans pages");
        for (k, frame) in last.iter().enumerate() {
            let (at, bit) = (rng.range_usize(frame.at, frame.at + frame.len), rng.range_usize(0, 8));
            let damaged = with(&image.bytes, |bytes| bytes[at] ^= 1 << bit);
            image.expect_cut(&damaged, &format!("{fixture:?}: bit {bit} of byte {at} (frame {k} of the last) flipped"));
            let damaged = with(&image.bytes, |bytes| bytes[frame.at..frame.at + frame.len].fill(0));
            image.expect_cut(&damaged, &format!("{fixture:?}: frame {k} of the last transaction zeroed"));
        }
        // Its first page lost: its later frames, the commit mark among them, are intact after the zeros, but
        // they carry the transaction's own first position as `synced_before`, which proves nothing.
        let damaged = with(&image.bytes, |bytes| bytes[start..start + PAGE_BYTES].fill(0));
        image.expect_cut(&damaged, &format!("{fixture:?}: first page of the last transaction zeroed"));
        let damaged = with(&image.bytes, |bytes| bytes[start..end].fill(0));
        image.expect_cut(&damaged, &format!("{fixture:?}: the whole last transaction zeroed"));
    }
}

/// The image is what the test says it is: opened as it was copied, it holds every transaction.
#[test]
fn the_undamaged_images_open_with_every_transaction() {
    for fixture in [Fixture::OneSegment, Fixture::RolledWithIndex, Fixture::RolledWithoutIndex] {
        let image = Image::record(fixture);
        let dir = image.write(&image.bytes);
        let store = Store::open_with(dir.path(), options()).unwrap();
        let expected = image.txns.iter().map(Vec::len).sum::<usize>() as u64;
        assert_eq!(store.head_position(), Some(expected - 1), "{fixture:?}");
        let report = store.recovery_report();
        assert_eq!(report.index_tables > 0, image.with_index, "{fixture:?}: {report:?}");
        assert_eq!(report.index_rejected, None, "{fixture:?}: {report:?}");
        assert!(store.verify().unwrap().is_ok(), "{fixture:?}");
    }
}
