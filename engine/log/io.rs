//! The thin layer every write-side system call of the engine goes through, and the reads that must turn a
//! media error into an `Error` instead of a SIGBUS (recovery, `verify`), so that tests can make any of them
//! fail, or watch them, without a mock filesystem.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// A write-side operation that a [`FaultInjector`] may fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IoOp {
    /// Reserving a new segment's space (`fallocate`).
    Allocate,
    /// Writing frames into a segment (`pwrite`).
    Write,
    /// Syncing a segment's data (`fdatasync`).
    SyncData,
    /// Creating, syncing or renaming a new file, or syncing the directory.
    CreateFile,
    /// Reading a segment with `pread` (recovery, `Store::verify`): never through the mapping, where a media
    /// error would arrive as SIGBUS.
    Read,
}

/// One system call as a [`FaultInjector`] built with [`FaultInjector::observing`] sees it, before it runs.
///
/// `offset` and `len` are the byte range of a read or write (`Write`, `Read`, and the zeroing of a range, which
/// is also a `Write`). A sync, an allocation, a rename or a directory sync carries `offset` 0 and `len` 0: it
/// concerns the whole of `path`.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct IoCall<'a> {
    /// The kind of call.
    pub op: IoOp,
    /// The file (or, for a directory sync, the directory; for a rename, the new name).
    pub path: &'a Path,
    /// First byte of the range read or written.
    pub offset: u64,
    /// Bytes read or written.
    pub len: u64,
}

/// Decides, per operation, whether to fail it. For tests: see `Options::fault_injector`.
///
/// # Example
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
/// use annals::{FaultInjector, IoOp};
///
/// let fail_syncs = Arc::new(AtomicBool::new(false));
/// let flag = fail_syncs.clone();
/// let injector = FaultInjector::new(move |op| {
///     (op == IoOp::SyncData && flag.load(Ordering::SeqCst)).then(|| std::io::Error::other("injected"))
/// });
/// # let _ = injector;
/// ```
#[derive(Clone)]
pub struct FaultInjector(Arc<Decide>);

