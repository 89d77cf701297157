//! `annals-compare`: runs the standard workloads of `WORKLOADS.md` against annals and the engines users of an
//! event store pick today (SQLite, PostgreSQL, fjall, redb), in one process run, after measuring the machine's
//! limits, and writes a Markdown table, JSON lines and a chart.
//!
//! ```text
//! cargo run --release -p annals-compare -- --out compare/results [--scale 0.1] [--only annals,sqlite,W1,W3]
//! ```
//!
//! W3 for the embedded engines runs in a child process (this binary, re-executed with a hidden subcommand)
//! that is killed with SIGKILL once its appends have returned, so that W7 times a real recovery; the parent
//! then reads W4 and W5 from the recovered store, closes it cleanly and times W6. M1 loads and measures in
//! child processes too, so that the parent's heap does not blur the resident-memory figure, and so do W9's
//! load and reopen (`w9.rs`). PostgreSQL, a server, is crashed with an immediate shutdown instead.
//!
//! W10 (`w10.rs`) runs its live part in turns like W2, for the engines that can follow commits, and its
//! catch-up on W3's store right after W4.

mod chart;
mod engines;
mod event;
mod limits;
mod report;
mod w10;
mod w8;
mod w9;
mod workloads;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{json, Value};

use crate::engines::Engine;
use crate::event::Pending;
use crate::workloads::{Measurement, Sizes, Tally};

/// Errors are reported, not handled: a boxed error with its message is all the harness needs.
pub type Result<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

/// Every workload this harness runs, in table order.
const WORKLOADS: [&str; 11] = ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "M1", "W8", "W9", "W10"];

// TODO(W8 peers): W8 runs for annals only, through `Repository` (see `w8.rs`). The peers would need the same
// aggregate and a snapshot table of their own (latest snapshot by stream, then the events after it) before W8
// can compare engines.
const W8_PEERS: &str = "W8 snapshot-load: annals only (with and without snapshots); the peers have no snapshot \
                        layer, so there is nothing to compare it with yet";

struct Args {
    out: PathBuf,
    scale: f64,
    engines: Option<Vec<String>>,
    workloads: Option<Vec<String>>,
    data_dir: PathBuf,
    skip_limits: bool,
    /// W9's sizes (streams); `None`: `WORKLOADS.md`'s, scaled.
    w9_streams: Option<Vec<u64>>,
}

