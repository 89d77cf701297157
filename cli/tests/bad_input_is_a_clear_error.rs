//! Wrong input ends with a one-line message on stderr and a nonzero exit status, never a panic or a stack
//! trace: a path that does not exist, a file, a directory that holds no store, an unknown command or option, a
//! number that is not one, a time that is not RFC 3339, an invalid stream name.

mod support;

use support::{annals, fill};

/// Runs `annals ARGS`, expects exit status `code`, and returns stderr after checking it is a message, not a
/// panic.
fn fails(args: &[&std::ffi::OsStr], code: i32) -> String {
    let output = annals().args(args).output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(output.stdout.is_empty(), "{args:?} printed {:?}", String::from_utf8_lossy(&output.stdout));
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{stderr}");
    stderr
}

fn os(text: &str) -> &std::ffi::OsStr {
    text.as_ref()
}

#[test]
fn a_missing_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    for command in ["info", "verify", "streams", "dump", "tail"] {
        let stderr = fails(&[os(command), missing.as_os_str()], 1);
        assert_eq!(stderr, format!("annals: error: {} does not exist\n", missing.display()));
    }
    assert!(!missing.exists(), "no command creates the directory");
}

#[test]
fn a_file_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "hello").unwrap();
    let stderr = fails(&[os("info"), file.as_os_str()], 1);
    assert!(stderr.contains("is not a directory"), "{stderr}");
}

#[test]
fn a_directory_without_a_store_says_so() {
    let dir = tempfile::tempdir().unwrap();
    for command in ["info", "verify", "streams", "dump", "tail"] {
        let stderr = fails(&[os(command), dir.path().as_os_str()], 1);
        assert_eq!(
            stderr,
            format!("annals: error: {} holds no annals store (no segment files in it)\n", dir.path().display())
        );
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing was created in it");
}

#[test]
fn bad_arguments_exit_with_status_2_and_usage() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let path = dir.path().as_os_str();
    let stderr = fails(&[os("frobnicate"), path], 2);
    assert!(stderr.contains("unrecognized subcommand"), "{stderr}");
    let stderr = fails(&[os("read"), path, os("order-7"), os("--limit"), os("many")], 2);
    assert!(stderr.contains("invalid value 'many' for '--limit <N>'"), "{stderr}");
    let stderr = fails(&[os("dump"), path, os("--bogus")], 2);
    assert!(stderr.contains("unexpected argument '--bogus'"), "{stderr}");
    fails(&[os("read"), path], 2);
}

#[test]
fn a_time_that_is_not_rfc_3339_is_refused_with_an_example() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    for bad in ["yesterday", "2026-05-01", "2026-05-01T12:00:00", "2026-13-01T00:00:00Z"] {
        let stderr = fails(&[os("dump"), dir.path().as_os_str(), os("--since"), os(bad)], 2);
        assert!(stderr.contains(&format!("invalid value '{bad}' for '--since <TIME>'")), "{stderr}");
        assert!(stderr.contains("like 2026-05-01T12:00:00Z"), "{stderr}");
    }
    let stderr = fails(&[os("tail"), dir.path().as_os_str(), os("--until"), os("noon")], 2);
    assert!(stderr.contains("'--until <TIME>'"), "{stderr}");
}

#[test]
fn an_invalid_stream_name_is_the_engines_message() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let stderr = fails(&[os("read"), dir.path().as_os_str(), os("")], 1);
    assert!(stderr.contains("invalid stream name \"\": must not be empty"), "{stderr}");
}