/// What a [`FaultInjector`] runs for each call.
type Decide = dyn Fn(&IoCall<'_>) -> Option<io::Error> + Send + Sync;

impl FaultInjector {
    /// Wraps a function that returns `Some(error)` for each operation that must fail.
    pub fn new(decide: impl Fn(IoOp) -> Option<io::Error> + Send + Sync + 'static) -> Self {
        FaultInjector(Arc::new(move |call: &IoCall<'_>| decide(call.op)))
    }

    /// Like [`new`](Self::new), but the function also sees which file and which bytes each call touches: for
    /// tests that model what a disk holds after a crash (which pages a failed sync left unwritten, which a later
    /// write dirtied again).
    ///
    /// ```
    /// use annals::{FaultInjector, IoOp};
    /// let injector = FaultInjector::observing(|call| {
    ///     if call.op == IoOp::Write {
    ///         println!("{} bytes at {} of {}", call.len, call.offset, call.path.display());
    ///     }
    ///     None
    /// });
    /// # let _ = injector;
    /// ```
    pub fn observing(decide: impl Fn(&IoCall<'_>) -> Option<io::Error> + Send + Sync + 'static) -> Self {
        FaultInjector(Arc::new(decide))
    }
}

impl fmt::Debug for FaultInjector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FaultInjector(..)")
    }
}

/// Runs write-side syscalls, failing those the injector picks.
#[derive(Debug, Clone, Default)]
pub(crate) struct Io {
    injector: Option<FaultInjector>,
}

impl Io {
    pub(crate) fn new(injector: Option<FaultInjector>) -> Self {
        Io { injector }
    }

    fn check(&self, op: IoOp, path: &Path, offset: u64, len: u64) -> io::Result<()> {
        let Some(inject) = &self.injector else { return Ok(()) };
        match (inject.0)(&IoCall { op, path, offset, len }) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Reserves `len` bytes of real blocks for `file`, so that no later write lands in a hole.
    ///
    /// IMPORTANT: never `set_len`: a sparse file turns a write on a full disk into SIGBUS for mapped readers.
    pub(crate) fn allocate(&self, file: &File, path: &Path, len: u64) -> io::Result<()> {
        self.check(IoOp::Allocate, path, 0, 0)?;
        let len = libc::off_t::try_from(len).map_err(|_| io::Error::other("segment size overflows off_t"))?;
        // SAFETY: plain syscall on a file descriptor we own; no memory is passed.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(err);
        }
        // Filesystems without fallocate (FUSE, some network filesystems): posix_fallocate writes instead.
        // SAFETY: as above.
        match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
            0 => Ok(()),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }

    pub(crate) fn write_at(&self, file: &File, path: &Path, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.check(IoOp::Write, path, offset, bytes.len() as u64)?;
        file.write_all_at(bytes, offset)
    }

    /// Fills `buf` from `offset` of `file` with `pread`. Recovery and `verify` read this way: a media error is
    /// then an `EIO` to report, where a read through the mapping would kill the process with SIGBUS.
    pub(crate) fn read_at(&self, file: &File, path: &Path, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.check(IoOp::Read, path, offset, buf.len() as u64)?;
        file.read_exact_at(buf, offset)
    }

    pub(crate) fn sync_data(&self, file: &File, path: &Path) -> io::Result<()> {
        self.check(IoOp::SyncData, path, 0, 0)?;
        file.sync_data()
    }

    pub(crate) fn sync_all(&self, file: &File, path: &Path) -> io::Result<()> {
        self.check(IoOp::CreateFile, path, 0, 0)?;
        file.sync_all()
    }

    pub(crate) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(IoOp::CreateFile, to, 0, 0)?;
        std::fs::rename(from, to)
    }

    /// Syncs a directory, so that files created or renamed in it survive a power cut.
    pub(crate) fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check(IoOp::CreateFile, dir, 0, 0)?;
        File::open(dir)?.sync_all()
    }

    /// Writes `bytes` to `path` atomically: temporary file, sync, rename, sync the directory.
    pub(crate) fn write_file_atomically(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let tmp = path.with_extension("tmp");
        self.check(IoOp::CreateFile, &tmp, 0, 0)?;
        let written = (|| {
            let file = File::create(&tmp)?;
            self.write_at(&file, &tmp, bytes, 0)?;
            self.sync_all(&file, &tmp)?;
            drop(file);
            self.rename(&tmp, path)
        })();
        if written.is_err() {
            // Best effort: a leftover is also removed (or overwritten) by the next open or write.
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        self.sync_dir(path.parent().expect("a file inside the store directory"))
    }

    /// Zeroes `[offset, offset + len)` of `file` without changing its size or freeing its blocks.
    pub(crate) fn zero_range(&self, file: &File, path: &Path, offset: u64, len: u64) -> io::Result<()> {
        self.check(IoOp::Write, path, offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let (off, n) = match (libc::off_t::try_from(offset), libc::off_t::try_from(len)) {
            (Ok(off), Ok(n)) => (off, n),
            _ => return Err(io::Error::other("range overflows off_t")),
        };
        // SAFETY: plain syscall on a file descriptor we own; no memory is passed.
        let rc = unsafe {
            libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE, off, n)
        };
        if rc == 0 {
            return Ok(());
        }
        // No ZERO_RANGE here: write the zeros.
        write_zeros(file, offset, len)
    }

    /// Writes `len` zero bytes at `offset` (preparing a spare segment: the blocks become written extents).
    pub(crate) fn write_zeros(&self, file: &File, path: &Path, offset: u64, len: u64) -> io::Result<()> {
        self.check(IoOp::Write, path, offset, len)?;
        write_zeros(file, offset, len)
    }
}

/// Writes `len` zero bytes at `offset`, a MiB at a time.
fn write_zeros(file: &File, offset: u64, len: u64) -> io::Result<()> {
    const CHUNK: u64 = 1 << 20;
    let zeros = vec![0u8; CHUNK.min(len) as usize];
    let mut done = 0;
    while done < len {
        let n = CHUNK.min(len - done);
        file.write_all_at(&zeros[..n as usize], offset + done)?;
        done += n;
    }
    Ok(())
}
