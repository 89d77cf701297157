//! `annals backup DIR DEST` copies a store (stopped, here) into DEST through `Store::backup`: the copy opens on
//! its own and holds every event up to the position printed (`--json`: `{"position": P}`), and the source is
//! left byte for byte as it was.

mod support;

use support::{annals, files, fill, json_lines, recorded};

#[test]
fn backup_copies_the_store_and_prints_its_last_position() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let before = files(dir.path());
    let dest = tempfile::tempdir().unwrap();
    let copy = dest.path().join("copy");
    let output = annals().args(["backup", "--json"]).arg(dir.path()).arg(&copy).assert().success().get_output().clone();
    let lines = json_lines(&output.stdout);
    assert_eq!(lines.len(), 1);
    let keys: Vec<&str> = lines[0].keys().map(String::as_str).collect();
    assert_eq!(keys, ["position"]);
    let events = recorded(dir.path());
    assert_eq!(lines[0]["position"], events.last().unwrap().position);
    assert_eq!(recorded(&copy), events, "the copy holds every event of the source");
    assert_eq!(files(dir.path()), before, "the source is unchanged");
}
