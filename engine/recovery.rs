//! Opening a store's files: list and check the segments, load the index checkpoint if it checks out against
//! the log, replay the log from there, and cut the torn tail.
//!
//! The split that matters: bytes after the last completed sync are a normal result of a crash and are cut
//! (with any transaction left incomplete); damage to records that were synced is corruption and is reported
//! as `Corrupt`, never skipped. A record is known to have been synced when it lies in a sealed segment (one
//! with a successor), or when a later intact record says so in its `synced_before` field.

use std::path::Path;
use std::sync::Arc;

use crate::checkpoint::{self, Covered};
use crate::error::{Error, IoContext, Result};
use crate::frame::{self, DecodeError, NO_PREV};
use crate::index::Index;
use crate::io::Io;
use crate::log::{decode_at, Log};
use crate::segment::{self, locator, split_locator, Segment, SEGMENT_HEADER_LEN, SEGMENT_SUFFIX};
use crate::writer::WriterState;
use crate::Options;

/// What recovery found or did, for callers who want to know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Whether the index checkpoint was used (else the index was rebuilt from the whole log).
    pub checkpoint_used: bool,
    /// Why a checkpoint on disk was not used, if one was ignored.
    pub checkpoint_rejected: Option<String>,
    /// Records replayed from the log into the index.
    pub records_replayed: u64,
    /// Bytes cut from the end of the last segment (a torn tail or an incomplete transaction).
    pub tail_bytes_cut: u64,
}

/// Opens every segment in `dir` (creating the first one in an empty directory) and recovers the log's end.
pub(crate) fn recover(dir: &Path, options: &Options, io: &Io) -> Result<(Log, Index, WriterState, RecoveryReport)> {
    let segments = open_segments(dir, options, io)?;
    let log = Log::new(dir.to_owned(), segments);
    let mut index = Index::new(options.index_interval_events, options.stream_hash_mask);
    let mut report = RecoveryReport::default();

    let first = log.segment(0).unwrap_or_else(|| log.segments()[0].clone());
    let mut start = Covered {
        next_position: first.base_position(),
        end: locator(first.ordinal(), SEGMENT_HEADER_LEN as u32),
        last: NO_PREV,
        last_timestamp: 0,
    };
    match checkpoint::read(dir).and_then(|bytes| match bytes {
        None => Ok(None),
        Some(bytes) => load_checkpoint(&bytes, &log, &mut index, options).map(Some),
    }) {
        // A checkpoint is written only after every record it covers was synced: if its own CRC holds but the
        // last record it names is damaged, synced data is damaged.
        Err(reason) if reason.starts_with(LAST_RECORD_DAMAGED) => {
            let (ordinal, at) = split_locator(checkpoint::last_locator(dir).unwrap_or(0));
            let file = log.segment(ordinal).map_or_else(|| dir.to_owned(), |segment| segment.path().to_owned());
            return Err(Error::corrupt(file, u64::from(at), reason));
        }
        Ok(None) => {}
        Ok(Some(covered)) => {
            start = covered;
            report.checkpoint_used = true;
        }
        Err(reason) => {
            // Never trusted blindly: whatever was loaded goes, and the log is replayed from its start.
            index = Index::new(options.index_interval_events, options.stream_hash_mask);
            report.checkpoint_rejected = Some(reason);
        }
    }

    let state = replay(&log, &mut index, start, options, &mut report)?;
    Ok((log, index, state, report))
}

