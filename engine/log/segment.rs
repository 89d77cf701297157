//! One segment: a fixed-size, preallocated file, written with `pwrite` and read through a shared read-only
//! mapping.
//!
//! Segment header (64 bytes, little-endian):
//!
//! | offset | size | field                | meaning                                             |
//! |-------:|-----:|----------------------|-----------------------------------------------------|
//! | 0      | 8    | magic                | `b"ANNALSEG"`                                       |
//! | 8      | 4    | format version       | [`FORMAT_VERSION`]                                  |
//! | 12     | 4    | header length        | 64                                                  |
//! | 16     | 8    | segment size         | bytes of the whole file, header included            |
//! | 24     | 8    | base position        | global position of the segment's first record       |
//! | 32     | 4    | ordinal              | 0 for the first segment, +1 for each next one       |
//! | 36     | 24   | reserved             | zero (format 1); see below (format 2)               |
//! | 60     | 4    | CRC                  | CRC-32 of bytes `0..60`                             |
//!
//! A segment the writer made is format 1. Compaction (`log::compact`) rewrites a sealed segment as format 2:
//! only the kept records, packed from byte 64, then a relocation section that maps each record's original byte
//! offset (what locators in the index and back-links hold) to its offset in this file, or to 0 for a record
//! compaction removed. Its header uses the reserved bytes: `records` (u32 at 36, how many records the segment
//! held when the writer sealed it) and `relocation_at` (u32 at 40, where the section starts); 44..60 stay zero.
//!
//! Frames follow from byte 64. Writes go through `pwrite` and reads through the mapping: the page cache makes
//! written bytes visible to the mapping at once, and no store through the mapping can fault on a full disk.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::Mmap;

use crate::error::{Error, IoContext, Result};
use crate::log::frame::{self, DecodeError, Frame};
use crate::log::io::Io;

/// The format version of the segments the writer makes.
pub const FORMAT_VERSION: u32 = 1;
/// The format version of a segment compaction rewrote: format 1's frames, and a relocation section.
pub const COMPACTED_FORMAT_VERSION: u32 = 2;
/// Bytes before the first frame of a segment.
pub const SEGMENT_HEADER_LEN: usize = 64;
const MAGIC: &[u8; 8] = b"ANNALSEG";
const VERSION_OFFSET: usize = MAGIC.len();
const HEADER_LEN_OFFSET: usize = VERSION_OFFSET + 4;
const SIZE_OFFSET: usize = HEADER_LEN_OFFSET + 4;
const BASE_OFFSET: usize = SIZE_OFFSET + 8;
const ORDINAL_OFFSET: usize = BASE_OFFSET + 8;
const RESERVED_OFFSET: usize = ORDINAL_OFFSET + 4;
/// Format 2: how many records the segment held before compaction, and where its relocation section starts.
const RECORDS_OFFSET: usize = RESERVED_OFFSET;
const RELOCATION_AT_OFFSET: usize = RECORDS_OFFSET + 4;
const RESERVED_V2_OFFSET: usize = RELOCATION_AT_OFFSET + 4;
const HEADER_CRC_OFFSET: usize = RESERVED_OFFSET + 24;
/// Bytes of one relocation entry: original offset u32, offset in the file u32 (0: removed).
pub const RELOCATION_ENTRY_LEN: usize = 8;
const _: () = assert!(HEADER_CRC_OFFSET + 4 == SEGMENT_HEADER_LEN);

/// Smallest segment size: room for the header and a few small frames.
pub const SEGMENT_SIZE_BYTES_MIN: u64 = 4096;
/// Largest segment size: byte offsets within a segment are 32-bit (see [`locator`]).
pub const SEGMENT_SIZE_BYTES_MAX: u64 = u32::MAX as u64 & !7;

/// File name suffix of segments.
pub const SEGMENT_SUFFIX: &str = "seg";

/// A locator packs a segment's ordinal and a byte offset within it: `ordinal << 32 | offset`.
pub fn locator(ordinal: u32, offset: u32) -> u64 {
    (u64::from(ordinal) << 32) | u64::from(offset)
}

/// Splits a locator into (ordinal, offset).
pub fn split_locator(locator: u64) -> (u32, u32) {
    ((locator >> 32) as u32, locator as u32)
}

/// The file name of the segment whose first position is `base_position`.
pub fn file_name(base_position: u64) -> String {
    format!("{base_position:020}.{SEGMENT_SUFFIX}")
}

