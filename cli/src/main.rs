//! `annals`: look into an annals store from the shell, beside a live writer or while no one writes it.
//!
//! Every command opens the store with [`annals::Store::open_read_only`]: it takes no lock and never writes,
//! creates or deletes a byte, so it is safe on a store that an application has open in another process, and
//! it shows what that writer has made durable. The commands, one module each under `commands/`:
//!
//! | command | what it does |
//! |---|---|
//! | `info` | segments, streams, head position, index, what an open finds now |
//! | `verify` | walks every record and index entry; nonzero exit and the first problem on damage |
//! | `streams` | every stream with its last offset and commit time, found by scanning the log |
//! | `read` | one stream, forwards or backwards |
//! | `dump` | the log, filtered by position, time, category and event type |
//! | `tail` | the same filters through a subscription; `--follow` stays live until interrupted |
//! | `backup` | a consistent copy of the store |
//!
//! Output goes to stdout (a table, coloured only on a terminal, or JSON lines with `--json`); progress bars,
//! notes and errors go to stderr. Exit status: 0 on success, 1 on an error or when `verify` finds damage, 2
//! for bad arguments.

mod commands;
mod files;
mod open;
mod output;
mod progress;
mod select;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Inspect, verify, read, follow and back up an annals store without changing a byte of it.
///
/// Every command opens the store read-only: no lock, no write. It works on a stopped store and beside a
/// writer running in another process, and shows what that writer has made durable.
#[derive(Parser)]
#[command(name = "annals", version, propagate_version = true)]
struct Cli {
    /// The character that ends a stream's category (`account` for `account-42`); give the writer's, if it
    /// uses another, or the index is rebuilt in memory from the whole log.
    #[arg(long, global = true, value_name = "CHAR", default_value_t = '-')]
    category_separator: char,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Info(commands::info::Args),
    Verify(commands::verify::Args),
    Streams(commands::streams::Args),
    Read(commands::read::Args),
    Dump(commands::dump::Args),
    Tail(commands::tail::Args),
    Backup(commands::backup::Args),
}

/// How a command that ran to its end turned out.
pub enum Outcome {
    /// It did what was asked.
    Done,
    /// It ran, and found the store damaged (`verify`).
    Damaged,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = annals::Options { category_separator: cli.category_separator, ..Default::default() };
    let result = match cli.command {
        Command::Info(args) => commands::info::run(args, options),
        Command::Verify(args) => commands::verify::run(args, options),
        Command::Streams(args) => commands::streams::run(args, options),
        Command::Read(args) => commands::read::run(args, options),
        Command::Dump(args) => commands::dump::run(args, options),
        Command::Tail(args) => commands::tail::run(args, options),
        Command::Backup(args) => commands::backup::run(args, options),
    };
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Damaged) => ExitCode::FAILURE,
        // A reader that went away (`annals dump DIR | head`) is not a failure of ours.
        Err(err) if output::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("annals: error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line: "opening the store in x: corrupt data in y at byte 64: CRC mismatch".
/// A cause that the message before it already ends with is left out: annals' `Io` errors show their cause in
/// their own message and also return it as their `source()`.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
