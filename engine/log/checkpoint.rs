//! The index checkpoint (`index.ckpt`): the per-stream index as of a synced point of the log, so that opening
//! a large store reads one file instead of scanning every segment.
//!
//! Derived data: written atomically (temporary file, sync, rename, sync the directory) at each segment roll and
//! at close; trusted on open only after its CRC, its version and its last record check out against the log;
//! otherwise ignored and rebuilt from the log. All integers are little-endian.
//!
//! | offset | size | field                                                                             |
//! |-------:|-----:|-----------------------------------------------------------------------------------|
//! | 0      | 8    | magic `b"ANNALIDX"`                                                               |
//! | 8      | 4    | format version ([`crate::FORMAT_VERSION`])                                         |
//! | 12     | 4    | `index_interval_events` the sparse locators were taken with                        |
//! | 16     | 8    | `next_position`: every position below is covered                                  |
//! | 24     | 8    | `end`: locator where the record at `next_position` goes (scan resumes here)       |
//! | 32     | 8    | `last`: locator of the record at `next_position - 1`, `u64::MAX` for an empty log |
//! | 40     | 8    | `last_timestamp`: commit time of that record (ns since the Unix epoch)            |
//! | 48     | 8    | `stream_count`                                                                    |
//! | 56     | …    | per stream: `u16` name length, name (UTF-8), `u64` last offset, `u64` head       |
//! |        |      | locator, `u32` sparse count, that many `u64` locators                             |
//! | end-4  | 4    | CRC-32 of every byte before it                                                    |

use std::path::Path;

use crate::error::{IoContext, Result};
use crate::index::{Index, Names, Sparse, StreamState};
use crate::log::io::Io;
use crate::log::segment::FORMAT_VERSION;

/// File name of the checkpoint inside the store directory.
pub const FILE_NAME: &str = "index.ckpt";
/// Its temporary name while it is written (`Io::write_file_atomically` replaces the extension).
pub const TMP_NAME: &str = "index.tmp";
const MAGIC: &[u8; 8] = b"ANNALIDX";
const FIXED_LEN: usize = 56;

/// The point of the log a checkpoint covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Covered {
    pub next_position: u64,
    pub end: u64,
    pub last: u64,
    pub last_timestamp: u64,
}

/// The fixed part of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub covered: Covered,
    pub interval: u32,
    pub streams: u64,
}

/// Serializes `index` as of `covered` and writes it atomically.
pub fn write(io: &Io, dir: &Path, covered: &Covered, index: &Index, names: &dyn Names) -> Result<()> {
    let mut out = Vec::with_capacity(FIXED_LEN + index.stream_count() * 40);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&index.interval().to_le_bytes());
    for value in [covered.next_position, covered.end, covered.last, covered.last_timestamp, index.stream_count() as u64]
    {
        out.extend_from_slice(&value.to_le_bytes());
    }
    debug_assert_eq!(out.len(), FIXED_LEN);
    index.for_each(names, |name, state| {
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&state.last_offset.to_le_bytes());
        out.extend_from_slice(&state.head.to_le_bytes());
        let sparse = state.sparse.as_slice();
        out.extend_from_slice(&(sparse.len() as u32).to_le_bytes());
        for locator in sparse {
            out.extend_from_slice(&locator.to_le_bytes());
        }
    });
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    let path = dir.join(FILE_NAME);
    io.write_file_atomically(&path, &out).context(|| format!("writing checkpoint {}", path.display()))
}

/// Reads the checkpoint file's bytes: `Ok(None)` when there is none.
pub fn read(dir: &Path) -> Result<Option<Vec<u8>>, String> {
    match std::fs::read(dir.join(FILE_NAME)) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(format!("unreadable: {err}")),
    }
}

/// Decodes a checkpoint's fixed part, after checking the CRC over the whole file. The streams follow from
/// the returned iterator, as they are decoded (a million streams load without allocating a name); it checks
/// every length, ends with an error at the first bad one or at trailing bytes, and never panics.
pub fn decode(bytes: &[u8]) -> Result<(Summary, Streams<'_>), String> {
    if bytes.len() < FIXED_LEN + 4 {
        return Err("shorter than its fixed part".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err("CRC mismatch".into());
    }
    let mut cursor = Cursor { bytes: body, at: 0 };
    if cursor.take(8)? != MAGIC {
        return Err("bad magic".into());
    }
    let version = cursor.u32()?;
    if version != FORMAT_VERSION {
        return Err(format!("format version {version}, expected {FORMAT_VERSION}"));
    }
    let interval = cursor.u32()?;
    if interval == 0 {
        return Err("index interval 0".into());
    }
    let covered = Covered {
        next_position: cursor.u64()?,
        end: cursor.u64()?,
        last: cursor.u64()?,
        last_timestamp: cursor.u64()?,
    };
    let summary = Summary { covered, interval, streams: cursor.u64()? };
    Ok((summary, Streams { cursor, interval, left: summary.streams, failed: false }))
}

/// The streams of a checkpoint, decoded one by one. See [`decode`].
pub struct Streams<'a> {
    cursor: Cursor<'a>,
    interval: u32,
    left: u64,
    failed: bool,
}

impl<'a> Streams<'a> {
    fn decode_one(&mut self) -> Result<(&'a str, StreamState), String> {
        let cursor = &mut self.cursor;
        let name_len = cursor.u16()? as usize;
        let name = std::str::from_utf8(cursor.take(name_len)?).map_err(|_| "stream name is not UTF-8")?;
        let last_offset = cursor.u64()?;
        let head = cursor.u64()?;
        let sparse_len = cursor.u32()? as usize;
        if sparse_len > cursor.remaining() / 8 {
            return Err("sparse index longer than the file".into());
        }
        let sparse = (0..sparse_len).map(|_| cursor.u64()).collect::<Result<Vec<_>, _>>()?;
        if sparse.len() as u64 != last_offset / u64::from(self.interval) {
            return Err(format!("stream {name:?}: sparse index does not match its last offset"));
        }
        Ok((name, StreamState { last_offset, head, sparse: Sparse::from_vec(sparse) }))
    }
}

impl<'a> Iterator for Streams<'a> {
    type Item = Result<(&'a str, StreamState), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.left == 0 {
            self.failed = true;
            return (self.cursor.remaining() != 0).then(|| Err("trailing bytes after the last stream".into()));
        }
        self.left -= 1;
        let item = self.decode_one();
        self.failed = item.is_err();
        Some(item)
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err("truncated".into());
        }
        self.at += n;
        Ok(&self.bytes[self.at - n..self.at])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
}