/// Lists, opens and orders the segment files; removes leftover temporary files.
fn open_segments(dir: &Path, options: &Options, io: &Io) -> Result<Vec<Arc<Segment>>> {
    let mut segments = Vec::new();
    let entries = std::fs::read_dir(dir).context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.context(|| format!("listing {}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == crate::writer::SPARE_NAME {
            // A spare segment file that a crashed writer had prepared: never part of the log. It is left for
            // the next background preparation, which truncates and reuses the name: unlinking 64 MiB here took
            // about 3 ms of every open after a crash (measured).
            continue;
        }
        if name.ends_with(".seg.tmp") || name == checkpoint::TMP_NAME {
            // A segment or checkpoint whose creation did not finish: it was never renamed into place, so
            // nothing refers to it.
            std::fs::remove_file(&path).context(|| format!("removing leftover {}", path.display()))?;
        } else if path.extension().is_some_and(|ext| ext == SEGMENT_SUFFIX) {
            let segment = Segment::open(&path)?;
            if name != segment::file_name(segment.base_position()) {
                return Err(Error::corrupt(
                    &path,
                    0,
                    format!("file name does not match its base position {}", segment.base_position()),
                ));
            }
            segments.push(Arc::new(segment));
        }
    }
    segments.sort_by_key(|segment| segment.ordinal());
    if segments.is_empty() {
        segments.push(Arc::new(Segment::create(io, dir, 0, 0, options.segment_size_bytes)?));
    }
    if segments[0].ordinal() != 0 || segments[0].base_position() != 0 {
        return Err(Error::corrupt(segments[0].path(), 0, "the first segment is missing"));
    }
    for pair in segments.windows(2) {
        if pair[1].ordinal() != pair[0].ordinal() + 1 {
            return Err(Error::corrupt(
                pair[1].path(),
                0,
                format!("segment {} is missing before this one", pair[0].ordinal() + 1),
            ));
        }
        if pair[1].base_position() <= pair[0].base_position() {
            return Err(Error::corrupt(pair[1].path(), 0, "base position does not increase over the previous segment"));
        }
    }
    Ok(segments)
}

/// Loads a checkpoint into `index`, if it checks out: its last record is where it says, with the position
/// it says, every locator of every stream lies in order before its end, no stream appears twice, and a spread
/// sample of 32 streams' last records carry their names (all of them would cost a million random reads for a
/// million streams; the checkpoint's CRC and its last record already vouch for the rest).
fn load_checkpoint(bytes: &[u8], log: &Log, index: &mut Index, options: &Options) -> Result<Covered, String> {
    let (summary, streams) = checkpoint::decode(bytes)?;
    if summary.interval != options.index_interval_events {
        return Err(format!(
            "taken with index interval {}, the store now uses {}",
            summary.interval, options.index_interval_events
        ));
    }
    check_covered(&summary.covered, log)?;
    let last = summary.covered.last;
    let sample_every = (summary.streams / 32).max(1);
    // Every stream takes at least 30 bytes of the file, which bounds what a damaged count can reserve.
    index.reserve(usize::try_from(summary.streams.min(bytes.len() as u64 / 30)).unwrap_or(0));
    for (i, stream) in streams.enumerate() {
        let (name, state) = stream?;
        let mut previous = None;
        for &locator in state.sparse.as_slice().iter().chain(std::iter::once(&state.head)) {
            // Cheap for every stream (no read): in order, before the end, and inside an existing segment's
            // frames region.
            let (ordinal, at) = split_locator(locator);
            let inside = log.segment(ordinal).is_some_and(|segment| {
                (at as usize) >= SEGMENT_HEADER_LEN && u64::from(at) + frame::HEADER_LEN as u64 <= segment.size()
            });
            if !inside || locator > last || previous.is_some_and(|previous| locator < previous) {
                return Err(format!("stream {name:?} has a locator outside the covered log"));
            }
            previous = Some(locator);
        }
        if (i as u64).is_multiple_of(sample_every) && !log.is_by_read(state.head, name) {
            return Err(format!("stream {name:?}: its last record belongs to another stream"));
        }
        index.insert(name, state, log).map_err(|()| format!("stream {name:?} appears twice"))?;
    }
    Ok(summary.covered)
}

/// How a checkpoint rejection begins when the checkpoint is sound but the log under it is not.
const LAST_RECORD_DAMAGED: &str = "the last record the checkpoint covers is damaged";

/// Checks the covered point of a checkpoint against the log.
fn check_covered(covered: &Covered, log: &Log) -> Result<(), String> {
    let Covered { next_position, end, last, .. } = *covered;
    let (end_ordinal, end_at) = split_locator(end);
    let end_segment = log.segment(end_ordinal).ok_or("its end lies in a missing segment")?;
    if (end_at as usize) < SEGMENT_HEADER_LEN || u64::from(end_at) > end_segment.size() {
        return Err("its end lies outside its segment".into());
    }
    if last == NO_PREV {
        if next_position != 0 || end != locator(0, SEGMENT_HEADER_LEN as u32) {
            return Err("an empty log must end at the first segment's start".into());
        }
        return Ok(());
    }
    let (segment, at, frame) = log.read(last).map_err(|err| format!("{LAST_RECORD_DAMAGED}: {err}"))?;
    if frame.header.position.checked_add(1) != Some(next_position) {
        return Err(format!(
            "its last record has position {}, but it says the log ends before position {next_position}",
            frame.header.position
        ));
    }
    // Replay resumes inside these segments without re-reading their starts: their bases must fit the
    // positions (a later roll would otherwise create a segment with a lower base than its predecessor).
    if segment.base_position() > frame.header.position || end_segment.base_position() > next_position {
        return Err("a segment's base position lies beyond the positions it is said to hold".into());
    }
    let after = locator(segment.ordinal(), (at + frame.stride()) as u32);
    let rolled = end_at as usize == SEGMENT_HEADER_LEN
        && end_ordinal == segment.ordinal() + 1
        && end_segment.base_position() == next_position;
    if end != after && !rolled {
        return Err("its end does not follow its last record".into());
    }
    Ok(())
}

