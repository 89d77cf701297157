//! Each command, run as the real binary on a stopped store that the test made with the library, shows what the
//! library reads back: `info` the segments, stream count, head position, index and the open's report; `verify` a
//! clean walk with the counts; `streams` every stream with its last offset and commit time (by category too);
//! `read` a stream from an offset, backwards and limited; `dump` every event, with filters that combine
//! (position, time, category, type); `tail` without `--follow` what is there (leaving out `$` streams, as
//! subscriptions do), or the last N.

mod support;

use support::{annals, fill, json_lines, positions, recorded, Owned};

fn stdout_of(args: &[&str], dir: &std::path::Path) -> String {
    let output = annals().args(args).arg(dir).assert().success().get_output().clone();
    String::from_utf8(output.stdout).unwrap()
}

/// The positions `annals ARGS DIR --json EXTRA` prints.
fn printed(args: &[&str], dir: &std::path::Path, extra: &[&str]) -> Vec<u64> {
    let output = annals().args(args).arg(dir).arg("--json").args(extra).assert().success().get_output().clone();
    positions(&json_lines(&output.stdout))
}

fn positions_of(events: impl IntoIterator<Item = Owned>) -> Vec<u64> {
    events.into_iter().map(|event| event.position).collect()
}

#[test]
fn info_shows_segments_streams_head_index_and_what_an_open_finds() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let info = stdout_of(&["info"], dir.path());
    let segments = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().extension().is_some_and(|ext| ext == "seg"))
        .count();
    assert!(segments >= 2, "small segments rolled: {segments}");
    let line = |key: &str| {
        info.lines().find(|line| line.starts_with(key)).unwrap_or_else(|| panic!("no {key:?} in:\n{info}")).to_owned()
    };
    assert!(line("segments").contains(&format!("{segments} files, {} bytes", segments * 4096)), "{info}");
    assert!(line("  sizes").contains(&format!("{segments} × 4096 bytes")), "{info}");
    // account-0..3, account-9, order-7, audit and $checkpoint-audit.
    assert!(line("streams").ends_with(" 8"), "{info}");
    assert!(line("head position").contains("60 (61 events)"), "{info}");
    assert!(line("index").contains("tables"), "{info}");
    assert!(info.contains("what an open finds now"), "{info}");
    assert!(line("  index rejected").ends_with("no"), "{info}");
    assert!(line("  records replayed").contains("(after the index tables)"), "{info}");
}

#[test]
fn verify_walks_a_healthy_store_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let report = stdout_of(&["verify"], dir.path());
    assert!(report.starts_with("ok: "), "{report}");
    assert!(report.contains("61 records, 8 streams"), "{report}");
}

#[test]
fn streams_lists_every_stream_with_its_last_offset_and_commit_time() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let events = recorded(dir.path());
    let last = |stream: &str| events.iter().rev().find(|event| event.stream == stream).unwrap().clone();
    let output = annals().args(["streams", "--json"]).arg(dir.path()).assert().success().get_output().clone();
    let lines = json_lines(&output.stdout);
    let names: Vec<&str> = lines.iter().map(|line| line["stream"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["$checkpoint-audit", "account-0", "account-1", "account-2", "account-3", "account-9", "audit", "order-7"]
    );
    for line in &lines {
        let last = last(line["stream"].as_str().unwrap());
        assert_eq!(line["last_offset"], last.offset);
        let timestamp: jiff::Timestamp = line["last_timestamp"].as_str().unwrap().parse().unwrap();
        assert_eq!(timestamp.as_nanosecond(), i128::from(last.timestamp_nanos));
    }

    let table = stdout_of(&["streams", "--category", "account"], dir.path());
    let rows: Vec<&str> = table.lines().skip(1).map(|row| row.split_whitespace().next().unwrap()).collect();
    assert_eq!(rows, ["account-0", "account-1", "account-2", "account-3", "account-9"], "{table}");
    let account_9 = table.lines().find(|row| row.starts_with("account-9")).unwrap();
    assert_eq!(account_9.split_whitespace().nth(1), Some(last("account-9").offset.to_string().as_str()), "{table}");
}

#[test]
fn read_follows_one_stream_from_an_offset_forwards_or_backwards_with_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let order: Vec<u64> = positions_of(recorded(dir.path()).into_iter().filter(|event| event.stream == "order-7"));
    assert_eq!(order.len(), 20);
    assert_eq!(printed(&["read"], dir.path(), &["order-7"]), order);
    assert_eq!(printed(&["read"], dir.path(), &["order-7", "--from", "15"]), order[15..]);
    assert_eq!(printed(&["read"], dir.path(), &["order-7", "--from", "3", "--limit", "2"]), order[3..5]);
    let backwards: Vec<u64> = order.iter().rev().copied().collect();
    assert_eq!(printed(&["read"], dir.path(), &["order-7", "--backwards"]), backwards);
    assert_eq!(printed(&["read"], dir.path(), &["order-7", "--backwards", "--from", "4"]), backwards[15..]);
    assert_eq!(printed(&["read"], dir.path(), &["order-7", "--backwards", "--limit", "3"]), backwards[..3]);
}

#[test]
fn read_of_a_stream_that_does_not_exist_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let output = annals().arg("read").arg(dir.path()).arg("nobody-1").assert().failure().get_output().clone();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains(r#"stream "nobody-1" does not exist"#), "{stderr}");
}

