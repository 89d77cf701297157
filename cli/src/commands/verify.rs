//! `annals verify DIR`: [`Store::verify`](annals::Store::verify) with a progress bar; exit status 1 and the
//! first problem (file and byte offset) when the store is damaged.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use indicatif::HumanBytes;

use crate::files::Files;
use crate::output::{self, counted, GOOD, PROBLEM};
use crate::{open, progress, Outcome};

/// Walk every record and index entry and report the first problem.
///
/// Checks every record's CRC, the density of positions and offsets, every stream's back-links and transaction
/// markers, every index entry against the log and every index page's CRC. Reads the whole log, beside a live
/// writer too (what it has made durable when the walk starts). Exit status 0 when nothing is wrong, 1 when
/// something is: the first problem is printed with its file and byte offset.
#[derive(clap::Args)]
pub struct Args {
    /// The store's directory.
    dir: PathBuf,
}

/// How often the progress bar looks at how far the walk has read.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

pub fn run(args: Args, options: annals::Options) -> anyhow::Result<Outcome> {
    let store = open::read_only(&args.dir, options)?;
    let log_bytes = Files::segments(&args.dir)?.total_bytes();
    let report = std::thread::scope(|scope| {
        // The bar counts the bytes the walk reads against the segments' sizes: the last segment's unused,
        // preallocated end is never read, so the bar may finish short of its end.
        let read_before = progress::bytes_read_by_this_process();
        let bar = match read_before {
            Some(_) => progress::bytes(log_bytes, "verifying"),
            None => progress::spinner("verifying"),
        };
        let walk = scope.spawn(|| store.verify());
        while !walk.is_finished() {
            if let (Some(before), Some(now)) = (read_before, progress::bytes_read_by_this_process()) {
                bar.set_position(now.saturating_sub(before).min(log_bytes));
            }
            std::thread::sleep(PROGRESS_INTERVAL);
        }
        bar.finish_and_clear();
        walk.join().map_err(|_| anyhow!("the verification thread panicked"))
    })??;

    let mut out = output::stdout();
    let walked = format!(
        "{}, {}, {}, {} of frames",
        counted(report.segments as u64, "segment"),
        counted(report.records, "record"),
        counted(report.streams as u64, "stream"),
        HumanBytes(report.bytes)
    );
    let outcome = match &report.problem {
        None => {
            writeln!(out, "{GOOD}ok{GOOD:#}: {walked} checked; no problem found")?;
            Outcome::Done
        }
        Some(annals::Error::Corrupt { file, offset, reason }) => {
            writeln!(out, "{PROBLEM}damaged{PROBLEM:#}: {} at byte {offset}: {reason}", file.display())?;
            writeln!(out, "checked before it: {walked}")?;
            Outcome::Damaged
        }
        Some(problem) => {
            writeln!(out, "{PROBLEM}damaged{PROBLEM:#}: {problem}")?;
            writeln!(out, "checked before it: {walked}")?;
            Outcome::Damaged
        }
    };
    out.flush()?;
    Ok(outcome)
}
