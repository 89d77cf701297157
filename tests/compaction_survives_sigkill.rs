//! A process killed with SIGKILL while it compacts loses no live event and brings back no removed one.
//!
//! The test re-executes its own binary as a child (the `#[ignore]`d `compacting_child`, idle unless
//! `ANNALS_COMPACT_CHILD_DIR` is set). Each child opens the store (8 KiB segments, compaction at any hidden
//! share), and in a loop: appends events to its live streams and to a throwaway stream, soft-deletes the
//! throwaway stream, appends filler so that its segments are sealed, waits for the index's tables, and
//! compacts. It prints each acknowledged live event (stream, offset, position, payload hash), each deletion
//! and each compaction. The parent kills it at a random moment (often inside a compaction: most of a child's
//! time is spent there), reopens the store and checks:
//!
//! - every acknowledged live event is where it was acknowledged, with the same payload, through
//!   `read_stream`, and every event an earlier check saw is unchanged;
//! - every deleted stream stays hidden: no read shows an event at or below its deleted version;
//! - `verify` passes;
//! - the store accepts an append.
//!
//! `ANNALS_COMPACT_CYCLES` (default 25) and `ANNALS_COMPACT_SEED` (default: from the clock; printed).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use annals::{EventData, ExpectedVersion, Options, Store};

mod support;
use support::{fnv, Rng};

const CHILD_DIR_ENV: &str = "ANNALS_COMPACT_CHILD_DIR";
const CHILD_SEED_ENV: &str = "ANNALS_COMPACT_CHILD_SEED";
const CHILD_CYCLE_ENV: &str = "ANNALS_COMPACT_CHILD_CYCLE";
const LIVE: [&str; 3] = ["live-0", "live-1", "live-2"];

fn options() -> Options {
    Options { segment_size_bytes: 8192, compaction_dead_percent: 1, ..Default::default() }
}

fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    if out.write_all(line.as_bytes()).and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

#[test]
#[ignore = "the child process of compaction_survives_sigkill; idle unless ANNALS_COMPACT_CHILD_DIR is set"]
fn compacting_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else { return };
    let mut rng = Rng(std::env::var(CHILD_SEED_ENV).unwrap().parse().unwrap());
    let cycle: u64 = std::env::var(CHILD_CYCLE_ENV).unwrap().parse().unwrap();
    let store = Store::open_with(&dir, options()).unwrap_or_else(|err| {
        eprintln!("child: open failed: {err}");
        std::process::exit(3)
    });
    emit("\nREADY\n");
    for round in 0.. {
        let gone = format!("gone-{cycle}-{round}");
        for k in 0..40 {
            let (stream, data) = if rng.percent(50) {
                let stream = LIVE[rng.range(0, LIVE.len() as u64) as usize];
                (stream.to_owned(), format!("{stream} {cycle} {round} {k} {}", "l".repeat(rng.range(0, 200) as usize)))
            } else {
                (gone.clone(), format!("{gone} {k} {}", "g".repeat(rng.range(0, 200) as usize)))
            };
            let result = store.append(&stream, ExpectedVersion::Any, &[EventData::new("E", data.clone().into_bytes())]);
            let result = result.unwrap_or_else(|err| {
                eprintln!("child: append failed: {err}");
                std::process::exit(4)
            });
            if stream.starts_with("live") {
                let hash = fnv(data.as_bytes());
                emit(&format!("ACK {stream} {} {} {hash:016x}\n", result.first_offset, result.first_position));
            }
        }
        if let Some(version) = store.stream_version(&gone) {
            store.delete_stream(&gone, ExpectedVersion::Exact(version)).unwrap();
            emit(&format!("DELETED {gone} {version}\n"));
        }
        for _ in 0..30 {
            store.append("filler", ExpectedVersion::Any, &[EventData::new("F", vec![0u8; 300])]).unwrap();
        }
        store.flush_index().unwrap();
        let report = store.compact().unwrap();
        emit(&format!("COMPACTED {}\n", report.segments));
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Acked {
    stream: String,
    offset: u64,
    position: u64,
    hash: u64,
}

#[derive(Default)]
struct Seen {
    acked: Vec<Acked>,
    deleted: HashMap<String, u64>,
    compacted: u64,
    kills_while_compacting: usize,
}

fn run_and_kill(dir: &Path, seed: u64, cycle: u64, rng: &mut Rng, seen: &mut Seen) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["compacting_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_SEED_ENV, seed.to_string())
        .env(CHILD_CYCLE_ENV, cycle.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning the child");
    let stdout = child.stdout.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            if line.ends_with('\n') {
                if line == "READY\n" {
                    let _ = ready_tx.send(());
                } else {
                    lines.push(line.trim_end().to_owned());
                }
            }
            line.clear();
        }
        lines
    });
    ready_rx.recv_timeout(Duration::from_secs(60)).expect("the child did not open the store");
    std::thread::sleep(Duration::from_micros(rng.range(0, 400_000)));
    if let Some(status) = child.try_wait().unwrap() {
        panic!("seed {seed}, cycle {cycle}: the child exited on its own: {status}");
    }
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    let lines = reader.join().unwrap();
    // The kill came after the last complete line: inside a compaction if that was a deletion (the round's
    // filler and table wait are short next to its compaction).
    if lines.last().is_some_and(|line| line.starts_with("DELETED")) {
        seen.kills_while_compacting += 1;
    }
    for line in lines {
        let fields: Vec<&str> = line.split(' ').collect();
        match fields[0] {
            "ACK" => seen.acked.push(Acked {
                stream: fields[1].to_owned(),
                offset: fields[2].parse().unwrap(),
                position: fields[3].parse().unwrap(),
                hash: u64::from_str_radix(fields[4], 16).unwrap(),
            }),
            "DELETED" => {
                seen.deleted.insert(fields[1].to_owned(), fields[2].parse().unwrap());
            }
            "COMPACTED" => seen.compacted += fields[1].parse::<u64>().unwrap(),
            _ => {}
        }
    }
}

