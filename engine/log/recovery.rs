//! Opening a store's files: list and check the segments, load the index checkpoint if it checks out against
//! the log, replay the log from there, cut the torn tail, and make durable whatever recovered records nothing
//! proves were synced.
//!
//! The split that matters: bytes after the last completed sync are a normal result of a crash and are cut
//! (with any transaction left incomplete); damage to records that were synced is corruption and is reported
//! as `Corrupt`, never skipped. A record is known to have been synced when it lies in a sealed segment (one
//! with a successor), when a checkpoint covers it, or when a later intact record says so in its
//! `synced_before` field.
//!
//! Every byte is read with `pread` ([`PreadWindow`], [`PreadNames`]), never through the mapping: a media error
//! is then `Error::Io` naming the file and offset, not a SIGBUS on every open.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, IoContext, Result};
use crate::index::Index;
use crate::log::checkpoint::{self, Covered};
use crate::log::frame::{self, DecodeError, NO_PREV};
use crate::log::io::Io;
use crate::log::segment::{self, locator, split_locator, PreadWindow, Segment, SEGMENT_HEADER_LEN, SEGMENT_SUFFIX};
use crate::log::writer::WriterState;
use crate::log::{Log, PreadNames};
use crate::Options;

/// What recovery found or did, for callers who want to know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Whether the index checkpoint was used (else the index was rebuilt from the whole log).
    pub checkpoint_used: bool,
    /// Why a checkpoint on disk was not used, if one was ignored.
    pub checkpoint_rejected: Option<String>,
    /// Records replayed from the log into the index.
    pub records_replayed: u64,
    /// Bytes cut from the end of the last segment (a torn tail or an incomplete transaction).
    pub tail_bytes_cut: u64,
    /// Recovered records that nothing proved were on stable storage (written before a crash or a failed sync,
    /// never synced, read back from the page cache): rewritten and synced before the store opened, so that no
    /// reader sees them before they are durable.
    pub records_resynced: u64,
}

/// Opens every segment in `dir` (creating the first one in an empty directory), recovers the log's end and
/// makes the recovered records durable.
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
    let loaded = match checkpoint::read(dir) {
        Ok(None) => None,
        Ok(Some(bytes)) => Some(load_checkpoint(&bytes, &log, io, &mut index, options)),
        Err(reason) => Some(Err(Rejection::Rejected(reason))),
    };
    match loaded {
        None => {}
        Some(Ok(covered)) => {
            start = covered;
            report.checkpoint_used = true;
        }
        Some(Err(Rejection::Failed(err))) => return Err(err),
        Some(Err(Rejection::Rejected(reason))) => {
            // Never trusted blindly: whatever was loaded goes, and the log is replayed from its start.
            index = Index::new(options.index_interval_events, options.stream_hash_mask);
            report.checkpoint_rejected = Some(reason);
        }
    }

    let state = replay(&log, io, &mut index, start, options, &mut report)?;
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
        if name == crate::log::writer::SPARE_NAME {
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

/// Why a checkpoint was not loaded.
enum Rejection {
    /// It does not check out against the log: ignore it and rebuild.
    Rejected(String),
    /// The open must fail: the record the checkpoint vouches for is damaged (`Corrupt`), or a read failed.
    Failed(Error),
}

impl From<String> for Rejection {
    fn from(reason: String) -> Self {
        Rejection::Rejected(reason)
    }
}

impl From<&str> for Rejection {
    fn from(reason: &str) -> Self {
        Rejection::Rejected(reason.to_owned())
    }
}

/// Loads a checkpoint into `index`, if it checks out: its last record is where it says, with the position
/// it says, every locator of every stream lies in order before its end, no stream appears twice, and a spread
/// sample of 32 streams' last records carry their names (all of them would cost a million random reads for a
/// million streams; the checkpoint's CRC and its last record already vouch for the rest).
fn load_checkpoint(
    bytes: &[u8],
    log: &Log,
    io: &Io,
    index: &mut Index,
    options: &Options,
) -> Result<Covered, Rejection> {
    let (summary, streams) = checkpoint::decode(bytes)?;
    if summary.interval != options.index_interval_events {
        return Err(Rejection::Rejected(format!(
            "taken with index interval {}, the store now uses {}",
            summary.interval, options.index_interval_events
        )));
    }
    check_covered(&summary.covered, log, io)?;
    let names = PreadNames::new(log, io);
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
                return Err(format!("stream {name:?} has a locator outside the covered log").into());
            }
            previous = Some(locator);
        }
        if (i as u64).is_multiple_of(sample_every) && !names.carries(state.head, name) {
            names.take_failure().map_err(Rejection::Failed)?;
            return Err(format!("stream {name:?}: its last record belongs to another stream").into());
        }
        let inserted = index.insert(name, state, &names);
        names.take_failure().map_err(Rejection::Failed)?;
        inserted.map_err(|()| format!("stream {name:?} appears twice"))?;
    }
    Ok(summary.covered)
}

