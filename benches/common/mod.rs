//! What every bench shares: the standard event of `WORKLOADS.md`, the W3 bulk load, scratch directories, and
//! the switch between a full run (`cargo bench`) and the quick check `cargo test --all-targets` makes of each
//! bench (criterion's test mode runs every routine once; the loads shrink so CI stays fast).
//!
//! Every random byte comes from a `fastrand::Rng` with a fixed seed, so two runs append the same events.
//!
//! W8 (snapshot-load) has its own self-contained bench, `w8_snapshot_load.rs`, on the typed layer. M1
//! (resident memory per stream) is not a timing and has no criterion bench.

#![allow(dead_code, reason = "each bench target compiles this module and uses only part of it")]

use std::path::Path;
use std::time::Duration;

use annals::{EventData, ExpectedVersion, Store, StreamAppend};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, SamplingMode};
use tempfile::TempDir;
use uuid::Uuid;

/// The seed of every generator; a bench that needs several streams of randomness derives seeds from it.
pub const SEED: u64 = 0x616e_6e61_6c73; // "annals"
/// Event type of every event.
pub const EVENT_TYPE: &str = "MoneyDeposited";
/// Payload bytes of every event.
pub const PAYLOAD_BYTES: usize = 256;
/// Bytes one standard event takes in the log: 88-byte header, the stream name, the event type and the
/// payload, padded to 8 bytes (376 for `account-100` to `account-9999`). For reporting only.
pub fn frame_bytes(stream_name_len: usize) -> u64 {
    let len = 88 + stream_name_len + EVENT_TYPE.len() + PAYLOAD_BYTES;
    len.next_multiple_of(8) as u64
}

/// The name of stream `n`.
pub fn stream_name(n: u64) -> String {
    format!("account-{n}")
}

/// Whether this is a real benchmark run (`cargo bench`, which passes `--bench`) rather than criterion's test
/// mode (`cargo test --benches`, or `cargo bench -- --test`), which runs each routine once to see it works.
pub fn full_run() -> bool {
    let mut bench = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--bench" => bench = true,
            "--test" => return false,
            _ => {}
        }
    }
    bench
}

/// Makes standard events: a fresh 256-byte incompressible payload and a fresh random 16-byte id each.
pub struct EventSource {
    rng: fastrand::Rng,
}

impl EventSource {
    pub fn new(seed: u64) -> Self {
        EventSource { rng: fastrand::Rng::with_seed(seed) }
    }

    pub fn event(&mut self) -> EventData {
        self.event_of_type(EVENT_TYPE)
    }

    /// The same event with another type (W10 mixes types so that a type filter has something to skip).
    pub fn event_of_type(&mut self, event_type: &str) -> EventData {
        let mut payload = vec![0u8; PAYLOAD_BYTES];
        self.rng.fill(&mut payload);
        EventData::new(event_type, payload).with_id(Uuid::from_u128(self.rng.u128(..)))
    }
}

/// A scratch directory under the system temporary directory (the same disk as `/work` on the bench
/// machines; check with `df`). Removed when dropped.
pub fn scratch_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("annals-bench-")
        .tempdir_in(std::env::temp_dir())
        .expect("creating a scratch directory for the store")
}

/// The size of a W3 load: `events` events over `streams` streams, round-robin, in appends of
/// `events_per_append` events.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub streams: u64,
    pub events: u64,
    pub events_per_append: usize,
}

impl Load {
    /// W3 as `WORKLOADS.md` has it: 1,000,000 events, 10,000 streams × 100 events, interleaved, 1,000 events
    /// per append. In test mode: 10,000 events over 1,000 streams.
    pub fn w3() -> Load {
        if full_run() {
            Load { streams: 10_000, events: 1_000_000, events_per_append: 1_000 }
        } else {
            Load { streams: 1_000, events: 10_000, events_per_append: 1_000 }
        }
    }

    /// Payload bytes of the whole load.
    pub fn payload_bytes(&self) -> u64 {
        self.events * PAYLOAD_BYTES as u64
    }

    /// Log bytes of the whole load (frames with padding; segment headers and slack excluded).
    pub fn log_bytes(&self) -> u64 {
        (0..self.streams).map(|n| frame_bytes(stream_name(n).len()) * (self.events / self.streams)).sum()
    }
}

/// Builds one W3 append: `count` single-event parts for consecutive streams round-robin from event `*next`.
///
/// W3 spreads each append of 1,000 events over 1,000 streams (so that 10,000 streams end up with 100 events
/// each, interleaved), which makes it an atomic multi-stream append.
pub fn bulk_parts(source: &mut EventSource, next: &mut u64, streams: u64, count: usize) -> Vec<StreamAppend> {
    let parts = (0..count as u64)
        .map(|i| StreamAppend {
            stream: stream_name((*next + i) % streams),
            expected: ExpectedVersion::Any,
            events: vec![source.event()],
        })
        .collect();
    *next += count as u64;
    parts
}

/// Opens a store in `dir` with the default options (durability `SyncData`: every append is durable).
pub fn open(dir: &Path) -> Store {
    Store::open_with(dir, annals::Options::default()).expect("opening the store")
}

/// Runs a W3 load into `store` with durable appends, as the W3 bench measures it.
pub fn load(store: &Store, load: Load) {
    let mut source = EventSource::new(SEED);
    let mut next = 0;
    while next < load.events {
        let count = load.events_per_append.min((load.events - next) as usize);
        let parts = bulk_parts(&mut source, &mut next, load.streams, count);
        store.append_multi(&parts).expect("W3 append");
    }
    assert_eq!(store.head_position(), Some(load.events - 1));
}

/// Touches every byte of a payload; the caller `black_box`es the result.
pub fn touch(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |acc, &byte| acc ^ byte)
}

/// Makes criterion run exactly `samples` measured iterations, one per sample, after a single warm-up
/// iteration: flat sampling, and warm-up and measurement times so short that criterion never plans more than
/// one iteration per sample. Each iteration of these benches is a sizeable batch (the batches of the 10
/// samples add up to the workload), so the total work, and the bench's run time, is fixed rather than
/// guessed from one warm-up iteration on a noisy machine. Criterion warns that it is "unable to complete"
/// the samples in the tiny target time: that is this design, not a problem.
pub fn fixed_iterations(group: &mut BenchmarkGroup<'_, WallTime>, samples: usize) {
    group
        .sample_size(samples)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_nanos(1))
        .measurement_time(Duration::from_nanos(1));
}

/// The time of every iteration a bench ran, for figures criterion does not print.
#[derive(Debug, Default)]
pub struct Timings(Vec<Duration>);

impl Timings {
    /// Records one call of the routine: `elapsed` for `iters` iterations.
    pub fn record(&mut self, elapsed: Duration, iters: u64) {
        self.0.push(elapsed / iters.max(1) as u32);
    }

    /// The median iteration, leaving out the first (criterion's warm-up) when there are others.
    pub fn median(&self) -> Duration {
        let mut measured: Vec<Duration> = self.0.iter().skip(usize::from(self.0.len() > 1)).copied().collect();
        measured.sort_unstable();
        measured.get(measured.len() / 2).copied().unwrap_or_default()
    }

    /// `count` per median iteration, per second.
    pub fn rate(&self, count: u64) -> f64 {
        count as f64 / self.median().as_secs_f64()
    }
}