fn usage() -> ! {
    eprintln!(
        "usage: annals-compare [--out DIR] [--scale F] [--only NAMES] [--data-dir DIR] [--w9-streams LIST]\n\
         \n  --out DIR       where results.md, results.jsonl and chart.png go (default compare/results)\
         \n  --scale F       multiply every event count by F (default 1.0; 0.1 for a quick run)\
         \n  --only NAMES    comma-separated engines (annals, sqlite, postgres, fjall, redb) and/or workloads\
         \n                  (W1..W10, M1) to run; W4-W7 and W10 need W3's load, which then runs too\
         \n  --data-dir DIR  where the stores are created (default the system temporary directory; use the\
         \n                  disk you want to measure)\
         \n  --skip-limits   do not measure the machine's limits (for profiling a workload; the report then has\
         \n                  no limit columns)\
         \n  --w9-streams L  W9's sizes, comma-separated numbers of streams (default 10000,10000000 times the\
         \n                  scale; 10,000,000 streams write about 4.6 GB per engine and take minutes each)"
    );
    std::process::exit(2)
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Args {
    let mut parsed = Args {
        out: PathBuf::from("compare/results"),
        scale: 1.0,
        engines: None,
        workloads: None,
        data_dir: std::env::temp_dir(),
        skip_limits: false,
        w9_streams: None,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--out" => parsed.out = PathBuf::from(value()),
            "--scale" => {
                parsed.scale = value().parse().ok().filter(|scale: &f64| *scale > 0.0).unwrap_or_else(|| usage())
            }
            "--data-dir" => parsed.data_dir = PathBuf::from(value()),
            "--skip-limits" => parsed.skip_limits = true,
            "--w9-streams" => {
                let sizes: Option<Vec<u64>> =
                    value().split(',').map(|n| n.trim().replace('_', "").parse().ok().filter(|&n| n > 0)).collect();
                parsed.w9_streams = Some(sizes.unwrap_or_else(|| usage()));
            }
            "--only" => {
                for name in value().split(',').map(str::trim).filter(|name| !name.is_empty()) {
                    let upper = name.to_ascii_uppercase();
                    if WORKLOADS.contains(&upper.as_str()) {
                        parsed.workloads.get_or_insert_with(Vec::new).push(upper);
                    } else if engines::all().iter().any(|engine| engine.name() == name.to_ascii_lowercase()) {
                        parsed.engines.get_or_insert_with(Vec::new).push(name.to_ascii_lowercase());
                    } else {
                        eprintln!("--only: unknown engine or workload {name:?}");
                        usage();
                    }
                }
            }
            _ => usage(),
        }
    }
    parsed
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if let Some(command) = args.peek().filter(|arg| arg.starts_with("__")).cloned() {
        args.next();
        if let Err(err) = child_main(&command, args) {
            eprintln!("{command}: {err}");
            std::process::exit(1);
        }
        return;
    }
    let args = parse_args(args);
    if let Err(err) = run(&args) {
        eprintln!("annals-compare: {err}");
        std::process::exit(1);
    }
}

/// Prints a progress line with the time since the start.
fn progress(start: Instant, message: &str) {
    eprintln!("[{:7.1}s] {message}", start.elapsed().as_secs_f64());
}