/// Checks the covered point of a checkpoint against the log.
fn check_covered(covered: &Covered, log: &Log, io: &Io) -> Result<(), Rejection> {
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
    // A checkpoint is written only after every record it covers was synced: if its own CRC holds but the last
    // record it names is damaged (or missing), synced data is damaged.
    let (ordinal, at) = split_locator(last);
    let damaged = |offset: u64, file: &Path, why: String| {
        let reason = format!("the last record the checkpoint covers is damaged: {why}");
        Rejection::Failed(Error::corrupt(file, offset, reason))
    };
    let segment = log
        .segment(ordinal)
        .ok_or_else(|| damaged(u64::from(at), log.dir(), format!("it lies in missing segment {ordinal}")))?;
    if (at as usize) < SEGMENT_HEADER_LEN || u64::from(at) >= segment.size() {
        return Err(damaged(u64::from(at), segment.path(), "its offset lies outside the segment".into()));
    }
    let decoded = PreadWindow::new(&segment, io).frame(at as usize).map_err(Rejection::Failed)?;
    let frame = decoded.map_err(|err| match err {
        DecodeError::End => {
            damaged(u64::from(at), segment.path(), "expected a record, found the end of the log".into())
        }
        other => damaged(u64::from(at), segment.path(), other.to_string()),
    })?;
    if frame.header.position.checked_add(1) != Some(next_position) {
        return Err(Rejection::Rejected(format!(
            "its last record has position {}, but it says the log ends before position {next_position}",
            frame.header.position
        )));
    }
    // Replay resumes inside these segments without re-reading their starts: their bases must fit the
    // positions (a later roll would otherwise create a segment with a lower base than its predecessor).
    if segment.base_position() > frame.header.position || end_segment.base_position() > next_position {
        return Err("a segment's base position lies beyond the positions it is said to hold".into());
    }
    let after = locator(segment.ordinal(), at + frame.stride() as u32);
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
    /// The stream name: a range of the transaction's name arena (no allocation per record).
    stream: std::ops::Range<usize>,
    offset: u64,
    prev: u64,
    at: usize,
    timestamp: u64,
    txn_after: u32,
}

/// Where the scan of one segment ended.
struct Scanned {
    /// Why the scan stopped, if not at a clean end (a zero length or the segment's end).
    stop: Option<String>,
    /// Byte offset where it stopped.
    at: usize,
    /// End of the last complete transaction: (byte offset, next position).
    committed: (usize, u64),
    /// Byte offset of the first record of an incomplete transaction at the end, if any.
    pending_at: Option<usize>,
    /// The last position proven synced, and the byte offset of its record (or of where it would go).
    proven: (u64, usize),
}

