//! The workloads of `WORKLOADS.md`, written once against [`Store`] so that every engine runs the same code.
//!
//! Event making (random payloads and ids, stream names) is off the clock; everything an application would do
//! to append or read through the engine's API is on it, including building the engine's own event values.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Barrier;
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::engines::{Engine, Store};
use crate::event::{stream_name, touch, EventSource, Pending, PAYLOAD_BYTES, SEED};
use crate::Result;

/// Sizes of every workload at a given `--scale` (event counts scale; thread counts and events per stream
/// in W3 do not).
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub w1_appends: u64,
    pub w1_streams: u64,
    pub w2_threads: u64,
    pub w2_appends_per_thread: u64,
    pub w3_streams: u64,
    pub w3_events_per_stream: u64,
    pub w3_events_per_append: u64,
    pub w5_reads: u64,
    pub m1_streams: u64,
    pub w8_events: u64,
}

impl Sizes {
    pub fn new(scale: f64) -> Sizes {
        let scaled = |count: u64| ((count as f64 * scale).round() as u64).max(1);
        let w3_streams = scaled(10_000).max(2);
        Sizes {
            w1_appends: scaled(20_000),
            w1_streams: 1_000,
            w2_threads: 16,
            w2_appends_per_thread: scaled(2_000),
            w3_streams,
            w3_events_per_stream: 100,
            w3_events_per_append: 1_000.min(w3_streams),
            w5_reads: scaled(2_000),
            m1_streams: scaled(1_000_000),
            w8_events: scaled(1_000_000),
        }
    }

    pub fn w3_events(&self) -> u64 {
        self.w3_streams * self.w3_events_per_stream
    }
}

/// One result: an engine on a workload. `value` is the headline number; `extra` holds the others
/// (`mb_per_s`, `p50_us`, …).
#[derive(Debug, Clone)]
pub struct Measurement {
    pub engine: String,
    pub workload: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub extra: BTreeMap<&'static str, Value>,
}

impl Measurement {
    pub fn new(engine: &str, workload: &'static str, value: f64, unit: &'static str) -> Self {
        Measurement { engine: engine.to_owned(), workload, value, unit, extra: BTreeMap::new() }
    }

    pub fn with(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        self.extra.insert(key, value.into());
        self
    }

    pub fn extra_f64(&self, key: &str) -> Option<f64> {
        self.extra.get(key).and_then(Value::as_f64)
    }

