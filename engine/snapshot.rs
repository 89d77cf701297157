//! Snapshot files: a stream's aggregate state as of an offset, so that loading an aggregate replays only the
//! events after it. Written atomically, found newest first, verified before use; knows nothing of the log's
//! framing.
//!
//! A snapshot is only ever an optimisation: the events are the truth. So a snapshot that cannot be trusted
//! (damaged, of another stream, or beyond what the log holds after a crash) is skipped with a warning, and the
//! next older one is tried; none at all means a replay from offset 0, never an error.
//!
//! # Layout
//!
//! ```text
//! <store>/snapshots/<32 hex digits: FNV-1a-128 of the stream name>/<offset, 20 decimal digits>.snap
//! ```
//!
//! Stream names never become file names: any name, `../../etc/passwd` included, maps to 32 hex digits inside
//! `snapshots/`. Two names with the same hash share a directory; the full name inside each file tells them
//! apart, and a file of the other stream is skipped (the worst a collision can do is cost a replay).
//!
//! # File format, version 2 (all integers little-endian)
//!
//! | bytes                  | field            | meaning                                                   |
//! |------------------------|------------------|-----------------------------------------------------------|
//! | 0..8                   | magic            | `ANNLSNAP`                                                |
//! | 8..12                  | format version   | u32, [`SNAPSHOT_FORMAT_VERSION`] (2)                      |
//! | 12..16                 | schema version   | u32, the application's version of the state's encoding    |
//! | 16..24                 | offset           | u64, the stream offset of the last event the state covers |
//! | 24..32                 | position         | u64, that event's global position                         |
//! | 32..48                 | event id         | that event's UUID, as `Uuid::as_bytes`                    |
//! | 48..52                 | name length `n`  | u32, bytes of the stream name (UTF-8)                     |
//! | 52..60                 | state length `s` | u64, bytes of the state                                   |
//! | 60..60+n               | stream name      | the full name, checked on read                            |
//! | 60+n..60+n+s           | state            | opaque bytes                                              |
//! | 60+n+s..64+n+s         | CRC-32           | crc32 (IEEE, `crc32fast`) of every byte before it         |
//!
//! The file's length must be exactly `64 + n + s`, and the offset must match the file name. A snapshot is
//! trusted only while the stream's event at `offset` has this position and id: a crash can take events away
//! and let different ones reach the same offsets later, and a snapshot of the lost ones must never be used.
//! Version 1 files (the same without position and event id, header of 36 bytes) cannot be checked that way
//! and are skipped ([`SkipReason::Unverifiable`]); retention deletes them.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use uuid::Uuid;

use crate::error::{Error, IoContext, Result};
use crate::log::io::Io;

/// The snapshot file format this build writes and reads (it recognises version 1 files and skips them).
pub const SNAPSHOT_FORMAT_VERSION: u32 = 2;
/// How many snapshots per stream [`Store::write_snapshot`](crate::Store::write_snapshot) keeps.
pub const SNAPSHOTS_KEPT_DEFAULT: usize = 3;

/// Subdirectory of the store directory that holds the snapshots.
pub(crate) const SNAPSHOTS_DIR: &str = "snapshots";
const SNAPSHOT_SUFFIX: &str = ".snap";
/// Decimal digits of the offset in a snapshot file name (enough for `u64::MAX`, so names sort by offset).
const OFFSET_DIGITS: usize = 20;

const MAGIC: [u8; 8] = *b"ANNLSNAP";
const MAGIC_OFFSET: usize = 0;
const FORMAT_VERSION_OFFSET: usize = MAGIC_OFFSET + MAGIC.len();
const SCHEMA_VERSION_OFFSET: usize = FORMAT_VERSION_OFFSET + size_of::<u32>();
const STREAM_OFFSET_OFFSET: usize = SCHEMA_VERSION_OFFSET + size_of::<u32>();
const POSITION_OFFSET: usize = STREAM_OFFSET_OFFSET + size_of::<u64>();
const EVENT_ID_OFFSET: usize = POSITION_OFFSET + size_of::<u64>();
const NAME_LEN_OFFSET: usize = EVENT_ID_OFFSET + 16;
const STATE_LEN_OFFSET: usize = NAME_LEN_OFFSET + size_of::<u32>();
const HEADER_LEN: usize = STATE_LEN_OFFSET + size_of::<u64>();
const CRC_LEN: usize = size_of::<u32>();
const _: () = assert!(HEADER_LEN == 60);
/// Version 1: the same fields without position and event id.
const V1_NAME_LEN_OFFSET: usize = STREAM_OFFSET_OFFSET + size_of::<u64>();
const V1_STATE_LEN_OFFSET: usize = V1_NAME_LEN_OFFSET + size_of::<u32>();
const V1_HEADER_LEN: usize = V1_STATE_LEN_OFFSET + size_of::<u64>();
const _: () = assert!(V1_HEADER_LEN == 36);

