//! W9 scale: how each cost grows with the number of streams. For each size N:
//!
//! 1. **load**: N streams named `order-{n:012}`, 2 events each (100-byte incompressible payloads, a fresh
//!    random id), in durable atomic appends of 1,000 streams (`append_multi` of 1,000 parts of 2 events);
//! 2. **lone appends**: 400 single-event durable appends of 512 KiB to one stream (`order-{N:012}`, past the
//!    loaded ones), 200 MiB in all: at least 3 rolls of the default 64 MiB segments;
//! 3. **close**: a clean `close`;
//! 4. **reopen**, in a fresh child process (this binary, run again), so that the load's memory does not count:
//!    open plus the first read of a random stream's first event, then `VmRSS`, then 1,000 whole-stream reads
//!    of random streams.
//!
//! Reported per size: load events/s (time in `append_multi` only; making the events is off the clock), the
//! lone appends' p50/p99/max latency, close ms, reopen + first read ms, resident memory after the reopen (of
//! the child, and its growth over the child's own baseline before the open), µs per whole-stream read, and
//! the bytes of `<store>/index/` after the close. The sizes run one after the other and are printed side by
//! side at the end, so that a row that grows with N stands out.
//!
//! ```text
//! cargo bench --bench w9_scale                              # N = 10,000 and 10,000,000 (WORKLOADS.md)
//! cargo bench --bench w9_scale -- --streams 10000,1000000   # any sizes
//! cargo bench --bench w9_scale -- --streams 1000000 --reads 200000   # more reads, to profile them
//! cargo bench --bench w9_scale -- --streams 1000000 --again 100      # reads of mapped pages, to profile
//! ```
//!
//! The store lives under the system temporary directory (check `df -h /tmp`: 10,000,000 streams write about
//! 4.6 GB of log). The files were just written, so they are in the page cache, but the reopened process
//! has mapped none of them: the first reads pay for mapping what they touch, and the second pass over the
//! same streams shows what the reads cost without that. Under `cargo test --all-targets` the bench runs once
//! with 2,000 streams, 40 lone appends and 4 MiB segments (5 rolls), in well under a second. Not a criterion
//! bench: each phase runs once per size, and criterion's samples of a load of minutes would only add time.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use annals::{EventData, ExpectedVersion, Options, Store, StreamAppend};
use uuid::Uuid;

/// Events of every loaded stream.
const EVENTS_PER_STREAM: usize = 2;
/// Streams in one atomic append of the load.
const STREAMS_PER_APPEND: u64 = 1_000;
/// Payload bytes of a loaded event.
const PAYLOAD_BYTES: usize = 100;
/// Payload bytes of a lone append.
const LONE_BYTES: usize = 512 << 10;
/// Whole-stream reads after the reopen (`--reads N` changes it, to profile the reads).
const READS: usize = 1_000;
/// The environment variable that makes this binary the reopen child; its value is the store directory.
const CHILD_ENV: &str = "ANNALS_W9_REOPEN";

/// The sizes of one run besides N: full as `WORKLOADS.md` has it, or shrunk for test mode.
#[derive(Debug, Clone, Copy)]
struct Shape {
    lone_appends: usize,
    segment_size_bytes: u64,
}

impl Shape {
    fn new(full: bool) -> Shape {
        if full {
            Shape { lone_appends: 400, segment_size_bytes: Options::default().segment_size_bytes }
        } else {
            Shape { lone_appends: 40, segment_size_bytes: 4 << 20 }
        }
    }

    fn options(&self) -> Options {
        Options { segment_size_bytes: self.segment_size_bytes, ..Options::default() }
    }
}

fn stream_name(n: u64) -> String {
    format!("order-{n:012}")
}

/// The event of `WORKLOADS.md` with a payload of `bytes` random bytes.
fn event(rng: &mut fastrand::Rng, bytes: usize) -> EventData {
    let mut payload = vec![0u8; bytes];
    rng.fill(&mut payload);
    EventData::new(common::EVENT_TYPE, payload).with_id(Uuid::from_u128(rng.u128(..)))
}

