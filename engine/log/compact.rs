//! Compaction of one sealed segment: a new file holding only the records the caller keeps, packed, with a
//! relocation section from each record's original byte offset to its new one (format 2, `format-spec.md`
//! §4.5). Positions, offsets, event ids and every byte of a kept record stay as they were, and so do the
//! locators the index and the back-links hold (they name original offsets, which the relocation translates).
//!
//! Crash safety is the segments' own rule: the new file is written in full under a temporary name, synced,
//! renamed over the old one, and the directory synced. A crash leaves the old file or the new one, each whole
//! and each valid; the temporary name is deleted at the next open. Readers that mapped the old file keep
//! reading it (its locators are valid in it); the next lookup maps the new one.

use std::fs::OpenOptions;

use crate::error::{Error, Result};
use crate::log::frame::{aligned, Frame};
use crate::log::io::Io;
use crate::log::segment::{
    encode_header_v, file_name, PreadWindow, RELOCATION_ENTRY_LEN, SEGMENT_HEADER_LEN, SEGMENT_SIZE_BYTES_MIN,
};
use crate::log::{corrupt_frame, Log};

/// What compaction is asked about each record of a segment still holding it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub stream: &'a str,
    pub offset: u64,
    pub timestamp: u64,
}

/// What one compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Records removed now.
    pub removed: u64,
    /// The segment file's size before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// One record of the segment as sealed: its original offset, and where it is now with its stride (`None` if an
/// earlier compaction removed it), and whether it stays.
struct Entry {
    original: u32,
    here: Option<(u32, u32)>,
    keep: bool,
}

/// The name a compaction writes its new file under (deleted at open like every `*.seg.tmp`).
pub fn tmp_name(base: u64) -> String {
    format!("{base:020}.compact.seg.tmp")
}

