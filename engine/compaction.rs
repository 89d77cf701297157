//! What compaction removes, and when: the store's side of `log::compact`. A record is removed when its
//! stream's lifecycle hides it (truncation, soft deletion, `max_count`, `max_age`, a tombstone), unless it is
//! the stream's last record (which carries the stream's numbering on), a system stream's (`$…`), or the record
//! just below a truncation point (where snapshot-then-truncate leaves its snapshot).
//!
//! The rules hide a prefix of a stream's offsets (timestamps never decrease along a stream), so what one
//! compaction removes of a stream within a segment is a prefix of its records there. Across segments a
//! stream's kept records form runs (an event an earlier compaction kept can stay below events a later one
//! removed elsewhere): each run's first record links back to a removed one, which readers, recovery and
//! `verify` accept (format-spec §4.5).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, Result};
use crate::index::Kind;
use crate::lifecycle::{rules_of, StreamMetadata, META_EVENT_TYPE, META_STREAM_PREFIX};
use crate::log::compact::{compact_segment, Candidate};
use crate::log::writer::Shared;
use crate::log::Via;
use crate::read::{ReadIndexed, ReadStream, Source};

/// What [`Store::compact`](crate::Store::compact) did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionReport {
    /// Segments rewritten.
    pub segments: u64,
    /// Events removed.
    pub events_removed: u64,
    /// Bytes of segment files given back.
    pub bytes_reclaimed: u64,
}

/// The offset below which `stream`'s records may go (0: none), and the commit time before which they may go
/// (those of the prefix `max_age` hides); both stop short of its last record, and the offset rule also keeps
/// the record just below it (snapshot-then-truncate leaves its snapshot there, and a snapshot is trusted only
/// while its event can be read).
#[derive(Clone, Copy)]
struct Removable {
    below_offset: u64,
    before_timestamp: u64,
    last_offset: u64,
}

impl Removable {
    fn removes(&self, offset: u64, timestamp: u64) -> bool {
        // Still a prefix: the record kept below the truncation point goes only with the age rule, which takes
        // every record before it too (timestamps never decrease along a stream).
        offset < self.last_offset && (offset.saturating_add(1) < self.below_offset || timestamp < self.before_timestamp)
    }
}

fn removable(shared: &Shared, stream: &str, now: SystemTime) -> Result<Option<Removable>> {
    if stream.starts_with('$') {
        return Ok(None);
    }
    let Some(rules) = rules_of(&shared.log, &shared.index, stream, now)? else { return Ok(None) };
    let Some(head) = shared.index.head(stream, Via::Mapping)? else { return Ok(None) };
    Ok(Some(if rules.tombstoned {
        Removable { below_offset: u64::MAX, before_timestamp: 0, last_offset: head.last_offset }
    } else {
        Removable { below_offset: rules.start, before_timestamp: rules.min_timestamp, last_offset: head.last_offset }
    }))
}

/// Compacts every sealed segment the index's tables cover whose hidden share reaches `min_dead_percent`. Reads
/// every sealed segment: an operator's full pass. The background compactor reads only candidates.
pub(crate) fn compact(shared: &Shared, min_dead_percent: u8) -> Result<CompactionReport> {
    let sealed = shared.log.segment_count().saturating_sub(1);
    compact_these(shared, min_dead_percent, &mut (0..sealed).collect(), &|| false)
}

/// Compacts the segments in `candidates` that are eligible (sealed, covered by the index's tables), removing
/// them from the set; those not eligible yet stay. Stops early (with `Closed`) once `stopping` says so.
fn compact_these(
    shared: &Shared,
    min_dead_percent: u8,
    candidates: &mut BTreeSet<u32>,
    stopping: &dyn Fn() -> bool,
) -> Result<CompactionReport> {
    let _only_one = shared.compaction.lock();
    let mut report = CompactionReport::default();
    if shared.read_only || !shared.lifecycle.load(Ordering::Acquire) {
        candidates.clear();
        return Ok(report);
    }
    if let Some(err) = shared.poisoned() {
        return Err(err);
    }
    let log = &shared.log;
    let covered = shared.index.tables().last().map_or(0, |table| table.meta().end_position);
    let sealed = log.segment_count().saturating_sub(1);
    let now = SystemTime::now();
    let mut rules: HashMap<String, Option<Removable>> = HashMap::new();
    let eligible: Vec<u32> = candidates
        .iter()
        .copied()
        .take_while(|&ordinal| ordinal < sealed && log.base(ordinal + 1).is_some_and(|next| next <= covered))
        .collect();
    for ordinal in eligible {
        let mut keep = |candidate: &Candidate<'_>| -> Result<bool> {
            if stopping() {
                return Err(Error::Closed);
            }
            let removable = match rules.get(candidate.stream) {
                Some(removable) => *removable,
                None => {
                    let found = removable(shared, candidate.stream, now)?;
                    rules.insert(candidate.stream.to_owned(), found);
                    found
                }
            };
            Ok(!removable.is_some_and(|removable| removable.removes(candidate.offset, candidate.timestamp)))
        };
        let done = compact_segment(log, &shared.io, ordinal, min_dead_percent, &mut keep)?;
        candidates.remove(&ordinal);
        if let Some(done) = done {
            report.segments += 1;
            report.events_removed += done.removed;
            report.bytes_reclaimed += done.bytes_before - done.bytes_after;
            shared.stats.compacted(done.bytes_before - done.bytes_after);
        }
    }
    Ok(report)
}