/// Percentile `percent` of sorted latencies, in ms.
fn percentile_ms(sorted: &[Duration], percent: usize) -> f64 {
    sorted[(sorted.len() * percent / 100).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

/// A field of `/proc/self/status` (`VmRSS:`, `VmHWM:`, …), in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let line = status.lines().find(|line| line.starts_with(field)).expect("the field is in /proc/self/status");
    let kib: u64 = line[field.len()..].trim().trim_end_matches("kB").trim().parse().expect("a number of kB");
    kib * 1024
}

/// Bytes this process has passed to `write`-family system calls so far (`wchar` of `/proc/self/io`, every
/// thread). Not `write_bytes`, which counts whole page-cache folios as they turn dirty: with large folios a
/// small synced append re-dirties up to 2 MiB, and the count came out 1.7 times what the calls wrote.
fn bytes_written() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("reading /proc/self/io");
    let line = io.lines().find_map(|line| line.strip_prefix("wchar:")).expect("wchar in /proc/self/io");
    line.trim().parse().expect("a number of bytes")
}

/// Bytes and number of the files in `dir` (not recursive).
fn dir_bytes(dir: &Path) -> (u64, usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return (0, 0) };
    entries
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .filter(|metadata| metadata.is_file())
        .fold((0, 0), |(bytes, files), metadata| (bytes + metadata.len(), files + 1))
}

/// Everything measured at one size.
#[derive(Debug, Default)]
struct Row {
    streams: u64,
    load_seconds: f64,
    load_events_per_s: f64,
    load_append_p99_ms: f64,
    load_append_max_ms: f64,
    lone_p50_ms: f64,
    lone_p99_ms: f64,
    lone_max_ms: f64,
    close_ms: f64,
    index_bytes: u64,
    index_tables: usize,
    log_bytes: u64,
    written_bytes: u64,
    load_peak_rss: u64,
    reopen: Reopened,
    wall_seconds: f64,
}

/// What the reopen child measured.
#[derive(Debug, Default, Clone, Copy)]
struct Reopened {
    open_and_first_read_ms: f64,
    rss_before_open: u64,
    rss_after_open: u64,
    rss_after_reads: u64,
    /// Of `rss_after_reads`, pages of mapped files (segments and index tables), which the kernel can drop.
    rss_file_after_reads: u64,
    /// Of `rss_after_reads`, pages of the mapped segments and of the mapped index tables (`/proc/self/smaps`).
    rss_segments_after_reads: u64,
    rss_tables_after_reads: u64,
    /// Page faults per whole-stream read, minor (the page was in the page cache) and major (read from disk).
    minor_faults_per_read: f64,
    major_faults_per_read: f64,
    read_us: f64,
    read_p99_us: f64,
    read_max_us: f64,
    /// The same streams read again: what a read costs once the pages it touches are mapped.
    read_again_us: f64,
}

/// Loads N streams, runs the lone appends and closes, in this process; then the reopen in a child.
fn run(streams: u64, shape: Shape) -> Row {
    let begun = Instant::now();
    let dir = common::scratch_dir();
    let mut row = Row { streams, ..Row::default() };
    let written_before = bytes_written();
    let store = Store::open_with(dir.path(), shape.options()).expect("opening the store");
    load(&store, streams, &mut row);
    lone_appends(&store, streams, shape, &mut row);
    let start = Instant::now();
    store.close().expect("closing the store");
    row.close_ms = start.elapsed().as_secs_f64() * 1e3;
    row.written_bytes = bytes_written() - written_before;
    row.load_peak_rss = status_bytes("VmHWM:");
    (row.index_bytes, row.index_tables) = dir_bytes(&dir.path().join("index"));
    row.log_bytes = dir_bytes(dir.path()).0;
    row.reopen = reopen_in_child(dir.path(), streams, shape);
    row.wall_seconds = begun.elapsed().as_secs_f64();
    row
}

