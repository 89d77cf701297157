//! `annals tail DIR [filters] [--follow]`: the events that pass the filters, read through a subscription;
//! with `--follow` it stays live, printing each event as its writer makes it durable, until interrupted.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use annals::{RecordedEvent, Store, SubscriptionMessage};
use anyhow::{bail, Context};

use crate::output::{EventOutput, JSON_HELP};
use crate::select::EventFilter;
use crate::{open, Outcome};

/// Print the events that pass the filters, as a subscription delivers them; --follow stays live.
///
/// Without --follow it prints the events committed so far (or the last N of them with --last) and stops.
/// With --follow it then goes on printing each new event as the store's writer (in another process) makes it
/// durable, until Ctrl-C or SIGTERM, which end it cleanly with exit status 0. Like an application's
/// subscription it leaves out annals' own streams (`$checkpoint-…`, `$projection-…`) unless --category names
/// one; `annals dump` shows them.
#[derive(clap::Args)]
pub struct Args {
    /// The store's directory.
    dir: PathBuf,

    #[command(flatten)]
    filter: EventFilter,

    /// Of the events already committed, print only the last N (new ones, with --follow, all).
    #[arg(long, value_name = "N")]
    last: Option<usize>,

    /// Keep printing new events as they are committed, until interrupted.
    #[arg(long, short = 'f')]
    follow: bool,

    #[arg(long, help = JSON_HELP)]
    json: bool,
}

/// Most events `--last` holds back before it has any to drop; more grow the buffer as needed.
const LAST_PREALLOCATED_EVENTS_MAX: usize = 4096;

pub fn run(args: Args, options: annals::Options) -> anyhow::Result<Outcome> {
    let store = open::read_only(&args.dir, options)?;
    let selection = args.filter.select(&store);
    let interrupted = Arc::new(AtomicBool::new(false));
    if args.follow {
        stop_on_interrupt(&store, &interrupted)?;
    }
    let mut subscription = store.subscribe(selection.subscribe_from(), selection.subscription_filter())?;
    let mut output = EventOutput::new(args.json);
    // While `Some`, the history is being read and only its last events are kept, to print at `CaughtUp`.
    let mut held: Option<VecDeque<RecordedEvent>> =
        args.last.map(|last| VecDeque::with_capacity(last.min(LAST_PREALLOCATED_EVENTS_MAX)));
    let mut live = false;
    while !interrupted.load(Ordering::Acquire) {
        let message = match subscription.next() {
            None => break,
            Some(Ok(message)) => message,
            // Ctrl-C closed the store under the waiting subscription: the way out.
            Some(Err(annals::Error::Closed)) if interrupted.load(Ordering::Acquire) => break,
            Some(Err(annals::Error::Closed)) => {
                bail!("the store stopped following its writer (damage in what the writer made durable?)")
            }
            Some(Err(err)) => return Err(err.into()),
        };
        match message {
            SubscriptionMessage::Event(event) => {
                if selection.is_past_until(&event) {
                    break;
                }
                if !selection.passes(&event) {
                    continue;
                }
                match (&mut held, args.last) {
                    (Some(held), Some(last)) => {
                        if held.len() == last {
                            held.pop_front();
                        }
                        if last > 0 {
                            held.push_back(event);
                        }
                    }
                    _ => output.write(&event)?,
                }
                if live {
                    output.flush()?;
                }
            }
            SubscriptionMessage::CaughtUp => {
                for event in held.take().into_iter().flatten() {
                    output.write(&event)?;
                }
                output.flush()?;
                if !args.follow {
                    break;
                }
                live = true;
            }
            // A backlog to read again: rows are flushed when it is caught up.
            SubscriptionMessage::FellBehind => live = false,
            // Progress through events the filter skipped: nothing to print.
            _ => {}
        }
    }
    output.flush()?;
    Ok(Outcome::Done)
}

/// On Ctrl-C, SIGTERM or SIGHUP: raise `interrupted` and close the store, which ends a subscription that waits
/// for the next commit (it returns `Closed`), so that the command ends through its normal path, with what it
/// printed flushed and exit status 0.
fn stop_on_interrupt(store: &Store, interrupted: &Arc<AtomicBool>) -> anyhow::Result<()> {
    let store = store.clone();
    let interrupted = interrupted.clone();
    ctrlc::set_handler(move || {
        interrupted.store(true, Ordering::Release);
        // A read-only store has nothing to sync or write: closing it only stops its follower thread.
        let _ = store.clone().close();
    })
    .context("installing the Ctrl-C handler")
}