/// The base position a segment file name stands for: 20 decimal digits and `.seg`; `None` for any other name.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits =
        name.strip_suffix(".seg").filter(|digits| digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))?;
    digits.parse::<u64>().ok().filter(|&base| name == file_name(base))
}

/// One segment, mapped. `Send + Sync`: readers read the mapping while the writer writes the file (through
/// its own descriptor, [`Segment::open_file`]). A segment holds no file descriptor: the log keeps a bounded
/// number of segments mapped, and a `Bytes` slice handed to a reader keeps its mapping alive on its own.
#[derive(Debug)]
pub struct Segment {
    path: PathBuf,
    /// The whole file, mapped read-only and shared. Slices of it outlive the segment.
    map: Bytes,
    /// The same mapping, for advice to the kernel.
    mmap: Arc<Mmap>,
    base_position: u64,
    ordinal: u32,
    /// Format 2 (compacted) only: (records before compaction, byte offset of the relocation section).
    compacted: Option<(u32, u32)>,
    /// The mapped file's (device, inode): compaction replaces a segment's file under the same name.
    identity: (u64, u64),
}

impl Segment {
    /// Creates a segment: temporary name, reserve the space, header, sync, rename, sync the directory. Returns
    /// it with a descriptor open for writing.
    pub fn create(io: &Io, dir: &Path, ordinal: u32, base_position: u64, size: u64) -> Result<(Segment, File)> {
        let spare = Spare::prepare(io, dir, &format!("{}.tmp", file_name(base_position)), size, ZeroFill::No)?;
        Segment::install(io, dir, spare, ordinal, base_position)
    }

