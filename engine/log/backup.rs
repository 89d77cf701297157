//! Online backup: a consistent copy of the store up to a durable position, taken while appends go on.
//!
//! The copy is the log's prefix below that position, byte for byte, and nothing after it: sealed segments
//! (never written again) are hard-linked, or copied when the destination is on another file system; the last
//! segment is copied up to the end of the position's record and zero-filled to its size (a writer may be
//! writing the next group after it, which the copy must not hold). Index tables that end at or before the
//! position are linked too (they are immutable), so the copy opens without replaying the whole log, and the
//! snapshot files are copied (a snapshot of an event the copy does not hold is skipped when read, as after a
//! crash). Every file and directory of the copy is synced before the call returns. Restoring is opening the
//! copy: positions, offsets and ids are those of the original, so checkpoints stay valid.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::decode_at;
use super::io::Io;
use super::segment::{self, SEGMENT_HEADER_LEN};
use super::writer::Shared;
use crate::error::{Error, IoContext, Result};
use crate::index::table;
use crate::index::INDEX_DIR;

/// Copies the store behind `shared` (in `dir`) into `dest`, which must not exist or be an empty directory, up
/// to the durable position. Returns the last position the copy holds (`None` for an empty log).
pub(crate) fn backup(shared: &Shared, dir: &Path, dest: &Path) -> Result<Option<u64>> {
    prepare_destination(dest)?;
    // Compaction replaces segment files by name: the copy must not meet a file replaced under the mapping it
    // measured (a read-only store's writer, in another process, takes no part in this: see format-spec §17).
    let _no_compaction = shared.compaction.lock();
    let io = Io::default();
    // Everything below `end` is durable (and, for a writer, committed): the copy holds exactly that.
    let end = shared.durable.load(Ordering::Acquire).min(shared.committed.load(Ordering::Acquire));
    let log = &shared.log;
    // The last record's segment and where its frame ends.
    let (last_ordinal, last_end) = match end.checked_sub(1) {
        None => (0, SEGMENT_HEADER_LEN),
        Some(last) => {
            let locator = shared.index.locator_of(last)?;
            match log.located(locator)? {
                Some((segment, at)) => {
                    let frame = decode_at(&segment, at)?;
                    (segment.ordinal(), at + frame.stride())
                }
                // Compaction removed the last record (its segment is sealed, the last one empty): the
                // compacted file is immutable and copied whole.
                None => {
                    let segment = log.segment(segment::split_locator(locator).0)?;
                    (segment.ordinal(), segment.size() as usize)
                }
            }
        }
    };
    for ordinal in 0..last_ordinal {
        let base = log.base(ordinal).expect("the log holds every segment below the last one");
        let name = segment::file_name(base);
        link_or_copy(&dir.join(&name), &dest.join(&name), &io)?;
    }
    copy_prefix(
        log.segment(last_ordinal)?.path(),
        &dest.join(segment::file_name(log.base(last_ordinal).expect("listed"))),
        last_end,
        &io,
    )?;

    // Index tables wholly below the end, as a cover from position 0 (a merge may delete an input meanwhile:
    // the copy then takes fewer tables and replays more).
    let tables = shared.index.tables();
    let dest_index = dest.join(INDEX_DIR);
    std::fs::create_dir(&dest_index).context(|| format!("creating {}", dest_index.display()))?;
    let mut covered = 0;
    for table in tables.iter().take_while(|table| table.meta().end_position <= end) {
        let name = table::file_name(table.meta().first_position, table.meta().end_position);
        if table.meta().first_position != covered {
            break;
        }
        match link_or_copy(&dir.join(INDEX_DIR).join(&name), &dest_index.join(&name), &io) {
            Ok(()) => covered = table.meta().end_position,
            Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => break,
            Err(err) => return Err(err),
        }
    }
    io.sync_dir(&dest_index).context(|| format!("syncing {}", dest_index.display()))?;

    copy_snapshots(&dir.join(crate::snapshot::SNAPSHOTS_DIR), &dest.join(crate::snapshot::SNAPSHOTS_DIR), &io)?;
    io.sync_dir(dest).context(|| format!("syncing {}", dest.display()))?;
    if let Some(parent) = dest.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        io.sync_dir(parent).context(|| format!("syncing {}", parent.display()))?;
    }
    Ok(end.checked_sub(1))
}

