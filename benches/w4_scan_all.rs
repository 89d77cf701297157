//! W4 scan-all: after a full W3 load (1,000,000 events, built once with durable appends, outside the
//! measurement), read every event in global order with `read_all(0)`, touching every payload byte (xor);
//! reports events/s and payload bytes/s (criterion's MiB/s count 256 payload bytes per event).
//!
//! One criterion iteration is one whole scan; criterion runs one warm-up scan and 10 measured ones (see
//! `common::fixed_iterations`). The log was just written, so its pages are in the page cache:
//! this measures the engine, not the disk. `memory_read_ceiling` runs the same xor over the same number of
//! payload bytes in one plain in-memory buffer: W4's ceiling, memory read bandwidth, in the same run.
//! `scan_touch_payload` does W4 with `Store::scan`, the borrowed visitor (no reference counts, no
//! `RecordedEvent`), over the same store in the same run.

mod common;

use std::hint::black_box;
use std::ops::ControlFlow;
use std::time::Instant;

use common::{Load, Timings, PAYLOAD_BYTES};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn w4(c: &mut Criterion) {
    let load = Load::w3();
    let dir = common::scratch_dir();
    let store = common::open(dir.path());
    let started = Instant::now();
    common::load(&store, load);
    eprintln!("w4_scan_all: W3 load of {} events built in {:.1} s", load.events, started.elapsed().as_secs_f64());

    let (mut scan, mut visit, mut ceiling) = (Timings::default(), Timings::default(), Timings::default());
    let mut group = c.benchmark_group("w4_scan_all");
    common::fixed_iterations(&mut group, 10);
    group.throughput(Throughput::ElementsAndBytes { elements: load.events, bytes: load.payload_bytes() });
    group.bench_function("read_all_touch_payload", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let mut acc = 0u8;
                let mut count = 0u64;
                for event in store.read_all(0).expect("read_all") {
                    acc ^= common::touch(event.expect("W4 read").data());
                    count += 1;
                }
                assert_eq!(count, load.events);
                black_box(acc);
            }
            let elapsed = start.elapsed();
            scan.record(elapsed, iters);
            elapsed
        })
    });

    group.bench_function("scan_touch_payload", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let mut acc = 0u8;
                let mut count = 0u64;
                let end = store
                    .scan(0, |event| {
                        acc ^= common::touch(event.data());
                        count += 1;
                        ControlFlow::Continue(())
                    })
                    .expect("W4 scan");
                assert_eq!((count, end), (load.events, load.events));
                black_box(acc);
            }
            let elapsed = start.elapsed();
            visit.record(elapsed, iters);
            elapsed
        })
    });

    let buffer: Vec<u8> = {
        let mut rng = fastrand::Rng::with_seed(common::SEED);
        let mut buffer = vec![0u8; load.payload_bytes() as usize];
        rng.fill(&mut buffer);
        buffer
    };
    group.bench_function("memory_read_ceiling", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let mut acc = 0u8;
                for payload in black_box(&buffer).chunks_exact(PAYLOAD_BYTES) {
                    acc ^= common::touch(payload);
                }
                black_box(acc);
            }
            let elapsed = start.elapsed();
            ceiling.record(elapsed, iters);
            elapsed
        })
    });
    group.finish();
    store.close().expect("closing the store");
    eprintln!(
        "w4_scan_all: median read_all {:.0} events/s, {:.1} MB/s of payload ({:.1} MB/s of log bytes); \
         median scan (visitor) {:.0} events/s, {:.1} MB/s of payload ({:.2}x read_all); memory read ceiling \
         {:.1} MB/s",
        scan.rate(load.events),
        scan.rate(load.payload_bytes()) / 1e6,
        scan.rate(load.log_bytes()) / 1e6,
        visit.rate(load.events),
        visit.rate(load.payload_bytes()) / 1e6,
        visit.rate(load.events) / scan.rate(load.events),
        ceiling.rate(load.payload_bytes()) / 1e6
    );
}

criterion_group!(benches, w4);
criterion_main!(benches);
