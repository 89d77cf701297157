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

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, IoContext, Result};
use crate::index::memtable::Record;
use crate::index::{at_least_one, Access, Index};
use crate::log::frame::{self, DecodeError, NO_PREV};
use crate::log::io::Io;
use crate::log::segment::{self, locator, split_locator, PreadWindow, Segment, SEGMENT_HEADER_LEN, SEGMENT_SUFFIX};
use crate::log::writer::WriterState;
use crate::log::{Log, Via};
use crate::Options;
use uuid::Uuid;

/// What recovery found or did, for callers who want to know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Index tables in use after the open (0 when the index was built anew).
    pub index_tables: usize,
    /// Why index tables on disk were not used (they are rebuilt from the log), if any were dropped.
    pub index_rejected: Option<String>,
    /// Records replayed from the log into the index: those after the index's durable end.
    pub records_replayed: u64,
    /// Bytes cut from the end of the last segment (a torn tail or an incomplete transaction).
    pub tail_bytes_cut: u64,
    /// Recovered records that nothing proved were on stable storage (written before a crash or a failed sync,
    /// never synced, read back from the page cache): rewritten and synced before the store opened, so that no
    /// reader sees them before they are durable.
    pub records_resynced: u64,
}

/// The index checkpoint of format 1 (before the persistent index): ignored and removed on open.
const LEGACY_CHECKPOINT: [&str; 2] = ["index.ckpt", "index.tmp"];

/// Opens the segments in `dir` (creating the first one in an empty directory) and the index, replays the log
/// after the index's durable end into the index, recovers the log's end and makes the recovered records
/// durable.
pub(crate) fn recover(
    dir: &Path,
    options: &Options,
    io: &Io,
) -> Result<(Arc<Log>, Arc<Index>, WriterState, RecoveryReport)> {
    span!("annals.recovery");
    let bases = list_segments(dir, options, io)?;
    let log = Arc::new(Log::new(dir.to_owned(), bases, at_least_one(options.open_segments_max)));
    for name in LEGACY_CHECKPOINT {
        let path = dir.join(name);
        if path.exists() {
            std::fs::remove_file(&path).context(|| format!("removing the old checkpoint {}", path.display()))?;
        }
    }
    let (index, resume, opened) = Index::open(dir, log.clone(), io.clone(), options, Access::Write)?;
    let mut report =
        RecoveryReport { index_tables: opened.tables, index_rejected: opened.dropped, ..RecoveryReport::default() };
    let start = Tail { next_position: resume.position, last_timestamp: resume.last_timestamp };
    match replay(&log, io, &index, resume.locator, start, options, &mut report) {
        Ok(state) => Ok((log, index, state, report)),
        Err(err) => {
            // The open fails and the directory's lock goes: the index's threads must not go on writing tables.
            index.abandon();
            Err(err)
        }
    }
}

/// Lists the segment files (their base positions, from their names, in order), removes leftover temporary
/// files, and creates the first segment of an empty directory. Segment headers are checked when a segment
/// is first opened, not here: an open costs no work per segment beyond the listing.
fn list_segments(dir: &Path, options: &Options, io: &Io) -> Result<Vec<u64>> {
    let mut bases = Vec::new();
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
        if name.ends_with(".seg.tmp") {
            // A segment whose creation did not finish: it was never renamed into place, so nothing refers to it.
            std::fs::remove_file(&path).context(|| format!("removing leftover {}", path.display()))?;
        } else if path.extension().is_some_and(|ext| ext == SEGMENT_SUFFIX) {
            let base = segment::parse_file_name(&name)
                .ok_or_else(|| Error::corrupt(&path, 0, "not a segment file name (20 decimal digits and .seg)"))?;
            bases.push(base);
        }
    }
    bases.sort_unstable();
    if bases.is_empty() {
        Segment::create(io, dir, 0, 0, options.segment_size_bytes)?;
        bases.push(0);
    }
    if bases[0] != 0 {
        return Err(Error::corrupt(dir.join(segment::file_name(bases[0])), 0, "the first segment is missing"));
    }
    Ok(bases)
}

