//! W6 reopen: after a full W3 load (built once with durable appends) and a clean `close`, open the store
//! and read the first event of one stream (picked by a seeded generator), touching its payload; reports the
//! time of open + first read.
//!
//! One criterion iteration is one open and first read; closing the store again (which writes an index table
//! for what the open replayed, if anything) happens off the clock, so every open starts from a cleanly closed store. Criterion runs one
//! warm-up open and 50 measured ones (see `common::fixed_iterations`); the median is printed in ms. The files were just
//! written, so they are in the page cache: this is a warm reopen (dropping the page cache would disturb
//! everything else running on the machine).

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{Load, Timings, SEED};
use criterion::{criterion_group, criterion_main, Criterion};

fn w6(c: &mut Criterion) {
    let load = Load::w3();
    let dir = common::scratch_dir();
    let store = common::open(dir.path());
    common::load(&store, load);
    store.close().expect("closing the store");
    let names: Vec<String> = (0..load.streams).map(common::stream_name).collect();
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut timings = Timings::default();

    let mut group = c.benchmark_group("w6_reopen");
    common::fixed_iterations(&mut group, 50);
    group.bench_function("open_and_read_first_event", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let stream = names[rng.usize(..names.len())].as_str();
                let start = Instant::now();
                let store = common::open(dir.path());
                let first = store.read_stream(stream, 0).expect("read_stream").next().expect("a first event");
                black_box(common::touch(first.expect("W6 read").data()));
                elapsed += start.elapsed();
                assert_eq!(store.recovery_report().records_replayed, 0, "a clean close leaves the whole index");
                store.close().expect("closing the store");
            }
            timings.record(elapsed, iters);
            elapsed
        })
    });
    group.finish();
    eprintln!("w6_reopen: median open + first read {:.2} ms", timings.median().as_secs_f64() * 1e3);
}

criterion_group!(benches, w6);
criterion_main!(benches);