/// Snapshot writes of one stream are serialised (same temporary file name, retention after the rename). The
/// store directory is locked to one open store, so a lock in this process covers every writer; streams are
/// striped over a few locks by their hash.
static WRITE_LOCKS: [Mutex<()>; 16] = [const { Mutex::new(()) }; 16];

/// One stream's state as of an offset, read back from a verified snapshot file.
///
/// Returned by [`Store::latest_snapshot`](crate::Store::latest_snapshot). A plain value: `Send + Sync`.
///
/// ```
/// use annals::{EventData, ExpectedVersion, Store};
/// # fn main() -> annals::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// store.append("account-7", ExpectedVersion::Any, &[EventData::new("MoneyDeposited", &b"5"[..])])?;
/// store.write_snapshot("account-7", 0, b"balance=5")?;
///
/// let snapshot = store.latest_snapshot("account-7")?.expect("just written");
/// assert_eq!((snapshot.offset(), snapshot.state()), (0, &b"balance=5"[..]));
/// assert_eq!(snapshot.stream(), "account-7");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    stream: String,
    offset: u64,
    position: u64,
    event_id: Uuid,
    schema_version: u32,
    state: Vec<u8>,
}

impl Snapshot {
    /// The stream the state belongs to.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The offset of the last event the state covers: replay from `offset() + 1`.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The global position of the event at [`offset`](Self::offset).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The id of the event at [`offset`](Self::offset): the snapshot is trusted only while the stream holds
    /// this event there.
    pub fn event_id(&self) -> Uuid {
        self.event_id
    }

    /// The schema version given when the snapshot was written ([`SnapshotOptions::schema_version`]).
    pub fn schema_version(&self) -> u32 {
        self.schema_version
    }

    /// The state bytes, as written.
    pub fn state(&self) -> &[u8] {
        &self.state
    }

    /// The state bytes, owned.
    pub fn into_state(self) -> Vec<u8> {
        self.state
    }
}

/// How [`Store::write_snapshot_with`](crate::Store::write_snapshot_with) writes a snapshot.
///
/// ```
/// let options = annals::SnapshotOptions { schema_version: 2, ..Default::default() };
/// assert_eq!(options.keep_last, annals::SNAPSHOTS_KEPT_DEFAULT);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// The application's version of the state's encoding, stored in the file and returned by
    /// [`Snapshot::schema_version`], so that a reader can refuse a state it no longer understands. Default 0.
    pub schema_version: u32,
    /// Retention: after the write, only this many snapshots of the stream (the highest offsets) are kept.
    /// At least 1. Default [`SNAPSHOTS_KEPT_DEFAULT`] (3).
    pub keep_last: usize,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions { schema_version: 0, keep_last: SNAPSHOTS_KEPT_DEFAULT }
    }
}

/// The result of looking for a stream's latest snapshot: the snapshot used, if any, and every newer file that
/// was skipped, with why. Returned by [`Store::find_latest_snapshot`](crate::Store::find_latest_snapshot).
///
/// ```
/// use annals::{EventData, ExpectedVersion, Store};
/// # fn main() -> annals::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// store.append("order-1", ExpectedVersion::Any, &[EventData::new("OrderPlaced", &b"{}"[..])])?;
/// store.write_snapshot("order-1", 0, b"placed")?;
/// let search = store.find_latest_snapshot("order-1")?;
/// assert_eq!(search.snapshot().map(|snapshot| snapshot.offset()), Some(0));
/// assert!(search.skipped().is_empty());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct SnapshotSearch {
    snapshot: Option<(Snapshot, PathBuf)>,
    skipped: Vec<SkippedSnapshot>,
}