/// A record read during replay, not yet applied (its transaction may be incomplete).
struct Pending {
    /// The stream name and event type: ranges of the transaction's arena (no allocation per record).
    stream: std::ops::Range<usize>,
    event_type: std::ops::Range<usize>,
    offset: u64,
    prev: u64,
    position: u64,
    at: usize,
    timestamp: u64,
    event_id: Uuid,
    txn_after: u32,
}

/// Where the scan of one segment ended.
pub(super) struct Scanned {
    /// Why the scan stopped, if not at a clean end (a zero length or the segment's end).
    pub stop: Option<String>,
    /// Byte offset where it stopped.
    pub at: usize,
    /// End of the last complete transaction: (byte offset, next position).
    pub committed: (usize, u64),
    /// Byte offset of the first record of an incomplete transaction at the end, if any.
    pub pending_at: Option<usize>,
    /// The last position proven synced, and the byte offset of its record (or of where it would go).
    proven: (u64, usize),
}

/// Replays records from `start_locator` (where the index's tables end) to the end of the log into the
/// index; cuts a torn tail and makes the recovered records that nothing proves were synced durable.
fn replay(
    log: &Log,
    io: &Io,
    index: &Index,
    start_locator: u64,
    mut tail: Tail,
    options: &Options,
    report: &mut RecoveryReport,
) -> Result<WriterState> {
    let (start_ordinal, start_at) = split_locator(start_locator);
    let last_ordinal = log.segment_count() - 1;
    if start_ordinal > last_ordinal {
        return Err(Error::corrupt(
            log.dir(),
            0,
            format!("the index covers segment {start_ordinal}, which is missing"),
        ));
    }
    for ordinal in start_ordinal..=last_ordinal {
        let segment = log.segment(ordinal)?;
        let at = if ordinal == start_ordinal { start_at as usize } else { SEGMENT_HEADER_LEN };
        if ordinal > start_ordinal && segment.base_position() != tail.next_position {
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
        if segment.is_compacted() {
            // Sealed, and every transaction in it was complete when compaction ran.
            let Some(successor_base) = log.base(ordinal + 1) else {
                return Err(Error::corrupt(segment.path(), 0, "a compacted segment is the last segment of the log"));
            };
            replay_compacted(log, io, index, &segment, at as u32, &mut tail, report)?;
            index.freeze(successor_base, locator(ordinal + 1, SEGMENT_HEADER_LEN as u32));
            continue;
        }
        let mut window = PreadWindow::new(&segment, io);
        let scanned = scan(&mut window, log, io, index, at, &mut tail, u64::MAX, report)?;

        if ordinal != last_ordinal {
            // A sealed segment was synced in full before its successor was created: anything short of a clean
            // end exactly at the successor's base is damage to synced data.
            let successor_base = log.base(ordinal + 1).expect("not the last");
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
            // The sealed segment's entries are complete: the background thread writes them out as a table.
            index.freeze(successor_base, locator(ordinal + 1, SEGMENT_HEADER_LEN as u32));
            continue;
        }
        return finish_last_segment(&segment, &mut window, io, &scanned, &tail, options, report);
    }
    unreachable!("the loop reaches the last segment")
}

/// Replays a compacted segment from original offset `from` (its base, or where the index's tables end) into
/// the index. Its records are checked as compaction left them: each decodes in full, positions ascend within
/// the segment, each sits where its relocation entry says, and each continues its stream, or (the first record
/// compaction kept of a stream) links back to a removed one. The index then reaches the successor's base.
pub(super) fn replay_compacted(
    log: &Log,
    io: &Io,
    index: &Index,
    segment: &Segment,
    from: u32,
    tail: &mut Tail,
    report: &mut RecoveryReport,
) -> Result<()> {
    let ordinal = segment.ordinal();
    let end = log.base(ordinal + 1).expect("a compacted segment is sealed");
    let mut window = PreadWindow::new(segment, io);
    let mut at = segment.physical_at_or_after(from).map_or(segment.frames_end(), |here| here as usize);
    loop {
        if at >= segment.frames_end() {
            // Compaction may have removed the segment's last records: the log goes on at the successor's base.
            if tail.next_position < end {
                let last = segment.logical_of_position(end - 1).expect("within the segment");
                index.skip_to(end, tail.last_timestamp, locator(ordinal, last));
            }
            tail.next_position = end;
            return Ok(());
        }
        let frame = match window.frame(at)? {
            Ok(frame) => frame,
            Err(err) => return Err(crate::log::corrupt_frame(segment, at, err)),
        };
        let header = frame.header;
        let bad = |reason: String| Err(Error::corrupt(segment.path(), at as u64, reason));
        if header.position < tail.next_position || header.position >= end {
            return bad(format!("position {} out of order in a compacted segment", header.position));
        }
        let logical = match segment.logical_of_position(header.position) {
            Some(logical) if segment.physical(logical) == Some(at as u32) => logical,
            _ => return bad(format!("record of position {} is not where its relocation entry says", header.position)),
        };
        let bytes = &window.bytes(at, frame.len)?[..frame.len];
        let text =
            |range: std::ops::Range<usize>| std::str::from_utf8(&bytes[range]).expect("the decoder checked UTF-8");
        let (stream, event_type) = (text(frame.stream.clone()), text(frame.event_type.clone()));
        let head = index.head(stream, Via::Pread(io))?;
        let expected = head.map_or((0, NO_PREV), |head| (head.last_offset + 1, head.locator));
        let continues = (header.offset, header.prev) == expected
            || (header.offset > expected.0 && header.prev != NO_PREV && log.located(header.prev)?.is_none());
        if !continues {
            return bad(format!(
                "record of stream {stream:?} has offset {} (expected {}) or a back-link that does not continue it",
                header.offset, expected.0
            ));
        }
        at += frame.stride();
        let next = header.position + 1;
        let next_locator = if next == end {
            locator(ordinal + 1, SEGMENT_HEADER_LEN as u32)
        } else {
            locator(ordinal, segment.logical_of_position(next).expect("below the segment's end"))
        };
        let record = Record {
            stream,
            event_type,
            offset: header.offset,
            position: header.position,
            locator: locator(ordinal, logical),
            timestamp: header.timestamp_nanos,
            event_id: header.event_id,
        };
        index.publish_after_gap(record, next_locator);
        tail.next_position = next;
        tail.last_timestamp = tail.last_timestamp.max(header.timestamp_nanos);
        report.records_replayed += 1;
    }
}

/// Where replay has reached.
pub(super) struct Tail {
    pub next_position: u64,
    pub last_timestamp: u64,
}

/// Scans one segment's frames from `at`, applying complete transactions to `index`, and stops cleanly once
/// the transactions before position `limit` are applied.
#[allow(clippy::too_many_arguments)]
pub(super) fn scan(
    window: &mut PreadWindow<'_>,
    log: &Log,
    io: &Io,
    index: &Index,
    mut at: usize,
    tail: &mut Tail,
    limit: u64,
    report: &mut RecoveryReport,
) -> Result<Scanned> {
    let segment = window.segment();
    let mut pending: Vec<Pending> = Vec::new();
    let mut arena: Vec<u8> = Vec::new();
    let mut committed = (at, tail.next_position);
    // Where replay starts in a segment is proven synced: the segment's base (its predecessor was synced before
    // it was created) or the index's end (a table is written after a sync of all it covers). Later intact
    // records move the proof forward with their `synced_before`. `unproven` holds the (position, byte offset)
    // of the records from the proven point on, so that the proven record's offset is at hand when it moves.
    let mut proven = (tail.next_position, at);
    let mut unproven: VecDeque<(u64, usize)> = VecDeque::new();
    let stop: Option<String> = loop {
        if segment.size() as usize - at < 4 || (pending.is_empty() && committed.1 >= limit) {
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
        let bytes = &window.bytes(at, frame.len)?[..frame.len];
        let stream_start = arena.len();
        arena.extend_from_slice(&bytes[frame.stream.clone()]);
        let type_start = arena.len();
        arena.extend_from_slice(&bytes[frame.event_type.clone()]);
        pending.push(Pending {
            stream: stream_start..type_start,
            event_type: type_start..arena.len(),
            offset: frame.header.offset,
            prev: frame.header.prev,
            position,
            at,
            timestamp: frame.header.timestamp_nanos,
            event_id: frame.header.event_id,
            txn_after: frame.header.txn_after,
        });
        at += frame.stride();
        if frame.header.txn_after == 0 {
            apply(log, io, index, segment, &arena, &pending, at)?;
            for record in pending.drain(..) {
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

/// Adds one replayed transaction to the index after checking that each record continues its stream: offset 0
/// with no back-link for a new stream, else the next offset linking back to the stream's last record. `end` is
/// the byte offset after the transaction.
fn apply(
    log: &Log,
    io: &Io,
    index: &Index,
    segment: &Segment,
    arena: &[u8],
    txn: &[Pending],
    end: usize,
) -> Result<()> {
    let text =
        |range: &std::ops::Range<usize>| std::str::from_utf8(&arena[range.clone()]).expect("the decoder checked UTF-8");
    // Streams touched earlier in this transaction: their last (offset, locator). A map, not a list searched
    // from the end: W3's 1,000-event transactions made that search 46% of a recovery's time (quadratic in a
    // transaction's size: 110,000 records replayed in 600 ms).
    let mut staged: HashMap<&str, (u64, u64)> = HashMap::with_capacity(txn.len());
    for record in txn {
        let stream = text(&record.stream);
        let head = match staged.get(stream) {
            Some(&(last_offset, head)) => Some((last_offset, head)),
            None => index.head(stream, Via::Pread(io))?.map(|head| (head.last_offset, head.locator)),
        };
        let expected = head.map_or((0, NO_PREV), |(last_offset, head)| (last_offset + 1, head));
        // Or the first record compaction kept of the stream, linking back to a removed one.
        let after_removed = || -> Result<bool> {
            Ok(record.offset > expected.0 && record.prev != NO_PREV && log.located(record.prev)?.is_none())
        };
        if (record.offset, record.prev) != expected && !after_removed()? {
            return Err(Error::corrupt(
                segment.path(),
                record.at as u64,
                format!(
                    "record of stream {stream:?} has offset {} (expected {}) or a back-link that does not continue it",
                    record.offset, expected.0
                ),
            ));
        }
        staged.insert(stream, (record.offset, locator(segment.ordinal(), record.at as u32)));
    }
    let ordinal = segment.ordinal();
    let records = txn.iter().enumerate().map(|(i, record)| {
        let next = txn.get(i + 1).map_or(end, |next| next.at);
        let record = Record {
            stream: text(&record.stream),
            event_type: text(&record.event_type),
            offset: record.offset,
            position: record.position,
            locator: locator(ordinal, record.at as u32),
            timestamp: record.timestamp,
            event_id: record.event_id,
        };
        (record, next_locator(log, ordinal, next, record.position + 1))
    });
    index.publish(records, || ());
    Ok(())
}

/// The locator of the next record: at `at` in segment `ordinal`, or at the start of the next segment if that
/// one begins with `next_position`.
fn next_locator(log: &Log, ordinal: u32, at: usize, next_position: u64) -> u64 {
    if log.base(ordinal + 1) == Some(next_position) {
        locator(ordinal + 1, SEGMENT_HEADER_LEN as u32)
    } else {
        locator(ordinal, at as u32)
    }
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
    let active_file = segment.open_file()?;
    let tail_zeroed = if proven_position < tail.next_position {
        // IMPORTANT: the records from the proven point to the cut were read back from the page cache. They
        // may never have reached the disk: written before a crash and never synced, or (fsyncgate) written
        // before an `fdatasync` that failed, after which the kernel marked their pages clean, so that a sync
        // now would write nothing. Writing them again makes their pages dirty; the sync then makes them
        // durable. Only then may readers see them, and later records' `synced_before` vouch for them. The tail
        // after the cut is zeroed in the same pass (what the writer would otherwise do before its first group).
        resync(segment, &active_file, io, proven_at, cut)
            .context(|| format!("making the recovered records of {} durable", segment.path().display()))?;
        report.records_resynced = tail.next_position - proven_position;
        true
    } else {
        false
    };
    Ok(WriterState {
        active: active.clone(),
        active_file,
        write_at: cut as u64,
        next_position: tail.next_position,
        last_timestamp: tail.last_timestamp,
        tail_zeroed,
    })
}

/// Writes the bytes `[from, cut)` of `segment` again (read back with `pread`), zeroes `[cut, size)`, and syncs.
fn resync(segment: &Segment, file: &File, io: &Io, from: usize, cut: usize) -> std::io::Result<()> {
    const CHUNK_BYTES: usize = 1 << 20;
    let path = segment.path();
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