    /// Turns a prepared spare file into the segment starting at `base_position`: header, sync, rename, sync
    /// the directory. Only the header is written here; the slow part (reserving and zeroing) is done. Returns
    /// the segment with the spare's descriptor, open for writing.
    pub fn install(io: &Io, dir: &Path, spare: Spare, ordinal: u32, base_position: u64) -> Result<(Segment, File)> {
        let path = dir.join(file_name(base_position));
        let Spare { file, tmp, size } = spare;
        let result = (|| {
            io.write_at(&file, &tmp, &encode_header(size, base_position, ordinal), 0)?;
            io.sync_all(&file, &tmp)?;
            io.rename(&tmp, &path)?;
            // IMPORTANT: sync the directory, or the new segment may vanish after a power cut.
            io.sync_dir(dir)
        })();
        if let Err(err) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(format!("creating segment {}", path.display()), err));
        }
        let segment = Self::map(path, &file, base_position, ordinal)?;
        Ok((segment, file))
    }

    /// Opens an existing segment, checks its header (and that it is the segment with `ordinal` and
    /// `base_position`, when given), maps it and closes the descriptor.
    pub fn open(path: &Path, expected: Option<(u32, u64)>) -> Result<Segment> {
        let file = File::open(path).context(|| format!("opening segment {}", path.display()))?;
        let len = file.metadata().context(|| format!("reading metadata of {}", path.display()))?.len();
        let mut header = [0u8; SEGMENT_HEADER_LEN];
        if len < SEGMENT_HEADER_LEN as u64 {
            return Err(Error::corrupt(path, 0, format!("segment file of {len} bytes is shorter than its header")));
        }
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut header, 0)
            .context(|| format!("reading header of {}", path.display()))?;
        let Header { size, base_position, ordinal, compacted } = decode_header(path, &header)?;
        if size != len {
            return Err(Error::corrupt(
                path,
                SIZE_OFFSET as u64,
                format!("header says {size} bytes but the file has {len}"),
            ));
        }
        if let Some((expected_ordinal, expected_base)) = expected {
            if ordinal != expected_ordinal {
                return Err(Error::corrupt(
                    path,
                    ORDINAL_OFFSET as u64,
                    format!("segment {expected_ordinal} is missing: this file is segment {ordinal}"),
                ));
            }
            if base_position != expected_base {
                return Err(Error::corrupt(
                    path,
                    BASE_OFFSET as u64,
                    format!("file name does not match its base position {base_position}"),
                ));
            }
        }
        if let Some((records, relocation_at)) = compacted {
            check_relocation(path, &file, size, records, relocation_at)?;
        }
        let mut segment = Self::map(path.to_owned(), &file, base_position, ordinal)?;
        segment.compacted = compacted;
        Ok(segment)
    }

    /// A descriptor of the segment's file open for reading and writing (the writer's, recovery's).
    pub fn open_file(&self) -> Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .context(|| format!("opening segment {}", self.path.display()))
    }

    fn map(path: PathBuf, file: &File, base_position: u64, ordinal: u32) -> Result<Segment> {
        // SAFETY: the mapping is read-only and shared. Its bytes can change under us only through writes to the
        // file: ours go (through `pwrite`) only to bytes past the committed end, which no reader is given, and
        // the directory lock keeps other annals processes out. The file is never shrunk while mapped (a
        // shrink would turn reads into SIGBUS). Bytes handed out are therefore never modified. The mapping
        // stays valid after the descriptor is closed.
        let mmap = unsafe { Mmap::map(file) }.context(|| format!("mapping {}", path.display()))?;
        // Reads through the mapping are point reads (a stream's events, located by the index) unless a scan
        // says otherwise ([`Segment::will_need`]). Without this, every fault on a cold page reads the
        // kernel's read-around window with it: with this machine's 8 MiB `read_ahead_kb`, 1,000 random
        // stream reads of a 10-million-stream store read 3.5 GB from disk (W9). A hint: if the kernel
        // refuses it, reads are only slower.
        let _ = mmap.advise(memmap2::Advice::Random);
        let mmap = Arc::new(mmap);
        let metadata = file.metadata().context(|| format!("reading metadata of {}", path.display()))?;
        let identity = (std::os::unix::fs::MetadataExt::dev(&metadata), std::os::unix::fs::MetadataExt::ino(&metadata));
        Ok(Segment {
            path,
            map: Bytes::from_owner(SharedMap(mmap.clone())),
            mmap,
            base_position,
            ordinal,
            compacted: None,
            identity,
        })
    }

    /// Asks the kernel to start reading `len` bytes from `at` into the page cache, without waiting: the
    /// read-ahead of a scan, which the mapping's random advice otherwise turns off. Clamped to the file.
    pub fn will_need(&self, at: usize, len: usize) {
        let at = at.min(self.mmap.len());
        let len = len.min(self.mmap.len() - at);
        if len > 0 {
            let _ = self.mmap.advise_range(memmap2::Advice::WillNeed, at, len);
        }
    }

    /// Drops `len` bytes from `at` (clamped to the file) from this process' page tables: a scan that has
    /// passed them releases them, so that reading a whole log does not leave it all counted in the process'
    /// resident memory. The pages stay in the page cache, and the bytes stay readable.
    pub fn release(&self, at: usize, len: usize) {
        let at = at.min(self.mmap.len());
        let len = len.min(self.mmap.len() - at);
        if len > 0 {
            // SAFETY: the mapping is shared and read-only (see `map`). MADV_DONTNEED on a shared file mapping
            // only unmaps the pages: the next access faults the same bytes in again from the page cache (the
            // file is never shrunk while mapped), so every `Bytes` handed out keeps reading what it read.
            let _ = unsafe { self.mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, at, len) };
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn base_position(&self) -> u64 {
        self.base_position
    }

    pub fn ordinal(&self) -> u32 {
        self.ordinal
    }

    /// The whole file's bytes (header included).
    pub fn bytes(&self) -> &Bytes {
        &self.map
    }

    pub fn size(&self) -> u64 {
        self.map.len() as u64
    }

    /// Whether the file under this segment's name is still the one mapped (compaction replaces it).
    pub fn is_current(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|metadata| {
            use std::os::unix::fs::MetadataExt;
            (metadata.dev(), metadata.ino()) == self.identity
        })
    }

    /// Whether compaction rewrote this segment (format 2): its records may have gaps in their positions, and
    /// locators into it name original byte offsets, which [`Segment::physical`] translates.
    pub fn is_compacted(&self) -> bool {
        self.compacted.is_some()
    }

    /// Where the frames region ends: the size (format 1), or (format 2) the 8 zero bytes after the last kept
    /// frame, before the relocation section.
    pub fn frames_end(&self) -> usize {
        self.compacted.map_or(self.map.len(), |(_, relocation_at)| relocation_at as usize - 8)
    }

    /// Relocation entry `i` of a compacted segment: (original byte offset, byte offset here or 0).
    fn relocation(&self, i: u32) -> (u32, u32) {
        let (_, relocation_at) = self.compacted.expect("a compacted segment");
        let at = relocation_at as usize + i as usize * RELOCATION_ENTRY_LEN;
        let entry = &self.map[at..at + RELOCATION_ENTRY_LEN];
        let u32_at = |k: usize| u32::from_le_bytes(entry[k..k + 4].try_into().expect("4 bytes"));
        (u32_at(0), u32_at(4))
    }

    /// How many records a compacted segment held when it was sealed (`None` for a segment never compacted).
    pub fn records_when_sealed(&self) -> Option<u32> {
        self.compacted.map(|(records, _)| records)
    }

    /// Where the record a locator names (by its original byte offset `logical`) is in this file: the same
    /// offset in a segment never compacted; in a compacted one, its new offset, or `None` if compaction removed
    /// it (or no record ever started there).
    pub fn physical(&self, logical: u32) -> Option<u32> {
        let Some((records, _)) = self.compacted else { return Some(logical) };
        let i = self.first_entry_at_or_after(logical, records);
        match (i < records).then(|| self.relocation(i)) {
            Some((original, here)) if original == logical && here != 0 => Some(here),
            _ => None,
        }
    }

    /// The first record at or after original byte offset `logical` that this file still holds: its offset
    /// here, or `None` past the segment's last record.
    pub fn physical_at_or_after(&self, logical: u32) -> Option<u32> {
        let Some((records, _)) = self.compacted else { return Some(logical) };
        (self.first_entry_at_or_after(logical, records)..records).map(|i| self.relocation(i).1).find(|&here| here != 0)
    }

    /// The original byte offset of the record at `position` in a compacted segment (whether kept or not).
    pub fn logical_of_position(&self, position: u64) -> Option<u32> {
        let (records, _) = self.compacted?;
        let i = position.checked_sub(self.base_position).filter(|&i| i < u64::from(records))?;
        Some(self.relocation(i as u32).0)
    }

    fn first_entry_at_or_after(&self, logical: u32, records: u32) -> u32 {
        let (mut lo, mut hi) = (0, records);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.relocation(mid).0 < logical {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// Checks a compacted segment's relocation section (read with `pread`: a media error is an error here, so
/// that lookups through the mapping later meet only checked bytes): it fits the file, its CRC holds, original
/// offsets ascend from 64, and the kept records' offsets ascend from 64 (the first of them there) within the
/// frames region.
fn check_relocation(path: &Path, file: &File, size: u64, records: u32, relocation_at: u32) -> Result<()> {
    let bad = |at: u64, reason: String| Err(Error::corrupt(path, at, reason));
    let len = records as u64 * RELOCATION_ENTRY_LEN as u64;
    if records == 0 || (relocation_at as usize) < SEGMENT_HEADER_LEN + 8 || u64::from(relocation_at) + len + 4 > size {
        return bad(
            RECORDS_OFFSET as u64,
            format!("relocation section of {records} records at {relocation_at} does not fit"),
        );
    }
    let mut section = vec![0u8; len as usize + 4];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut section, u64::from(relocation_at))
        .context(|| format!("reading the relocation section of {}", path.display()))?;
    let (entries, crc) = section.split_at(len as usize);
    if crc32fast::hash(entries) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return bad(u64::from(relocation_at) + len, "relocation section CRC mismatch".to_owned());
    }
    let (mut original_before, mut here_before) = (0u32, 0u32);
    for (i, entry) in entries.chunks_exact(RELOCATION_ENTRY_LEN).enumerate() {
        let original = u32::from_le_bytes(entry[..4].try_into().expect("4 bytes"));
        let here = u32::from_le_bytes(entry[4..].try_into().expect("4 bytes"));
        let at = u64::from(relocation_at) + (i * RELOCATION_ENTRY_LEN) as u64;
        if (original as usize) < SEGMENT_HEADER_LEN || (i > 0 && original <= original_before) {
            return bad(at, format!("relocation entry {i}: original offsets must ascend from 64"));
        }
        if here != 0 && ((here as usize) < SEGMENT_HEADER_LEN || here <= here_before || here >= relocation_at - 8) {
            return bad(at, format!("relocation entry {i}: kept records must ascend within the frames region"));
        }
        if here != 0 && here_before == 0 && here as usize != SEGMENT_HEADER_LEN {
            return bad(at, format!("relocation entry {i}: the first kept record must start at byte 64"));
        }
        original_before = original;
        here_before = here.max(here_before);
    }
    Ok(())
}

