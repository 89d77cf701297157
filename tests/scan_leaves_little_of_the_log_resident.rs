//! A scan over the whole log (`read_all`, which subscriptions' catch-up and the CLI's dump run on) does not
//! leave the log it passed mapped into the process: it releases the segment bytes behind it, so a process that
//! reads a terabyte log from the start is not seen by its operators at a terabyte of resident memory. (Before,
//! a scan of a 5.6 GB store left 4.7 GB of it counted in `RssFile`; the pages stay in the page cache either
//! way, and the events read stay readable.)

use std::path::Path;

use annals::{EventData, ExpectedVersion, Store};

/// Kilobytes of this process' resident memory in mappings of files under `dir`, from `/proc/self/smaps`.
fn resident_kib_of_files_under(dir: &Path) -> u64 {
    let dir = std::fs::canonicalize(dir).unwrap();
    let dir = dir.to_str().unwrap();
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let (mut inside, mut kib) = (false, 0);
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            inside = line.split_whitespace().last().is_some_and(|path| path.starts_with(dir));
        } else if inside && first == "Rss:" {
            kib += line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap();
        }
    }
    kib
}

#[test]
fn a_scan_releases_the_segment_bytes_it_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let payload = vec![7u8; 4000];
    // 8,192 events of about 4 KiB: 32 MiB in one 64 MiB segment.
    for batch in 0..64 {
        let events: Vec<EventData> = (0..128).map(|_| EventData::new("Filled", payload.clone())).collect();
        store.append(&format!("tank-{batch}"), ExpectedVersion::Any, &events).unwrap();
    }
    store.close().unwrap();

    let store = Store::open(dir.path()).unwrap();
    let mut first = None;
    let mut events = 0;
    for event in store.read_all(0).unwrap() {
        let event = event.unwrap();
        assert_eq!(event.data().len(), 4000);
        events += 1;
        first.get_or_insert(event);
    }
    assert_eq!(events, 8192);
    let resident_mib = resident_kib_of_files_under(dir.path()) / 1024;
    assert!(resident_mib < 16, "{resident_mib} MiB of the 32 MiB scanned are still mapped into the process");
    // What was handed out stays readable after its pages were released.
    assert_eq!(first.unwrap().data()[..], payload[..]);
}