impl SnapshotSearch {
    /// The newest snapshot that passed every check; `None` if there is none.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref().map(|(snapshot, _)| snapshot)
    }

    /// The file the snapshot was read from.
    pub fn snapshot_path(&self) -> Option<&Path> {
        self.snapshot.as_ref().map(|(_, path)| path.as_path())
    }

    /// The snapshot, owned.
    pub fn into_snapshot(self) -> Option<Snapshot> {
        self.snapshot.map(|(snapshot, _)| snapshot)
    }

    /// The newer snapshot files that were not trusted, newest first.
    pub fn skipped(&self) -> &[SkippedSnapshot] {
        &self.skipped
    }
}

/// A snapshot file that was not trusted, and why.
///
/// ```
/// use annals::{EventData, ExpectedVersion, SkipReason, Store};
/// # fn main() -> annals::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// store.append("cart-3", ExpectedVersion::Any, &[EventData::new("ItemAdded", &b"{}"[..])])?;
/// store.write_snapshot("cart-3", 0, b"one item")?;
/// let file = store.snapshot_paths("cart-3")?.remove(0);
/// std::fs::write(&file, b"scribbled over").unwrap();
///
/// let search = store.find_latest_snapshot("cart-3")?;
/// assert!(search.snapshot().is_none());
/// assert!(matches!(search.skipped()[0].reason, SkipReason::Corrupt(_)));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedSnapshot {
    /// The file.
    pub path: PathBuf,
    /// Why it was not used.
    pub reason: SkipReason,
}

impl fmt::Display for SkippedSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ignored snapshot {}: {}", self.path.display(), self.reason)
    }
}

/// Why a snapshot file was not trusted.
///
/// ```
/// use annals::SkipReason;
/// let reason = SkipReason::BeyondHead { offset: 9, head: Some(5) };
/// assert_eq!(reason.to_string(), "its offset 9 is beyond the stream's last offset 5");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// Its offset is past the stream's last event, as after a crash that lost buffered appends but kept the
    /// snapshot: its state includes events that do not exist.
    BeyondHead {
        /// The snapshot's offset.
        offset: u64,
        /// The stream's last offset (`None`: the stream does not exist).
        head: Option<u64>,
    },
    /// The file belongs to another stream whose name has the same hash.
    OtherStream {
        /// The name found in the file.
        found: String,
    },
    /// The stream's event at the snapshot's offset is not the one the snapshot was taken at: its events were
    /// lost (a machine crash under `Durability::Buffer`, a log restored from an older copy) and different ones
    /// took their offsets. The state describes events that are gone.
    EventReplaced {
        /// The snapshot's offset.
        offset: u64,
        /// The id of the event the snapshot was taken at.
        snapshot_event: Uuid,
        /// The id of the event the stream holds at that offset now.
        stream_event: Uuid,
    },
    /// Compaction removed the stream's event at the snapshot's offset (its lifecycle hid it), so the snapshot
    /// cannot be checked against it. (Compaction keeps the event just before a truncation point, where the
    /// usual snapshot-then-truncate leaves its snapshot.)
    EventRemoved {
        /// The snapshot's offset.
        offset: u64,
    },
    /// The file was written by snapshot format 1, which does not record its event's id, so it cannot be
    /// checked against the stream: the aggregate is rebuilt from its events instead (and the next snapshot is
    /// written in the current format).
    Unverifiable {
        /// The format version found (1).
        found: u32,
    },
    /// The file was written by a snapshot format this build does not read.
    UnsupportedFormat {
        /// The format version found.
        found: u32,
    },
    /// The bytes are damaged: bad magic, CRC mismatch, wrong length, or an offset that disagrees with the
    /// file name.
    Corrupt(String),
    /// The state was written at another schema version than the reader's (reported by the typed layer,
    /// which rebuilds the state from the events instead).
    SchemaVersion {
        /// The snapshot's schema version.
        found: u32,
        /// The reader's.
        expected: u32,
    },
    /// The file is intact but its state does not decode as the reader's type (reported by the typed layer).
    Undecodable(String),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::BeyondHead { offset, head: Some(head) } => {
                write!(f, "its offset {offset} is beyond the stream's last offset {head}")
            }
            SkipReason::BeyondHead { offset, head: None } => {
                write!(f, "it is at offset {offset} of a stream that does not exist")
            }
            SkipReason::OtherStream { found } => write!(f, "it belongs to stream {found:?} (same name hash)"),
            SkipReason::EventReplaced { offset, snapshot_event, stream_event } => write!(
                f,
                "it was taken at event {snapshot_event}, but the stream holds event {stream_event} at offset {offset} \
                 (the events it covers were lost)"
            ),
            SkipReason::EventRemoved { offset } => {
                write!(f, "compaction removed the stream's event at its offset {offset}: it cannot be checked")
            }
            SkipReason::Unverifiable { found } => {
                write!(f, "snapshot format version {found} records no event id to check it against the stream")
            }
            SkipReason::UnsupportedFormat { found } => {
                write!(f, "snapshot format version {found}; this build reads {SNAPSHOT_FORMAT_VERSION}")
            }
            SkipReason::Corrupt(reason) => write!(f, "corrupt: {reason}"),
            SkipReason::SchemaVersion { found, expected } => {
                write!(f, "its state has schema version {found}, the reader expects {expected}")
            }
            SkipReason::Undecodable(reason) => write!(f, "its state does not decode: {reason}"),
        }
    }
}

