//! `Store::verify`: a read-only walk over every committed record that checks every CRC, the density of
//! positions and offsets, the stream back-links and transaction markers, and every entry of the live index
//! against an index rebuilt from the log. It reads with `pread` and never holds the index lock across a read.

use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::index::Index;
use crate::log::frame::DecodeError;
use crate::log::segment::{locator, PreadWindow, SEGMENT_HEADER_LEN};
use crate::log::writer::Shared;
use crate::log::PreadNames;

/// What [`Store::verify`](crate::Store::verify) found.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Segment files walked.
    pub segments: usize,
    /// Records checked.
    pub records: u64,
    /// Streams found in the log.
    pub streams: usize,
    /// Bytes of frames checked (padding included).
    pub bytes: u64,
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
    // Every byte is read with `pread`: a media error becomes `Err(Io)` naming the file and offset (a read
    // through the mapping would be SIGBUS), and verify takes no lock while it reads.
    let names = PreadNames::new(log, &shared.io);
    let mut rebuilt = Index::new(shared.options.index_interval_events, u64::MAX);
    let mut report = VerifyReport::default();
    let mut position = 0;
    let segments = log.segments();
    let mut txn_after_expected: Option<u32> = None;
    'segments: for (i, segment) in segments.iter().enumerate() {
        report.segments += 1;
        if segment.base_position() != position {
            report.problem = Some(Error::corrupt(
                segment.path(),
                0,
                format!("segment starts at position {}, the log before it ends at {position}", segment.base_position()),
            ));
            break;
        }
        let end = segments.get(i + 1).map_or(committed, |next| next.base_position().min(committed));
        let mut window = PreadWindow::new(segment, &shared.io);
        let mut at = SEGMENT_HEADER_LEN;
        while position < end {
            let frame = match window.frame(at)? {
                Ok(frame) => frame,
                Err(err) => {
                    let reason = match err {
                        DecodeError::End => "expected a record, found the end of the log".to_owned(),
                        other => other.to_string(),
                    };
                    report.problem = Some(Error::corrupt(segment.path(), at as u64, reason));
                    break 'segments;
                }
            };
            let header = frame.header;
            let stream = {
                let bytes = &window.bytes(at, frame.len)?[..frame.len];
                std::str::from_utf8(&bytes[frame.stream.clone()]).expect("decode checked UTF-8").to_owned()
            };
            let problem = if header.position != position {
                Some(format!("expected position {position}, found {}", header.position))
            } else if txn_after_expected.is_some_and(|txn_after| txn_after != header.txn_after) {
                Some("transaction marker out of sequence".to_owned())
            } else {
                // The back-link identifies the stream: no name is read back unless two streams share a hash.
                let here = locator(segment.ordinal(), at as u32);
                let appended = rebuilt.append(&stream, header.offset, header.prev, here, &names);
                names.take_failure()?;
                appended.is_err().then(|| {
                    format!("stream {stream:?}: offset {} or back-link does not continue the stream", header.offset)
                })
            };
            if let Some(reason) = problem {
                report.problem = Some(Error::corrupt(segment.path(), at as u64, reason));
                break 'segments;
            }
            txn_after_expected = header.txn_after.checked_sub(1);
            report.records += 1;
            report.bytes += frame.stride() as u64;
            at += frame.stride();
            position += 1;
        }
    }
    report.streams = rebuilt.stream_count();
    if report.problem.is_none() && txn_after_expected.is_some() {
        report.problem = Some(Error::corrupt(log.dir(), 0, "the committed log ends inside a transaction"));
    }
    if report.problem.is_none() {
        report.problem = compare_indexes(&rebuilt, shared, &names)?;
    }
    Ok(report)
}

/// Checks the live index against the rebuilt one. The live one may be ahead (appends since the walk began).
///
/// IMPORTANT: the live index's lock is held only to copy one stream's entry, never across a read of the log:
/// the writer needs the lock to publish every group, and readers queue behind a waiting writer.
fn compare_indexes(rebuilt: &Index, shared: &Shared, names: &PreadNames<'_>) -> Result<Option<Error>> {
    let log = &*shared.log;
    let mut problem = None;
    rebuilt.for_each(names, |name, state| {
        if problem.is_some() {
            return;
        }
        let candidates = shared.index.read().candidates(name);
        // The live entry of this name: the one whose last record carries it (read outside the lock).
        let current =
            candidates.into_iter().find(|(confirmed, current)| *confirmed || names.carries(current.head, name));
        let consistent = current.is_some_and(|(_, current)| {
            current.last_offset >= state.last_offset
                && (current.last_offset > state.last_offset || current.head == state.head)
                && current.sparse.as_slice().starts_with(state.sparse.as_slice())
        });
        if !consistent {
            let reason = format!("the in-memory index entry of stream {name:?} disagrees with the log");
            problem = Some(Error::corrupt(log.dir(), 0, reason));
        }
    });
    names.take_failure()?;
    Ok(problem)
}
