//! `--json` prints one object per event per line with exactly the documented keys, and every value is what the
//! test appended through the library: stream, offset, position, type, the id it gave, the commit time (RFC 3339,
//! to the nanosecond) and the payload (as JSON when it is JSON, compacted onto the line with its keys in their
//! stored order, else base64), for `read`, `dump` and `tail` alike.

mod support;

use support::{annals, assert_line_is, fill, json_lines, recorded, Owned};

/// Runs `annals ARGS DIR --json` and checks that it prints one line per event of `expected`, each exactly that
/// event.
fn assert_prints(args: &[&str], dir: &std::path::Path, expected: &[Owned]) {
    let (command, rest) = args.split_first().unwrap();
    let output = annals().arg(command).arg(dir).args(rest).arg("--json").assert().success().get_output().clone();
    let lines = json_lines(&output.stdout);
    assert_eq!(lines.len(), expected.len(), "annals {}", args.join(" "));
    for (line, event) in lines.iter().zip(expected) {
        assert_line_is(line, event);
    }
}

#[test]
fn dump_json_prints_every_event_with_every_key() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let events = recorded(dir.path());
    assert_eq!(events.len(), 61);
    assert_prints(&["dump"], dir.path(), &events);
    // The ids are the ones the test gave.
    assert_eq!(events[7].event_id, support::event_id(7));
}

#[test]
fn read_json_prints_the_streams_events_in_offset_order() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let order: Vec<_> = recorded(dir.path()).into_iter().filter(|event| event.stream == "order-7").collect();
    assert_prints(&["read", "order-7"], dir.path(), &order);
    let newest_first: Vec<_> = order.iter().rev().take(3).cloned().collect();
    assert_prints(&["read", "order-7", "--backwards", "--limit", "3"], dir.path(), &newest_first);
}

#[test]
fn tail_json_prints_the_same_lines_as_dump() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let accounts: Vec<_> =
        recorded(dir.path()).into_iter().filter(|event| event.stream.starts_with("account-")).collect();
    assert_prints(&["tail", "--category", "account"], dir.path(), &accounts);
    assert_prints(&["dump", "--category", "account"], dir.path(), &accounts);
}

#[test]
fn json_payloads_are_compacted_onto_the_line_keeping_their_key_order() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    // Event 1 is pretty-printed JSON with the keys "b" then "a".
    let output = annals()
        .args(["dump", "--json", "--from-position", "1"])
        .arg(dir.path())
        .assert()
        .success()
        .get_output()
        .clone();
    let first = std::str::from_utf8(&output.stdout).unwrap().lines().next().unwrap().to_owned();
    assert!(first.contains(r#""data":{"b":1,"a":"x"}"#), "{first}");
}

#[test]
fn non_json_payloads_are_base64_strings() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let output = annals()
        .args(["dump", "--json", "--category", "order", "--type", "Shipped"])
        .arg(dir.path())
        .assert()
        .success()
        .get_output()
        .clone();
    let lines = json_lines(&output.stdout);
    assert!(!lines.is_empty());
    // "amount 5", which is text but not JSON.
    assert!(lines.iter().all(|line| line["data"] == "YW1vdW50IDU="), "{lines:?}");
}
