//! `annals streams DIR [--category C]`: every stream with its last offset and last commit time, found by
//! scanning the log (annals has no call that lists stream names).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use annals::RecordedEvent;
use serde::Serialize;

use crate::output::{self, HEADER, STREAM};
use crate::{open, progress, Outcome};

/// List every stream with its last offset and last commit time.
///
/// annals keeps no list of stream names that can be walked (its index is keyed by hashes of the names), so
/// this scans the log: every event, or with --category only the category's events (through the category
/// index). A progress bar on stderr shows how far the scan is. annals' own streams (`$checkpoint-…`,
/// `$projection-…`) are listed too.
#[derive(clap::Args)]
pub struct Args {
    /// The store's directory.
    dir: PathBuf,

    /// Only the streams of category C (`account` holds `account-42`).
    #[arg(long, value_name = "C")]
    category: Option<String>,

    /// One JSON object per stream per line, with the keys `stream`, `last_offset` and `last_timestamp` (RFC
    /// 3339).
    #[arg(long)]
    json: bool,
}

/// What the scan keeps of each stream: its latest event so far.
struct Last {
    offset: u64,
    timestamp_nanos: u64,
}

impl Last {
    fn of(event: &RecordedEvent) -> Last {
        Last { offset: event.offset(), timestamp_nanos: event.timestamp_nanos() }
    }
}

#[derive(Serialize)]
struct StreamLine<'a> {
    stream: &'a str,
    last_offset: u64,
    last_timestamp: String,
}

/// Events scanned between two moves of the progress bar.
const PROGRESS_EVERY_EVENTS: usize = 1024;
/// Widest stream column of the table, in characters; longer names push their row's other columns right.
const STREAM_COLUMN_CHARS_MAX: usize = 60;

pub fn run(args: Args, options: annals::Options) -> anyhow::Result<Outcome> {
    let store = open::read_only(&args.dir, options)?;
    let committed_end = store.head_position().map_or(0, |head| head + 1);
    let events: Box<dyn Iterator<Item = annals::Result<RecordedEvent>>> = match &args.category {
        Some(category) => Box::new(store.read_category(category, 0)?),
        None => Box::new(store.read_all(0)?),
    };
    let bar = progress::positions(committed_end, "scanning the log for streams", true);
    let mut streams: BTreeMap<String, Last> = BTreeMap::new();
    for (scanned, event) in events.enumerate() {
        let event = event?;
        if scanned % PROGRESS_EVERY_EVENTS == 0 {
            bar.set_position(event.position());
        }
        match streams.get_mut(event.stream()) {
            Some(last) => *last = Last::of(&event),
            None => {
                streams.insert(event.stream().to_owned(), Last::of(&event));
            }
        }
    }
    bar.finish_and_clear();

    let mut out = output::stdout();
    if args.json {
        for (stream, last) in &streams {
            let line =
                StreamLine { stream, last_offset: last.offset, last_timestamp: output::rfc3339(last.timestamp_nanos) };
            serde_json::to_writer(&mut out, &line)?;
            writeln!(out)?;
        }
    } else {
        let width =
            streams.keys().map(|stream| stream.chars().count()).max().unwrap_or(0).clamp(6, STREAM_COLUMN_CHARS_MAX);
        writeln!(out, "{HEADER}{:<width$}  {:>11}  LAST COMMIT (UTC){HEADER:#}", "STREAM", "LAST OFFSET")?;
        for (stream, last) in &streams {
            let time = output::rfc3339_millis(last.timestamp_nanos);
            writeln!(out, "{STREAM}{stream:<width$}{STREAM:#}  {:>11}  {time}", last.offset)?;
        }
    }
    out.flush()?;
    Ok(Outcome::Done)
}
