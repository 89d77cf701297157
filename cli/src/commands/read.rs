//! `annals read DIR STREAM`: one stream's events, from an offset, forwards or backwards.

use std::path::PathBuf;

use annals::RecordedEvent;
use anyhow::bail;

use crate::output::{EventOutput, JSON_HELP};
use crate::{open, Outcome};

/// Print the events of one stream in offset order, or backwards.
#[derive(clap::Args)]
pub struct Args {
    /// The store's directory.
    dir: PathBuf,

    /// The stream (`account-42`).
    stream: String,

    /// Start at this offset (the stream's first event is at 0). Backwards, the default is its last event.
    #[arg(long, value_name = "N")]
    from: Option<u64>,

    /// Newest first: from --from (or the last event) back to offset 0.
    #[arg(long)]
    backwards: bool,

    /// Print at most N events.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,

    #[arg(long, help = JSON_HELP)]
    json: bool,
}

pub fn run(args: Args, options: annals::Options) -> anyhow::Result<Outcome> {
    let store = open::read_only(&args.dir, options)?;
    let events: Box<dyn Iterator<Item = annals::Result<RecordedEvent>>> = if args.backwards {
        Box::new(store.read_stream_backwards(&args.stream, args.from)?)
    } else {
        Box::new(store.read_stream(&args.stream, args.from.unwrap_or(0))?)
    };
    // After the reader is made, which refuses an invalid name with its own message.
    if store.stream_version(&args.stream).is_none() {
        bail!("stream {:?} does not exist in {}", args.stream, args.dir.display());
    }
    let limit = args.limit.map_or(usize::MAX, |limit| usize::try_from(limit).unwrap_or(usize::MAX));
    let mut output = EventOutput::new(args.json);
    for event in events.take(limit) {
        output.write(&event?)?;
    }
    output.flush()?;
    Ok(Outcome::Done)
}