/// Replays records from `start` to the end of the log into `index`; cuts a torn tail and makes the recovered
/// records that nothing proves were synced durable.
fn replay(
    log: &Log,
    io: &Io,
    index: &mut Index,
    start: Covered,
    options: &Options,
    report: &mut RecoveryReport,
) -> Result<WriterState> {
    let segments = log.segments();
    let (start_ordinal, start_at) = split_locator(start.end);
    let mut tail =
        Tail { next_position: start.next_position, last_locator: start.last, last_timestamp: start.last_timestamp };
    let last_ordinal = segments.last().expect("a log has a segment").ordinal();

    for segment in segments.iter().filter(|segment| segment.ordinal() >= start_ordinal) {
        let at = if segment.ordinal() == start_ordinal { start_at as usize } else { SEGMENT_HEADER_LEN };
        if segment.ordinal() > start_ordinal && segment.base_position() != tail.next_position {
            return Err(Error::corrupt(
                segment.path(),
                0,
                format!(
                    "segment starts at position {} but the log before it ends at {}",
                    segment.base_position(),
                    tail.next_position
                ),
            ));
        }
        let mut window = PreadWindow::new(segment, io);
        let scanned = scan(&mut window, log, io, index, at, &mut tail, report)?;

        if segment.ordinal() != last_ordinal {
            // A sealed segment was synced in full before its successor was created: anything short of a clean
            // end exactly at the successor's base is damage to synced data.
            let successor_base = log.segment(segment.ordinal() + 1).expect("not the last").base_position();
            let problem = match (&scanned.stop, scanned.pending_at) {
                (Some(reason), _) => Some((scanned.at, reason.clone())),
                (None, Some(first)) => Some((first, "incomplete transaction in a sealed segment".to_owned())),
                (None, None) if tail.next_position != successor_base => Some((
                    scanned.at,
                    format!(
                        "segment ends at position {}, its successor starts at {successor_base}",
                        tail.next_position
                    ),
                )),
                (None, None) => None,
            };
            if let Some((offset, reason)) = problem {
                return Err(Error::corrupt(segment.path(), offset as u64, reason));
            }
            continue;
        }
        return finish_last_segment(segment, &mut window, io, &scanned, &tail, options, report);
    }
    unreachable!("the start segment exists, so the loop reaches the last segment")
}

/// Where replay has reached.
struct Tail {
    next_position: u64,
    last_locator: u64,
    last_timestamp: u64,
}

