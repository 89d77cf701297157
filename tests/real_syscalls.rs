//! The system calls durability rests on are really made, not only announced to the fault injector: every
//! durable append under `Durability::SyncData` costs exactly one real `fdatasync` of its segment, and every new
//! segment file has its blocks allocated on disk (not a sparse file from `set_len`, where a write on a full disk
//! turns into SIGBUS for a mapped reader).
//!
//! The `fdatasync`s are counted by the kernel's account, not the engine's: the test re-executes its own binary
//! as a child under `strace -f -y -e trace=fdatasync,write` (the `#[ignore]`d `child_entry` test, which does
//! nothing unless `ANNALS_SYSCALL_CHILD_DIR` is set). The child opens a store, makes one warm-up append (the
//! first group after an open also zeroes and syncs the segment's tail), writes a begin marker to stderr, makes
//! `APPENDS` sequential single-event appends from one thread (one group each), writes an end marker and exits.
//! strace logs a call of one thread before any call that another thread makes because of it, so the
//! `fdatasync`s logged between the two markers are exactly those the appends made. strace must be installed:
//! without it the test fails (`.ci/run` installs it).
//!
//! The blocks are counted with `st_blocks`: a segment's file must hold at least as many bytes of blocks as its
//! length, right after the open that created it (before the first append zeroes its tail, which would allocate
//! the blocks of a sparse file too), after a roll into a spare prepared in the background, and after a roll
//! whose segment is created in the foreground because the spare could not be prepared.

mod support;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals::{EventData, ExpectedVersion, FaultInjector, IoOp, Options, Store};
use support::segment_paths;

const CHILD_DIR_ENV: &str = "ANNALS_SYSCALL_CHILD_DIR";
/// Durable appends the child makes between its markers.
const APPENDS: usize = 20;
const BEGIN: &str = "ANNALS-APPENDS-BEGIN";
const END: &str = "ANNALS-APPENDS-END";
const FIRST_SEGMENT: &str = "00000000000000000000.seg";
/// A child that runs longer than this is killed and the test fails (it takes well under a second).
const CHILD_TIMEOUT: Duration = Duration::from_secs(120);

fn options() -> Options {
    Options { segment_size_bytes: 1 << 20, ..Default::default() }
}

// ---------------------------------------------------------------------------------------------------------
// The child.

#[test]
#[ignore = "the child process of every_durable_append_makes_one_real_fdatasync; idle unless ANNALS_SYSCALL_CHILD_DIR is set"]
fn child_entry() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else { return };
    let store = Store::open_with(&dir, options()).expect("child: opening the store");
    let event = |i: usize| [EventData::new("Deposited", format!("event {i}").into_bytes())];
    store.append("warm-up", ExpectedVersion::Any, &event(0)).expect("child: the warm-up append");
    // Stderr is unbuffered: each marker is one `write` system call, which strace logs with its bytes.
    let marker = |text: &str| std::io::stderr().write_all(format!("{text}\n").as_bytes()).expect("child: marker");
    marker(BEGIN);
    for i in 0..APPENDS {
        store.append("account", ExpectedVersion::Any, &event(i)).expect("child: a durable append");
    }
    marker(END);
    store.close().expect("child: close");
}

// ---------------------------------------------------------------------------------------------------------
// The parent.

/// Fails the test unless strace runs: this test exists to count what strace sees.
fn require_strace() {
    match Command::new("strace").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("`strace -V` failed ({status}); this test counts real fdatasync calls with strace"),
        Err(err) => panic!(
            "strace is not installed ({err}); this test counts real fdatasync calls with it. Install it: \
             `apt-get install -y strace` (.ci/run does)"
        ),
    }
}

