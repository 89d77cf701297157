//! The machine's limits, measured at the start of the run on the filesystem the stores live on, so that every
//! number can be held against what the hardware allows (`WORKLOADS.md`, "Limits"):
//!
//! - fsync: 4 KiB writes, each followed by `fdatasync`, into a 64 MiB file reserved with `posix_fallocate` (what
//!   `fio --rw=write --bs=4k --fdatasync=1` does), for 3 s; and the same over blocks already written once.
//!   W1's ceiling is one append per sync.
//! - sequential write bandwidth: 1 MiB writes of 1 GiB (scaled), one `fsync` at the end. W3's ceiling.
//! - memory read bandwidth: one thread summing a 1 GiB buffer (scaled). W4's ceiling.
//!
//! If `fio` is installed, the two `fio` commands of `WORKLOADS.md` run as well and are reported beside these.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::Result;

/// One measured limit.
#[derive(Debug, Clone)]
pub struct Limit {
    /// Stable key (`fsync`, `seq_write`, …).
    pub key: &'static str,
    /// What was measured, for the table.
    pub label: String,
    pub value: f64,
    pub unit: &'static str,
}

const FSYNC_FILE_BYTES: u64 = 64 << 20;
const FSYNC_SECONDS: f64 = 3.0;
const BLOCK: usize = 4096;

/// Measures every limit in `dir` (removing its files afterwards). `scale` shrinks the bandwidth tests.
pub fn measure(dir: &Path, scale: f64) -> Result<Vec<Limit>> {
    let mut limits = Vec::new();
    let (rate, p50) = fdatasync_rate(dir, false)?;
    limits.push(Limit {
        key: "fsync",
        label: "fdatasync rate, 4 KiB writes into a fallocated file (fio default)".into(),
        value: rate,
        unit: "syncs/s",
    });
    limits.push(Limit { key: "fsync_p50", label: "fdatasync latency p50 (same test)".into(), value: p50, unit: "µs" });
    let (rate, _) = fdatasync_rate(dir, true)?;
    limits.push(Limit {
        key: "fsync_overwrite",
        label: "fdatasync rate, 4 KiB overwrites of written blocks".into(),
        value: rate,
        unit: "syncs/s",
    });
    let seq_bytes = scaled_bytes(1 << 30, scale);
    limits.push(Limit {
        key: "seq_write",
        label: format!("sequential write, 1 MiB writes, {} MiB, fsync at end", seq_bytes >> 20),
        value: sequential_write(dir, seq_bytes)?,
        unit: "MB/s",
    });
    let memory_bytes = scaled_bytes(1 << 30, scale);
    limits.push(Limit {
        key: "mem_read",
        label: format!("memory read, one thread summing {} MiB", memory_bytes >> 20),
        value: memory_read(memory_bytes),
        unit: "MB/s",
    });
    match fio(dir, scale) {
        Ok(mut found) => limits.append(&mut found),
        Err(err) => eprintln!("  fio: skipped ({err})"),
    }
    Ok(limits)
}

/// At least 64 MiB, a multiple of 1 MiB.
fn scaled_bytes(bytes: u64, scale: f64) -> u64 {
    let scaled = (bytes as f64 * scale) as u64;
    scaled.max(64 << 20) >> 20 << 20
}

/// Syncs per second and the median sync latency (µs) of 4 KiB writes each followed by `fdatasync`.
/// `overwrite`: write every block once first, so the timed writes change no file metadata.
fn fdatasync_rate(dir: &Path, overwrite: bool) -> Result<(f64, f64)> {
    let path = dir.join("limits-fsync.test");
    let file = File::options().create(true).truncate(true).read(true).write(true).open(&path)?;
    let block = vec![0xA5u8; BLOCK];
    // SAFETY: a valid open descriptor and a non-negative length.
    let reserved = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, FSYNC_FILE_BYTES as libc::off_t) };
    if reserved != 0 {
        return Err(format!("posix_fallocate failed: {}", std::io::Error::from_raw_os_error(reserved)).into());
    }
    if overwrite {
        for offset in (0..FSYNC_FILE_BYTES).step_by(1 << 20) {
            file.write_all_at(&vec![0x5Au8; 1 << 20], offset)?;
        }
        file.sync_all()?;
    }
    let mut latencies = Vec::new();
    let start = Instant::now();
    let mut offset = 0;
    while start.elapsed().as_secs_f64() < FSYNC_SECONDS && offset < FSYNC_FILE_BYTES {
        let begun = Instant::now();
        file.write_all_at(&block, offset)?;
        file.sync_data()?;
        latencies.push(begun.elapsed());
        offset += BLOCK as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    latencies.sort_unstable();
    let p50 = latencies[latencies.len() / 2].as_secs_f64() * 1e6;
    Ok((latencies.len() as f64 / elapsed, p50))
}