fn run(args: &Args) -> Result<()> {
    let start = Instant::now();
    let sizes = Sizes::new(args.scale);
    let wanted = |workload: &str| args.workloads.as_ref().is_none_or(|list| list.iter().any(|w| w == workload));
    let scratch = tempfile::Builder::new().prefix("annals-compare-").tempdir_in(&args.data_dir)?;
    // As root, PostgreSQL runs as an unprivileged user, which must be able to reach its directory.
    std::fs::set_permissions(scratch.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711))?;
    let machine = report::Machine::describe(scratch.path(), args)?;
    progress(start, &format!("scale {}, stores under {}", args.scale, scratch.path().display()));
    progress(start, &format!("sizes: {sizes:?}"));

    let limits = if args.skip_limits {
        Vec::new()
    } else {
        progress(start, "measuring the machine's limits");
        limits::measure(scratch.path(), args.scale)?
    };
    for limit in &limits {
        progress(start, &format!("  {}: {:.1} {}", limit.label, limit.value, limit.unit));
    }

    let mut notes = vec![W8_PEERS.to_owned()];
    let mut engines = Vec::new();
    for engine in engines::all() {
        if args.engines.as_ref().is_some_and(|list| !list.iter().any(|name| name == engine.name())) {
            continue;
        }
        match engine.unavailable() {
            Some(reason) => {
                let note = format!("{}: skipped, {reason}", engine.name());
                progress(start, &note);
                notes.push(note);
            }
            None => engines.push(engine),
        }
    }
    let failed = |notes: &mut Vec<String>, engine: &dyn Engine, workload: &str, err: &dyn std::fmt::Display| {
        note_failure(notes, start, engine.name(), workload, err);
    };

    // The machine is shared and noisy, so the engines take turns: W1 and W2 slice by slice (see
    // `workloads::W1_SLICES`), the rest workload by workload, never one engine's whole run after another's.
    let all: Vec<&dyn Engine> = engines.iter().map(|engine| engine.as_ref()).collect();
    let mut measurements = Vec::new();
    if wanted("W1") {
        let events = workloads::w1_events(&sizes);
        let slices: Vec<&[Pending]> = events.chunks(events.len().div_ceil(workloads::W1_SLICES)).collect();
        let found = interleaved(&all, scratch.path(), "W1", slices.len(), start, &mut notes, |store, slice, total| {
            workloads::w1_slice(store, slices[slice], total)
        });
        measurements.extend(found);
    }
    if wanted("W2") {
        let events = workloads::w2_events(&sizes);
        let slices = slice_threads(&events, workloads::W2_SLICES);
        let found = interleaved(&all, scratch.path(), "W2", slices.len(), start, &mut notes, |store, slice, total| {
            workloads::w2_slice(store, &slices[slice], total)
        });
        measurements.extend(found);
    }
    if wanted("W10") {
        let subscribing: Vec<&dyn Engine> = all.iter().copied().filter(|engine| engine.subscribes()).collect();
        for engine in all.iter().filter(|engine| !engine.subscribes()) {
            notes.push(format!(
                "{} W10: not run; WORKLOADS.md's W10 peers are PostgreSQL (LISTEN/NOTIFY) and SQLite (polled)",
                engine.name()
            ));
        }
        let (alone, subscribed) = (w10::events(&sizes, 0), w10::events(&sizes, 1));
        let (alone, subscribed) = (slice_threads(&alone, w10::SLICES), slice_threads(&subscribed, w10::SLICES));
        let found =
            interleaved(&subscribing, scratch.path(), "W10", w10::SLICES, start, &mut notes, |store, slice, total| {
                w10::slice(store, &alone[slice], &subscribed[slice], slice, total)
            });
        measurements.extend(found);
    }
    if ["W3", "W4", "W5", "W6", "W7", "W10"].iter().any(|workload| wanted(workload)) {
        for engine in &engines {
            let dir = scratch.path().join(engine.name()).join("W3");
            match after_bulk_load(engine.as_ref(), &dir, &sizes, args, &wanted, start) {
                Ok((found, errors)) => {
                    for measurement in found {
                        absorb(&mut measurements, report_one(start, measurement));
                    }
                    for (workload, err) in errors {
                        failed(&mut notes, engine.as_ref(), workload, &err);
                    }
                }
                Err(err) => failed(&mut notes, engine.as_ref(), "W3", &err),
            }
        }
    }
    if wanted("M1") {
        for engine in &engines {
            if !engine.embedded() {
                notes.push(format!("{} M1: not measured, a server's memory is not the application's", engine.name()));
                continue;
            }
            progress(start, &format!("{} M1", engine.name()));
            match m1(engine.as_ref(), &scratch.path().join(engine.name()).join("M1"), &sizes, args) {
                Ok(measurement) => measurements.push(report_one(start, measurement)),
                Err(err) => failed(&mut notes, engine.as_ref(), "M1", &err),
            }
        }
    }

    if wanted("W8") && engines.iter().any(|engine| engine.name() == "annals") {
        progress(start, "annals W8");
        let dir = scratch.path().join("annals").join("W8");
        match w8::w8(&dir, sizes.w8_events) {
            Ok(measurement) => measurements.push(report_one(start, measurement)),
            Err(err) => note_failure(&mut notes, start, "annals", "W8", &err),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    if wanted("W9") {
        let sizes = args.w9_streams.clone().unwrap_or_else(|| w9::default_streams(args.scale));
        measurements.extend(w9_all(&engines, &sizes, scratch.path(), args, start, &mut notes));
    }

    progress(start, &format!("writing {}", args.out.display()));
    std::fs::create_dir_all(&args.out)?;
    report::write(&args.out, &machine, &sizes, &limits, &measurements, &notes)?;
    match chart::draw(&args.out.join("chart.png"), &measurements) {
        Ok(()) => progress(start, &format!("chart: {}", args.out.join("chart.png").display())),
        Err(err) => progress(start, &format!("chart: skipped, {err}")),
    }
    progress(start, "done");
    Ok(())
}

type WorkloadFn = fn(&str, &dyn engines::Store, &Sizes) -> Result<Measurement>;

/// Cuts each thread's events into `slices` consecutive slices: `[slice][thread]`.
fn slice_threads(events: &[Vec<Pending>], slices: usize) -> Vec<Vec<&[Pending]>> {
    let per_slice = events[0].len().div_ceil(slices);
    (0..slices)
        .map(|slice| {
            events
                .iter()
                .map(|mine| &mine[(slice * per_slice).min(mine.len())..((slice + 1) * per_slice).min(mine.len())])
                .collect()
        })
        .collect()
}

/// Adds `part` to the results, into the engine's measurement of the same workload if there is one (W10's
/// catch-up joins its live figures): fields already there are kept.
fn absorb(measurements: &mut Vec<Measurement>, part: Measurement) {
    match measurements.iter_mut().find(|m| m.engine == part.engine && m.workload == part.workload) {
        Some(existing) => {
            for (key, value) in part.extra {
                existing.extra.entry(key).or_insert(value);
            }
        }
        None => measurements.push(part),
    }
}

fn report_one(start: Instant, measurement: Measurement) -> Measurement {
    progress(
        start,
        &format!(
            "  {} {}: {:.1} {} {}",
            measurement.engine,
            measurement.workload,
            measurement.value,
            measurement.unit,
            json!(measurement.extra)
        ),
    );
    measurement
}

/// Runs `slices` slices of a durable workload on every engine in turn, each engine on a fresh store that stays
/// open across its slices. An engine that fails is dropped from the rest of the workload.
fn interleaved<'e, T: Tally>(
    engines: &[&'e dyn Engine],
    scratch: &Path,
    workload: &'static str,
    slices: usize,
    start: Instant,
    notes: &mut Vec<String>,
    run: impl Fn(&dyn engines::Store, usize, &mut T) -> Result<()>,
) -> Vec<Measurement> {
    /// An engine's store during the workload, and what its slices add up to so far.
    type Open<'e, T> = (&'e dyn Engine, PathBuf, Box<dyn engines::Store>, T);
    let mut open: Vec<Open<'e, T>> = Vec::new();
    for &engine in engines {
        let dir = scratch.join(engine.name()).join(workload);
        match engine.open(&dir) {
            Ok(store) => open.push((engine, dir, store, T::default())),
            Err(err) => note_failure(notes, start, engine.name(), workload, &err),
        }
    }
    for slice in 0..slices {
        progress(start, &format!("{workload} slice {}/{slices}", slice + 1));
        let mut still = Vec::new();
        for (engine, dir, store, mut total) in open {
            match run(store.as_ref(), slice, &mut total) {
                Ok(()) => still.push((engine, dir, store, total)),
                Err(err) => {
                    note_failure(notes, start, engine.name(), workload, &err);
                    let _ = store.close();
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
        open = still;
    }
    let mut found = Vec::new();
    for (engine, dir, store, total) in open {
        match store.close() {
            Ok(()) => found.push(report_one(start, total.measurement(engine.name(), workload))),
            Err(err) => note_failure(notes, start, engine.name(), workload, &err),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    found
}

fn note_failure(notes: &mut Vec<String>, start: Instant, engine: &str, workload: &str, err: &dyn std::fmt::Display) {
    let note = format!("{engine} {workload}: failed, {err}");
    progress(start, &note);
    notes.push(note);
}

/// W3 (its load in a child process that is then killed, or for a server a crash), W7 (open after the kill),
/// W4 and W5 on the recovered store, a clean close, and W6. Returns what was measured and what failed.
fn after_bulk_load(
    engine: &dyn Engine,
    dir: &Path,
    sizes: &Sizes,
    args: &Args,
    wanted: &dyn Fn(&str) -> bool,
    start: Instant,
) -> Result<(Vec<Measurement>, Failures)> {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    progress(start, &format!("{} W3 (then killed without close)", engine.name()));
    if engine.embedded() {
        let mut child = spawn_child("__w3", engine, dir, args)?;
        let result = read_result(&mut child, true);
        // SIGKILL: no destructor, no close, no final sync runs in the child.
        child.kill()?;
        child.wait()?;
        found.push(measurement_from_json(&result?)?);
    } else {
        let store = engine.open(dir)?;
        let measurement = workloads::w3(engine.name(), store.as_ref(), sizes);
        store.crash()?;
        found.push(measurement?);
    }
    if let Some(bytes) = disk_bytes(dir) {
        let per_event = bytes as f64 / sizes.w3_events() as f64;
        found[0].extra.insert("disk_bytes_per_event", per_event.into());
    }

    progress(start, &format!("{} W7 (open after the kill)", engine.name()));
    let (store, elapsed) = workloads::open_and_probe(engine, dir, sizes)?;
    found.push(Measurement::new(engine.name(), "W7", elapsed.as_secs_f64() * 1e3, "ms"));
    // W10's catch-up is held against W4's scan of the same store, so W10 runs W4 too.
    let w10 = wanted("W10") && engine.subscribes();
    for (workload, run) in [("W4", workloads::w4 as WorkloadFn), ("W5", workloads::w5)] {
        if wanted(workload) || (workload == "W4" && w10) {
            progress(start, &format!("{} {workload}", engine.name()));
            match run(engine.name(), store.as_ref(), sizes) {
                Ok(measurement) => found.push(measurement),
                Err(err) => errors.push((workload, err.to_string())),
            }
        }
        if workload == "W4" && w10 {
            progress(start, &format!("{} W10 catch-up", engine.name()));
            let w4 = found.iter().find(|m| m.workload == "W4").map(|m| m.value);
            match w10::catch_up(engine.name(), store.as_ref(), sizes, w4) {
                Ok(measurement) => found.push(measurement),
                Err(err) => errors.push(("W10", err.to_string())),
            }
        }
    }
    store.close()?;
    if wanted("W6") {
        progress(start, &format!("{} W6", engine.name()));
        match workloads::w6(engine, dir, sizes) {
            Ok(measurement) => found.push(measurement),
            Err(err) => errors.push(("W6", err.to_string())),
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    found.retain(|measurement| wanted(measurement.workload) || measurement.workload == "W3");
    Ok((found, errors))
}

/// The workloads that failed after W3's load, with why.
type Failures = Vec<(&'static str, String)>;

/// Bytes the directory's files occupy on disk (allocated blocks, so preallocated space counts).
fn disk_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        let metadata = entry.metadata().ok()?;
        total += if metadata.is_dir() { disk_bytes(&entry.path())? } else { metadata.blocks() * 512 };
    }
    Some(total)
}

/// M1: a load of `m1_streams` streams of one event each (appends of 1,000 streams) in one child process that
/// closes the store cleanly; then in a fresh child, resident memory before and after opening the store.
fn m1(engine: &dyn Engine, dir: &Path, sizes: &Sizes, args: &Args) -> Result<Measurement> {
    let mut load = spawn_child("__m1-load", engine, dir, args)?;
    let loaded = read_result(&mut load, false)?;
    if !load.wait()?.success() {
        return Err("the M1 load failed".into());
    }
    let mut measure = spawn_child("__m1-measure", engine, dir, args)?;
    let measured = read_result(&mut measure, false)?;
    if !measure.wait()?.success() {
        return Err("the M1 measurement failed".into());
    }
    let _ = std::fs::remove_dir_all(dir);
    let field = |key: &str| measured[key].as_f64().ok_or_else(|| format!("M1: no {key}"));
    let streams = sizes.m1_streams as f64;
    Ok(Measurement::new(engine.name(), "M1", (field("open_rss")? - field("baseline_rss")?) / streams, "bytes/stream")
        .with("anon_bytes_per_stream", (field("open_anon")? - field("baseline_anon")?) / streams)
        .with("file_bytes_per_stream", (field("open_file")? - field("baseline_file")?) / streams)
        .with("open_ms", field("open_ms")?)
        .with("load_events_per_s", loaded["events_per_s"].clone())
        .with("streams", sizes.m1_streams))
}

fn spawn_child(command: &str, engine: &dyn Engine, dir: &Path, args: &Args) -> Result<std::process::Child> {
    spawn_child_with(command, engine, dir, args, &[])
}

fn spawn_child_with(
    command: &str,
    engine: &dyn Engine,
    dir: &Path,
    args: &Args,
    extra: &[&str],
) -> Result<std::process::Child> {
    Ok(Command::new(std::env::current_exe()?)
        .arg(command)
        .args(["--engine", engine.name(), "--scale", &args.scale.to_string(), "--dir"])
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?)
}

/// W9 at every size, smallest first, and at each size every engine in turn (so that the engines compared
/// at one size run close together in time). A size that would not fit on the disk is skipped with a note.
fn w9_all(
    engines: &[Box<dyn Engine>],
    sizes: &[u64],
    scratch: &Path,
    args: &Args,
    start: Instant,
    notes: &mut Vec<String>,
) -> Vec<Measurement> {
    let mut found = Vec::new();
    for &streams in sizes {
        let needed = w9::disk_bytes_needed(streams);
        if free_bytes(scratch).is_some_and(|free| free < needed) {
            let note = format!(
                "W9 at {streams} streams: skipped, needs about {} GB free on the data disk",
                needed / 1e9 as u64
            );
            progress(start, &note);
            notes.push(note);
            continue;
        }
        for engine in engines {
            progress(start, &format!("{} W9, {streams} streams", engine.name()));
            let dir = scratch.join(engine.name()).join(format!("W9-{streams}"));
            match w9_one(engine.as_ref(), &dir, streams, args) {
                Ok(measurement) => found.push(report_one(start, measurement)),
                Err(err) => note_failure(notes, start, engine.name(), &format!("W9 at {streams} streams"), &err),
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    found
}

/// W9 for one engine at one size: load, lone appends and close in one child process, the reopen and reads in
/// another (a server engine: both in this process).
fn w9_one(engine: &dyn Engine, dir: &Path, streams: u64, args: &Args) -> Result<Measurement> {
    let size = streams.to_string();
    let (loaded, reopened) = if engine.embedded() {
        let run = |command: &str| -> Result<Value> {
            let mut child = spawn_child_with(command, engine, dir, args, &["--streams", &size])?;
            let result = read_result(&mut child, false)?;
            if !child.wait()?.success() {
                return Err(format!("the {command} child failed").into());
            }
            Ok(result)
        };
        let loaded = run("__w9-load")?;
        (loaded, run("__w9-reopen")?)
    } else {
        let loaded = w9::load_and_close(engine.open(dir)?, streams, false)?;
        (loaded, w9::reopen_and_read(engine, dir, streams, false)?)
    };
    let mut measurement = w9::measurement(engine.name(), streams, &loaded, &reopened);
    if let Some(bytes) = disk_bytes(dir) {
        measurement.extra.insert("disk_bytes", bytes.into());
    }
    Ok(measurement)
}

/// Bytes available to an unprivileged user on the filesystem holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid C string and `stat` a writable statvfs that the call fills on success.
    if unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::useless_conversion, reason = "fsblkcnt_t and c_ulong are u64 on 64-bit Linux, not on every target")]
    Some(u64::from(stat.f_bavail) * u64::from(stat.f_frsize))
}

/// Reads the child's `RESULT {json}` line; with `until_ready`, also waits for its `READY` line.
fn read_result(child: &mut std::process::Child, until_ready: bool) -> Result<Value> {
    let stdout = child.stdout.take().ok_or("child without stdout")?;
    let mut result = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(json) = line.strip_prefix("RESULT ") {
            result = Some(serde_json::from_str(json)?);
            if !until_ready {
                break;
            }
        } else if line == "READY" {
            break;
        }
    }
    result.ok_or_else(|| "the child process ended without a result".into())
}

fn measurement_from_json(value: &Value) -> Result<Measurement> {
    let text = |key: &str| value[key].as_str().ok_or_else(|| format!("child result without {key}"));
    let workload = WORKLOADS
        .into_iter()
        .find(|workload| *workload == text("workload").unwrap_or_default())
        .ok_or("bad workload")?;
    let unit = ["events/s"].into_iter().find(|unit| *unit == text("unit").unwrap_or_default()).ok_or("bad unit")?;
    let mut measurement = Measurement::new(text("engine")?, workload, value["value"].as_f64().ok_or("no value")?, unit);
    for key in ["mb_per_s", "events"] {
        if let Some(extra) = value.get(key) {
            measurement.extra.insert(key, extra.clone());
        }
    }
    Ok(measurement)
}

/// The hidden subcommands the parent runs in child processes.
fn child_main(command: &str, mut args: impl Iterator<Item = String>) -> Result<()> {
    let (mut engine_name, mut dir, mut scale, mut streams) = (String::new(), PathBuf::new(), 1.0, 0);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or("missing value")?;
        match arg.as_str() {
            "--engine" => engine_name = value,
            "--dir" => dir = PathBuf::from(value),
            "--scale" => scale = value.parse()?,
            "--streams" => streams = value.parse()?,
            _ => return Err(format!("unknown argument {arg}").into()),
        }
    }
    let engine = engines::all().into_iter().find(|engine| engine.name() == engine_name).ok_or("unknown engine")?;
    let sizes = Sizes::new(scale);
    match command {
        "__w3" => {
            let store = engine.open(&dir)?;
            let measurement = workloads::w3(engine.name(), store.as_ref(), &sizes)?;
            println!("RESULT {}", measurement.to_json());
            println!("READY");
            // Every append has returned, so it is durable; wait to be killed with the store open.
            std::mem::forget(store);
            loop {
                std::thread::park();
            }
        }
        "__m1-load" => {
            let store = engine.open(&dir)?;
            let (seconds, events) =
                workloads::bulk_load(store.as_ref(), sizes.m1_streams, 1, 1_000, event::SEED ^ 0x31)?;
            store.close()?;
            println!("RESULT {}", json!({ "events_per_s": events as f64 / seconds }));
        }
        "__m1-measure" => {
            let baseline = report::resident_memory()?;
            let begun = Instant::now();
            let store = engine.open(&dir)?;
            let mut sum = 0;
            let found = store.read_stream(&event::stream_name(0), 1, &mut |data| sum = event::touch(data))?;
            let open_ms = begun.elapsed().as_secs_f64() * 1e3;
            std::hint::black_box(sum);
            let open = report::resident_memory()?;
            if found != 1 {
                return Err("M1: stream account-0 is empty after open".into());
            }
            println!(
                "RESULT {}",
                json!({
                    "baseline_rss": baseline.rss, "baseline_anon": baseline.anon, "baseline_file": baseline.file,
                    "open_rss": open.rss, "open_anon": open.anon, "open_file": open.file, "open_ms": open_ms,
                })
            );
            store.close()?;
        }
        "__w9-load" => {
            let loaded = w9::load_and_close(engine.open(&dir)?, streams, true)?;
            println!("RESULT {loaded}");
        }
        "__w9-reopen" => {
            let reopened = w9::reopen_and_read(engine.as_ref(), &dir, streams, true)?;
            println!("RESULT {reopened}");
        }
        _ => return Err(format!("unknown subcommand {command}").into()),
    }
    Ok(())
}
