//! The `HEAD` file: where a writing store tells read-only openers (in this or another process) how far the log
//! is durable, so that they show nothing the writer has not synced. `format-spec.md` §16 specifies it.
//!
//! The writer keeps the file mapped and rewrites its 64-byte record after every sync (a few stores to memory,
//! no system call). The file is never synced: it is a hint for live readers, and it only ever claims
//! positions that were durable when it was written, so a stale or lost `HEAD` after a power cut makes
//! readers show less, never more. A reader reads the record with `pread` and checks its CRC, retrying a read
//! torn by a concurrent update.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use crate::error::{IoContext, Result};

/// Name of the file in the store directory.
pub const HEAD_FILE: &str = "HEAD";
const MAGIC: &[u8; 8] = b"ANNALHED";
const VERSION: u32 = 1;
/// Bytes of the record (the file is one page).
pub const RECORD_BYTES: usize = 64;
const FILE_BYTES: u64 = 4096;

/// What a `HEAD` record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    /// Positions below this are on stable storage.
    pub position: u64,
    /// Increases with every rewrite by one writer; starts again at 1 when a writer opens the store.
    pub sequence: u64,
}

/// Encodes a record: magic, version, reserved, sequence, position, reserved, CRC of bytes 0..60.
pub fn encode(durable: Durable) -> [u8; RECORD_BYTES] {
    let mut record = [0u8; RECORD_BYTES];
    record[..8].copy_from_slice(MAGIC);
    record[8..12].copy_from_slice(&VERSION.to_le_bytes());
    record[16..24].copy_from_slice(&durable.sequence.to_le_bytes());
    record[24..32].copy_from_slice(&durable.position.to_le_bytes());
    let crc = crc32fast::hash(&record[..60]);
    record[60..].copy_from_slice(&crc.to_le_bytes());
    record
}

/// Decodes a record; `None` unless it is whole and intact (a torn read, a foreign or damaged file).
pub fn decode(record: &[u8]) -> Option<Durable> {
    let record = record.get(..RECORD_BYTES)?;
    let u32_at = |at: usize| u32::from_le_bytes(record[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(record[at..at + 8].try_into().expect("8 bytes"));
    let intact = &record[..8] == MAGIC
        && u32_at(8) == VERSION
        && u32_at(60) == crc32fast::hash(&record[..60])
        && record[12..16].iter().chain(&record[32..60]).all(|&byte| byte == 0);
    intact.then(|| Durable { sequence: u64_at(16), position: u64_at(24) })
}

/// The writer's side: the mapped file.
pub struct HeadWriter {
    map: MmapMut,
    sequence: u64,
}

impl HeadWriter {
    /// Creates (or reuses) `HEAD` in `dir`, maps it, and records `durable`.
    pub fn open(dir: &Path, durable: u64) -> Result<HeadWriter> {
        let path = dir.join(HEAD_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .context(|| format!("opening {}", path.display()))?;
        if file.metadata().context(|| format!("reading metadata of {}", path.display()))?.len() != FILE_BYTES {
            file.set_len(FILE_BYTES).context(|| format!("sizing {}", path.display()))?;
        }
        // SAFETY: only the store that holds the directory's lock maps `HEAD` for writing (this one), and it
        // never changes the file's length while mapped; other processes only read it with `pread`, so no one
        // else's writes can alter the mapping under us.
        let map = unsafe { MmapMut::map_mut(&file) }.context(|| format!("mapping {}", path.display()))?;
        let mut head = HeadWriter { map, sequence: 0 };
        head.publish(durable);
        Ok(head)
    }

    /// Records that positions below `position` are durable.
    pub fn publish(&mut self, position: u64) {
        self.sequence += 1;
        let record = encode(Durable { position, sequence: self.sequence });
        self.map[..RECORD_BYTES].copy_from_slice(&record);
    }
}

/// The reader's side: reads the record with `pread`.
pub struct HeadReader {
    path: PathBuf,
    file: Option<File>,
}

impl HeadReader {
    pub fn new(dir: &Path) -> Self {
        HeadReader { path: dir.join(HEAD_FILE), file: None }
    }

    /// What `HEAD` says now; `None` if there is no file, or no intact record after a few tries (a store last
    /// written by a build that kept no `HEAD`, or a damaged one).
    pub fn read(&mut self) -> Option<Durable> {
        if self.file.is_none() {
            self.file = File::open(&self.path).ok();
        }
        let file = self.file.as_ref()?;
        let mut record = [0u8; RECORD_BYTES];
        for _ in 0..100 {
            if file.read_exact_at(&mut record, 0).is_err() {
                return None;
            }
            if let Some(durable) = decode(&record) {
                return Some(durable);
            }
            // Torn by a concurrent update: read again.
            std::hint::spin_loop();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_refused() {
        let durable = Durable { position: 1 << 40, sequence: 7 };
        let record = encode(durable);
        assert_eq!(decode(&record), Some(durable));
        for byte in 0..RECORD_BYTES {
            let mut damaged = record;
            damaged[byte] ^= 0x10;
            assert_eq!(decode(&damaged), None, "byte {byte}");
        }
        assert_eq!(decode(&record[..63]), None);
        assert_eq!(decode(&[0u8; RECORD_BYTES]), None);
    }

    #[test]
    fn a_reader_sees_what_the_writer_published() {
        let dir = tempfile::tempdir().unwrap();
        let mut reader = HeadReader::new(dir.path());
        assert_eq!(reader.read(), None, "no file yet");
        let mut writer = HeadWriter::open(dir.path(), 5).unwrap();
        assert_eq!(reader.read().map(|durable| durable.position), Some(5));
        writer.publish(9);
        assert_eq!(reader.read(), Some(Durable { position: 9, sequence: 2 }));
        drop(writer);
        // A new writer starts its sequence again, over the same file.
        let _writer = HeadWriter::open(dir.path(), 9).unwrap();
        assert_eq!(reader.read(), Some(Durable { position: 9, sequence: 1 }));
        assert_eq!(std::fs::metadata(dir.path().join(HEAD_FILE)).unwrap().len(), FILE_BYTES);
    }
}
