//! `annals backup DIR DEST`: a consistent copy of the store, taken beside a live writer or from a stopped
//! store, through `Store::backup`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use crate::output;
use crate::{open, Outcome};

/// Copy the store into DEST: a store that opens on its own and holds every event up to the position printed.
///
/// The copy is consistent: it holds whole transactions up to one position, as the store's writer (if one
/// runs) had made them durable when the backup began.
#[derive(clap::Args)]
pub struct Args {
    /// The store's directory.
    dir: PathBuf,

    /// Where the copy goes.
    dest: PathBuf,

    /// Print one JSON object with the key `position`: the last position the copy holds (`null` for an empty
    /// store).
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct BackupLine {
    /// `null` for an empty store.
    position: Option<u64>,
}

pub fn run(args: Args, options: annals::Options) -> anyhow::Result<Outcome> {
    let store = open::read_only(&args.dir, options)?;
    let position = store
        .backup(&args.dest)
        .with_context(|| format!("backing up {} to {}", args.dir.display(), args.dest.display()))?;
    let mut out = output::stdout();
    if args.json {
        serde_json::to_writer(&mut out, &BackupLine { position })?;
        writeln!(out)?;
    } else {
        match position {
            Some(last) => {
                writeln!(out, "backed up {} to {}: positions 0 to {last}", args.dir.display(), args.dest.display())?
            }
            None => writeln!(out, "backed up {} to {}: an empty store", args.dir.display(), args.dest.display())?,
        }
    }
    out.flush()?;
    Ok(Outcome::Done)
}