    pub fn to_json(&self) -> Value {
        let mut object = json!({
            "engine": self.engine,
            "workload": self.workload,
            "value": self.value,
            "unit": self.unit,
        });
        for (key, value) in &self.extra {
            object[*key] = value.clone();
        }
        object
    }
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub fn percentile(sorted: &[Duration], percent: usize) -> f64 {
    sorted[(sorted.len() * percent / 100).min(sorted.len() - 1)].as_secs_f64() * 1e6
}

/// How W1 and W2 share the machine between engines: each engine's full workload is cut into this many
/// slices, and the engines take turns slice by slice, each on its own open store. The machine is shared and
/// noisy; taking turns every few seconds gives every engine the same mix of quiet and busy moments, where
/// running one engine after the other would hand one a quiet minute and the next a busy one.
pub const W1_SLICES: usize = 10;
pub const W2_SLICES: usize = 4;

/// What one engine's slices of a workload run in turns (W1, W2, W10) add up to, and the measurement they make.
pub trait Tally: Default {
    fn measurement(self, engine: &str, workload: &'static str) -> Measurement;
}

/// What one engine's slices of W1 or W2 add up to.
#[derive(Debug, Default)]
pub struct Durable {
    pub elapsed: Duration,
    pub events: u64,
    pub latencies: Vec<Duration>,
    pub slice_rates: Vec<f64>,
}

impl Durable {
    fn add(&mut self, elapsed: Duration, latencies: Vec<Duration>) {
        self.elapsed += elapsed;
        self.events += latencies.len() as u64;
        self.slice_rates.push(latencies.len() as f64 / elapsed.as_secs_f64());
        self.latencies.extend(latencies);
    }
}

impl Tally for Durable {
    /// The W1 or W2 measurement: events over the time spent in the slices, latency percentiles over every
    /// append, and each slice's rate.
    fn measurement(mut self, engine: &str, workload: &'static str) -> Measurement {
        self.latencies.sort_unstable();
        let rates: Vec<f64> = self.slice_rates.iter().map(|rate| rate.round()).collect();
        let mut measurement =
            Measurement::new(engine, workload, self.events as f64 / self.elapsed.as_secs_f64(), "events/s")
                .with("events", self.events)
                .with("slice_rates", rates)
                .with("median_slice_rate", median(self.slice_rates));
        if workload == "W2" {
            measurement = measurement
                .with("p50_us", percentile(&self.latencies, 50))
                .with("p99_us", percentile(&self.latencies, 99));
        }
        measurement
    }
}

/// W1's events: single-event appends to W1's streams round-robin. The same for every engine.
pub fn w1_events(sizes: &Sizes) -> Vec<Pending> {
    let mut source = EventSource::new(SEED ^ 1);
    (0..sizes.w1_appends).map(|i| source.pending(i % sizes.w1_streams)).collect()
}

/// W1, one slice: one thread appends `events` one at a time, each durable before the next.
pub fn w1_slice(store: &dyn Store, events: &[Pending], total: &mut Durable) -> Result<()> {
    let mut writer = store.writer()?;
    let mut latencies = Vec::with_capacity(events.len());
    let start = Instant::now();
    for pending in events {
        let begun = Instant::now();
        writer.append(std::slice::from_ref(pending))?;
        latencies.push(begun.elapsed());
    }
    total.add(start.elapsed(), latencies);
    Ok(())
}

/// W2's events, per thread: W1's 1,000 streams split between the threads (thread `t` owns `account-{n}` for
/// `n % 16 == t`, round-robin, as the library's bench does).
pub fn w2_events(sizes: &Sizes) -> Vec<Vec<Pending>> {
    let threads = sizes.w2_threads;
    (0..threads)
        .map(|thread| {
            let streams: Vec<u64> = (thread..sizes.w1_streams).step_by(threads as usize).collect();
            let mut source = EventSource::new(SEED ^ (2 << 8) ^ thread);
            (0..sizes.w2_appends_per_thread).map(|i| source.pending(streams[i as usize % streams.len()])).collect()
        })
        .collect()
}

/// One durable append of W2's and W10's writers: its event's id, and when the call began and returned.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub id: u128,
    pub begun: Instant,
    pub returned: Instant,
}

/// What a writer thread hands back: its appends, in order.
pub type WriterThread<'scope> = ScopedJoinHandle<'scope, Result<Vec<Appended>>>;

/// Spawns one thread in `scope` per list in `per_thread`, each appending its events one at a time, durably,
/// on a writer of its own (a connection for SQLite and PostgreSQL) made before it waits at `barrier`. The
/// caller (and any other thread it made) waits at `barrier` too; the writers start when all have arrived.
pub fn spawn_writers<'scope>(
    scope: &'scope Scope<'scope, '_>,
    store: &'scope dyn Store,
    per_thread: &[&'scope [Pending]],
    barrier: &'scope Barrier,
) -> Vec<WriterThread<'scope>> {
    per_thread
        .iter()
        .map(|&events| {
            scope.spawn(move || -> Result<Vec<Appended>> {
                let writer = store.writer();
                // Every thread reaches the barrier, even one whose connection failed, or the others would wait
                // forever.
                barrier.wait();
                let mut writer = writer?;
                let mut appended = Vec::with_capacity(events.len());
                for pending in events {
                    let begun = Instant::now();
                    writer.append(std::slice::from_ref(pending))?;
                    let id = u128::from_be_bytes(pending.event.id);
                    appended.push(Appended { id, begun, returned: Instant::now() });
                }
                Ok(appended)
            })
        })
        .collect()
}

/// Waits for the writers of [`spawn_writers`]; returns every append, and when the last one returned (`start`
/// if there was none).
pub fn join_writers(writers: Vec<WriterThread<'_>>, start: Instant) -> Result<(Vec<Appended>, Instant)> {
    let joined: Vec<_> = writers.into_iter().map(|writer| writer.join().expect("a writer thread panicked")).collect();
    let mut every = Vec::new();
    for appended in joined {
        every.extend(appended?);
    }
    let end = every.iter().map(|appended| appended.returned).max().unwrap_or(start);
    Ok((every, end))
}

/// W2, one slice: one thread per list in `per_thread`, each appending its events one at a time, durably.
/// Connections are made before a barrier; the time runs from the barrier to the end of the last thread's last
/// append.
pub fn w2_slice(store: &dyn Store, per_thread: &[&[Pending]], total: &mut Durable) -> Result<()> {
    let barrier = Barrier::new(per_thread.len() + 1);
    let (start, joined) = std::thread::scope(|scope| {
        let writers = spawn_writers(scope, store, per_thread, &barrier);
        barrier.wait();
        let start = Instant::now();
        (start, join_writers(writers, start))
    });
    let (appended, end) = joined?;
    total.add(end - start, appended.iter().map(|appended| appended.returned - appended.begun).collect());
    Ok(())
}

/// A bulk load: `streams × events_per_stream` events, in appends of `events_per_append` events for
/// consecutive streams round-robin (so streams interleave), each append one atomic durable batch. Returns the
/// seconds spent in appends and the number of events.
pub fn bulk_load(
    store: &dyn Store,
    streams: u64,
    events_per_stream: u64,
    events_per_append: u64,
    seed: u64,
) -> Result<(f64, u64)> {
    let total = streams * events_per_stream;
    let mut source = EventSource::new(seed);
    let mut writer = store.writer()?;
    let mut next = 0;
    let mut spent = Duration::ZERO;
    while next < total {
        let count = events_per_append.min(total - next);
        let batch: Vec<Pending> = (next..next + count).map(|i| source.pending(i % streams)).collect();
        let begun = Instant::now();
        writer.append(&batch)?;
        spent += begun.elapsed();
        next += count;
    }
    Ok((spent.as_secs_f64(), total))
}

