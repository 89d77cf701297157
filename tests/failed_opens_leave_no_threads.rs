//! An open that fails (here: damage in a sealed segment, found while the index is rebuilt) leaves no thread
//! behind. An application that retries opening a damaged store must not run out of threads: each failed open
//! used to leave the index's flusher or merger blocked for good about one time in six (the last reference to
//! the index was dropped by that thread while it held the lock the index's drop takes).

use annals::{Error, EventData, ExpectedVersion, Options, Store};

mod support;
use support::{find_frame, flip_byte, remove_index};

/// The threads of this process whose name starts with `annals-`.
fn annals_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("annals-"))
        .count()
}

#[test]
fn three_hundred_failed_opens_leave_no_thread_behind() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_size_bytes: 8192, ..Default::default() };
    let store = Store::open_with(dir.path(), options.clone()).unwrap();
    for i in 0..200u8 {
        store.append("acct-1", ExpectedVersion::Any, &[EventData::new("E", vec![i; 100])]).unwrap();
    }
    store.close().unwrap();
    let (path, frame) = find_frame(dir.path(), 40);
    flip_byte(&path, frame.at + frame.len - 1, 0x01);
    for _ in 0..300 {
        remove_index(dir.path());
        match Store::open_with(dir.path(), options.clone()) {
            Err(Error::Corrupt { .. }) => {}
            other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
        }
    }
    // Threads of a failed open end on their own (they see the index gone); give them a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while annals_threads() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(annals_threads(), 0, "threads of failed opens are still running");
}
