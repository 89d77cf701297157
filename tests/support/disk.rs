//! A model of what a disk holds under the page cache, driven by a [`FaultInjector`] that watches every write
//! and sync of the store: for tests of what a power cut (or a failed `fdatasync`) leaves behind.
//!
//! For each file it keeps the *durable* bytes: what the last successful sync of the file made stable. A write
//! makes its range dirty; a successful sync copies the file's current bytes to the durable copy. A failed sync
//! either keeps its dirty ranges dirty ([`FailedSync::KeepsDirty`]) or drops them ([`FailedSync::DropsPages`]:
//! Linux marks the pages clean after an I/O error and keeps them in the page cache, so a later sync writes
//! nothing for them, the fsyncgate case): their durable bytes stay the old ones until the range is written
//! again. [`DiskModel::image`] is the directory as a power cut now would leave it.
//!
//! A file the model has not seen written is taken to be durable as it is: its bytes are kept as the durable
//! copy before the first write the model sees. A file renamed into place (a new segment, a new checkpoint) is
//! durable under its new name, with the contents synced under its temporary one, once its directory is synced.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use annals::{FaultInjector, IoOp};

/// What a failed sync does to the pages it could not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedSync {
    /// They stay dirty: a later successful sync writes them (what a process crash before the sync leaves).
    KeepsDirty,
    /// They are marked clean without reaching the disk, and stay cached (Linux after EIO: fsyncgate).
    DropsPages,
}

/// A byte range whose write a failed sync dropped, with the durable bytes it still holds.
type Dropped = (Range<u64>, Vec<u8>);

#[derive(Default)]
struct Files {
    durable: HashMap<PathBuf, Vec<u8>>,
    dirty: HashMap<PathBuf, Vec<Range<u64>>>,
    /// Ranges a failed sync dropped, with the durable bytes they keep until written again.
    dropped: HashMap<PathBuf, Vec<Dropped>>,
    /// Files renamed into place whose directory has not been synced since.
    renamed: Vec<PathBuf>,
}

/// The model, shared with its injector. `Clone` shares it.
#[derive(Clone)]
pub struct DiskModel {
    files: Arc<Mutex<Files>>,
    mode: FailedSync,
    /// Data syncs still to fail (each failing one decrements it).
    failing_syncs: Arc<AtomicUsize>,
    syncs: Arc<AtomicUsize>,
}

