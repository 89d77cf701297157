//! `annals info DIR`: what the store holds (segments, streams, head position, index) and what a read-only open
//! finds now.

use std::fmt::Display;
use std::io::Write;
use std::path::PathBuf;

use indicatif::HumanBytes;

use crate::files::Files;
use crate::output::{self, counted, HEADER};
use crate::{open, Outcome};

/// Show the store's segments, stream count, head position, index and what an open finds now.
#[derive(clap::Args)]
pub struct Args {
    /// The store's directory.
    dir: PathBuf,
}

pub fn run(args: Args, options: annals::Options) -> anyhow::Result<Outcome> {
    let store = open::read_only(&args.dir, options)?;
    // Listed after the open, so that every segment the open found is counted (a live writer may add more).
    let segments = Files::segments(&args.dir)?;
    let table_files = Files::index_tables(&args.dir)?;
    let (tables, memtables) = store.index_shape();
    let report = store.recovery_report();

    let mut out = output::stdout();
    field(&mut out, "store", args.dir.display())?;
    field(
        &mut out,
        "segments",
        format!("{}, {}", counted(segments.count() as u64, "file"), bytes(segments.total_bytes())),
    )?;
    for (size, count) in segments.sizes() {
        field(&mut out, "  sizes", format!("{count} × {}", bytes(size)))?;
    }
    field(&mut out, "streams", store.stream_count())?;
    let head = match store.head_position() {
        Some(head) => format!("{head} ({})", counted(head.saturating_add(1), "event")),
        None => "none (no event yet)".to_owned(),
    };
    field(&mut out, "head position", head)?;
    field(
        &mut out,
        "index",
        format!("{}, {}", counted(tables as u64, "table"), counted(memtables as u64, "memtable")),
    )?;
    field(
        &mut out,
        "  table files",
        format!("{} in index/, {}", table_files.count(), bytes(table_files.total_bytes())),
    )?;
    writeln!(out, "{HEADER}what an open finds now{HEADER:#}")?;
    field(&mut out, "  index tables used", report.index_tables)?;
    field(&mut out, "  index rejected", report.index_rejected.as_deref().unwrap_or("no"))?;
    field(&mut out, "  records replayed", format!("{} (after the index tables)", report.records_replayed))?;
    // A read-only open cuts and rewrites nothing: these stay 0 here, and say what the writer's open did
    // only when it ran in this process.
    field(&mut out, "  tail bytes cut", report.tail_bytes_cut)?;
    field(&mut out, "  records resynced", report.records_resynced)?;
    out.flush()?;
    Ok(Outcome::Done)
}

fn field(out: &mut output::Stdout, key: &str, value: impl Display) -> std::io::Result<()> {
    writeln!(out, "{HEADER}{key:<22}{HEADER:#}{value}")
}

fn bytes(count: u64) -> String {
    format!("{count} bytes ({})", HumanBytes(count))
}