impl crate::Store {
    /// Writes a snapshot of `stream`'s state as of `offset` (the last event the state covers) with default
    /// [`SnapshotOptions`]: schema version 0, keep the last [`SNAPSHOTS_KEPT_DEFAULT`].
    ///
    /// See [`write_snapshot_with`](Self::write_snapshot_with).
    pub fn write_snapshot(&self, stream: &str, offset: u64, state: &[u8]) -> Result<()> {
        self.write_snapshot_with(stream, offset, state, SnapshotOptions::default())
    }

    /// Writes a snapshot of `stream`'s state as of `offset`, then deletes the stream's snapshots beyond the
    /// newest `options.keep_last` that check out, and every one that no longer can (its events were lost).
    ///
    /// The snapshot records the id and position of the stream's event at `offset`, and is trusted only while
    /// the stream holds that event there. It is never written for an event that is not yet durable: under
    /// `Durability::Buffer` this first syncs the log (as [`flush`](Self::flush) does) if the event is not on
    /// stable storage yet, so that no crash can leave the snapshot without its events.
    ///
    /// Durability: when it returns, the snapshot is on stable storage (temporary file, sync, rename, sync of
    /// the directory); a crash at any point leaves the previous snapshots intact, and at worst a temporary
    /// file that readers ignore and the next write removes. Writing the same offset again replaces the file.
    ///
    /// Errors: `SnapshotBeyondHead` if the stream has no event at `offset` (nothing is written),
    /// `InvalidOptions` if `keep_last` is 0, `Corrupt` if the event at `offset` is damaged, `Poisoned`,
    /// `Closed`, `Io`.
    pub fn write_snapshot_with(&self, stream: &str, offset: u64, state: &[u8], options: SnapshotOptions) -> Result<()> {
        if options.keep_last == 0 {
            return Err(Error::InvalidOptions { reason: "SnapshotOptions::keep_last must be at least 1".into() });
        }
        let head = self.stream_version(stream);
        if head.is_none_or(|head| offset > head) {
            return Err(Error::SnapshotBeyondHead { stream: stream.to_owned(), offset, head });
        }
        // The event at `offset` itself, whether or not the stream's lifecycle hides it (a snapshot is usually
        // written just before the events it covers are truncated).
        let event = self.event_at_offset(stream, offset)?.ok_or_else(|| Error::SnapshotBeyondHead {
            stream: stream.to_owned(),
            offset,
            head,
        })?;
        if event.position() >= self.durable_position() {
            // IMPORTANT: the snapshot must never outlive its events. Under `Buffer` they may still be in the
            // page cache only.
            self.flush()?;
        }
        let io = self.io_for_writes()?;
        let bytes = encode(stream, offset, event.position(), event.event_id(), options.schema_version, state);
        let hash = stream_hash(stream);
        let _serialised = WRITE_LOCKS[(hash % WRITE_LOCKS.len() as u128) as usize].lock();
        let dir = self.snapshot_dir_for_hash(hash);
        create_dir_durably(io, &dir)?;
        let path = dir.join(file_name(offset));
        io.write_file_atomically(&path, &bytes).context(|| format!("writing snapshot {}", path.display()))?;
        self.prune(&dir, stream, options.keep_last)
    }

    /// The newest trustworthy snapshot of `stream`, or `None` (then replay from offset 0).
    ///
    /// Files are tried newest first; one beyond the stream's last event, whose event the stream no longer
    /// holds, damaged, of another stream or of an old or unknown format is skipped with a warning (through the
    /// `log` crate) and the next older one is tried. [`find_latest_snapshot`](Self::find_latest_snapshot) also
    /// returns what was skipped.
    ///
    /// Errors: `Io` if the snapshot directory cannot be listed or a file cannot be read; `Corrupt` if the
    /// stream's event at a snapshot's offset is damaged (it cannot be checked, and the log is damaged there).
    pub fn latest_snapshot(&self, stream: &str) -> Result<Option<Snapshot>> {
        Ok(self.find_latest_snapshot(stream)?.into_snapshot())
    }