/// MB/s (10^6 bytes) of writing `bytes` in 1 MiB writes and one `fsync`.
fn sequential_write(dir: &Path, bytes: u64) -> Result<f64> {
    let path = dir.join("limits-seq.test");
    let mut chunk = vec![0u8; 1 << 20];
    fastrand::Rng::with_seed(7).fill(&mut chunk);
    let mut file = File::create(&path)?;
    let start = Instant::now();
    for _ in 0..bytes >> 20 {
        file.write_all(&chunk)?;
    }
    file.sync_all()?;
    let elapsed = start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(bytes as f64 / elapsed / 1e6)
}

/// MB/s (10^6 bytes) of one thread summing a buffer of `bytes` (best of three passes, after a first pass that
/// faults the pages in).
fn memory_read(bytes: u64) -> f64 {
    let words = usize::try_from(bytes / 8).expect("the buffer fits in memory");
    let buffer: Vec<u64> = (0..words as u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        let sum = buffer.iter().fold(0u64, |sum, &word| sum.wrapping_add(word));
        std::hint::black_box(sum);
        best = best.min(start.elapsed());
    }
    bytes as f64 / best.as_secs_f64() / 1e6
}

/// The two `fio` jobs of `WORKLOADS.md`, if `fio` is installed (the 2 GiB sequential size is scaled).
fn fio(dir: &Path, scale: f64) -> Result<Vec<Limit>> {
    let run = |args: &[&str]| -> Result<serde_json::Value> {
        let output = Command::new("fio")
            .current_dir(dir)
            .args(args)
            .args(["--output-format=json", "--filename=limits-fio.test"])
            .output()
            .map_err(|err| format!("fio not installed ({err}); apt-get install -y fio"))?;
        let _ = std::fs::remove_file(dir.join("limits-fio.test"));
        if !output.status.success() {
            return Err(format!("fio failed: {}", String::from_utf8_lossy(&output.stderr)).into());
        }
        // fio may print notes before the JSON document.
        let text = String::from_utf8(output.stdout)?;
        let start = text.find('{').ok_or("fio printed no JSON")?;
        Ok(serde_json::from_str(&text[start..])?)
    };
    let write = |json: &serde_json::Value| json["jobs"][0]["write"].clone();

    let fsync = run(&["--name=fs", "--rw=write", "--bs=4k", "--size=64m", "--fdatasync=1", "--ioengine=sync"])?;
    let iops = write(&fsync)["iops"].as_f64().ok_or("fio: no write iops")?;
    let sync_p50 = fsync["jobs"][0]["sync"]["lat_ns"]["percentile"]["50.000000"].as_f64().map(|ns| ns / 1e3);

    let seq_size = format!("{}m", scaled_bytes(2 << 30, scale) >> 20);
    let seq = run(&["--name=seq", "--rw=write", "--bs=1m", &format!("--size={seq_size}"), "--end_fsync=1"])?;
    let bandwidth = write(&seq)["bw_bytes"].as_f64().ok_or("fio: no write bandwidth")? / 1e6;

    let mut limits = vec![Limit {
        key: "fio_fsync",
        label: "fio --rw=write --bs=4k --size=64m --fdatasync=1 --ioengine=sync: writes/s".into(),
        value: iops,
        unit: "syncs/s",
    }];
    if let Some(p50) = sync_p50 {
        limits.push(Limit {
            key: "fio_fsync_p50",
            label: "fio, same job: fdatasync latency p50".into(),
            value: p50,
            unit: "µs",
        });
    }
    limits.push(Limit {
        key: "fio_seq_write",
        label: format!("fio --rw=write --bs=1m --size={seq_size} --end_fsync=1"),
        value: bandwidth,
        unit: "MB/s",
    });
    Ok(limits)
}