/// The segments holding `stream`'s records that its lifecycle hides now: read through the index from the
/// stream's first offset up to the first record that stays, so the cost is what the change hid.
fn segments_hiding(shared: &Shared, stream: &str, now: SystemTime, into: &mut BTreeSet<u32>) -> Result<()> {
    let Some(removable) = removable(shared, stream, now)? else { return Ok(()) };
    let source = Source::new(shared.log.clone(), shared.index.clone());
    for event in ReadStream::new(source, stream, 0)? {
        let event = event?;
        if !removable.removes(event.offset(), event.timestamp_nanos()) {
            break;
        }
        into.insert(shared.log.ordinal_of(event.position()));
    }
    Ok(())
}

/// The streams with a `max_age`: their events expire as time passes, so the compactor looks at them at every
/// interval. Found from the metadata events (through the event-type index: what it costs is their number).
fn streams_with_max_age(shared: &Shared) -> Result<HashSet<String>> {
    let source = Source::new(shared.log.clone(), shared.index.clone());
    let end = shared.committed.load(Ordering::Acquire);
    let mut found = HashSet::new();
    for event in ReadIndexed::new(source, Kind::EventType, META_EVENT_TYPE, 0, end)? {
        let event = event?;
        let Some(stream) = event.stream().strip_prefix(META_STREAM_PREFIX) else { continue };
        if StreamMetadata::decode(&event)?.max_age.is_some() {
            found.insert(stream.to_owned());
        } else {
            found.remove(stream);
        }
    }
    Ok(found)
}

/// Wakes the background compactor: a lifecycle change, or the store closing.
#[derive(Default)]
pub(crate) struct Signal {
    state: parking_lot::Mutex<Pending>,
    wake: parking_lot::Condvar,
    stopping: AtomicBool,
}

#[derive(Default)]
struct Pending {
    /// Streams whose lifecycle changed since the compactor last looked.
    changed: Vec<String>,
    stop: bool,
}

impl Signal {
    /// `stream`'s lifecycle changed: there may be space to give back.
    pub fn changed(&self, stream: &str) {
        self.state.lock().changed.push(stream.to_owned());
        self.wake.notify_all();
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.state.lock().stop = true;
        self.wake.notify_all();
    }
}

/// How soon the compactor looks again at candidates the index's tables do not cover yet (written in the
/// background after each roll).
const RETRY_UNCOVERED: Duration = Duration::from_secs(1);

/// The background compactor (thread `annals-compact`). A lifecycle change names its stream; the compactor
/// finds the segments holding what the change hid (through the index: the cost is what was hidden, never the
/// store's size) and compacts those whose hidden share reaches `compaction_dead_percent`. Every
/// `compaction_interval`, the streams with a `max_age` are looked at the same way. A failure is logged and
/// tried again at the next occasion; compaction never poisons the store (a crash or a failure leaves the old
/// segment file or the new one, both whole). Stops, abandoning a compaction half-way, when the store closes.
pub(crate) fn run_in_background(shared: std::sync::Arc<Shared>, signal: std::sync::Arc<Signal>) {
    let percent = shared.options.compaction_dead_percent;
    let interval = shared.options.compaction_interval;
    // A store without lifecycle metadata (most) has none to list: the open's probe said so. Later changes
    // name their streams.
    let listed =
        if shared.lifecycle.load(Ordering::Acquire) { streams_with_max_age(&shared) } else { Ok(HashSet::new()) };
    let mut aging = listed.unwrap_or_else(|err| {
        ::log::warn!("annals: the compactor could not list the streams with a max_age: {err}");
        HashSet::new()
    });
    let mut candidates = BTreeSet::new();
    let mut next_interval = Instant::now().checked_add(interval);
    loop {
        let changed = {
            let mut state = signal.state.lock();
            loop {
                if state.stop {
                    return;
                }
                if !state.changed.is_empty() {
                    break;
                }
                let retry = (!candidates.is_empty()).then(|| Instant::now() + RETRY_UNCOVERED);
                let deadline = match (next_interval, retry) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let timed_out = match deadline {
                    Some(deadline) => signal.wake.wait_until(&mut state, deadline).timed_out(),
                    None => {
                        signal.wake.wait(&mut state);
                        false
                    }
                };
                if timed_out {
                    break;
                }
            }
            std::mem::take(&mut state.changed)
        };
        if percent == 0 {
            continue;
        }
        let now = SystemTime::now();
        let mut streams: HashSet<String> = changed.into_iter().collect();
        for stream in &streams {
            match crate::lifecycle::metadata_of(&shared.log, &shared.index, stream) {
                Ok(Some(metadata)) if metadata.max_age.is_some() => {
                    aging.insert(stream.clone());
                }
                Ok(_) => {
                    aging.remove(stream);
                }
                Err(err) => ::log::warn!("annals: the compactor could not read {stream}'s metadata: {err}"),
            }
        }
        if next_interval.is_some_and(|at| Instant::now() >= at) {
            streams.extend(aging.iter().cloned());
            next_interval = Instant::now().checked_add(interval);
        }
        for stream in &streams {
            if let Err(err) = segments_hiding(&shared, stream, now, &mut candidates) {
                ::log::warn!("annals: the compactor could not look at {stream}: {err}");
            }
        }
        let stopping = || signal.stopping.load(Ordering::Acquire);
        match compact_these(&shared, percent, &mut candidates, &stopping) {
            Ok(_) | Err(Error::Closed) => {}
            Err(err) => ::log::warn!("annals: background compaction failed (tried again later): {err}"),
        }
    }
}