#[test]
fn dump_prints_every_event_and_its_filters_combine() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let events = recorded(dir.path());
    let all = positions_of(events.clone());
    assert_eq!(all, (0..61).collect::<Vec<_>>(), "dump shows annals' own streams too");
    assert_eq!(printed(&["dump"], dir.path(), &[]), all);
    assert_eq!(printed(&["dump"], dir.path(), &["--from-position", "50"]), all[50..]);

    let of = |keep: &dyn Fn(&Owned) -> bool| positions_of(events.iter().filter(|event| keep(event)).cloned());
    let accounts = of(&|event| event.stream.starts_with("account-"));
    assert_eq!(printed(&["dump"], dir.path(), &["--category", "account"]), accounts);
    let deposits = of(&|event| event.event_type == "Deposited");
    assert_eq!(printed(&["dump"], dir.path(), &["--type", "Deposited"]), deposits);
    let placed_or_shipped = of(&|event| event.event_type == "Placed" || event.event_type == "Shipped");
    assert_eq!(printed(&["dump"], dir.path(), &["--type", "Placed", "--type", "Shipped"]), placed_or_shipped);
    let account_deposits_after_20 =
        of(&|event| event.stream.starts_with("account-") && event.event_type == "Deposited" && event.position >= 20);
    assert_eq!(
        printed(&["dump"], dir.path(), &["--category", "account", "--type", "Deposited", "--from-position", "20"]),
        account_deposits_after_20
    );
}

#[test]
fn dump_since_and_until_select_by_commit_time() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let events = recorded(dir.path());
    // Times taken from the events themselves: no clock is read or assumed.
    let since = events[10].timestamp_nanos;
    let until = events[40].timestamp_nanos;
    let time = |nanos: u64| jiff::Timestamp::from_nanosecond(i128::from(nanos)).unwrap().to_string();
    let between = |keep: &dyn Fn(&Owned) -> bool| {
        positions_of(
            events
                .iter()
                .filter(|event| event.timestamp_nanos >= since && event.timestamp_nanos <= until && keep(event))
                .cloned(),
        )
    };
    assert_eq!(printed(&["dump"], dir.path(), &["--since", &time(since), "--until", &time(until)]), between(&|_| true));
    assert_eq!(
        printed(&["dump"], dir.path(), &["--since", &time(since), "--until", &time(until), "--category", "order"]),
        between(&|event| event.stream == "order-7")
    );
    // The same instant written with another offset selects the same events.
    let plus_two = jiff::Timestamp::from_nanosecond(i128::from(since))
        .unwrap()
        .display_with_offset(jiff::tz::Offset::constant(2))
        .to_string();
    assert!(plus_two.contains("+02:00"), "{plus_two}");
    assert_eq!(printed(&["dump"], dir.path(), &["--since", &plus_two, "--until", &time(until)]), between(&|_| true));
    // Before the first event and after the last.
    assert_eq!(printed(&["dump"], dir.path(), &["--since", "1970-01-01T00:00:00Z"]).len(), events.len());
    assert!(printed(&["dump"], dir.path(), &["--since", "2400-01-01T00:00:00Z"]).is_empty());
    assert!(printed(&["dump"], dir.path(), &["--until", "1970-01-01T00:00:00Z"]).is_empty());
}

#[test]
fn tail_without_follow_prints_what_is_there_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let events = recorded(dir.path());
    // As subscriptions do, tail leaves out annals' own `$` streams unless a filter names them.
    let applications = positions_of(events.iter().filter(|event| !event.stream.starts_with('$')).cloned());
    assert_eq!(applications.len(), 60);
    assert_eq!(printed(&["tail"], dir.path(), &[]), applications);
    assert_eq!(printed(&["tail"], dir.path(), &["--last", "3"]), applications[57..]);
    assert!(printed(&["tail"], dir.path(), &["--last", "0"]).is_empty());
    assert_eq!(printed(&["tail"], dir.path(), &["--category", "$checkpoint"]), [60]);
    let withdrawals = positions_of(events.iter().filter(|event| event.event_type == "Withdrawn").cloned());
    assert_eq!(
        printed(&["tail"], dir.path(), &["--type", "Withdrawn", "--last", "2"]),
        withdrawals[withdrawals.len() - 2..]
    );
    assert_eq!(printed(&["tail"], dir.path(), &["--from-position", "55"]), applications[55..]);
}

#[test]
fn tables_show_each_event_on_a_row_with_json_or_base64_payloads() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let table = stdout_of(&["dump", "--until", "2400-01-01T00:00:00Z"], dir.path());
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 62, "a header and one row per event:\n{table}");
    assert!(rows[0].contains("POSITION") && rows[0].contains("STREAM@OFFSET"), "{table}");
    assert!(!table.contains('\u{1b}'), "no colour when stdout is not a terminal:\n{table}");
    assert!(rows[1].contains("account-0@0") && rows[1].contains(r#"{"amount":0}"#), "{}", rows[1]);
    assert!(rows[3].contains("order-7@0") && rows[3].contains("base64:/wAC"), "{}", rows[3]);
    assert!(rows[5].contains("audit@0") && rows[5].contains("(empty)"), "{}", rows[5]);
}
