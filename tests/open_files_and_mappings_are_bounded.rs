//! A store keeps a bounded number of segments mapped and holds no file descriptor per segment, so it grows
//! to thousands of segments under a small open-files limit: a store of 5,000 segments is written, reopened,
//! read in full (every event, and every event of a stream), appended to and rolled, all in a process limited
//! to 256 open files (`ulimit -n 256`), with at most `open_segments_max` segments (and the active one, which
//! the writer holds) mapped when no reader holds one. (Before, every segment kept an open file and a mapping for ever, and such a store could neither roll
//! nor open.)
//!
//! The work runs in a child process (this test binary again, with the `#[ignore]`d `child_entry`, which does
//! nothing unless `ANNALS_BOUNDED_CHILD_DIR` is set), started through `sh -c "ulimit -n 256; exec …"`.

use std::path::Path;
use std::process::Command;

use annals::{Durability, EventData, ExpectedVersion, Options, Store};

const CHILD_DIR_ENV: &str = "ANNALS_BOUNDED_CHILD_DIR";
const SEGMENTS: usize = 5_000;
const OPEN_SEGMENTS_MAX: usize = 16;
const STREAMS: usize = 10;

fn options() -> Options {
    Options {
        segment_size_bytes: 4096,
        open_segments_max: OPEN_SEGMENTS_MAX,
        // One sync per roll instead of one per append: the test is about files, not durability.
        durability: Durability::Buffer { flush_interval: std::time::Duration::from_secs(60) },
        ..Default::default()
    }
}

/// One event that fills most of a 4 KiB segment: each append rolls.
fn big_event(n: u64) -> EventData {
    EventData::new("Filled", vec![n as u8; 3000])
}

fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
        .count()
}

/// Segment mappings of this process.
fn mapped_segments() -> usize {
    std::fs::read_to_string("/proc/self/maps").unwrap().lines().filter(|line| line.ends_with(".seg")).count()
}

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
#[ignore = "the child process of thousands_of_segments_need_no_more_open_files"]
fn child_entry() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else { return };
    let dir = Path::new(&dir);
    let store = Store::open_with(dir, options()).unwrap();
    let mut n = 0u64;
    while segments(dir) < SEGMENTS {
        store.append(&format!("stream-{}", n % STREAMS as u64), ExpectedVersion::Any, &[big_event(n)]).unwrap();
        n += 1;
    }
    store.close().unwrap();

    let store = Store::open_with(dir, options()).unwrap();
    assert_eq!(store.head_position(), Some(n - 1));
    let mut read = 0u64;
    for event in store.read_all(0).unwrap() {
        let event = event.unwrap();
        assert_eq!((event.position(), event.data()[0]), (read, read as u8));
        read += 1;
    }
    assert_eq!(read, n, "every event reads back");
    let stream: Vec<u64> = store.read_stream("stream-3", 0).unwrap().map(|event| event.unwrap().position()).collect();
    assert_eq!(stream, (0..n).filter(|p| p % STREAMS as u64 == 3).collect::<Vec<_>>());
    let backwards = store.read_stream_backwards("stream-7", None).unwrap().count() as u64;
    assert_eq!(backwards, (0..n).filter(|p| p % STREAMS as u64 == 7).count() as u64);
    // The log's bound, and the active segment, which the writer holds.
    assert!(
        mapped_segments() <= OPEN_SEGMENTS_MAX + 1,
        "{} segments mapped with no reader holding one, at most {OPEN_SEGMENTS_MAX} and the active one allowed",
        mapped_segments()
    );
    // Appends go on, and roll.
    for k in 0..20 {
        store.append("stream-0", ExpectedVersion::Any, &[big_event(n + k)]).unwrap();
    }
    assert_eq!(segments(dir), SEGMENTS + 20);
    assert!(open_files() < 64, "{} files open", open_files());
    store.close().unwrap();
    println!("child: {n} events in {SEGMENTS} segments read and appended under the open-files limit");
}

#[test]
fn thousands_of_segments_need_no_more_open_files() {
    // tmpfs when there is one: 5,000 rolls each sync a segment and an index table.
    let root = if Path::new("/dev/shm").is_dir() { Path::new("/dev/shm").to_owned() } else { std::env::temp_dir() };
    let dir = tempfile::tempdir_in(root).unwrap();
    let binary = std::env::current_exe().unwrap();
    let output = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 256 && exec "$0" child_entry --exact --ignored --nocapture"#)
        .arg(&binary)
        .env(CHILD_DIR_ENV, dir.path())
        .output()
        .expect("running the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the child failed: {}\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains("read and appended under the open-files limit"), "the child ran: {stdout}");
}
