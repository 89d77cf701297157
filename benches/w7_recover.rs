//! W7 recover: after a full W3 load and a process killed without close, open the store (recovery
//! included); reports the time of the open.
//!
//! How the kill is made: this bench binary re-executes itself as a child process (selected by an
//! environment variable), which opens a store, runs the W3 load with durable appends, says so on its stdout,
//! and is then killed with SIGKILL: no close, no index table for the last segment, the writer thread stopped wherever it was
//! (idle, since the last append had returned). That directory is the template.
//!
//! One criterion iteration copies the template to a fresh directory (off the clock: the same files, in the
//! page cache as they would be after a crash of the process, not of the machine), opens the copy (timed),
//! then closes and deletes it (off the clock). So every open recovers the same killed state: it loads the
//! index tables written for the sealed segments and replays the records of the last one (the report is
//! printed). Criterion runs one warm-up iteration and 10 measured ones (see `common::fixed_iterations`); the
//! median is printed in ms.

mod common;

use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Load, Timings};
use criterion::{criterion_group, Criterion};

/// Set in the child: the directory to load and the load's size, as `DIR`, `STREAMS`, `EVENTS`.
const CHILD_DIR: &str = "ANNALS_BENCH_W7_CHILD_DIR";
const CHILD_STREAMS: &str = "ANNALS_BENCH_W7_CHILD_STREAMS";
const CHILD_EVENTS: &str = "ANNALS_BENCH_W7_CHILD_EVENTS";
const LOADED: &str = "loaded";

/// The child's body: load, report, and wait to be killed.
fn child(dir: &Path) -> ! {
    let number = |name: &str| -> u64 {
        std::env::var(name).ok().and_then(|value| value.parse().ok()).expect("the parent sets the load size")
    };
    let load = Load { streams: number(CHILD_STREAMS), events: number(CHILD_EVENTS), events_per_append: 1_000 };
    let store = common::open(dir);
    common::load(&store, load);
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{LOADED}").expect("telling the parent");
    stdout.flush().expect("telling the parent");
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Runs the W3 load in a child process and kills it with SIGKILL once the last append has returned.
fn load_and_kill(dir: &Path, load: Load) {
    let mut child = Command::new(std::env::current_exe().expect("the bench binary's path"))
        .env(CHILD_DIR, dir)
        .env(CHILD_STREAMS, load.streams.to_string())
        .env(CHILD_EVENTS, load.events.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the loading child");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line).expect("reading the child");
    assert_eq!(line.trim(), LOADED, "the loading child failed");
    child.kill().expect("killing the child"); // SIGKILL on Unix
    let status = child.wait().expect("reaping the child");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "the child died of SIGKILL, not otherwise");
}

/// Copies the template, its `index/` directory included.
fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("listing the template") {
        let entry = entry.expect("listing the template");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("listing the template").is_dir() {
            std::fs::create_dir(&target).expect("copying the template");
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copying the template");
        }
    }
}

fn w7(c: &mut Criterion) {
    let load = Load::w3();
    let template = common::scratch_dir();
    let started = Instant::now();
    load_and_kill(template.path(), load);
    eprintln!(
        "w7_recover: W3 load of {} events built and killed in {:.1} s",
        load.events,
        started.elapsed().as_secs_f64()
    );
    let mut report = None;
    let mut timings = Timings::default();

    let mut group = c.benchmark_group("w7_recover");
    common::fixed_iterations(&mut group, 10);
    group.bench_function("open_after_kill", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let dir = common::scratch_dir();
                copy_dir(template.path(), dir.path());
                let start = Instant::now();
                let store = common::open(dir.path());
                elapsed += start.elapsed();
                assert_eq!(store.head_position(), Some(load.events - 1), "recovery keeps every durable event");
                report = Some(black_box(store.recovery_report().clone()));
                store.close().expect("closing the recovered store");
            }
            timings.record(elapsed, iters);
            elapsed
        })
    });
    group.finish();
    eprintln!("w7_recover: median open after kill {:.2} ms", timings.median().as_secs_f64() * 1e3);
    if let Some(report) = report {
        eprintln!("w7_recover: each open recovered with {report:?}");
    }
}

criterion_group!(benches, w7);

fn main() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child(Path::new(&dir));
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