/// The load: appends of 1,000 streams × 2 events, each durable; only the appends are timed.
fn load(store: &Store, streams: u64, row: &mut Row) {
    let mut rng = fastrand::Rng::with_seed(common::SEED ^ 9);
    let mut latencies = Vec::with_capacity(streams.div_ceil(STREAMS_PER_APPEND) as usize);
    let mut next = 0;
    while next < streams {
        let end = (next + STREAMS_PER_APPEND).min(streams);
        let parts: Vec<StreamAppend> = (next..end)
            .map(|n| StreamAppend {
                stream: stream_name(n),
                expected: ExpectedVersion::Any,
                events: (0..EVENTS_PER_STREAM).map(|_| event(&mut rng, PAYLOAD_BYTES)).collect(),
            })
            .collect();
        let start = Instant::now();
        store.append_multi(&parts).expect("W9 load append");
        latencies.push(start.elapsed());
        next = end;
    }
    row.load_seconds = latencies.iter().sum::<Duration>().as_secs_f64();
    row.load_events_per_s = (streams * EVENTS_PER_STREAM as u64) as f64 / row.load_seconds;
    latencies.sort_unstable();
    row.load_append_p99_ms = percentile_ms(&latencies, 99);
    row.load_append_max_ms = percentile_ms(&latencies, 100);
}

/// Single-event durable appends of 512 KiB to one stream, each timed.
fn lone_appends(store: &Store, streams: u64, shape: Shape, row: &mut Row) {
    let mut rng = fastrand::Rng::with_seed(common::SEED ^ 0x91);
    let stream = stream_name(streams);
    let mut latencies = Vec::with_capacity(shape.lone_appends);
    for _ in 0..shape.lone_appends {
        let event = event(&mut rng, LONE_BYTES);
        let start = Instant::now();
        store.append(&stream, ExpectedVersion::Any, &[event]).expect("W9 lone append");
        latencies.push(start.elapsed());
    }
    latencies.sort_unstable();
    row.lone_p50_ms = percentile_ms(&latencies, 50);
    row.lone_p99_ms = percentile_ms(&latencies, 99);
    row.lone_max_ms = percentile_ms(&latencies, 100);
}

/// Resident bytes of the mappings of files whose names end with `suffix` (`/proc/self/smaps`).
fn mapped_rss(suffix: &str) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("reading /proc/self/smaps");
    let mut in_file = false;
    let mut bytes = 0;
    for line in smaps.lines() {
        if let Some(kib) = line.strip_prefix("Rss:") {
            if in_file {
                bytes += kib.trim().trim_end_matches("kB").trim().parse::<u64>().expect("a number of kB") * 1024;
            }
        } else if line.split_whitespace().next().is_some_and(|range| {
            range.split_once('-').is_some_and(|(start, _)| start.bytes().all(|b| b.is_ascii_hexdigit()))
        }) {
            // A mapping's header line: address range, permissions, offset, device, inode, path.
            in_file = line.split_whitespace().nth(5).is_some_and(|path| path.ends_with(suffix));
        }
    }
    bytes
}

/// Page faults of this process so far, minor and major (fields 10 and 12 of `/proc/self/stat`).
fn page_faults() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("reading /proc/self/stat");
    // The command name (field 2) is in parentheses and may hold spaces: count fields after it.
    let fields: Vec<&str> = stat.rsplit_once(')').expect("a command name").1.split_whitespace().collect();
    let field = |n: usize| fields[n - 3].parse().expect("a number of faults");
    (field(10), field(12))
}

/// The number of whole-stream reads: `--reads N`, else `READS`.
fn reads() -> usize {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--reads" {
            return args.next().and_then(|n| n.parse().ok()).expect("--reads needs a number");
        }
    }
    READS
}

/// How many times the reads are repeated after the first pass: `--again N`, else 1. More passes make a
/// profile of the reopen child show what a read costs once its pages are mapped.
fn passes_again() -> usize {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--again" {
            return args.next().and_then(|n| n.parse().ok()).filter(|&n| n > 0).expect("--again needs a number > 0");
        }
    }
    1
}