    /// Like [`latest_snapshot`](Self::latest_snapshot), and also reports each newer file that was skipped.
    pub fn find_latest_snapshot(&self, stream: &str) -> Result<SnapshotSearch> {
        // IMPORTANT: read the head before the files. A snapshot written after this read may be newer than the
        // head we hold and is then skipped as beyond it, which is safe; the other order could trust nothing
        // less, but would have to re-read the head.
        let head = self.stream_version(stream);
        let dir = self.snapshot_dir_for_hash(stream_hash(stream));
        let mut search = SnapshotSearch::default();
        for (offset, path) in list(&dir)? {
            let reason = match self.judge(stream, offset, &path, head)? {
                Judgement::Trusted(snapshot) => {
                    search.snapshot = Some((snapshot, path));
                    break;
                }
                // Deleted by a concurrent write's retention: an older one will do.
                Judgement::Gone => continue,
                Judgement::Skipped(reason) => reason,
            };
            let skipped = SkippedSnapshot { path, reason };
            ::log::warn!("annals: {skipped}");
            search.skipped.push(skipped);
        }
        Ok(search)
    }

    /// Whether the snapshot file at `path`, named for `offset`, can be trusted for `stream` whose last offset
    /// is `head`.
    fn judge(&self, stream: &str, offset: u64, path: &Path, head: Option<u64>) -> Result<Judgement> {
        if head.is_none_or(|head| offset > head) {
            return Ok(Judgement::Skipped(SkipReason::BeyondHead { offset, head }));
        }
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Judgement::Gone),
            Err(err) => return Err(Error::io(format!("reading snapshot {}", path.display()), err)),
        };
        let decoded = match decode(&bytes) {
            Ok(decoded) => decoded,
            Err(reason) => return Ok(Judgement::Skipped(reason)),
        };
        let snapshot = decoded.snapshot;
        if snapshot.stream != stream {
            return Ok(Judgement::Skipped(SkipReason::OtherStream { found: snapshot.stream }));
        }
        if snapshot.offset != offset {
            return Ok(Judgement::Skipped(SkipReason::Corrupt(format!(
                "the file holds offset {} but is named for offset {offset}",
                snapshot.offset
            ))));
        }
        if decoded.format_version == 1 {
            return Ok(Judgement::Skipped(SkipReason::Unverifiable { found: 1 }));
        }
        // The event itself, hidden or not: snapshot-then-truncate hides the event a snapshot was taken at.
        let Some(event) = self.event_at_offset(stream, offset)? else {
            return Ok(Judgement::Skipped(SkipReason::EventRemoved { offset }));
        };
        if event.event_id() != snapshot.event_id || event.position() != snapshot.position {
            return Ok(Judgement::Skipped(SkipReason::EventReplaced {
                offset,
                snapshot_event: snapshot.event_id,
                stream_event: event.event_id(),
            }));
        }
        Ok(Judgement::Trusted(snapshot))
    }

    /// Deletes the stream's snapshots beyond the newest `keep_last` that check out, every one that no longer
    /// can (beyond the head, of lost events, damaged, of format 1), and leftover temporary files. Files of
    /// another stream with the same name hash, and of formats newer than this build's, are left alone.
    ///
    /// Deletions are not synced: a deleted snapshot that reappears after a power cut is judged again on read.
    fn prune(&self, dir: &Path, stream: &str, keep_last: usize) -> Result<()> {
        // IMPORTANT: list the files before reading the head. A file in the list was written after its event
        // was committed, so its offset is at most the head read after: one beyond it is of lost events.
        let files = list(dir)?;
        let head = self.stream_version(stream);
        let mut kept = 0;
        for (offset, path) in files {
            let remove = match self.judge(stream, offset, &path, head)? {
                Judgement::Trusted(_) => {
                    kept += 1;
                    kept > keep_last
                }
                Judgement::Gone => false,
                Judgement::Skipped(SkipReason::OtherStream { .. } | SkipReason::UnsupportedFormat { .. }) => false,
                Judgement::Skipped(_) => true,
            };
            if remove {
                remove_if_present(&path)?;
            }
        }
        // Only writes of this stream's hash use these names, and they hold the write lock, so a temporary file
        // seen now is a leftover of an interrupted write.
        let entries = fs::read_dir(dir).context(|| format!("listing {}", dir.display()))?;
        for entry in entries {
            let entry = entry.context(|| format!("listing {}", dir.display()))?;
            if entry.file_name().to_str().is_some_and(|name| name.ends_with(".tmp")) {
                remove_if_present(&entry.path())?;
            }
        }
        Ok(())
    }

    /// The paths of `stream`'s snapshot files, newest (highest offset) first, unverified. For tools and tests.
    pub fn snapshot_paths(&self, stream: &str) -> Result<Vec<PathBuf>> {
        Ok(list(&self.snapshot_dir_for_hash(stream_hash(stream)))?.into_iter().map(|(_, path)| path).collect())
    }

    fn snapshot_dir_for_hash(&self, hash: u128) -> PathBuf {
        self.dir().join(SNAPSHOTS_DIR).join(format!("{hash:032x}"))
    }
}

