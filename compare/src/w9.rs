//! W9 scale, for every engine and at several sizes, so that the rows show how each cost grows with the
//! number of streams:
//!
//! 1. **load**: N streams named `order-{n:012}`, 2 events each (100-byte payloads), in durable atomic appends
//!    of 1,000 streams (2,000 events: each stream's two events adjacent, one part of an `append_multi`);
//! 2. **lone appends**: 400 single-event durable appends of 512 KiB to one stream (`order-{N:012}`, past the
//!    loaded ones), 200 MiB: at least 3 rolls of annals' default 64 MiB segments;
//! 3. **close**: a clean close (PostgreSQL: a fast shutdown, which checkpoints);
//! 4. **reopen**: open plus the first event of a random stream; resident memory; the bytes of the index that
//!    finds a stream's events ([`Store::index_bytes`]); then 1,000 whole-stream reads of random streams.
//!
//! For an embedded engine, 1–3 run in one child process and 4 in a fresh one, so that the load's heap does not
//! count in the resident memory after the reopen (measured as `VmRSS` before and after the open, in the
//! child). PostgreSQL runs in the harness' process, and its resident memory (the server's) is not reported.
//! Event making is off the clock; the load's rate counts the time spent in appends only.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::engines::{Engine, Store};
use crate::event::{order_name, touch, EventSource, Pending, SEED};
use crate::report;
use crate::workloads::Measurement;
use crate::Result;

/// Events of every loaded stream.
const EVENTS_PER_STREAM: u64 = 2;
/// Streams in one atomic append of the load.
const STREAMS_PER_APPEND: u64 = 1_000;
/// Payload bytes of a loaded event.
const PAYLOAD_BYTES: usize = 100;
/// Lone appends, and the payload bytes of each.
const LONE_APPENDS: usize = 400;
const LONE_BYTES: usize = 512 << 10;
/// Whole-stream reads after the reopen.
const READS: usize = 1_000;

/// The sizes `WORKLOADS.md` asks for (10,000 and 10,000,000 streams), times `scale`, at least 1,000 each.
pub fn default_streams(scale: f64) -> Vec<u64> {
    let mut sizes: Vec<u64> =
        [10_000u64, 10_000_000].iter().map(|&n| ((n as f64 * scale).round() as u64).max(STREAMS_PER_APPEND)).collect();
    sizes.dedup();
    sizes
}

/// About the bytes a size needs on disk at its peak: the log (or table) of the load, the 200 MiB of lone
/// appends, and room for the index and the peers' write amplification. For the check before each size.
pub fn disk_bytes_needed(streams: u64) -> u64 {
    streams * EVENTS_PER_STREAM * 600 + (LONE_APPENDS * LONE_BYTES) as u64 * 3
}