/// Runs this binary again as the reopen child and parses its `RESULT` line.
fn reopen_in_child(dir: &Path, streams: u64, shape: Shape) -> Reopened {
    let output = Command::new(std::env::current_exe().expect("this binary's path"))
        .env(CHILD_ENV, dir)
        .env("ANNALS_W9_READS", reads().to_string())
        .env("ANNALS_W9_AGAIN", passes_again().to_string())
        .env("ANNALS_W9_STREAMS", streams.to_string())
        .env("ANNALS_W9_SEGMENT_BYTES", shape.segment_size_bytes.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("running the reopen child");
    assert!(output.status.success(), "the reopen child failed: {}", output.status);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find_map(|line| line.strip_prefix("RESULT ")).expect("a RESULT line from the child");
    let field = |name: &str| -> f64 {
        line.split_whitespace()
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
    };
    Reopened {
        open_and_first_read_ms: field("open_ms"),
        rss_before_open: field("rss_before") as u64,
        rss_after_open: field("rss_open") as u64,
        rss_after_reads: field("rss_reads") as u64,
        rss_file_after_reads: field("rss_file_reads") as u64,
        rss_segments_after_reads: field("rss_seg_reads") as u64,
        rss_tables_after_reads: field("rss_tbl_reads") as u64,
        minor_faults_per_read: field("minflt_per_read"),
        major_faults_per_read: field("majflt_per_read"),
        read_us: field("read_us"),
        read_p99_us: field("read_p99_us"),
        read_max_us: field("read_max_us"),
        read_again_us: field("read_again_us"),
    }
}

/// The reopen child: open + first read of a random stream, resident memory, 1,000 random whole-stream reads.
fn child(dir: &Path) {
    let number = |name: &str| -> u64 {
        std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or_else(|| panic!("{name} is not set"))
    };
    let streams = number("ANNALS_W9_STREAMS");
    let reads = number("ANNALS_W9_READS") as usize;
    let again = number("ANNALS_W9_AGAIN") as usize;
    let options = Options { segment_size_bytes: number("ANNALS_W9_SEGMENT_BYTES"), ..Options::default() };
    let mut rng = fastrand::Rng::with_seed(common::SEED ^ 0x9e);
    let first = stream_name(rng.u64(..streams));
    let picks: Vec<String> = (0..reads).map(|_| stream_name(rng.u64(..streams))).collect();
    let rss_before = status_bytes("VmRSS:");

    let start = Instant::now();
    let store = Store::open_with(dir, options).expect("reopening the store");
    let event = store.read_stream(&first, 0).expect("read_stream").next().expect("a first event");
    std::hint::black_box(common::touch(event.expect("the first read").data()));
    let open_ms = start.elapsed().as_secs_f64() * 1e3;
    let rss_open = status_bytes("VmRSS:");

    let mut times = Vec::with_capacity(reads);
    let faults_before = page_faults();
    for stream in &picks {
        let start = Instant::now();
        let mut events = 0;
        for event in store.read_stream(stream, 0).expect("read_stream") {
            std::hint::black_box(common::touch(event.expect("a random read").data()));
            events += 1;
        }
        times.push(start.elapsed());
        assert_eq!(events, EVENTS_PER_STREAM, "{stream} holds {events} events");
    }
    let read_us = times.iter().sum::<Duration>().as_secs_f64() * 1e6 / reads as f64;
    let faults = page_faults();
    let (minflt, majflt) = (faults.0 - faults_before.0, faults.1 - faults_before.1);
    let (rss_reads, rss_file_reads) = (status_bytes("VmRSS:"), status_bytes("RssFile:"));
    let (rss_seg_reads, rss_tbl_reads) = (mapped_rss(".seg"), mapped_rss(".tbl"));
    let start = Instant::now();
    for stream in (0..again).flat_map(|_| &picks) {
        for event in store.read_stream(stream, 0).expect("read_stream") {
            std::hint::black_box(common::touch(event.expect("a second read").data()));
        }
    }
    let read_again_us = start.elapsed().as_secs_f64() * 1e6 / (reads * again) as f64;
    times.sort_unstable();
    store.close().expect("closing the reopened store");
    println!(
        "RESULT open_ms={open_ms} rss_before={rss_before} rss_open={rss_open} rss_reads={rss_reads} \
         rss_file_reads={rss_file_reads} rss_seg_reads={rss_seg_reads} rss_tbl_reads={rss_tbl_reads} \
         minflt_per_read={} majflt_per_read={} read_again_us={read_again_us} read_us={read_us} read_p99_us={} read_max_us={}",
        minflt as f64 / reads as f64,
        majflt as f64 / reads as f64,
        percentile_ms(&times, 99) * 1e3,
        percentile_ms(&times, 100) * 1e3
    );
}

/// The sizes to run: `--streams 10000,1000000`, else `WORKLOADS.md`'s (2,000 in test mode).
fn sizes(full: bool) -> Vec<u64> {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--streams" {
            let list = args.next().expect("--streams needs a comma-separated list");
            return list.split(',').map(|n| n.trim().replace('_', "").parse().expect("a number of streams")).collect();
        }
    }
    if full {
        vec![10_000, 10_000_000]
    } else {
        vec![2_000]
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1 << 20) as f64)
}

