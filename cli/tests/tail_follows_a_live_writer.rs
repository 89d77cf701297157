//! `annals tail --follow`, run as a child process beside a writer that appends in the test process, prints the
//! history and then every new event once, in position order, as the writer makes it durable; Ctrl-C (SIGINT)
//! ends it cleanly, with exit status 0 and nothing lost from its output.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use annals::Store;
use support::{annals_path, append, assert_line_is, recorded, small_segments};

/// How long the test waits for a line before it fails instead of hanging (never a measure of speed).
const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn tail_follow_prints_history_then_live_events_and_ends_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open_with(dir.path(), small_segments()).unwrap();
    append(&writer, 0..20);

    let mut child = Command::new(annals_path())
        .args(["tail", "--follow", "--json", "--category", "account"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the child whatever happens below, so that a failing test leaves no process behind.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut child = KillOnDrop(child);
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut printed = Vec::new();
    let wait_for = |count: usize, printed: &mut Vec<String>| {
        while printed.len() < count {
            let line = lines.recv_timeout(PATIENCE).unwrap_or_else(|err| panic!("line {}: {err}", printed.len()));
            printed.push(line);
        }
    };
    let accounts_in =
        |range: std::ops::Range<u64>| range.filter(|&i| support::event(i).0.starts_with("account-")).count();

    // The history first.
    wait_for(accounts_in(0..20), &mut printed);
    // Then what the writer appends while the tail runs, in several rounds (the segments roll under it).
    for round in 0..4 {
        let range = 20 + round * 30..50 + round * 30;
        append(&writer, range);
        wait_for(accounts_in(0..50 + round * 30), &mut printed);
    }

    // Ctrl-C: a clean end.
    let pid = i32::try_from(child.0.id()).unwrap();
    // SAFETY: kill(2) on the child's pid, which the KillOnDrop guard has not reaped yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = child.0.wait().unwrap();
    reader.join().unwrap();
    printed.extend(lines.try_iter());
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "exit status {status:?}, stderr: {stderr}");
    assert!(stderr.is_empty(), "{stderr}");

    // Every account event once, in position order, each line exactly what was appended.
    writer.close().unwrap();
    let expected: Vec<_> =
        recorded(dir.path()).into_iter().filter(|event| event.stream.starts_with("account-")).collect();
    assert_eq!(printed.len(), expected.len(), "{printed:#?}");
    for (line, event) in printed.iter().zip(&expected) {
        let line = support::json_lines(line.as_bytes()).remove(0);
        assert_line_is(&line, event);
    }
}
