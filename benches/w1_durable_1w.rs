//! W1 durable-1w: one thread appends one event at a time to 1,000 streams round-robin, each append durable
//! (`Durability::SyncData`, the default) before the next; reports events/s.
//!
//! Shape: one criterion iteration is a batch of 2,000 appends, and criterion runs one warm-up batch and 10
//! measured ones (see `common::fixed_iterations`), all on one store that keeps growing: the 10 measured
//! batches are W1's 20,000 appends. Only the appends are timed: making each event (its random payload and
//! id) happens between them, off the clock. Prints the median batch's events/s at the end.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use annals::ExpectedVersion;
use common::{EventSource, Timings, SEED};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const STREAMS: u64 = 1_000;

fn w1(c: &mut Criterion) {
    let batch: u64 = if common::full_run() { 2_000 } else { 10 };
    let dir = common::scratch_dir();
    let store = common::open(dir.path());
    let names: Vec<String> = (0..STREAMS).map(common::stream_name).collect();
    let mut source = EventSource::new(SEED);
    let mut next = 0u64;
    let mut timings = Timings::default();

    let mut group = c.benchmark_group("w1_durable_1w");
    common::fixed_iterations(&mut group, 10);
    group.throughput(Throughput::Elements(batch));
    group.bench_function("append_1_event_sync_data", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters * batch {
                let event = source.event();
                let stream = &names[(next % STREAMS) as usize];
                next += 1;
                let start = Instant::now();
                let result = store.append(stream, ExpectedVersion::Any, std::slice::from_ref(&event));
                elapsed += start.elapsed();
                black_box(result.expect("W1 append"));
            }
            timings.record(elapsed, iters);
            elapsed
        })
    });
    group.finish();
    store.close().expect("closing the store");
    eprintln!(
        "w1_durable_1w: median batch {:.1} events/s ({:.1} µs per durable append)",
        timings.rate(batch),
        timings.median().as_secs_f64() * 1e6 / batch as f64
    );
}

criterion_group!(benches, w1);
criterion_main!(benches);