/// Prints the rows side by side: one column per size.
fn print_table(rows: &[Row]) {
    type Cell = fn(&Row) -> String;
    let lines: [(&str, Cell); 27] = [
        ("load events/s", |row| format!("{:.0}", row.load_events_per_s)),
        ("load time s", |row| format!("{:.1}", row.load_seconds)),
        ("load append p99 ms", |row| format!("{:.2}", row.load_append_p99_ms)),
        ("load append max ms", |row| format!("{:.1}", row.load_append_max_ms)),
        ("lone append p50 ms", |row| format!("{:.2}", row.lone_p50_ms)),
        ("lone append p99 ms", |row| format!("{:.2}", row.lone_p99_ms)),
        ("lone append max ms", |row| format!("{:.1}", row.lone_max_ms)),
        ("close ms", |row| format!("{:.1}", row.close_ms)),
        ("reopen + first read ms", |row| format!("{:.2}", row.reopen.open_and_first_read_ms)),
        ("RSS after reopen MiB (child)", |row| mib(row.reopen.rss_after_open)),
        ("  growth over the child's baseline MiB", |row| {
            mib(row.reopen.rss_after_open.saturating_sub(row.reopen.rss_before_open))
        }),
        ("RSS after the reads MiB", |row| mib(row.reopen.rss_after_reads)),
        ("  of which mapped files MiB", |row| mib(row.reopen.rss_file_after_reads)),
        ("    segments MiB", |row| mib(row.reopen.rss_segments_after_reads)),
        ("    index tables MiB", |row| mib(row.reopen.rss_tables_after_reads)),
        ("random stream read µs", |row| format!("{:.1}", row.reopen.read_us)),
        ("  p99 µs", |row| format!("{:.1}", row.reopen.read_p99_us)),
        ("  max µs", |row| format!("{:.0}", row.reopen.read_max_us)),
        ("  the same streams again µs", |row| format!("{:.1}", row.reopen.read_again_us)),
        ("  minor page faults per read", |row| format!("{:.1}", row.reopen.minor_faults_per_read)),
        ("  major page faults per read", |row| format!("{:.2}", row.reopen.major_faults_per_read)),
        ("index bytes on disk MiB", |row| mib(row.index_bytes)),
        ("index tables", |row| row.index_tables.to_string()),
        ("log + index bytes MiB", |row| mib(row.log_bytes + row.index_bytes)),
        ("written by load, lone appends, close MiB", |row| mib(row.written_bytes)),
        ("peak RSS of this process so far MiB", |row| mib(row.load_peak_rss)),
        ("wall time of the size s", |row| format!("{:.0}", row.wall_seconds)),
    ];
    print!("{:<42}", "w9_scale: streams");
    for row in rows {
        print!("{:>14}", row.streams);
    }
    println!();
    for (label, cell) in lines {
        print!("{label:<42}");
        for row in rows {
            print!("{:>14}", cell(row));
        }
        println!();
    }
}

fn main() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let full = common::full_run();
    let shape = Shape::new(full);
    let mut rows = Vec::new();
    for streams in sizes(full) {
        eprintln!("w9_scale: {streams} streams ({shape:?})");
        rows.push(run(streams, shape));
        print_table(&rows);
    }
}
