//! Memory after opening a store is bounded by configuration, not by the number of streams: the index lives on
//! disk, and the open reads only the tables' headers and last records. A store of 200,000 streams (two events
//! each, as in workload W9) and one of 1,000 are each opened by a fresh process (this test binary again, with
//! the `#[ignore]`d `child_entry`), which reads one event and reports its resident memory: both stay within
//! 64 MiB plus the index cache budget (1 MiB here), and the large store costs no more than a few MiB over the
//! small one. (Before, the whole index was in memory: about 70 bytes per stream.)

use std::path::Path;
use std::process::Command;

use annals::{EventData, ExpectedVersion, Options, Store, StreamAppend};

const CHILD_DIR_ENV: &str = "ANNALS_MEMORY_CHILD_DIR";
const CACHE_BYTES_MAX: u64 = 1 << 20;
const MIB: u64 = 1 << 20;

fn options() -> Options {
    Options { index_cache_bytes_max: CACHE_BYTES_MAX, ..Default::default() }
}

fn fill(dir: &Path, streams: u64) {
    let store = Store::open_with(dir, options()).unwrap();
    for batch in (0..streams).collect::<Vec<_>>().chunks(1000) {
        let appends: Vec<StreamAppend> = batch
            .iter()
            .map(|n| StreamAppend {
                stream: format!("order-{n:012}"),
                expected: ExpectedVersion::NoStream,
                events: vec![EventData::new("Placed", vec![1u8; 100]), EventData::new("Paid", vec![2u8; 100])],
            })
            .collect();
        store.append_multi(&appends).unwrap();
    }
    store.close().unwrap();
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
#[ignore = "the child process of memory_after_open_does_not_grow_with_the_streams"]
fn child_entry() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else { return };
    let store = Store::open_with(Path::new(&dir), options()).unwrap();
    assert_eq!(store.recovery_report().records_replayed, 0, "opened from the index");
    let first = store.read_stream("order-000000000007", 0).unwrap().next().unwrap().unwrap();
    assert_eq!(first.event_type(), "Placed");
    println!("resident bytes: {}", resident_bytes());
}

fn resident_after_open(dir: &Path) -> u64 {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["child_entry", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_DIR_ENV, dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let line = stdout.lines().find_map(|line| line.strip_prefix("resident bytes: ")).expect("the child reports");
    line.parse().unwrap()
}

#[test]
fn memory_after_open_does_not_grow_with_the_streams() {
    let (small, large) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    fill(small.path(), 1_000);
    fill(large.path(), 200_000);
    let (small_rss, large_rss) = (resident_after_open(small.path()), resident_after_open(large.path()));
    println!("resident after open: {} KiB (1,000 streams), {} KiB (200,000 streams)", small_rss >> 10, large_rss >> 10);
    assert!(large_rss <= 64 * MIB + CACHE_BYTES_MAX, "{large_rss} bytes resident after opening 200,000 streams");
    assert!(large_rss <= small_rss + 8 * MIB, "{small_rss} bytes for 1,000 streams, {large_rss} for 200,000");
}