/// The owner of a segment's `Bytes`: the mapping, shared with the segment (which advises it).
struct SharedMap(Arc<Mmap>);

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A file of a segment's size, reserved (and, made ahead of time, zero-filled) under a temporary name, not
/// yet a segment. Made off the writer's hot path, so that rolling to a new segment costs a header write and
/// two small syncs.
#[derive(Debug)]
pub struct Spare {
    file: File,
    tmp: PathBuf,
    size: u64,
}

/// Whether a prepared segment file is filled with written zeros (so that appends into it need no extent
/// conversion), and the flag that abandons the filling.
#[derive(Clone, Copy)]
pub enum ZeroFill<'a> {
    No,
    Yes { cancelled: &'a std::sync::atomic::AtomicBool },
}

impl Spare {
    /// Creates `dir/tmp_name` and reserves `size` bytes with `fallocate`. With `zero_fill`, also writes zeros
    /// over the whole file and syncs it: ext4 then syncs later writes into those blocks as pure data
    /// overwrites (about 8k syncs/s here) instead of converting unwritten extents (about 6.7k/s). That costs a
    /// segment's worth of writes, so it is done only in the background.
    pub fn prepare(io: &Io, dir: &Path, tmp_name: &str, size: u64, zero_fill: ZeroFill<'_>) -> Result<Spare> {
        let tmp = dir.join(tmp_name);
        let context = || format!("preparing segment file {}", tmp.display());
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&tmp).context(context)?;
        let prepared = io.allocate(&file, &tmp, size).and_then(|()| {
            if let ZeroFill::Yes { cancelled } = zero_fill {
                // 1 MiB at a time, so that a closing store waits for one write of it, not for the file (8 MiB
                // steps kept a close at 10 million streams waiting ~29 ms for this thread, W9).
                const STEP: u64 = 1 << 20;
                let mut at = 0;
                while at < size {
                    if cancelled.load(std::sync::atomic::Ordering::Relaxed) {
                        return Err(std::io::Error::other("the store closed while the segment was prepared"));
                    }
                    io.write_zeros(&file, &tmp, at, STEP.min(size - at))?;
                    at += STEP;
                }
                io.sync_all(&file, &tmp)?;
            }
            Ok(())
        });
        if let Err(err) = prepared {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(context(), err));
        }
        Ok(Spare { file, tmp, size })
    }

    pub fn size(&self) -> u64 {
        self.size
    }
}

