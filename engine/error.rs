//! The error type of every fallible annals call.
//!
//! Errors that a caller branches on (`WrongExpectedVersion`, `EventTooLarge`, …) are narrow variants with the
//! values needed to act; damage found on disk is `Corrupt` with the file and byte offset; a failed sync leaves
//! the store `Poisoned` until it is reopened.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::ExpectedVersion;

/// Shorthand for `std::result::Result<T, annals::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in annals.
///
/// `Error` is `Send + Sync + 'static`, so it can cross threads and be boxed into `anyhow`-style errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stream's last offset was not what the append expected. Nothing was written.
    #[error("wrong expected version for stream {stream:?}: expected {expected}, but the stream {}", describe_actual(*.actual))]
    WrongExpectedVersion {
        /// The stream whose version did not match.
        stream: String,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's last offset, or `None` when the stream does not exist.
        actual: Option<u64>,
    },

    /// One encoded event is larger than `Options::event_size_bytes_max` (or than a segment can hold).
    #[error("event of {size} bytes (encoded) exceeds the maximum of {max} bytes")]
    EventTooLarge {
        /// The encoded size of the event: header, stream name, event type, metadata and data.
        size: u64,
        /// The limit it broke.
        max: u64,
    },

    /// One atomic append (all its events together) does not fit into one segment.
    #[error("atomic append of {size} bytes (encoded) does not fit into one segment (at most {max} bytes)")]
    TransactionTooLarge {
        /// The encoded size of all events of the append.
        size: u64,
        /// What one segment can hold.
        max: u64,
    },

    /// The stream name is empty, too long, or holds characters the store does not accept.
    #[error("invalid stream name {name:?}: {reason}")]
    InvalidStreamName {
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// The event type is empty, too long, or holds characters the store does not accept.
    #[error("invalid event type {event_type:?}: {reason}")]
    InvalidEventType {
        /// The event type as given.
        event_type: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// An append was called with no events (or a multi-stream append with no streams).
    #[error("an append must carry at least one event")]
    EmptyAppend,

    /// The same stream appears twice in one `append_multi` call.
    #[error("stream {stream:?} appears more than once in one append_multi call")]
    DuplicateStream {
        /// The repeated stream.
        stream: String,
    },

    /// A snapshot was written for an offset the stream has not reached. Nothing was written.
    #[error("snapshot of stream {stream:?} at offset {offset} is beyond the stream, which {}", describe_actual(*.head))]
    SnapshotBeyondHead {
        /// The stream.
        stream: String,
        /// The offset the snapshot claimed.
        offset: u64,
        /// The stream's last offset, or `None` when the stream does not exist.
        head: Option<u64>,
    },

    /// A durable subscription's checkpoint could not be saved or read: the subscription is not durable, the
    /// position is not committed, or the checkpoint stream holds an event that is no checkpoint.
    #[error("invalid subscription checkpoint: {reason}")]
    InvalidCheckpoint {
        /// What is wrong.
        reason: String,
    },

    /// A projection runner stopped because an event did not decode, a read failed, or its checkpoint could not
    /// be written.
    #[error("projection {name:?} stopped: {reason}")]
    ProjectionFailed {
        /// The projection's name.
        name: String,
        /// Why it stopped.
        reason: String,
    },

    /// The stream was tombstoned ([`Store::tombstone`](crate::Store::tombstone)): its name is retired, and it
    /// can be neither read nor appended to.
    #[error("stream {stream:?} is deleted for good (tombstoned)")]
    StreamDeleted {
        /// The stream.
        stream: String,
    },

    /// The store was opened read-only ([`Store::open_read_only`](crate::Store::open_read_only)): it cannot
    /// append, flush or write snapshots.
    #[error("the store is open read-only")]
    ReadOnly,

    /// A read-only open found no store in the directory (no segment file).
    #[error("no store in {dir}")]
    NoStore {
        /// The directory.
        dir: PathBuf,
    },

    /// The options are not usable (for example a segment too small for one event).
    #[error("invalid options: {reason}")]
    InvalidOptions {
        /// What is wrong with them.
        reason: String,
    },

    /// Another `Store` (in this or another process) holds the directory's lock; or, with `dir` the store's
    /// `keys/`, another `Erasure` of the store is open (share clones of one instead).
    #[error("the store at {dir} is locked by another open store")]
    Locked {
        /// The directory.
        dir: PathBuf,
    },

    /// Bytes on disk are damaged before the recoverable tail, or a file is not what it should be.
    #[error("corrupt data in {file} at byte {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damage within that file.
        offset: u64,
        /// What was found.
        reason: String,
    },

    /// The erasure key file (`keys/subjects.keys`) is missing, although this store has used erasure keys (the
    /// log holds the event of `$erasure` that their creation appended, or `keys/` exists). Nothing was
    /// created: restore `keys/` from a backup of the keys, or open with `Erasure::open_after_key_loss` to
    /// read every personal value written so far as forgotten.
    #[error(
        "the erasure key file {file} is missing, but this store has used erasure keys: restore it from a backup \
         of the keys, or open with Erasure::open_after_key_loss to read every personal value as forgotten"
    )]
    KeyFileMissing {
        /// The key file that should exist.
        file: PathBuf,
    },

    /// A subject id of a personal value is empty or longer than `SUBJECT_BYTES_MAX` (255 bytes).
    #[error("invalid subject id {subject:?}: {reason}")]
    InvalidSubject {
        /// The subject id as given.
        subject: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A file was written by a format version this build does not read.
    #[error("{file} uses on-disk format version {found}; this build reads version {supported}")]
    UnsupportedFormat {
        /// The file.
        file: PathBuf,
        /// The version found in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },

    /// An earlier sync failed; the store refuses writes until it is closed and reopened.
    ///
    /// After a failed `fdatasync` the kernel may have dropped the dirty pages, so a retry could "succeed" with
    /// data lost. Reopening runs recovery from what is really on disk.
    #[error("the store is poisoned by an earlier failed sync and refuses writes until reopened: {cause}")]
    Poisoned {
        /// The failure that poisoned the store.
        cause: Arc<io::Error>,
    },

    /// The store was closed.
    #[error("the store is closed")]
    Closed,

    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What annals was doing.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn describe_actual(actual: Option<u64>) -> String {
    match actual {
        None => "does not exist".to_owned(),
        Some(offset) => format!("is at offset {offset}"),
    }
}

impl Error {
    /// Wraps an I/O error with what annals was doing when it happened.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    pub(crate) fn corrupt(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corrupt { file: file.into(), offset, reason: reason.into() }
    }
}

/// Adds context to `io::Result`s.
pub(crate) trait IoContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::io(context(), source))
    }
}