/// Runs `command` to its end, killing it and failing the test if it takes longer than `CHILD_TIMEOUT`.
fn run_bounded(mut command: Command, what: &str) -> std::process::ExitStatus {
    let mut child = command.spawn().unwrap_or_else(|err| panic!("spawning {what}: {err}"));
    let deadline = Instant::now() + CHILD_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {CHILD_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `fdatasync` lines of an strace log between the begin and the end marker (a call split by another
/// thread's into `fdatasync(... <unfinished ...>` and `<... fdatasync resumed>` counts once, by its first line).
fn fdatasyncs_between_markers(log: &str) -> Vec<&str> {
    let lines: Vec<&str> = log.lines().collect();
    let find = |marker: &str| {
        let found: Vec<usize> =
            (0..lines.len()).filter(|&i| lines[i].contains("write(") && lines[i].contains(marker)).collect();
        assert_eq!(found.len(), 1, "the strace log holds the child's {marker} write once:\n{log}");
        found[0]
    };
    let (begin, end) = (find(BEGIN), find(END));
    assert!(begin < end, "the begin marker is logged before the end marker:\n{log}");
    lines[begin + 1..end].iter().copied().filter(|line| line.contains("fdatasync(")).collect()
}

#[test]
fn every_durable_append_makes_one_real_fdatasync() {
    require_strace();
    let store_dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let trace = work.path().join("strace.log");
    let (stdout, stderr) = (work.path().join("child.stdout"), work.path().join("child.stderr"));
    let mut command = Command::new("strace");
    // -f: every thread (the appends are synced by the writer thread); -y: file descriptors with their paths;
    // -s: room for the markers.
    command
        .args(["-f", "-y", "-s", "128", "-e", "trace=fdatasync,write", "-o"])
        .arg(&trace)
        .arg(std::env::current_exe().unwrap())
        .args(["child_entry", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, store_dir.path())
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).unwrap())
        .stderr(File::create(&stderr).unwrap());
    let status = run_bounded(command, "the child under strace");
    let output = || {
        format!(
            "child stdout:\n{}\nchild and strace stderr:\n{}",
            std::fs::read_to_string(&stdout).unwrap_or_default(),
            std::fs::read_to_string(&stderr).unwrap_or_default()
        )
    };
    assert!(status.success(), "the child under strace failed ({status}):\n{}", output());
    let log = std::fs::read_to_string(&trace).expect("strace wrote its log");
    let syncs = fdatasyncs_between_markers(&log);
    assert_eq!(
        syncs.len(),
        APPENDS,
        "{APPENDS} sequential durable appends must make exactly {APPENDS} real fdatasyncs, one each; strace saw:\n{}",
        syncs.join("\n")
    );
    for line in &syncs {
        assert!(line.contains(FIRST_SEGMENT), "each fdatasync syncs the segment written to, not {line:?}");
    }
}

/// Fails the test unless the file at `path` has at least as many bytes of allocated blocks as its length.
fn assert_allocated(path: &Path, context: &str) {
    let metadata = std::fs::metadata(path).unwrap_or_else(|err| panic!("{context}: {}: {err}", path.display()));
    let allocated = metadata.blocks() * 512;
    assert!(
        allocated >= metadata.len(),
        "{context}: {} is sparse: {allocated} bytes of blocks for {} bytes (segments must be fallocated)",
        path.display(),
        metadata.len()
    );
}

/// Appends single events until the store has a second segment; returns that segment's path.
fn append_until_roll(store: &Store, dir: &Path) -> PathBuf {
    let payload = vec![b'x'; 4000];
    for _ in 0..1_000 {
        store.append("account", ExpectedVersion::Any, &[EventData::new("Deposited", payload.clone())]).unwrap();
        if let [_, second] = segment_paths(dir).as_slice() {
            return second.clone();
        }
    }
    panic!("1,000 events of 4 KB did not fill a 1 MiB segment");
}

#[test]
fn the_first_segment_is_allocated_on_disk_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    // Before any append: the first group zeroes the tail with FALLOC_FL_ZERO_RANGE, which fills holes.
    assert_allocated(&dir.path().join(FIRST_SEGMENT), "a new store's first segment");
    store.close().unwrap();
}

#[test]
fn a_segment_from_the_background_spare_is_allocated_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    let second = append_until_roll(&store, dir.path());
    assert_allocated(&second, "the segment a roll installed from the spare");
    store.close().unwrap();
}

#[test]
fn a_segment_created_during_a_roll_is_allocated_on_disk() {
    // The spare's preparation fails, so the roll creates its segment itself (fallocate only, no zero fill).
    let dir = tempfile::tempdir().unwrap();
    let allocated: Arc<Mutex<Vec<PathBuf>>> = Arc::default();
    let seen = allocated.clone();
    let injector = FaultInjector::observing(move |call| {
        if call.op != IoOp::Allocate {
            return None;
        }
        seen.lock().unwrap().push(call.path.to_owned());
        let spare = call.path.file_name().is_some_and(|name| name == "spare.seg.tmp");
        spare.then(|| std::io::Error::other("injected: no spare"))
    });
    let store = Store::open_with(dir.path(), Options { fault_injector: Some(injector), ..options() }).unwrap();
    let second = append_until_roll(&store, dir.path());
    let name = second.file_name().unwrap().to_string_lossy().into_owned();
    let foreground = allocated.lock().unwrap().iter().any(|path| path.ends_with(format!("{name}.tmp")));
    assert!(foreground, "the roll prepared {name} itself: {:?}", allocated.lock().unwrap());
    assert_allocated(&second, "the segment a roll created in the foreground");
    store.close().unwrap();
}