/// Reads one segment with `pread`, through the I/O layer, a window at a time; never through the mapping.
///
/// Recovery and `Store::verify` read this way: a media error then comes back as `Error::Io` naming the file
/// and the byte offset, where a read through the mapping would kill the process with SIGBUS (on every open,
/// for recovery). Reads are sequential in practice, so each window is one large `pread`.
pub struct PreadWindow<'a> {
    segment: &'a Segment,
    io: &'a Io,
    /// Opened at the first read: the segment itself holds no descriptor.
    file: Option<File>,
    buf: Vec<u8>,
    /// Segment offset of `buf[0]`.
    start: usize,
    /// Bytes the next `pread` asks for (more when one frame is larger): doubles with each read up to
    /// `window_max`, so that a short look (a clean open sees the end of the log at once) reads little and a
    /// long scan reads in large steps.
    window_bytes: usize,
    window_max: usize,
}

impl<'a> PreadWindow<'a> {
    /// A window for scanning: 64 KiB at first, up to 1 MiB at a time.
    pub fn new(segment: &'a Segment, io: &'a Io) -> Self {
        PreadWindow { segment, io, file: None, buf: Vec::new(), start: 0, window_bytes: 64 << 10, window_max: 1 << 20 }
    }

    /// A window for looking at one record: 4 KiB at a time (more only if the record is larger).
    pub fn small(segment: &'a Segment, io: &'a Io) -> Self {
        PreadWindow { window_bytes: 4 << 10, window_max: 4 << 10, ..PreadWindow::new(segment, io) }
    }

