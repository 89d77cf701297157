//! The thin layer every write-side system call of the engine goes through, so that tests can make any of
//! them fail (fault injection) without a mock filesystem.

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
pub struct FaultInjector(Arc<dyn Fn(IoOp) -> Option<io::Error> + Send + Sync>);

impl FaultInjector {
    /// Wraps a function that returns `Some(error)` for each operation that must fail.
    pub fn new(decide: impl Fn(IoOp) -> Option<io::Error> + Send + Sync + 'static) -> Self {
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

    fn check(&self, op: IoOp) -> io::Result<()> {
        match self.injector.as_ref().and_then(|inject| (inject.0)(op)) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Reserves `len` bytes of real blocks for `file`, so that no later write lands in a hole.
    ///
    /// IMPORTANT: never `set_len`: a sparse file turns a write on a full disk into SIGBUS for mapped readers.
    pub(crate) fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        self.check(IoOp::Allocate)?;
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

    pub(crate) fn write_at(&self, file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.check(IoOp::Write)?;
        file.write_all_at(bytes, offset)
    }

    pub(crate) fn sync_data(&self, file: &File) -> io::Result<()> {
        self.check(IoOp::SyncData)?;
        file.sync_data()
    }

    pub(crate) fn sync_all(&self, file: &File) -> io::Result<()> {
        self.check(IoOp::CreateFile)?;
        file.sync_all()
    }

    pub(crate) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(IoOp::CreateFile)?;
        std::fs::rename(from, to)
    }

    /// Syncs a directory, so that files created or renamed in it survive a power cut.
    pub(crate) fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check(IoOp::CreateFile)?;
        File::open(dir)?.sync_all()
    }

    /// Writes `bytes` to `path` atomically: temporary file, sync, rename, sync the directory.
    pub(crate) fn write_file_atomically(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.check(IoOp::CreateFile)?;
        let tmp = path.with_extension("tmp");
        let written = (|| {
            let file = File::create(&tmp)?;
            self.write_at(&file, bytes, 0)?;
            self.sync_all(&file)?;
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
    pub(crate) fn zero_range(&self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        self.check(IoOp::Write)?;
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
}

/// Writes `len` zero bytes at `offset`, a MiB at a time.
pub(crate) fn write_zeros(file: &File, offset: u64, len: u64) -> io::Result<()> {
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
