//! W3 bulk: one thread appends 1,000 events at a time, durable per append (`Durability::SyncData`), to
//! 10,000 streams round-robin; reports events/s and payload bytes/s (criterion's MiB/s count 256 payload
//! bytes per event), and prints the log bytes/s too (what the disk is given: 376 bytes per event for most
//! streams, framing included), the figure to hold against `fio`'s sequential write bandwidth.
//!
//! Each append spreads its 1,000 events over 1,000 consecutive streams (one `append_multi` of 1,000
//! single-event parts), which is what gives the 10,000 streams × 100 interleaved events that W4–W7 read.
//!
//! Shape: one criterion iteration is 100 appends of 1,000 events; criterion runs one warm-up iteration and
//! 10 measured ones (see `common::fixed_iterations`), all on one growing store: the 10 measured iterations
//! are W3's 1,000,000 events, segment rolls included. Building each append's events is off the clock.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{EventSource, Load, Timings, SEED};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn w3(c: &mut Criterion) {
    let load = Load::w3();
    let appends_per_iteration: u64 = if common::full_run() { 100 } else { 1 };
    let events_per_iteration = appends_per_iteration * load.events_per_append as u64;
    let dir = common::scratch_dir();
    let store = common::open(dir.path());
    let mut source = EventSource::new(SEED);
    let mut next = 0u64;
    let mut timings = Timings::default();
    let mut log_bytes = Vec::new();

    let mut group = c.benchmark_group("w3_bulk");
    common::fixed_iterations(&mut group, 10);
    group.throughput(Throughput::ElementsAndBytes {
        elements: events_per_iteration,
        bytes: events_per_iteration * common::PAYLOAD_BYTES as u64,
    });
    group.bench_function("append_1000_events_sync_data", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let first = next;
            for _ in 0..iters * appends_per_iteration {
                let parts = common::bulk_parts(&mut source, &mut next, load.streams, load.events_per_append);
                let start = Instant::now();
                let result = store.append_multi(&parts);
                elapsed += start.elapsed();
                black_box(result.expect("W3 append"));
            }
            let bytes: u64 =
                (first..next).map(|n| common::frame_bytes(common::stream_name(n % load.streams).len())).sum();
            log_bytes.push(bytes / iters);
            timings.record(elapsed, iters);
            elapsed
        })
    });
    group.finish();
    store.close().expect("closing the store");
    let median = timings.median().as_secs_f64();
    eprintln!(
        "w3_bulk: median iteration {:.0} events/s, {:.1} MB/s of payload, {:.1} MB/s of log bytes",
        events_per_iteration as f64 / median,
        (events_per_iteration * common::PAYLOAD_BYTES as u64) as f64 / median / 1e6,
        log_bytes.last().copied().unwrap_or_default() as f64 / median / 1e6
    );
}

criterion_group!(benches, w3);
criterion_main!(benches);