    pub fn segment(&self) -> &'a Segment {
        self.segment
    }

    /// The bytes from `at` on: at least `min(len, segment size - at)` of them, possibly more.
    pub fn bytes(&mut self, at: usize, len: usize) -> Result<&[u8]> {
        let size = self.segment.size() as usize;
        let at = at.min(size);
        let wanted = len.min(size - at);
        if at < self.start || at + wanted > self.start + self.buf.len() {
            let read = wanted.max(self.window_bytes).min(size - at);
            self.window_bytes = (self.window_bytes * 2).min(self.window_max);
            self.buf.resize(read, 0);
            self.start = at;
            if self.file.is_none() {
                let path = self.segment.path();
                self.file = Some(File::open(path).context(|| format!("opening segment {}", path.display()))?);
            }
            let file = self.file.as_ref().expect("opened above");
            if let Err(err) = self.io.read_at(file, self.segment.path(), &mut self.buf, at as u64) {
                self.buf.clear();
                return Err(Error::io(format!("reading segment {} at byte {at}", self.segment.path().display()), err));
            }
        }
        Ok(&self.buf[at - self.start..])
    }

    /// Decodes the frame at `at`. The outer error is a failed read; the inner one says why the bytes are no
    /// valid frame. The frame's ranges are relative to `at`; its bytes are `self.bytes(at, frame.len)`.
    ///
    /// The body is read only if the header checks out ([`frame::check_header`]): a damaged or garbage length
    /// never makes it read (and allocate) what it claims.
    pub fn frame(&mut self, at: usize) -> Result<Result<Frame, DecodeError>> {
        let head = self.bytes(at, frame::HEADER_LEN)?;
        let len = match frame::check_header(head) {
            Ok(len) => len,
            Err(err) => return Ok(Err(err)),
        };
        let bytes = if len > head.len() { self.bytes(at, len)? } else { head };
        Ok(frame::decode(bytes))
    }
}

fn encode_header(size: u64, base_position: u64, ordinal: u32) -> [u8; SEGMENT_HEADER_LEN] {
    encode_header_v(size, base_position, ordinal, None)
}

