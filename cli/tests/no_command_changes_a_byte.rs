//! No command changes the store it looks at: on a stopped store, every file (segments, index tables, `HEAD`,
//! `LOCK`) has the same bytes and modification time after every command has run, successful or not, and no
//! file appears or disappears.

mod support;

use support::{annals, files, fill};

#[test]
fn every_command_leaves_every_file_of_the_store_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let before = files(dir.path());
    assert!(before.keys().any(|name| name.starts_with("index/")), "{:?}", before.keys());
    let runs: &[&[&str]] = &[
        &["info"],
        &["verify"],
        &["streams"],
        &["streams", "--category", "account", "--json"],
        &["read", "order-7"],
        &["read", "order-7", "--backwards", "--limit", "2", "--json"],
        &["read", "nobody-1"],
        &["dump"],
        &["dump", "--json", "--category", "account", "--type", "Deposited", "--since", "1970-01-01T00:00:00Z"],
        &["tail"],
        &["tail", "--last", "3", "--json"],
    ];
    for args in runs {
        let (command, rest) = args.split_first().unwrap();
        annals().arg(command).arg(dir.path()).args(rest).output().unwrap();
        assert!(files(dir.path()) == before, "`annals {}` changed the store", args.join(" "));
    }
}
