//! What the commands print, and how: standard output (buffered, coloured only on a terminal), and events as
//! one JSON object per line (`--json`) or as a table for people.
//!
//! Payloads are shown as JSON when their bytes are valid JSON (compacted onto one line, keys in their stored
//! order), and as base64 otherwise: in the table prefixed `base64:`, in `--json` output as a plain JSON string.
//! One encoding everywhere, so that a payload looks the same in both.

use std::io::{self, BufWriter, IsTerminal, Write};

use annals::RecordedEvent;
use anstyle::{AnsiColor, Style};
use base64::Engine as _;
use serde::Serialize;
use serde_json::value::RawValue;

/// Longest payload shown in a table on a terminal, in characters; longer ones end in `…`. Piped tables and
/// `--json` output show whole payloads.
const TABLE_DATA_CHARS_MAX: usize = 80;

pub const HEADER: Style = Style::new().bold();
pub const STREAM: Style = AnsiColor::Cyan.on_default();
pub const EVENT_TYPE: Style = AnsiColor::Yellow.on_default();
pub const DIM: Style = Style::new().dimmed();
pub const PROBLEM: Style = AnsiColor::Red.on_default().bold();
pub const GOOD: Style = AnsiColor::Green.on_default();

/// The `--help` of `--json` on the commands that print events.
pub const JSON_HELP: &str = "One JSON object per event per line, with exactly the keys stream, offset, position, \
    event_type, event_id, timestamp (RFC 3339, UTC, to the nanosecond) and data. data is the payload as JSON when \
    its bytes are valid JSON, else a base64 string (standard alphabet, padded). Without --json: a table, coloured \
    on a terminal, with non-JSON payloads shown as base64:<base64>";

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

/// A commit time as RFC 3339 in UTC, to the nanosecond (`2026-05-01T12:00:00.123456789Z`; trailing zero digits
/// are left out).
pub fn rfc3339(timestamp_nanos: u64) -> String {
    timestamp(timestamp_nanos).to_string()
}

/// A commit time as RFC 3339 in UTC, to the millisecond: for tables.
pub fn rfc3339_millis(timestamp_nanos: u64) -> String {
    format!("{:.3}", timestamp(timestamp_nanos))
}

fn timestamp(timestamp_nanos: u64) -> jiff::Timestamp {
    // u64 nanoseconds reach the year 2554, well inside what jiff represents (years -9999 to 9999).
    jiff::Timestamp::from_nanosecond(i128::from(timestamp_nanos)).expect("u64 nanoseconds since 1970 fit jiff's range")
}

/// An event's payload, as it is shown.
pub enum Payload {
    /// Valid JSON, compacted onto one line.
    Json(Box<RawValue>),
    /// Anything else, base64 (standard alphabet, padded).
    Base64(String),
}

impl Payload {
    pub fn of(bytes: &[u8]) -> Payload {
        match compact_json(bytes) {
            Some(json) => Payload::Json(json),
            None => Payload::Base64(base64::engine::general_purpose::STANDARD.encode(bytes)),
        }
    }
}

/// `bytes` as compact JSON text, if they are one valid JSON value. Transcoded token by token rather than
/// parsed into a `serde_json::Value`, which would sort object keys (and the feature that keeps their order
/// would change `serde_json` for the whole workspace).
fn compact_json(bytes: &[u8]) -> Option<Box<RawValue>> {
    let mut input = serde_json::Deserializer::from_slice(bytes);
    let mut compact = Vec::with_capacity(bytes.len());
    serde_transcode::transcode(&mut input, &mut serde_json::Serializer::new(&mut compact)).ok()?;
    input.end().ok()?;
    RawValue::from_string(String::from_utf8(compact).ok()?).ok()
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Payload::Json(json) => json.serialize(serializer),
            Payload::Base64(encoded) => encoded.serialize(serializer),
        }
    }
}

/// One line of `--json` output. IMPORTANT: these keys are the documented interface (`--help`, README);
/// scripts read them.
#[derive(Serialize)]
struct EventLine<'a> {
    stream: &'a str,
    offset: u64,
    position: u64,
    event_type: &'a str,
    event_id: String,
    timestamp: String,
    data: Payload,
}

/// Writes events to standard output in the chosen format.
pub struct EventOutput {
    out: Stdout,
    json: bool,
    /// Whether table payloads are cut to [`TABLE_DATA_CHARS_MAX`] (on a terminal).
    truncate: bool,
    header_written: bool,
}

impl EventOutput {
    pub fn new(json: bool) -> EventOutput {
        EventOutput { out: stdout(), json, truncate: io::stdout().is_terminal(), header_written: false }
    }

    pub fn write(&mut self, event: &RecordedEvent) -> io::Result<()> {
        if self.json {
            self.write_json(event)
        } else {
            self.write_row(event)
        }
    }

    /// Makes everything written so far visible (before the caller waits for more).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn write_json(&mut self, event: &RecordedEvent) -> io::Result<()> {
        let line = EventLine {
            stream: event.stream(),
            offset: event.offset(),
            position: event.position(),
            event_type: event.event_type(),
            event_id: event.event_id().to_string(),
            timestamp: rfc3339(event.timestamp_nanos()),
            data: Payload::of(event.data()),
        };
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")
    }

    fn write_row(&mut self, event: &RecordedEvent) -> io::Result<()> {
        if !self.header_written {
            self.header_written = true;
            writeln!(
                self.out,
                "{HEADER}{:>8}  {:<24}  {:<28}  {:<20}  DATA{HEADER:#}",
                "POSITION", "COMMITTED (UTC)", "STREAM@OFFSET", "TYPE"
            )?;
        }
        let data = match Payload::of(event.data()) {
            Payload::Json(json) => json.get().to_owned(),
            Payload::Base64(encoded) if encoded.is_empty() => "(empty)".to_owned(),
            Payload::Base64(encoded) => format!("base64:{encoded}"),
        };
        writeln!(
            self.out,
            "{:>8}  {DIM}{:<24}{DIM:#}  {STREAM}{:<28}{STREAM:#}  {EVENT_TYPE}{:<20}{EVENT_TYPE:#}  {}",
            event.position(),
            rfc3339_millis(event.timestamp_nanos()),
            format!("{}@{}", event.stream(), event.offset()),
            event.event_type(),
            self.cut(data),
        )
    }

    fn cut(&self, data: String) -> String {
        if !self.truncate || data.chars().count() <= TABLE_DATA_CHARS_MAX {
            return data;
        }
        let mut cut: String = data.chars().take(TABLE_DATA_CHARS_MAX - 1).collect();
        cut.push('…');
        cut
    }
}