/// FNV-1a, 128 bits: stable across builds and platforms (unlike `std`'s hashers), so it can name directories.
fn stream_hash(stream: &str) -> u128 {
    const OFFSET_BASIS: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    stream.bytes().fold(OFFSET_BASIS, |hash, byte| (hash ^ u128::from(byte)).wrapping_mul(PRIME))
}

fn file_name(offset: u64) -> String {
    format!("{offset:0OFFSET_DIGITS$}{SNAPSHOT_SUFFIX}")
}

/// The offset a snapshot file name stands for; `None` for any other file (temporary files included).
fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    if digits.len() != OFFSET_DIGITS || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The snapshot files in `dir`, highest offset first. A missing directory holds none.
fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(Error::io(format!("listing {}", dir.display()), err)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.context(|| format!("listing {}", dir.display()))?;
        if let Some(offset) = entry.file_name().to_str().and_then(parse_file_name) {
            files.push((offset, entry.path()));
        }
    }
    files.sort_unstable_by_key(|(offset, _)| std::cmp::Reverse(*offset));
    Ok(files)
}

/// Creates `dir` (and `snapshots/` above it) if missing, syncing each parent a directory was created in: a
/// directory entry that is not synced may vanish after a power cut, taking the snapshot inside with it.
fn create_dir_durably(io: &Io, dir: &Path) -> Result<()> {
    let parent = dir.parent().expect("a stream's snapshot directory is inside snapshots/");
    for (path, parent) in [(parent, parent.parent().expect("snapshots/ is inside the store")), (dir, parent)] {
        match fs::create_dir(path) {
            Ok(()) => io.sync_dir(parent).context(|| format!("syncing directory {}", parent.display()))?,
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(Error::io(format!("creating directory {}", path.display()), err)),
        }
    }
    Ok(())
}

/// What a snapshot file is worth to a reader.
enum Judgement {
    Trusted(Snapshot),
    Skipped(SkipReason),
    /// The file disappeared (a concurrent write's retention deleted it).
    Gone,
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing old snapshot {}", path.display()), err))
        }
        _ => Ok(()),
    }
}

