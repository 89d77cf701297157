//! Shared helpers of the CLI's scenario tests: the `annals` binary as a command, a small store made with the
//! library (events of several categories and types, with JSON, non-JSON and empty payloads, over several
//! segments), the events as the library reads them back (with the engine tests' helpers), the JSON lines a
//! command prints, and a snapshot of every file of a directory.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code, reason = "each test binary uses a different subset of the helpers")]

/// The engine's test helpers (owned copies of recorded events, segment files, damage), shared rather than
/// written again.
#[path = "../../../tests/support/mod.rs"]
pub mod engine;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use annals::{EventData, ExpectedVersion, Options, Store};
pub use engine::Owned;
use uuid::Uuid;

/// The keys of every `--json` event line, exactly.
pub const EVENT_KEYS: [&str; 7] = ["data", "event_id", "event_type", "offset", "position", "stream", "timestamp"];

/// The `annals` binary built for this test run.
pub fn annals() -> assert_cmd::Command {
    assert_cmd::cargo::cargo_bin_cmd!("annals")
}

/// The path of the `annals` binary, for tests that spawn it themselves.
pub fn annals_path() -> &'static Path {
    assert_cmd::cargo::cargo_bin!("annals")
}

/// Segments of 4 KiB: the events of [`fill`] span two of them.
pub fn small_segments() -> Options {
    Options { segment_size_bytes: 4096, ..Default::default() }
}

/// The stream, event type and payload of the `i`th event [`fill`] appends: categories `account`, `order` and
/// `audit`; payloads that are compact JSON, pretty JSON with keys out of alphabetical order, binary, text that
/// is not JSON, and empty.
pub fn event(i: u64) -> (String, &'static str, Vec<u8>) {
    match i % 6 {
        0 => (format!("account-{}", i % 4), "Deposited", format!("{{\"amount\":{i}}}").into_bytes()),
        1 => (format!("account-{}", i % 4), "Withdrawn", format!("{{\n  \"b\": {i},\n  \"a\": \"x\"\n}}").into_bytes()),
        2 => ("order-7".to_owned(), "Placed", vec![0xff, 0x00, i as u8]),
        3 => ("order-7".to_owned(), "Shipped", b"amount 5".to_vec()),
        4 => ("audit".to_owned(), "LoggedIn", Vec::new()),
        _ => ("account-9".to_owned(), "Deposited", b"42".to_vec()),
    }
}

/// The id [`fill`] gives its `i`th event.
pub fn event_id(i: u64) -> Uuid {
    Uuid::from_u128(u128::from(i) + 1)
}

/// Appends events `range` of [`event`] to `store`, one append each, then one event of annals' own kind of
/// stream (`$checkpoint-…`) if `checkpoint`.
pub fn append(store: &Store, range: std::ops::Range<u64>) {
    for i in range {
        let (stream, event_type, data) = event(i);
        let event = EventData::new(event_type, data).with_id(event_id(i));
        store.append(&stream, ExpectedVersion::Any, &[event]).unwrap();
    }
}

/// A stopped store in `dir` holding events 0..60 of [`event`] and one checkpoint event of `$checkpoint-audit`
/// (at position 60).
pub fn fill(dir: &Path) {
    let store = Store::open_with(dir, small_segments()).unwrap();
    append(&store, 0..60);
    let checkpoint = EventData::new("$checkpoint", 5u64.to_le_bytes().to_vec());
    store.append("$checkpoint-audit", ExpectedVersion::Any, &[checkpoint]).unwrap();
    store.close().unwrap();
}

/// Every event of the store in `dir`, in position order, read with the library (read-only).
pub fn recorded(dir: &Path) -> Vec<Owned> {
    engine::read_all(&Store::open_read_only(dir).unwrap(), 0)
}

/// Each line of `stdout` parsed as one JSON object.
pub fn json_lines(stdout: &[u8]) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let text = std::str::from_utf8(stdout).expect("output is UTF-8");
    text.lines()
        .map(|line| match serde_json::from_str(line) {
            Ok(serde_json::Value::Object(object)) => object,
            other => panic!("not a JSON object: {line:?} ({other:?})"),
        })
        .collect()
}

/// The positions of `lines` (JSON event lines).
pub fn positions(lines: &[serde_json::Map<String, serde_json::Value>]) -> Vec<u64> {
    lines.iter().map(|line| line["position"].as_u64().expect("position is a number")).collect()
}

/// The JSON line `annals` must print for `event`, checked key by key: exactly the documented keys, each with
/// the event's value (the timestamp parsed back to the nanosecond; the payload as JSON when it is JSON, else
/// base64).
pub fn assert_line_is(line: &serde_json::Map<String, serde_json::Value>, event: &Owned) {
    let keys: Vec<&str> = line.keys().map(String::as_str).collect();
    assert_eq!(keys, EVENT_KEYS, "the keys of {line:?}");
    assert_eq!(line["stream"], event.stream.as_str());
    assert_eq!(line["offset"], event.offset);
    assert_eq!(line["position"], event.position);
    assert_eq!(line["event_type"], event.event_type.as_str());
    assert_eq!(line["event_id"], event.event_id.to_string());
    let timestamp: jiff::Timestamp = line["timestamp"].as_str().expect("timestamp is a string").parse().unwrap();
    assert!(line["timestamp"].as_str().unwrap().ends_with('Z'), "RFC 3339 in UTC: {}", line["timestamp"]);
    assert_eq!(timestamp.as_nanosecond(), i128::from(event.timestamp_nanos));
    match serde_json::from_slice::<serde_json::Value>(&event.data) {
        Ok(json) => assert_eq!(line["data"], json, "a JSON payload is shown as JSON"),
        Err(_) => {
            use base64::Engine as _;
            let encoded = line["data"].as_str().expect("a non-JSON payload is a base64 string");
            let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
            assert_eq!(decoded, event.data, "the base64 payload decodes to the appended bytes");
        }
    }
}

/// Every file below `dir` (by path relative to it) with its bytes and modification time.
pub fn files(dir: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let metadata = entry.metadata().unwrap();
        if metadata.is_dir() {
            all.insert(format!("{name}/"), (Vec::new(), metadata.modified().unwrap()));
            for (inner, file) in files(&entry.path()) {
                all.insert(format!("{name}/{inner}"), file);
            }
        } else {
            all.insert(name, (std::fs::read(entry.path()).unwrap(), metadata.modified().unwrap()));
        }
    }
    all
}