/// A record read during replay, not yet applied (its transaction may be incomplete).
struct Pending {
    /// The stream name's bytes in the segment (checked UTF-8 by the decoder): no allocation per record.
    stream: std::ops::Range<usize>,
    offset: u64,
    prev: u64,
    locator: u64,
    at: usize,
    timestamp: u64,
    txn_after: u32,
}

/// Replays records from `start` to the end of the log into `index`; cuts and zeroes a torn tail.
fn replay(
    log: &Log,
    index: &mut Index,
    start: Covered,
    options: &Options,
    report: &mut RecoveryReport,
) -> Result<WriterState> {
    let segments = log.segments();
    let (start_ordinal, start_at) = split_locator(start.end);
    let mut next_position = start.next_position;
    let mut last_locator = start.last;
    let mut last_timestamp = start.last_timestamp;
    let last_ordinal = segments.last().expect("a log has a segment").ordinal();

    for segment in segments.iter().filter(|segment| segment.ordinal() >= start_ordinal) {
        let mut at = if segment.ordinal() == start_ordinal { start_at as usize } else { SEGMENT_HEADER_LEN };
        if segment.ordinal() > start_ordinal && segment.base_position() != next_position {
            return Err(Error::corrupt(
                segment.path(),
                0,
                format!(
                    "segment starts at position {} but the log before it ends at {next_position}",
                    segment.base_position()
                ),
            ));
        }
        let bytes = segment.bytes();
        let mut pending: Vec<Pending> = Vec::new();
        // Where the last complete transaction ends: (byte offset, next position).
        let mut committed = (at, next_position);
        let stop: Option<String> = loop {
            if bytes.len() - at < 4 {
                break None;
            }
            let frame = match frame::decode(&bytes[at..]) {
                Ok(frame) => frame,
                Err(DecodeError::End) => break None,
                Err(err) => break Some(err.to_string()),
            };
            let position = committed.1 + pending.len() as u64;
            if frame.header.position != position {
                break Some(format!("expected position {position}, found {}", frame.header.position));
            }
            if let Some(previous) = pending.last() {
                if previous.txn_after.checked_sub(1) != Some(frame.header.txn_after) {
                    break Some("transaction marker out of sequence".into());
                }
            }
            pending.push(Pending {
                stream: at + frame.stream.start..at + frame.stream.end,
                offset: frame.header.offset,
                prev: frame.header.prev,
                locator: locator(segment.ordinal(), at as u32),
                at,
                timestamp: frame.header.timestamp_nanos,
                txn_after: frame.header.txn_after,
            });
            at += frame.stride();
            if frame.header.txn_after == 0 {
                for record in pending.drain(..) {
                    apply(log, index, segment, &record)?;
                    last_locator = record.locator;
                    last_timestamp = last_timestamp.max(record.timestamp);
                    report.records_replayed += 1;
                }
                committed = (at, position + 1);
            }
        };
        next_position = committed.1;

        if segment.ordinal() != last_ordinal {
            // A sealed segment was synced in full before its successor was created: anything short of a clean
            // end exactly at the successor's base is damage to synced data.
            let successor_base = log.segment(segment.ordinal() + 1).expect("not the last").base_position();
            let problem = match (&stop, pending.first()) {
                (Some(reason), _) => Some((at, reason.clone())),
                (None, Some(first)) => Some((first.at, "incomplete transaction in a sealed segment".to_owned())),
                (None, None) if next_position != successor_base => Some((
                    at,
                    format!("segment ends at position {next_position}, its successor starts at {successor_base}"),
                )),
                (None, None) => None,
            };
            if let Some((offset, reason)) = problem {
                return Err(Error::corrupt(segment.path(), offset as u64, reason));
            }
            continue;
        }

        // Whatever ended the scan (garbage, a torn frame, zeros, an incomplete transaction), an intact record
        // further on that was written after the first lost position had been synced proves that synced data
        // is damaged: that is corruption to report, not a tail to cut.
        let look = look_past(segment, at, next_position, options);
        if let LookPast::Proof(proof) = look {
            let reason = stop.clone().unwrap_or_else(|| match pending.is_empty() {
                true => "zeros where a record was expected".to_owned(),
                false => "transaction cut short by zeros".to_owned(),
            });
            return Err(Error::corrupt(
                segment.path(),
                at as u64,
                format!("{reason}; the record at byte {proof} was written after position {next_position} was synced"),
            ));
        }
        // The log ends at `cut`: a torn tail and any incomplete transaction after it are dropped. The bytes
        // from `cut` on are zeroed and synced by the writer before its first write, so that no stale frame
        // (from pages of a lost group that did reach the disk) can ever line up with a future write.
        let cut = committed.0;
        if let LookPast::NoProof { nonzero_end } = look {
            report.tail_bytes_cut = (nonzero_end.max(at) - cut) as u64;
        }
        return Ok(WriterState {
            active: segment.clone(),
            write_at: cut as u64,
            next_position,
            last_locator,
            last_timestamp,
            tail_zeroed: false,
        });
    }
    unreachable!("the start segment exists, so the loop reaches the last segment")
}