fn prepare_destination(dest: &Path) -> Result<()> {
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::io(
                    format!("backing up into {}", dest.display()),
                    std::io::Error::new(ErrorKind::AlreadyExists, "the destination is not empty"),
                ));
            }
            Ok(())
        }
        Err(err) if err.kind() == ErrorKind::NotFound => {
            std::fs::create_dir_all(dest).context(|| format!("creating {}", dest.display()))
        }
        Err(err) => Err(Error::io(format!("opening {}", dest.display()), err)),
    }
}

/// Hard-links `from` as `to` (the file is immutable), or copies and syncs it on another file system.
fn link_or_copy(from: &Path, to: &Path, io: &Io) -> Result<()> {
    match std::fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(err) if err.raw_os_error() == Some(libc::EXDEV) || err.kind() == ErrorKind::PermissionDenied => {
            std::fs::copy(from, to).context(|| format!("copying {} to {}", from.display(), to.display()))?;
            let file = File::open(to).context(|| format!("opening {}", to.display()))?;
            io.sync_all(&file, to).context(|| format!("syncing {}", to.display()))
        }
        Err(err) => Err(Error::io(format!("linking {} to {}", from.display(), to.display()), err)),
    }
}

/// Copies the first `len` bytes of the segment `from` into a new segment file `to` of the same size, the rest
/// reserved and zero (never the bytes after `len`, which a writer may be writing), and syncs it.
fn copy_prefix(from: &Path, to: &Path, len: usize, io: &Io) -> Result<()> {
    let source = File::open(from).context(|| format!("opening {}", from.display()))?;
    let size = source.metadata().context(|| format!("reading metadata of {}", from.display()))?.len();
    // A compacted segment (format 2) is sealed and immutable: copied whole, whichever file compaction left
    // under this name when it was opened (`len` may have been measured in the file it replaced).
    let mut version = [0u8; 4];
    source.read_exact_at(&mut version, 8).context(|| format!("reading {}", from.display()))?;
    let len = if u32::from_le_bytes(version) == segment::COMPACTED_FORMAT_VERSION { size as usize } else { len };
    let target =
        OpenOptions::new().write(true).create_new(true).open(to).context(|| format!("creating {}", to.display()))?;
    io.allocate(&target, to, size).context(|| format!("reserving {}", to.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len {
        let n = buf.len().min(len - at);
        source.read_exact_at(&mut buf[..n], at as u64).context(|| format!("reading {}", from.display()))?;
        target.write_all_at(&buf[..n], at as u64).context(|| format!("writing {}", to.display()))?;
        at += n;
    }
    io.sync_all(&target, to).context(|| format!("syncing {}", to.display()))
}

/// Copies the snapshot files (small, and rewritten by renames: a copy, not a link, keeps them apart).
fn copy_snapshots(from: &Path, to: &Path, io: &Io) -> Result<()> {
    let streams = match std::fs::read_dir(from) {
        Ok(streams) => streams,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(Error::io(format!("listing {}", from.display()), err)),
    };
    std::fs::create_dir(to).context(|| format!("creating {}", to.display()))?;
    for stream in streams {
        let stream = stream.context(|| format!("listing {}", from.display()))?;
        if !stream.file_type().context(|| format!("listing {}", from.display()))?.is_dir() {
            continue;
        }
        let target = to.join(stream.file_name());
        std::fs::create_dir(&target).context(|| format!("creating {}", target.display()))?;
        for file in std::fs::read_dir(stream.path()).context(|| format!("listing {}", stream.path().display()))? {
            let file = file.context(|| format!("listing {}", stream.path().display()))?;
            let name = file.file_name();
            if !name.to_string_lossy().ends_with(".snap") {
                continue;
            }
            let copy = target.join(&name);
            match std::fs::copy(file.path(), &copy) {
                Ok(_) => {
                    let copied = File::open(&copy).context(|| format!("opening {}", copy.display()))?;
                    io.sync_all(&copied, &copy).context(|| format!("syncing {}", copy.display()))?;
                }
                // Pruned by retention meanwhile.
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(Error::io(format!("copying {}", file.path().display()), err)),
            }
        }
        io.sync_dir(&target).context(|| format!("syncing {}", target.display()))?;
    }
    io.sync_dir(to).context(|| format!("syncing {}", to.display()))
}
