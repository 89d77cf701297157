//! `Store::verify`: a read-only walk over every committed record that checks every CRC, the density of
//! positions and offsets, the stream back-links and transaction markers, and that the index holds exactly the
//! entries of every record (stream, category, event type), with every page of its tables intact. It reads the
//! log with `pread` and never holds the index's lock across a read.

use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::index::table::Section;
use crate::index::{Index, Kind};
use crate::log::corrupt_frame;
use crate::log::frame::NO_PREV;
use crate::log::segment::{locator, PreadWindow, SEGMENT_HEADER_LEN};
use crate::log::writer::Shared;

/// What [`Store::verify`](crate::Store::verify) found.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Segment files walked.
    pub segments: usize,
    /// Records checked.
    pub records: u64,
    /// Streams found in the log (records at offset 0).
    pub streams: usize,
    /// Bytes of frames checked (padding included).
    pub bytes: u64,
    /// Segments compaction rewrote.
    pub compacted_segments: usize,
    /// The first problem found (`Corrupt` with file and byte offset), if any. The walk stops there.
    pub problem: Option<Error>,
}

impl VerifyReport {
    /// Whether nothing was wrong.
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }
}

pub(crate) fn verify(shared: &Shared) -> Result<VerifyReport> {
    let committed = shared.committed.load(Ordering::Acquire);
    let log = &*shared.log;
    let index = &*shared.index;
    let mut report = VerifyReport::default();
    // Every byte of the log is read with `pread`: a media error becomes `Err(Io)` naming the file and offset
    // (a read through the mapping would be SIGBUS). The index's lock is never held across a read.
    let mut position = 0;
    let mut txn_after_expected: Option<u32> = None;
    let segment_count = log.segment_count();
    'segments: for ordinal in 0..segment_count {
        let segment = match log.segment(ordinal) {
            Ok(segment) => segment,
            // A missing segment or a damaged header is damage to report, not a failure of the walk.
            Err(err @ Error::Corrupt { .. }) => {
                report.problem = Some(err);
                break;
            }
            Err(err) => return Err(err),
        };
        report.segments += 1;
        if segment.base_position() != position {
            report.problem = Some(Error::corrupt(
                segment.path(),
                0,
                format!("segment starts at position {}, the log before it ends at {position}", segment.base_position()),
            ));
            break;
        }
        let end = log.base(ordinal + 1).map_or(committed, |next| next.min(committed));
        let mut window = PreadWindow::new(&segment, &shared.io);
        let mut at = SEGMENT_HEADER_LEN;
        // Compaction leaves gaps in a sealed segment's positions, and may leave part of a transaction whose
        // other records it removed: positions ascend there, ending with the segment's last, and transaction
        // markers are not compared. (No transaction spans two segments.)
        let compacted = segment.is_compacted();
        report.compacted_segments += usize::from(compacted);
        if compacted && txn_after_expected.is_some() {
            report.problem = Some(Error::corrupt(segment.path(), 0, "a transaction runs into a compacted segment"));
            break;
        }
        while position < end {
            if compacted && at >= segment.frames_end() {
                // Compaction removed the rest.
                position = end;
                break;
            }
            let frame = match window.frame(at)? {
                Ok(frame) => frame,
                Err(err) => {
                    report.problem = Some(corrupt_frame(&segment, at, err));
                    break 'segments;
                }
            };
            let header = frame.header;
            let (stream, event_type) = {
                let bytes = &window.bytes(at, frame.len)?[..frame.len];
                let text = |range: std::ops::Range<usize>| {
                    std::str::from_utf8(&bytes[range]).expect("decode checked UTF-8").to_owned()
                };
                (text(frame.stream.clone()), text(frame.event_type.clone()))
            };
            let logical = if compacted {
                if header.position > position && header.position < end {
                    position = header.position;
                }
                segment
                    .logical_of_position(header.position)
                    .filter(|&logical| segment.physical(logical) == Some(at as u32))
            } else {
                Some(at as u32)
            };
            let here = locator(ordinal, logical.unwrap_or(at as u32));
            let problem = if header.position != position {
                Some(format!("expected position {position}, found {}", header.position))
            } else if logical.is_none() {
                Some("the record is not where its segment's relocation entry says".to_owned())
            } else if !compacted && txn_after_expected.is_some_and(|txn_after| txn_after != header.txn_after) {
                Some("transaction marker out of sequence".to_owned())
            } else {
                match check_record(index, &stream, &event_type, header.offset, header.prev, here) {
                    Ok(problem) => problem,
                    // Damage found in the index (a table page): the first problem.
                    Err(err @ Error::Corrupt { .. }) => {
                        report.problem = Some(err);
                        break 'segments;
                    }
                    Err(err) => return Err(err),
                }
            };
            if let Some(reason) = problem {
                report.problem = Some(Error::corrupt(segment.path(), at as u64, reason));
                break 'segments;
            }
            txn_after_expected = if compacted { None } else { header.txn_after.checked_sub(1) };
            report.streams += usize::from(header.offset == 0);
            report.records += 1;
            report.bytes += frame.stride() as u64;
            at += frame.stride();
            position += 1;
        }
    }
    if report.problem.is_none() && txn_after_expected.is_some() {
        report.problem = Some(Error::corrupt(log.dir(), 0, "the committed log ends inside a transaction"));
    }
    if report.problem.is_none() {
        report.problem = check_tables(index, report.compacted_segments > 0)?;
    }
    Ok(report)
}

