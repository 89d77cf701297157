//! `annals dump DIR [filters]`: the log's events in position order, filtered by position, time, category and
//! event type.

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::output::{EventOutput, JSON_HELP};
use crate::select::EventFilter;
use crate::{open, progress, Outcome};

/// Print the committed events in position order, filtered.
///
/// Filters combine: an event is printed if it passes every one. annals' own streams (`$checkpoint-…`,
/// `$projection-…`) are printed like any other. When the output goes to a file or a pipe, a progress bar on
/// stderr shows how far the dump is.
#[derive(clap::Args)]
pub struct Args {
    /// The store's directory.
    dir: PathBuf,

    #[command(flatten)]
    filter: EventFilter,

    #[arg(long, help = JSON_HELP)]
    json: bool,
}

/// Events printed between two moves of the progress bar.
const PROGRESS_EVERY_EVENTS: usize = 1024;

pub fn run(args: Args, options: annals::Options) -> anyhow::Result<Outcome> {
    let store = open::read_only(&args.dir, options)?;
    let selection = args.filter.select(&store);
    let committed_end = store.head_position().map_or(0, |head| head + 1);
    // On a terminal the printed rows show the progress; a bar would only tear them.
    let show_bar = !std::io::stdout().is_terminal();
    let bar = progress::positions(committed_end.saturating_sub(selection.from), "dumping", show_bar);
    let mut output = EventOutput::new(args.json);
    for (printed, event) in selection.history(&store)?.enumerate() {
        let event = event?;
        if printed % PROGRESS_EVERY_EVENTS == 0 {
            bar.set_position(event.position().saturating_sub(selection.from));
        }
        output.write(&event)?;
    }
    bar.finish_and_clear();
    output.flush()?;
    Ok(Outcome::Done)
}
