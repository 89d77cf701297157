//! What the commands print, and how: standard output, buffered and coloured only on a terminal.

use std::io::{self, BufWriter};

use anstyle::{AnsiColor, Style};

pub const HEADER: Style = Style::new().bold();
pub const PROBLEM: Style = AnsiColor::Red.on_default().bold();
pub const GOOD: Style = AnsiColor::Green.on_default();

/// Standard output, buffered, with colour escapes removed unless it is a terminal (anstream also honours
/// `NO_COLOR` and `CLICOLOR_FORCE`). Flush it before waiting for anything.
pub type Stdout = BufWriter<anstream::AutoStream<io::Stdout>>;

pub fn stdout() -> Stdout {
    BufWriter::new(anstream::stdout())
}

/// Whether `err` (or one of its causes) is a write to a pipe whose reader has gone.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe))
}

/// `count` and the noun, plural unless `count` is 1: "1 segment", "3 segments".
pub fn counted(count: u64, noun: &str) -> String {
    format!("{count} {noun}{}", if count == 1 { "" } else { "s" })
}