/// Checks one record against the log's rules and the index: it continues its stream (offset 0 with no
/// back-link, or a back-link to the stream's record at the offset before), and the index holds its stream,
/// category and event-type entries. `Some(reason)` on a problem.
fn check_record(
    index: &Index,
    stream: &str,
    event_type: &str,
    offset: u64,
    prev: u64,
    here: u64,
) -> Result<Option<String>> {
    let continues = match offset.checked_sub(1) {
        None => prev == NO_PREV,
        Some(before) => {
            // Or the first record compaction kept of the stream, linking back to a removed one.
            prev != NO_PREV && (index.has_stream_entry(stream, before, prev)? || index.log().located(prev)?.is_none())
        }
    };
    if !continues {
        return Ok(Some(format!("stream {stream:?}: offset {offset} or back-link does not continue the stream")));
    }
    if !index.has_stream_entry(stream, offset, here)? {
        return Ok(Some(format!("the index has no entry for offset {offset} of stream {stream:?} here")));
    }
    let category = crate::index::hash::category(stream, index.separator());
    if !index.holds_pair(Kind::Category, category, here)? {
        return Ok(Some(format!("the index has no entry of category {category:?} for this record")));
    }
    if !index.holds_pair(Kind::EventType, event_type, here)? {
        return Ok(Some(format!("the index has no entry of event type {event_type:?} for this record")));
    }
    Ok(None)
}

/// Checks every page of every table (its CRC) and that each table holds exactly one entry of each kind per
/// record of its range: with every record's entries found by the walk, no entry is extra.
///
/// A table written after compaction (the index rebuilt from the log) holds no entries of removed records: with
/// compacted segments in the log, a table may hold fewer entries than its range has positions.
fn check_tables(index: &Index, compacted: bool) -> Result<Option<Error>> {
    for table in index.tables() {
        if let Err(err) = table.verify_pages() {
            return Ok(Some(err));
        }
        let meta = table.meta();
        let records = meta.end_position - meta.first_position;
        for section in [Section::Streams, Section::Categories, Section::EventTypes] {
            if table.len(section) > records || (table.len(section) < records && !compacted) {
                let reason = format!("{section:?} holds {} entries for {records} records", table.len(section));
                return Ok(Some(Error::corrupt(table.path(), 0, reason)));
            }
        }
    }
    Ok(None)
}