/// Scans one segment's frames from `at`, applying complete transactions to `index`.
fn scan(
    window: &mut PreadWindow<'_>,
    log: &Log,
    io: &Io,
    index: &mut Index,
    mut at: usize,
    tail: &mut Tail,
    report: &mut RecoveryReport,
) -> Result<Scanned> {
    let segment = window.segment();
    let names = PreadNames::new(log, io);
    let mut pending: Vec<Pending> = Vec::new();
    let mut arena: Vec<u8> = Vec::new();
    let mut committed = (at, tail.next_position);
    // Where replay starts in a segment is proven synced: the segment's base (its predecessor was synced before
    // it was created) or a checkpoint's end (written after a sync of all it covers). Later intact records move
    // the proof forward with their `synced_before`. `unproven` holds the (position, byte offset) of the records
    // from the proven point on, so that the proven record's offset is at hand when the proof moves.
    let mut proven = (tail.next_position, at);
    let mut unproven: VecDeque<(u64, usize)> = VecDeque::new();
    let stop: Option<String> = loop {
        if segment.size() as usize - at < 4 {
            break None;
        }
        let frame = match window.frame(at)? {
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
        unproven.push_back((position, at));
        if frame.header.synced_before > proven.0 {
            // `synced_before ≤ position` for every record the writer makes; a larger one is no proof of anything.
            let synced = frame.header.synced_before.min(position);
            while unproven.front().is_some_and(|&(p, _)| p < synced) {
                unproven.pop_front();
            }
            proven = (synced, unproven.front().map_or(at, |&(_, offset)| offset));
        }
        let name_start = arena.len();
        arena.extend_from_slice(&window.bytes(at, frame.len)?[frame.stream.clone()]);
        pending.push(Pending {
            stream: name_start..arena.len(),
            offset: frame.header.offset,
            prev: frame.header.prev,
            at,
            timestamp: frame.header.timestamp_nanos,
            txn_after: frame.header.txn_after,
        });
        at += frame.stride();
        if frame.header.txn_after == 0 {
            for record in pending.drain(..) {
                apply(&names, index, segment, &arena, &record)?;
                tail.last_locator = locator(segment.ordinal(), record.at as u32);
                tail.last_timestamp = tail.last_timestamp.max(record.timestamp);
                report.records_replayed += 1;
            }
            arena.clear();
            committed = (at, position + 1);
        }
    };
    tail.next_position = committed.1;
    Ok(Scanned { stop, at, committed, pending_at: pending.first().map(|record| record.at), proven })
}

/// Decides the end of the last segment: `Corrupt` if a later record proves lost data was synced, else the cut;
/// then rewrites and syncs the records after the last proven-synced point, so that nothing unsynced is
/// published.
fn finish_last_segment(
    active: &Arc<Segment>,
    window: &mut PreadWindow<'_>,
    io: &Io,
    scanned: &Scanned,
    tail: &Tail,
    options: &Options,
    report: &mut RecoveryReport,
) -> Result<WriterState> {
    let segment = window.segment();
    // Whatever ended the scan (garbage, a torn frame, zeros, an incomplete transaction), an intact record
    // further on that was written after the first lost position had been synced proves that synced data
    // is damaged: that is corruption to report, not a tail to cut.
    let look = look_past(window, scanned.committed.0, scanned.at, tail.next_position, options)?;
    if let LookPast::Proof(proof) = look {
        let reason = scanned.stop.clone().unwrap_or_else(|| match scanned.pending_at {
            None => "zeros where a record was expected".to_owned(),
            Some(_) => "transaction cut short by zeros".to_owned(),
        });
        return Err(Error::corrupt(
            segment.path(),
            scanned.at as u64,
            format!(
                "{reason}; the record at byte {proof} was written after position {} was synced",
                tail.next_position
            ),
        ));
    }
    // The log ends at `cut`: a torn tail and any incomplete transaction after it are dropped.
    let cut = scanned.committed.0;
    if let LookPast::NoProof { nonzero_end } = look {
        report.tail_bytes_cut = (nonzero_end.max(scanned.at) - cut) as u64;
    }
    let (proven_position, proven_at) = scanned.proven;
    let tail_zeroed = if proven_position < tail.next_position {
        // IMPORTANT: the records from the proven point to the cut were read back from the page cache. They
        // may never have reached the disk: written before a crash and never synced, or (fsyncgate) written
        // before an `fdatasync` that failed, after which the kernel marked their pages clean, so that a sync
        // now would write nothing. Writing them again makes their pages dirty; the sync then makes them
        // durable. Only then may readers see them, and later records' `synced_before` vouch for them. The tail
        // after the cut is zeroed in the same pass (what the writer would otherwise do before its first group).
        resync(segment, io, proven_at, cut)
            .context(|| format!("making the recovered records of {} durable", segment.path().display()))?;
        report.records_resynced = tail.next_position - proven_position;
        true
    } else {
        false
    };
    Ok(WriterState {
        active: active.clone(),
        write_at: cut as u64,
        next_position: tail.next_position,
        last_locator: tail.last_locator,
        last_timestamp: tail.last_timestamp,
        tail_zeroed,
    })
}

/// Writes the bytes `[from, cut)` of `segment` again (read back with `pread`), zeroes `[cut, size)`, and syncs.
fn resync(segment: &Segment, io: &Io, from: usize, cut: usize) -> std::io::Result<()> {
    const CHUNK_BYTES: usize = 1 << 20;
    let (file, path) = (segment.file(), segment.path());
    let mut buf = vec![0u8; CHUNK_BYTES.min(cut - from)];
    let mut at = from;
    while at < cut {
        let n = buf.len().min(cut - at);
        io.read_at(file, path, &mut buf[..n], at as u64)?;
        io.write_at(file, path, &buf[..n], at as u64)?;
        at += n;
    }
    io.zero_range(file, path, cut as u64, segment.size() - cut as u64)?;
    io.sync_data(file, path)
}

/// Adds one replayed record to the index after checking it continues its stream.
fn apply(names: &PreadNames<'_>, index: &mut Index, segment: &Segment, arena: &[u8], record: &Pending) -> Result<()> {
    let stream = std::str::from_utf8(&arena[record.stream.clone()]).expect("the decoder checked UTF-8");
    let here = locator(segment.ordinal(), record.at as u32);
    let applied = index.append(stream, record.offset, record.prev, here, names);
    names.take_failure()?;
    applied.map_err(|()| {
        let expected = index.get(stream, names).map_or(0, |state| state.last_offset + 1);
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

/// Bytes of zeros (outside any intact frame) after which the proof search takes the log to have ended.
const ZERO_RUN_BYTES_MAX: usize = 64 << 10;

/// Looks past a bad record for an intact one that proves position `lost` was synced (its `synced_before` is
/// beyond it). Looks as far as unsynced bytes can reach: a few groups.
///
/// The look ends at the first 64 KiB of zeros that lie outside every intact frame (the unwritten end of the
/// log: a clean open looks at 64 KiB and stops). Intact frames are stepped over whole, so zeros inside their
/// payloads never end it; neither do zeros inside the extent that the damaged frame at `bad_at` claims (by
/// its length or by its body lengths). A zeroed span of synced data longer than 64 KiB still hides what
/// follows it; `Store::verify` and reads find damage before the recovered end.
fn look_past(
    window: &mut PreadWindow<'_>,
    cut: usize,
    bad_at: usize,
    lost: u64,
    options: &Options,
) -> Result<LookPast> {
    let size = window.segment().size() as usize;
    // Saturating: options may hold anything up to u64::MAX.
    let reach =
        options.batch_bytes_max.saturating_mul(4).saturating_add(options.event_size_bytes_max.saturating_mul(2));
    let end = size.min(bad_at.saturating_add(usize::try_from(reach).unwrap_or(usize::MAX)));
    // Zeros inside what the damaged frame claims as its own are not the end of the log. Its claim is not
    // trusted for anything else: every offset inside is still searched. The damage may be to the length itself
    // (one flipped bit, or the frame's first bytes zeroed), and then the header's body lengths still give the
    // extent: the longer of the two claims that fits the segment is taken. Else the zeros of a long zero
    // payload behind a damaged length end the search, and the synced records after it are cut silently.
    let claimed_end = frame::claimed_lens(window.bytes(bad_at, frame::HEADER_LEN)?)
        .into_iter()
        .flatten()
        .filter(|&len| len >= frame::HEADER_LEN as u64 && len <= (size - bad_at) as u64)
        .max()
        .map_or(bad_at, |len| bad_at + frame::aligned(len as usize));
    let mut at = bad_at;
    let mut zero_run = 0;
    // Where the bytes past the stop become zeros for good (as far as the look goes): the extent of the cut.
    let mut nonzero_end = bad_at;
    while at + frame::HEADER_LEN <= end {
        let head = window.bytes(at, frame::HEADER_LEN)?;
        if head[..frame::FRAME_ALIGN].iter().all(|&b| b == 0) {
            if at >= claimed_end {
                zero_run += frame::FRAME_ALIGN;
                if zero_run >= ZERO_RUN_BYTES_MAX {
                    return Ok(LookPast::NoProof { nonzero_end });
                }
            }
            at += frame::FRAME_ALIGN;
            continue;
        }
        zero_run = 0;
        nonzero_end = at + frame::FRAME_ALIGN;
        // Position `lost` belongs at `cut` in every incarnation of this segment, so a record (or a stale frame
        // of a lost group) `d` bytes after `cut` has a position from `lost` to `lost + d / smallest frame`. Only
        // such a header is worth a decode: garbage rarely is one.
        let most = lost.saturating_add(((at - cut) / frame::FRAME_STRIDE_MIN) as u64 + 1);
        let near = frame::peek_position_prev(head).is_some_and(|(position, _, _)| (lost..=most).contains(&position));
        if near {
            if let Ok(frame) = window.frame(at)? {
                if frame.header.position > lost && frame.header.synced_before > lost {
                    return Ok(LookPast::Proof(at));
                }
                // An intact frame (a stale one from a lost group, or a record of the torn transaction) is
                // stepped over whole: a long zero payload inside it is not the end of the log.
                at += frame.stride();
                nonzero_end = at;
                continue;
            }
        }
        at += frame::FRAME_ALIGN;
    }
    Ok(LookPast::NoProof { nonzero_end })
}