/// Encodes a snapshot file (see the module's table).
fn encode(stream: &str, offset: u64, position: u64, event_id: Uuid, schema_version: u32, state: &[u8]) -> Vec<u8> {
    let name_len = u32::try_from(stream.len()).expect("stream names are at most 1024 bytes");
    let mut out = Vec::with_capacity(HEADER_LEN + stream.len() + state.len() + CRC_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&schema_version.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&position.to_le_bytes());
    out.extend_from_slice(event_id.as_bytes());
    out.extend_from_slice(&name_len.to_le_bytes());
    out.extend_from_slice(&(state.len() as u64).to_le_bytes());
    assert_eq!(out.len(), HEADER_LEN);
    out.extend_from_slice(stream.as_bytes());
    out.extend_from_slice(state);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A decoded snapshot file and the format version it was written in. A version 1 file has no event to check
/// against: its position and event id read as 0 and nil.
struct Decoded {
    snapshot: Snapshot,
    format_version: u32,
}

/// Decodes and verifies a snapshot file of format 1 or 2. Never panics, whatever the bytes.
fn decode(bytes: &[u8]) -> Result<Decoded, SkipReason> {
    let corrupt = |reason: String| Err(SkipReason::Corrupt(reason));
    if bytes.len() < FORMAT_VERSION_OFFSET + size_of::<u32>() {
        return corrupt(format!("{} bytes, shorter than a snapshot's header", bytes.len()));
    }
    if bytes[MAGIC_OFFSET..FORMAT_VERSION_OFFSET] != MAGIC {
        return corrupt("not a snapshot file (bad magic)".into());
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let format_version = u32_at(FORMAT_VERSION_OFFSET);
    let (header_len, name_len_at, state_len_at) = match format_version {
        1 => (V1_HEADER_LEN, V1_NAME_LEN_OFFSET, V1_STATE_LEN_OFFSET),
        SNAPSHOT_FORMAT_VERSION => (HEADER_LEN, NAME_LEN_OFFSET, STATE_LEN_OFFSET),
        found => return Err(SkipReason::UnsupportedFormat { found }),
    };
    if bytes.len() < header_len + CRC_LEN {
        return corrupt(format!(
            "{} bytes, shorter than the smallest snapshot of format {format_version} ({})",
            bytes.len(),
            header_len + CRC_LEN
        ));
    }
    let crc_at = bytes.len() - CRC_LEN;
    let (stored, computed) = (u32_at(crc_at), crc32fast::hash(&bytes[..crc_at]));
    if stored != computed {
        return corrupt(format!("CRC mismatch: stored {stored:08x}, computed {computed:08x}"));
    }
    let name_len = u64::from(u32_at(name_len_at));
    let state_len = u64_at(state_len_at);
    let expected_len = name_len.checked_add(state_len).and_then(|len| len.checked_add((header_len + CRC_LEN) as u64));
    if expected_len != Some(bytes.len() as u64) {
        return corrupt(format!(
            "{} bytes, but a name of {name_len} bytes and a state of {state_len} bytes make {}",
            bytes.len(),
            expected_len.map_or("more than 2^64".to_owned(), |len| len.to_string())
        ));
    }
    let name_end = header_len + name_len as usize;
    let Ok(stream) = std::str::from_utf8(&bytes[header_len..name_end]) else {
        return corrupt("the stream name is not UTF-8".into());
    };
    let (position, event_id) = if format_version == 1 {
        (0, Uuid::nil())
    } else {
        let id = bytes[EVENT_ID_OFFSET..EVENT_ID_OFFSET + 16].try_into().expect("16 bytes");
        (u64_at(POSITION_OFFSET), Uuid::from_bytes(id))
    };
    let snapshot = Snapshot {
        stream: stream.to_owned(),
        offset: u64_at(STREAM_OFFSET_OFFSET),
        position,
        event_id,
        schema_version: u32_at(SCHEMA_VERSION_OFFSET),
        state: bytes[name_end..crc_at].to_vec(),
    };
    Ok(Decoded { snapshot, format_version })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_round_trips() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        let bytes = encode("account-1", 41, 1234, id, 7, b"state");
        assert_eq!(bytes.len(), HEADER_LEN + 9 + 5 + CRC_LEN);
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.format_version, SNAPSHOT_FORMAT_VERSION);
        let snapshot = decoded.snapshot;
        assert_eq!((snapshot.stream(), snapshot.offset(), snapshot.schema_version()), ("account-1", 41, 7));
        assert_eq!((snapshot.position(), snapshot.event_id()), (1234, id));
        assert_eq!(snapshot.state(), b"state");
    }

    #[test]
    fn every_cut_and_every_flipped_bit_is_rejected() {
        let bytes = encode("s", 3, 9, Uuid::nil(), 1, b"0123456789");
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "cut at {len}");
        }
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&damaged).is_err(), "bit {bit} flipped");
        }
    }

    #[test]
    fn file_names_sort_by_offset_and_nothing_else_parses() {
        assert_eq!(file_name(42), "00000000000000000042.snap");
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        for other in ["00000000000000000042.tmp", "42.snap", "0000000000000000004x.snap", "x", ".snap"] {
            assert_eq!(parse_file_name(other), None, "{other}");
        }
    }

    #[test]
    fn the_hash_is_stable() {
        // FNV-1a-128 test vectors: the empty string is the offset basis; "a" from the reference tables.
        assert_eq!(stream_hash(""), 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d);
        assert_eq!(stream_hash("a"), 0xd228_cb69_6f1a_8caf_7891_2b70_4e4a_8964);
    }
}