impl DiskModel {
    pub fn new(mode: FailedSync) -> Self {
        DiskModel {
            files: Arc::default(),
            mode,
            failing_syncs: Arc::new(AtomicUsize::new(0)),
            syncs: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Makes the next `count` data syncs (`fdatasync` of a segment) fail with EIO.
    pub fn fail_next_syncs(&self, count: usize) {
        self.failing_syncs.store(count, Ordering::SeqCst);
    }

    /// Data syncs that succeeded so far.
    pub fn syncs(&self) -> usize {
        self.syncs.load(Ordering::SeqCst)
    }

    /// The injector to put in `Options::fault_injector`.
    pub fn injector(&self) -> FaultInjector {
        let model = self.clone();
        FaultInjector::observing(move |call| model.observe(call.op, call.path, call.offset, call.len))
    }

    fn observe(&self, op: IoOp, path: &Path, offset: u64, len: u64) -> Option<std::io::Error> {
        let mut files = self.files.lock().unwrap();
        match op {
            IoOp::Write => {
                if !files.durable.contains_key(path) {
                    // Not seen written or synced before (it was there before the model): durable as it is.
                    // Without this copy, a failed first sync of the file left its unsynced bytes in the image.
                    if let Ok(bytes) = std::fs::read(path) {
                        files.durable.insert(path.to_owned(), bytes);
                    }
                }
                let range = offset..offset + len;
                files.dirty.entry(path.to_owned()).or_default().push(range.clone());
                // Written again: the page is dirty now, and the next successful sync writes it.
                if let Some(dropped) = files.dropped.get_mut(path) {
                    *dropped = std::mem::take(dropped)
                        .into_iter()
                        .flat_map(|(kept, old)| subtract(kept, old, &range))
                        .collect();
                }
                None
            }
            IoOp::SyncData => {
                let fail = self
                    .failing_syncs
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1))
                    .is_ok();
                if fail {
                    let dirty = files.dirty.remove(path).unwrap_or_default();
                    if self.mode == FailedSync::DropsPages {
                        let durable = files.durable.get(path).cloned();
                        let dropped = files.dropped.entry(path.to_owned()).or_default();
                        for range in dirty {
                            let old = match &durable {
                                Some(bytes) => bytes[range.start as usize..range.end as usize].to_vec(),
                                None => vec![0; (range.end - range.start) as usize],
                            };
                            dropped.push((range, old));
                        }
                    } else {
                        files.dirty.insert(path.to_owned(), dirty);
                    }
                    return Some(std::io::Error::from_raw_os_error(5)); // EIO
                }
                self.syncs.fetch_add(1, Ordering::SeqCst);
                files.persist(path);
                None
            }
            IoOp::CreateFile if path.is_dir() => {
                // A directory sync: the files renamed into it are durable under their new names now.
                let (synced, pending) =
                    std::mem::take(&mut files.renamed).into_iter().partition(|file| file.parent() == Some(path));
                files.renamed = pending;
                for file in synced {
                    files.persist(&file);
                }
                None
            }
            IoOp::CreateFile => {
                // A sync of a new file (durable whole), or a rename onto this name (before it runs: the file here,
                // if any, is the one replaced, durable as it is until the directory is synced).
                if path.is_file() {
                    files.persist(path);
                }
                if !path.to_string_lossy().ends_with(".tmp") {
                    files.renamed.push(path.to_owned());
                }
                None
            }
            _ => None,
        }
    }

    /// The store directory as a power cut now would leave it: each file's durable bytes (a file the model never
    /// saw synced as it is: new files are synced whole before they get their final name), subdirectories (the
    /// index, the snapshots) included. Paths are relative to `dir`.
    pub fn image(&self, dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let files = self.files.lock().unwrap();
        let mut image = Vec::new();
        let mut pending = vec![dir.to_owned()];
        while let Some(at) = pending.pop() {
            for entry in std::fs::read_dir(&at).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                if name == "LOCK" || name.ends_with(".tmp") {
                    continue;
                }
                let bytes = files.durable.get(&path).cloned().unwrap_or_else(|| std::fs::read(&path).unwrap());
                image.push((path.strip_prefix(dir).unwrap().to_owned(), bytes));
            }
        }
        image
    }

    /// Writes [`image`](Self::image) into a new temporary directory.
    pub fn power_cut(&self, dir: &Path) -> tempfile::TempDir {
        let copy = tempfile::tempdir().unwrap();
        for (name, bytes) in self.image(dir) {
            let path = copy.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        copy
    }
}

impl Files {
    /// A successful sync of `path`: its current bytes are durable, except the ranges a failed sync dropped.
    fn persist(&mut self, path: &Path) {
        let Ok(mut bytes) = std::fs::read(path) else { return };
        for (range, old) in self.dropped.get(path).into_iter().flatten() {
            bytes[range.start as usize..range.end as usize].copy_from_slice(old);
        }
        self.durable.insert(path.to_owned(), bytes);
        self.dirty.remove(path);
    }
}

/// What is left of the dropped range `kept` (with its old bytes) once `written` is taken out of it.
fn subtract(kept: Range<u64>, old: Vec<u8>, written: &Range<u64>) -> Vec<Dropped> {
    let slice = |from: u64, to: u64| old[(from - kept.start) as usize..(to - kept.start) as usize].to_vec();
    let mut left = Vec::new();
    if written.start > kept.start {
        let to = written.start.min(kept.end);
        left.push((kept.start..to, slice(kept.start, to)));
    }
    if written.end < kept.end {
        let from = written.end.max(kept.start);
        left.push((from..kept.end, slice(from, kept.end)));
    }
    left
}
