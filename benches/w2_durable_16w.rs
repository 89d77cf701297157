//! W2 durable-16w: 16 threads append one event at a time, each durable (`Durability::SyncData`) before the
//! thread's next, each thread to its own streams; reports total events/s, and prints the p50/p99 latency of
//! one append (criterion does not compute percentiles).
//!
//! Streams: W1's 1,000 streams split between the threads, thread `t` owning `account-{n}` for `n % 16 == t`
//! (62 or 63 streams each), round-robin.
//!
//! Shape: one criterion iteration is 200 appends per thread (3,200 events in all), started together behind
//! a barrier and timed until the last thread is done; criterion runs one warm-up iteration and 10 measured
//! ones (see `common::fixed_iterations`), all on one growing store: the 10 measured iterations are W2's
//! 16 × 2,000 appends. Thread start and event making are off the clock. The latency percentiles cover the
//! measured iterations; the median iteration's events/s is printed too.

mod common;

use std::hint::black_box;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use annals::{EventData, ExpectedVersion};
use common::{EventSource, Timings, SEED};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const THREADS: u64 = 16;
const STREAMS: u64 = 1_000;

fn w2(c: &mut Criterion) {
    let per_thread: u64 = if common::full_run() { 200 } else { 5 };
    let dir = common::scratch_dir();
    let store = common::open(dir.path());
    let latencies = Mutex::new(Vec::<Duration>::new());
    let mut round = 0u64;
    let mut timings = Timings::default();

    let mut group = c.benchmark_group("w2_durable_16w");
    common::fixed_iterations(&mut group, 10);
    group.throughput(Throughput::Elements(THREADS * per_thread));
    group.bench_function("append_1_event_sync_data_16_threads", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                let barrier = Barrier::new(THREADS as usize + 1);
                let start = std::thread::scope(|scope| {
                    for thread in 0..THREADS {
                        let (store, barrier, latencies) = (&store, &barrier, &latencies);
                        let seed = SEED ^ (round << 8) ^ thread;
                        scope.spawn(move || {
                            let names: Vec<String> =
                                (thread..STREAMS).step_by(THREADS as usize).map(common::stream_name).collect();
                            let mut source = EventSource::new(seed);
                            let events: Vec<EventData> = (0..per_thread).map(|_| source.event()).collect();
                            let mut mine = Vec::with_capacity(events.len());
                            barrier.wait();
                            for (i, event) in events.iter().enumerate() {
                                // Continue round-robin across iterations.
                                let stream = &names[(round * per_thread + i as u64) as usize % names.len()];
                                let start = Instant::now();
                                let result = store.append(stream, ExpectedVersion::Any, std::slice::from_ref(event));
                                mine.push(start.elapsed());
                                black_box(result.expect("W2 append"));
                            }
                            latencies.lock().expect("latency list").extend(mine);
                        });
                    }
                    barrier.wait();
                    Instant::now()
                });
                // The scope returns when it has joined every thread: time from the barrier's release to here.
                elapsed += start.elapsed();
                if round == 1 {
                    // The warm-up iteration: its latencies are left out of the percentiles.
                    latencies.lock().expect("latency list").clear();
                }
            }
            timings.record(elapsed, iters);
            elapsed
        })
    });
    group.finish();
    store.close().expect("closing the store");

    let mut latencies = latencies.into_inner().expect("latency list");
    latencies.sort_unstable();
    eprintln!("w2_durable_16w: median iteration {:.1} events/s", timings.rate(THREADS * per_thread));
    if !latencies.is_empty() {
        let at = |percent: usize| latencies[(latencies.len() * percent / 100).min(latencies.len() - 1)];
        eprintln!(
            "w2_durable_16w: append latency over {} appends: p50 {:.1} µs, p99 {:.1} µs",
            latencies.len(),
            at(50).as_secs_f64() * 1e6,
            at(99).as_secs_f64() * 1e6
        );
    }
}

criterion_group!(benches, w2);
criterion_main!(benches);