fn check(dir: &Path, ctx: &str, seen: &Seen) {
    let store = Store::open_with(dir, options()).unwrap_or_else(|err| panic!("{ctx}: reopen failed: {err}"));
    let mut by_stream: HashMap<&str, Vec<&Acked>> = HashMap::new();
    for acked in &seen.acked {
        by_stream.entry(&acked.stream).or_default().push(acked);
    }
    for (stream, acked) in &by_stream {
        let events: HashMap<u64, (u64, u64)> = store
            .read_stream(stream, 0)
            .unwrap()
            .map(|event| {
                let event = event.unwrap_or_else(|err| panic!("{ctx}: read_stream({stream}): {err}"));
                (event.offset(), (event.position(), fnv(event.data())))
            })
            .collect();
        for event in acked {
            assert_eq!(
                events.get(&event.offset),
                Some(&(event.position, event.hash)),
                "{ctx}: acknowledged {event:?} is lost or changed"
            );
        }
    }
    for (stream, version) in &seen.deleted {
        let shown: Vec<u64> = store.read_stream(stream, 0).unwrap().map(|event| event.unwrap().offset()).collect();
        assert!(shown.iter().all(|offset| offset > version), "{ctx}: deleted {stream} shows {shown:?}");
        assert_eq!(store.stream_version(stream), Some(*version), "{ctx}: {stream}'s numbering");
    }
    let resurrected = store
        .read_all(0)
        .unwrap()
        .map(|event| event.unwrap())
        .filter(|event| seen.deleted.get(event.stream()).is_some_and(|version| event.offset() <= *version))
        .count();
    assert_eq!(resurrected, 0, "{ctx}: read_all shows deleted events");
    let verified = store.verify().unwrap();
    assert!(verified.is_ok(), "{ctx}: {:?}", verified.problem);
    store.append("parent", ExpectedVersion::Any, &[EventData::new("Checked", vec![1])]).unwrap();
    store.close().unwrap();
}

#[test]
fn sigkill_during_compaction_loses_no_live_event_and_resurrects_no_deleted_one() {
    let cycles: u64 = std::env::var("ANNALS_COMPACT_CYCLES").map_or(25, |s| s.parse().unwrap());
    let seed: u64 = std::env::var("ANNALS_COMPACT_SEED").map_or_else(
        |_| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
        |s| s.parse().unwrap(),
    );
    println!("compaction kill test: seed {seed}, {cycles} cycles (rerun with ANNALS_COMPACT_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    let mut seen = Seen::default();
    for cycle in 0..cycles {
        run_and_kill(dir.path(), rng.next(), cycle, &mut rng, &mut seen);
        check(dir.path(), &format!("seed {seed}, cycle {cycle}"), &seen);
    }
    println!(
        "{cycles} kills, {} of them during a compaction; {} acknowledged live events, {} deleted streams, {} \
         segments compacted",
        seen.kills_while_compacting,
        seen.acked.len(),
        seen.deleted.len(),
        seen.compacted
    );
    assert!(seen.compacted > 0, "no child compacted anything: the kills proved nothing");
    assert!(seen.kills_while_compacting > 0, "no kill landed during a compaction");
}