/// W3: the bulk load of `WORKLOADS.md` (10,000 streams × 100 events, appends of 1,000 events).
pub fn w3(engine: &str, store: &dyn Store, sizes: &Sizes) -> Result<Measurement> {
    let (seconds, events) =
        bulk_load(store, sizes.w3_streams, sizes.w3_events_per_stream, sizes.w3_events_per_append, SEED ^ 3)?;
    Ok(Measurement::new(engine, "W3", events as f64 / seconds, "events/s")
        .with("mb_per_s", (events * PAYLOAD_BYTES as u64) as f64 / seconds / 1e6)
        .with("events", events))
}

/// The median events/s of three timed passes over all of W3's log (W4, W10's catch-up). A pass adds every
/// payload byte into its argument and returns how many events it read, which must be every one W3 wrote.
pub fn median_of_three_passes(
    workload: &str,
    sizes: &Sizes,
    mut pass: impl FnMut(&mut u64) -> Result<u64>,
) -> Result<f64> {
    let mut rates = Vec::new();
    for _ in 0..3 {
        let mut sum = 0u64;
        let start = Instant::now();
        let count = pass(&mut sum)?;
        let elapsed = start.elapsed().as_secs_f64();
        std::hint::black_box(sum);
        if count != sizes.w3_events() {
            return Err(format!("{workload} read {count} events, W3 wrote {}", sizes.w3_events()).into());
        }
        rates.push(count as f64 / elapsed);
    }
    Ok(median(rates))
}

/// W4: every event in global order, every payload byte read. Median of three passes.
pub fn w4(engine: &str, store: &dyn Store, sizes: &Sizes) -> Result<Measurement> {
    let rate =
        median_of_three_passes("W4", sizes, |sum| store.scan_all(&mut |data| *sum = sum.wrapping_add(touch(data))))?;
    Ok(Measurement::new(engine, "W4", rate, "events/s").with("mb_per_s", rate * PAYLOAD_BYTES as f64 / 1e6))
}

/// W5: whole streams, chosen at random (the same choice for every engine), in offset order.
pub fn w5(engine: &str, store: &dyn Store, sizes: &Sizes) -> Result<Measurement> {
    let mut rng = fastrand::Rng::with_seed(SEED ^ 5);
    let picks: Vec<String> = (0..sizes.w5_reads).map(|_| stream_name(rng.u64(0..sizes.w3_streams))).collect();
    let mut sum = 0u64;
    let mut times = Vec::with_capacity(picks.len());
    let mut events = 0;
    let start = Instant::now();
    for stream in &picks {
        let begun = Instant::now();
        let count = store.read_stream(stream, u64::MAX, &mut |data| sum = sum.wrapping_add(touch(data)))?;
        times.push(begun.elapsed());
        if count != sizes.w3_events_per_stream {
            return Err(format!("W5 read {count} events of {stream}, expected {}", sizes.w3_events_per_stream).into());
        }
        events += count;
    }
    let elapsed = start.elapsed().as_secs_f64();
    std::hint::black_box(sum);
    times.sort_unstable();
    Ok(Measurement::new(engine, "W5", elapsed * 1e6 / picks.len() as f64, "µs/stream")
        .with("events_per_s", events as f64 / elapsed)
        .with("p50_us", percentile(&times, 50))
        .with("streams", picks.len()))
}

/// The stream whose first event W6 and W7 read after opening.
pub fn probe_stream(sizes: &Sizes) -> String {
    stream_name(sizes.w3_streams / 2)
}

/// Opens the store in `dir` and reads the first event of one stream: what W6 and W7 time.
pub fn open_and_probe(engine: &dyn Engine, dir: &Path, sizes: &Sizes) -> Result<(Box<dyn Store>, Duration)> {
    let start = Instant::now();
    let store = engine.open(dir)?;
    let mut sum = 0;
    let found = store.read_stream(&probe_stream(sizes), 1, &mut |data| sum = touch(data))?;
    let elapsed = start.elapsed();
    std::hint::black_box(sum);
    if found != 1 {
        store.close()?;
        return Err("the probed stream's first event is missing after open".into());
    }
    Ok((store, elapsed))
}

/// W6: open after a clean close, and read one stream's first event. Median of five opens.
pub fn w6(engine: &dyn Engine, dir: &Path, sizes: &Sizes) -> Result<Measurement> {
    let mut times = Vec::new();
    for _ in 0..5 {
        let (store, elapsed) = open_and_probe(engine, dir, sizes)?;
        times.push(elapsed.as_secs_f64() * 1e3);
        store.close()?;
    }
    Ok(Measurement::new(engine.name(), "W6", median(times.clone()), "ms").with("runs_ms", times))
}