/// Rewrites sealed segment `ordinal` without the records `keep` declines, if they make up at least
/// `min_dead_percent` of its frames' bytes (and at least one record). Records an earlier compaction removed stay
/// removed (`keep` is not asked about them). Returns `None` when it left the segment alone.
///
/// Every record is read with `pread` and decoded in full (CRC included): damage is `Corrupt` naming the place,
/// and nothing is written.
pub fn compact_segment(
    log: &Log,
    io: &Io,
    ordinal: u32,
    min_dead_percent: u8,
    keep: &mut dyn FnMut(&Candidate<'_>) -> Result<bool>,
) -> Result<Option<Compacted>> {
    span!("annals.compact", ordinal = ordinal);
    let segment = log.segment(ordinal)?;
    let base = segment.base_position();
    let Some(next_base) = log.base(ordinal + 1) else {
        return Err(Error::corrupt(segment.path(), 0, "only a sealed segment can be compacted"));
    };
    let records = u32::try_from(next_base - base).expect("a segment holds fewer than 2^32 records");
    let mut window = PreadWindow::new(&segment, io);
    let mut entries = Vec::with_capacity(records as usize);
    let (mut live_bytes, mut dead_bytes) = (0u64, 0u64);
    let mut at = SEGMENT_HEADER_LEN as u32;
    for i in 0..records {
        let position = base + u64::from(i);
        let (original, here) = if segment.is_compacted() {
            let original = segment.logical_of_position(position).expect("a sealed segment's own position");
            (original, segment.physical(original))
        } else {
            (at, Some(at))
        };
        let Some(here) = here else {
            entries.push(Entry { original, here: None, keep: false });
            continue;
        };
        let frame: Frame = match window.frame(here as usize)? {
            Ok(frame) => frame,
            Err(err) => return Err(corrupt_frame(&segment, here as usize, err)),
        };
        if frame.header.position != position {
            let reason = format!("expected position {position}, found {}", frame.header.position);
            return Err(Error::corrupt(segment.path(), u64::from(here), reason));
        }
        let bytes = window.bytes(here as usize, frame.len)?;
        let stream = std::str::from_utf8(&bytes[frame.stream.clone()]).expect("the decoder checked UTF-8");
        let candidate = Candidate { stream, offset: frame.header.offset, timestamp: frame.header.timestamp_nanos };
        let stays = keep(&candidate)?;
        let stride = frame.stride() as u32;
        if stays {
            live_bytes += u64::from(stride);
        } else {
            dead_bytes += u64::from(stride);
        }
        entries.push(Entry { original, here: Some((here, stride)), keep: stays });
        at = here + stride;
    }
    if dead_bytes == 0 || dead_bytes * 100 < u64::from(min_dead_percent) * (live_bytes + dead_bytes) {
        return Ok(None);
    }

    // The new file: header, kept frames packed, 8 zero bytes (the end of the frames), the relocation section
    // and its CRC, zeros to a multiple of 8 and at least the smallest segment size.
    let frames_end = SEGMENT_HEADER_LEN as u64 + live_bytes;
    let relocation_at = frames_end + 8;
    let relocation_len = u64::from(records) * RELOCATION_ENTRY_LEN as u64;
    let size = aligned((relocation_at + relocation_len + 4) as usize).max(SEGMENT_SIZE_BYTES_MIN as usize) as u64;
    if size >= segment.size() {
        return Ok(None);
    }
    let dir = log.dir();
    let tmp = dir.join(tmp_name(base));
    let path = dir.join(file_name(base));
    let written = (|| -> Result<()> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|err| Error::io(format!("creating {}", tmp.display()), err))?;
        let write = |bytes: &[u8], at: u64| {
            io.write_at(&file, &tmp, bytes, at).map_err(|err| Error::io(format!("writing {}", tmp.display()), err))
        };
        let mut out: Vec<u8> = Vec::with_capacity(1 << 20);
        let mut out_at = SEGMENT_HEADER_LEN as u64;
        let mut relocation = Vec::with_capacity(relocation_len as usize + 4);
        let mut next = SEGMENT_HEADER_LEN as u32;
        for entry in &entries {
            let new = match entry.here {
                Some((here, stride)) if entry.keep => {
                    out.extend_from_slice(&window.bytes(here as usize, stride as usize)?[..stride as usize]);
                    let new = next;
                    next += stride;
                    if out.len() >= 1 << 20 {
                        write(&out, out_at)?;
                        out_at += out.len() as u64;
                        out.clear();
                    }
                    new
                }
                _ => 0,
            };
            relocation.extend_from_slice(&entry.original.to_le_bytes());
            relocation.extend_from_slice(&new.to_le_bytes());
        }
        debug_assert_eq!(u64::from(next), frames_end);
        let crc = crc32fast::hash(&relocation);
        relocation.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&[0u8; 8]);
        out.extend_from_slice(&relocation);
        out.resize((size - out_at) as usize, 0);
        write(&out, out_at)?;
        let header = encode_header_v(size, base, ordinal, Some((records, relocation_at as u32)));
        write(&header, 0)?;
        io.sync_all(&file, &tmp).map_err(|err| Error::io(format!("syncing {}", tmp.display()), err))?;
        io.rename(&tmp, &path).map_err(|err| Error::io(format!("renaming {}", tmp.display()), err))?;
        // The old file or the new one: both whole. The sync makes the new one the one that stays.
        io.sync_dir(dir).map_err(|err| Error::io(format!("syncing {}", dir.display()), err))
    })();
    if let Err(err) = written {
        let _ = std::fs::remove_file(&tmp);
        // The rename may have happened (a failed directory sync): the next lookup must map whatever file the
        // name holds now, or a later `pread` (by name) and the mapping would disagree.
        log.forget(ordinal);
        return Err(err);
    }
    log.forget(ordinal);
    let removed = entries.iter().filter(|entry| entry.here.is_some() && !entry.keep).count() as u64;
    Ok(Some(Compacted { removed, bytes_before: segment.size(), bytes_after: size }))
}