/// Percentile `percent` of sorted durations, in ms.
fn percentile_ms(sorted: &[Duration], percent: usize) -> f64 {
    sorted[(sorted.len() * percent / 100).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

/// Bytes this process (every thread) has passed to `write`-family system calls so far: `wchar` of
/// `/proc/self/io`. Not `write_bytes`: that counts whole page-cache folios as they turn dirty, and on kernels
/// with large folios a small synced append re-dirties up to 2 MiB, which made annals' count 1.7 times what
/// its system calls wrote (measured with strace at 10,000,000 streams).
fn bytes_written() -> Result<u64> {
    let io = std::fs::read_to_string("/proc/self/io")?;
    let line = io.lines().find_map(|line| line.strip_prefix("wchar:")).ok_or("no wchar in /proc/self/io")?;
    Ok(line.trim().parse()?)
}

/// Phases 1–3 on an open store: the load, the lone appends, and the close. Returns their figures as JSON.
/// `own_process`: the engine runs in this process (not a server), so its writes to storage can be counted.
pub fn load_and_close(store: Box<dyn Store>, streams: u64, own_process: bool) -> Result<Value> {
    let written_before = bytes_written()?;
    let mut source = EventSource::new(SEED ^ 9);
    let mut writer = store.writer()?;
    let mut latencies = Vec::with_capacity(streams.div_ceil(STREAMS_PER_APPEND) as usize);
    let mut next = 0;
    while next < streams {
        let end = (next + STREAMS_PER_APPEND).min(streams);
        let batch: Vec<Pending> = (next..end)
            .flat_map(|n| std::iter::repeat_n(n, EVENTS_PER_STREAM as usize))
            .map(|n| Pending { stream: order_name(n), event: source.event_of(PAYLOAD_BYTES) })
            .collect();
        let begun = Instant::now();
        writer.append(&batch)?;
        latencies.push(begun.elapsed());
        next = end;
    }
    let load_seconds = latencies.iter().sum::<Duration>().as_secs_f64();
    latencies.sort_unstable();

    let lone_stream = order_name(streams);
    let mut lone = Vec::with_capacity(LONE_APPENDS);
    for _ in 0..LONE_APPENDS {
        let pending = Pending { stream: lone_stream.clone(), event: source.event_of(LONE_BYTES) };
        let begun = Instant::now();
        writer.append(std::slice::from_ref(&pending))?;
        lone.push(begun.elapsed());
    }
    lone.sort_unstable();
    drop(writer);

    let begun = Instant::now();
    store.close()?;
    let close_ms = begun.elapsed().as_secs_f64() * 1e3;
    let written = bytes_written()? - written_before;
    let mut result = json!({
        "load_events_per_s": (streams * EVENTS_PER_STREAM) as f64 / load_seconds,
        "load_s": load_seconds,
        "load_append_p99_ms": percentile_ms(&latencies, 99),
        "load_append_max_ms": percentile_ms(&latencies, 100),
        "lone_p50_ms": percentile_ms(&lone, 50),
        "lone_p99_ms": percentile_ms(&lone, 99),
        "lone_max_ms": percentile_ms(&lone, 100),
        "close_ms": close_ms,
    });
    if own_process {
        result["written_bytes"] = written.into();
    }
    Ok(result)
}

/// Phase 4: open, read a random stream's first event, measure, then read 1,000 random streams whole and
/// close. `measure_memory`: the engine runs in this process (not a server), which is a fresh one.
pub fn reopen_and_read(engine: &dyn Engine, dir: &Path, streams: u64, measure_memory: bool) -> Result<Value> {
    let mut rng = fastrand::Rng::with_seed(SEED ^ 0x9e);
    let first = order_name(rng.u64(..streams));
    let picks: Vec<String> = (0..READS).map(|_| order_name(rng.u64(..streams))).collect();
    let baseline = report::resident_memory()?;

    let begun = Instant::now();
    let store = engine.open(dir)?;
    let mut sum = 0;
    let found = store.read_stream(&first, 1, &mut |data| sum = touch(data))?;
    let open_ms = begun.elapsed().as_secs_f64() * 1e3;
    std::hint::black_box(sum);
    let opened = report::resident_memory()?;
    if found != 1 {
        return Err(format!("W9: {first} has no first event after the reopen").into());
    }
    let index_bytes = store.index_bytes()?;

    let mut times = Vec::with_capacity(READS);
    let mut sum = 0u64;
    for stream in &picks {
        let begun = Instant::now();
        let count = store.read_stream(stream, u64::MAX, &mut |data| sum = sum.wrapping_add(touch(data)))?;
        times.push(begun.elapsed());
        if count != EVENTS_PER_STREAM {
            return Err(format!("W9 read {count} events of {stream}, expected {EVENTS_PER_STREAM}").into());
        }
    }
    std::hint::black_box(sum);
    let read_us = times.iter().sum::<Duration>().as_secs_f64() * 1e6 / READS as f64;
    let after_reads = report::resident_memory()?;
    times.sort_unstable();
    store.close()?;

    let mut result = json!({
        "open_ms": open_ms,
        "read_us": read_us,
        "read_p99_us": percentile_ms(&times, 99) * 1e3,
        "read_max_us": percentile_ms(&times, 100) * 1e3,
    });
    if let Some(bytes) = index_bytes {
        result["index_bytes"] = bytes.into();
    }
    if measure_memory {
        result["rss_bytes"] = opened.rss.into();
        result["rss_growth_bytes"] = opened.rss.saturating_sub(baseline.rss).into();
        result["rss_after_reads_bytes"] = after_reads.rss.into();
        result["rss_file_after_reads_bytes"] = after_reads.file.into();
    }
    Ok(result)
}

/// The W9 measurement of one engine at one size, from the two phases' figures: the headline is the load's
/// rate, every other figure an extra field.
pub fn measurement(engine: &str, streams: u64, loaded: &Value, reopened: &Value) -> Measurement {
    let mut measurement =
        Measurement::new(engine, "W9", loaded["load_events_per_s"].as_f64().unwrap_or(f64::NAN), "events/s")
            .with("streams", streams);
    for (key, value) in loaded.as_object().into_iter().chain(reopened.as_object()).flatten() {
        if let Some(key) = FIELDS.iter().find(|field| **field == key) {
            measurement.extra.insert(key, value.clone());
        }
    }
    measurement
}

/// Every figure a W9 measurement may carry besides its headline, with a static name for `Measurement::extra`.
const FIELDS: [&str; 17] = [
    "load_s",
    "load_append_p99_ms",
    "load_append_max_ms",
    "lone_p50_ms",
    "lone_p99_ms",
    "lone_max_ms",
    "close_ms",
    "open_ms",
    "read_us",
    "read_p99_us",
    "read_max_us",
    "index_bytes",
    "rss_bytes",
    "rss_growth_bytes",
    "rss_after_reads_bytes",
    "rss_file_after_reads_bytes",
    "written_bytes",
];
