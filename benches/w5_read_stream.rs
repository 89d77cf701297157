//! W5 read-stream: after a full W3 load (10,000 streams × 100 events, interleaved; built once with durable
//! appends, outside the measurement), read random whole streams in offset order with `read_stream(s, 0)`,
//! touching every payload byte (xor); reports events/s, and prints µs per stream (criterion's time is per
//! iteration of 200 streams).
//!
//! Shape: one criterion iteration reads 200 streams picked by a seeded generator (the picking is off the
//! clock); criterion runs one warm-up iteration and 10 measured ones (see `common::fixed_iterations`): the
//! 10 measured iterations are W5's 2,000 random streams. The log was just written, so its pages are in the
//! page cache.

mod common;

use std::hint::black_box;
use std::time::Instant;

use common::{Load, Timings, SEED};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn w5(c: &mut Criterion) {
    let load = Load::w3();
    let per_stream = load.events / load.streams;
    let streams_per_iteration: u64 = if common::full_run() { 200 } else { 10 };
    let dir = common::scratch_dir();
    let store = common::open(dir.path());
    let started = Instant::now();
    common::load(&store, load);
    eprintln!("w5_read_stream: W3 load of {} events built in {:.1} s", load.events, started.elapsed().as_secs_f64());
    let names: Vec<String> = (0..load.streams).map(common::stream_name).collect();
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut timings = Timings::default();

    let mut group = c.benchmark_group("w5_read_stream");
    common::fixed_iterations(&mut group, 10);
    group.throughput(Throughput::Elements(streams_per_iteration * per_stream));
    group.bench_function("read_200_whole_streams_touch_payload", |b| {
        b.iter_custom(|iters| {
            let picks: Vec<&str> =
                (0..iters * streams_per_iteration).map(|_| names[rng.usize(..names.len())].as_str()).collect();
            let start = Instant::now();
            for stream in picks {
                let mut acc = 0u8;
                let mut count = 0u64;
                for event in store.read_stream(stream, 0).expect("read_stream") {
                    acc ^= common::touch(event.expect("W5 read").data());
                    count += 1;
                }
                assert_eq!(count, per_stream);
                black_box(acc);
            }
            let elapsed = start.elapsed();
            timings.record(elapsed, iters);
            elapsed
        })
    });
    group.finish();
    store.close().expect("closing the store");
    eprintln!(
        "w5_read_stream: median iteration {:.1} µs per stream, {:.0} events/s",
        timings.median().as_secs_f64() * 1e6 / streams_per_iteration as f64,
        timings.rate(streams_per_iteration * per_stream)
    );
}

criterion_group!(benches, w5);
criterion_main!(benches);