/// Adds one replayed record to the index after checking it continues its stream.
fn apply(log: &Log, index: &mut Index, segment: &Segment, record: &Pending) -> Result<()> {
    let stream = std::str::from_utf8(&segment.bytes()[record.stream.clone()]).expect("the decoder checked UTF-8");
    index.append(stream, record.offset, record.prev, record.locator, log).map_err(|()| {
        let expected = index.get(stream, log).map_or(0, |state| state.last_offset + 1);
        Error::corrupt(
            segment.path(),
            record.at as u64,
            format!(
                "record of stream {:?} has offset {} (expected {expected}) or a back-link that does not continue it",
                stream, record.offset
            ),
        )
    })
}

/// What lies past the end of the recovered log.
enum LookPast {
    /// An intact record at this byte offset proves that the first lost position had been synced.
    Proof(usize),
    /// No proof; the bytes from the stop to `nonzero_end` are not all zero (what the cut drops).
    NoProof { nonzero_end: usize },
}

/// Looks past a bad record for an intact one that proves position `lost` was synced (its `synced_before` is
/// beyond it). Looks as far as unsynced bytes can reach: a few groups.
///
/// The look ends at the first 64 KiB of zeros (the unwritten end of the log: a clean open looks at 64 KiB and
/// stops), so a zeroed span longer than that hides what follows it; `Store::verify` and reads still find
/// damage before the recovered end.
fn look_past(segment: &Segment, bad_at: usize, lost: u64, options: &Options) -> LookPast {
    const ZERO_RUN_BYTES_MAX: usize = 64 << 10;
    let bytes = segment.bytes();
    let window = 4 * options.batch_bytes_max + 2 * options.event_size_bytes_max;
    let end = bytes.len().min(bad_at.saturating_add(usize::try_from(window).unwrap_or(usize::MAX)));
    let mut at = bad_at;
    let mut zero_run = 0;
    // Where the bytes past the stop become zeros for good (as far as the look goes): the extent of the cut.
    let mut nonzero_end = bad_at;
    while at + frame::HEADER_LEN <= end {
        if bytes[at..at + frame::FRAME_ALIGN].iter().all(|&b| b == 0) {
            zero_run += frame::FRAME_ALIGN;
            if zero_run >= ZERO_RUN_BYTES_MAX {
                return LookPast::NoProof { nonzero_end };
            }
            at += frame::FRAME_ALIGN;
            continue;
        }
        zero_run = 0;
        nonzero_end = at + frame::FRAME_ALIGN;
        if let Some((position, _, _)) = frame::peek_position_prev(&bytes[at..]) {
            if position > lost && position - lost < 1 << 32 {
                if let Ok(frame) = decode_at(segment, at) {
                    if frame.header.synced_before > lost {
                        return LookPast::Proof(at);
                    }
                }
            }
        }
        at += frame::FRAME_ALIGN;
    }
    LookPast::NoProof { nonzero_end }
}