/// A segment header: format 1, or format 2 with (records, relocation_at).
pub(crate) fn encode_header_v(
    size: u64,
    base_position: u64,
    ordinal: u32,
    compacted: Option<(u32, u32)>,
) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header[..VERSION_OFFSET].copy_from_slice(MAGIC);
    let version = if compacted.is_some() { COMPACTED_FORMAT_VERSION } else { FORMAT_VERSION };
    header[VERSION_OFFSET..HEADER_LEN_OFFSET].copy_from_slice(&version.to_le_bytes());
    if let Some((records, relocation_at)) = compacted {
        header[RECORDS_OFFSET..RELOCATION_AT_OFFSET].copy_from_slice(&records.to_le_bytes());
        header[RELOCATION_AT_OFFSET..RESERVED_V2_OFFSET].copy_from_slice(&relocation_at.to_le_bytes());
    }
    header[HEADER_LEN_OFFSET..SIZE_OFFSET].copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
    header[SIZE_OFFSET..BASE_OFFSET].copy_from_slice(&size.to_le_bytes());
    header[BASE_OFFSET..ORDINAL_OFFSET].copy_from_slice(&base_position.to_le_bytes());
    header[ORDINAL_OFFSET..RESERVED_OFFSET].copy_from_slice(&ordinal.to_le_bytes());
    let crc = crc32fast::hash(&header[..HEADER_CRC_OFFSET]);
    header[HEADER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// A checked segment header.
struct Header {
    size: u64,
    base_position: u64,
    ordinal: u32,
    compacted: Option<(u32, u32)>,
}

/// Checks a segment header.
fn decode_header(path: &Path, header: &[u8; SEGMENT_HEADER_LEN]) -> Result<Header> {
    if &header[..VERSION_OFFSET] != MAGIC {
        return Err(Error::corrupt(path, 0, "not an annals segment (bad magic)"));
    }
    let u32_at = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    if crc32fast::hash(&header[..HEADER_CRC_OFFSET]) != u32_at(HEADER_CRC_OFFSET) {
        return Err(Error::corrupt(path, HEADER_CRC_OFFSET as u64, "segment header CRC mismatch"));
    }
    let version = u32_at(VERSION_OFFSET);
    if version != FORMAT_VERSION && version != COMPACTED_FORMAT_VERSION {
        return Err(Error::UnsupportedFormat {
            file: path.to_owned(),
            found: version,
            supported: COMPACTED_FORMAT_VERSION,
        });
    }
    let reserved_from = if version == COMPACTED_FORMAT_VERSION { RESERVED_V2_OFFSET } else { RESERVED_OFFSET };
    if u32_at(HEADER_LEN_OFFSET) as usize != SEGMENT_HEADER_LEN {
        return Err(Error::corrupt(path, HEADER_LEN_OFFSET as u64, "unexpected segment header length"));
    }
    if header[reserved_from..HEADER_CRC_OFFSET].iter().any(|&b| b != 0) {
        return Err(Error::corrupt(path, reserved_from as u64, "reserved segment header bytes are not zero"));
    }
    let size = u64_at(SIZE_OFFSET);
    if !(SEGMENT_SIZE_BYTES_MIN..=SEGMENT_SIZE_BYTES_MAX).contains(&size) || !size.is_multiple_of(8) {
        return Err(Error::corrupt(path, SIZE_OFFSET as u64, format!("impossible segment size {size}")));
    }
    let compacted =
        (version == COMPACTED_FORMAT_VERSION).then(|| (u32_at(RECORDS_OFFSET), u32_at(RELOCATION_AT_OFFSET)));
    Ok(Header { size, base_position: u64_at(BASE_OFFSET), ordinal: u32_at(ORDINAL_OFFSET), compacted })
}

/// The `VmFlags` of this process' mappings of `path`, one list per mapping (from `/proc/self/smaps`): `rr`
/// marks random-read advice, `sr` sequential.
#[cfg(test)]
pub(crate) fn vm_flags_of_mappings(path: &Path) -> Vec<Vec<String>> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let path = path.to_str().unwrap();
    let mut mappings = Vec::new();
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            inside = line.ends_with(path);
        } else if inside && first == "VmFlags:" {
            mappings.push(line.split_whitespace().skip(1).map(str::to_owned).collect());
        }
    }
    mappings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_mapped_for_point_reads() {
        let dir = tempfile::tempdir().unwrap();
        let (created, _file) = Segment::create(&Io::default(), dir.path(), 0, 0, 1 << 20).unwrap();
        let opened = Segment::open(created.path(), Some((0, 0))).unwrap();
        let flags = vm_flags_of_mappings(&std::fs::canonicalize(opened.path()).unwrap());
        assert_eq!(flags.len(), 2, "{flags:?}");
        // Without random advice a cold read faults in the kernel's read-around window (8 MiB on some disks)
        // for every record a stream read touches.
        assert!(flags.iter().all(|flags| flags.iter().any(|flag| flag == "rr")), "{flags:?}");
        // A scan's read-ahead is asked for explicitly, and clamped to the file.
        opened.will_need(0, 64 << 10);
        opened.will_need((1 << 20) - 4096, 1 << 30);
        opened.will_need(usize::MAX, usize::MAX);
        opened.release(0, 64 << 10);
        opened.release(usize::MAX, usize::MAX);
        assert_eq!(&opened.bytes()[..SEGMENT_HEADER_LEN], &created.bytes()[..SEGMENT_HEADER_LEN], "still readable");
    }

    #[test]
    fn create_then_open_round_trips_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let (created, _file) = Segment::create(&Io::default(), dir.path(), 3, 1234, 8192).unwrap();
        assert_eq!(created.size(), 8192);
        // Reserved space reads as zeros: the end of the log.
        assert!(created.bytes()[SEGMENT_HEADER_LEN..].iter().all(|&b| b == 0));
        let opened = Segment::open(created.path(), Some((3, 1234))).unwrap();
        assert!(matches!(Segment::open(created.path(), Some((2, 1234))), Err(Error::Corrupt { .. })));
        assert_eq!((opened.base_position(), opened.ordinal(), opened.size()), (1234, 3, 8192));
        assert_eq!(opened.path().file_name().unwrap(), "00000000000000001234.seg");
    }

    #[test]
    fn a_damaged_header_is_corrupt_and_a_newer_version_is_unsupported() {
        let dir = tempfile::tempdir().unwrap();
        let path = Segment::create(&Io::default(), dir.path(), 0, 0, 4096).unwrap().0.path().to_owned();
        let pristine = std::fs::read(&path).unwrap();

        let mut damaged = pristine.clone();
        damaged[BASE_OFFSET] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        assert!(matches!(Segment::open(&path, None), Err(Error::Corrupt { .. })));

        let mut newer = pristine.clone();
        newer[VERSION_OFFSET..HEADER_LEN_OFFSET].copy_from_slice(&(COMPACTED_FORMAT_VERSION + 1).to_le_bytes());
        let crc = crc32fast::hash(&newer[..HEADER_CRC_OFFSET]);
        newer[HEADER_CRC_OFFSET..SEGMENT_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, &newer).unwrap();
        assert!(matches!(Segment::open(&path, None), Err(Error::UnsupportedFormat { found: 3, supported: 2, .. })));

        std::fs::write(&path, &pristine[..100]).unwrap();
        assert!(matches!(Segment::open(&path, None), Err(Error::Corrupt { .. })));
    }

    /// A compacted segment of 4 records (positions 100..104) of which the 2nd and the 4th were removed, written
    /// by hand: what each lookup translates, and what `Segment::open` refuses.
    #[test]
    fn a_compacted_segment_translates_original_offsets() {
        let frame = |position: u64| {
            let header = frame::Header {
                position,
                offset: position - 100,
                prev: frame::NO_PREV,
                synced_before: position,
                timestamp_nanos: 1,
                event_id: uuid::Uuid::nil(),
                txn_after: 0,
                codec: 0,
            };
            let mut out = Vec::new();
            frame::encode(&mut out, &header, "s", "E", &[], &[position as u8; 10]);
            out
        };
        let stride = frame(100).len() as u32;
        let originals: Vec<u32> = (0..4).map(|i| 64 + i * stride).collect();
        let mut file = vec![0u8; SEGMENT_HEADER_LEN];
        file.extend(frame(100));
        file.extend(frame(102));
        let relocation_at = (file.len() + 8) as u32;
        file.extend([0u8; 8]);
        let entries: Vec<u8> = [(0, 64), (1, 0), (2, 64 + stride), (3, 0)]
            .iter()
            .flat_map(|&(i, here): &(usize, u32)| [originals[i].to_le_bytes(), here.to_le_bytes()].concat())
            .collect();
        file.extend(&entries);
        file.extend(crc32fast::hash(&entries).to_le_bytes());
        file.resize(4096, 0);
        file[..SEGMENT_HEADER_LEN].copy_from_slice(&encode_header_v(4096, 100, 3, Some((4, relocation_at))));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(100));
        std::fs::write(&path, &file).unwrap();

        let segment = Segment::open(&path, Some((3, 100))).unwrap();
        assert!(segment.is_compacted());
        assert_eq!(segment.frames_end(), relocation_at as usize - 8);
        assert_eq!(segment.physical(originals[0]), Some(64));
        assert_eq!(segment.physical(originals[1]), None, "removed");
        assert_eq!(segment.physical(originals[2]), Some(64 + stride));
        assert_eq!(segment.physical(originals[0] + 8), None, "no record starts there");
        assert_eq!(segment.physical_at_or_after(originals[1]), Some(64 + stride));
        assert_eq!(segment.physical_at_or_after(originals[3]), None, "past the last kept record");
        assert_eq!(segment.logical_of_position(101), Some(originals[1]));
        assert_eq!((segment.logical_of_position(99), segment.logical_of_position(104)), (None, None));
        assert_eq!(segment.records_when_sealed(), Some(4));

        // The relocation section's CRC, and the orders it must keep (each with the CRC made right).
        let mut damaged = file.clone();
        damaged[relocation_at as usize + 9] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        assert!(matches!(Segment::open(&path, None), Err(Error::Corrupt { .. })));
        let rewrite = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = file.clone();
            edit(&mut bytes);
            let section = relocation_at as usize..relocation_at as usize + entries.len();
            let crc = crc32fast::hash(&bytes[section.clone()]);
            bytes[section.end..section.end + 4].copy_from_slice(&crc.to_le_bytes());
            std::fs::write(&path, &bytes).unwrap();
            Segment::open(&path, None).map(|_| ())
        };
        let at = relocation_at as usize;
        // Original offsets out of order; a kept record past the frames' end; the first kept one not at 64.
        assert!(matches!(
            rewrite(&|b| b[at + 8..at + 12].copy_from_slice(&32u32.to_le_bytes())),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            rewrite(&|b| b[at + 20..at + 24].copy_from_slice(&4000u32.to_le_bytes())),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            rewrite(&|b| b[at + 4..at + 8].copy_from_slice(&72u32.to_le_bytes())),
            Err(Error::Corrupt { .. })
        ));
        assert!(rewrite(&|_| {}).is_ok());
    }

    #[test]
    fn locators_round_trip() {
        assert_eq!(split_locator(locator(7, 4096)), (7, 4096));
        assert_eq!(split_locator(locator(u32::MAX, u32::MAX)), (u32::MAX, u32::MAX));
    }
}
