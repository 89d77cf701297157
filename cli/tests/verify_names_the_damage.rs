//! `annals verify` on a store with one byte flipped in a sealed segment exits nonzero and names the damaged
//! segment file and the byte offset of the damaged record; on the same store before the damage it exits 0.

mod support;

use support::{annals, engine, fill};

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_named_with_its_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    annals().arg("verify").arg(dir.path()).assert().success();

    // The first frame of the first segment starts right after its 64-byte header: damage its payload.
    let segments = engine::segment_paths(dir.path());
    assert!(segments.len() > 1, "the first segment is sealed: another follows it");
    let first = &segments[0];
    engine::flip_byte(first, engine::SEGMENT_HEADER_LEN + 100, 0x40);

    let output = annals().arg("verify").arg(dir.path()).assert().failure().get_output().clone();
    assert_eq!(output.status.code(), Some(1));
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(said.contains(&format!("{} at byte 64", first.display())), "{said}");
    assert!(!said.contains("panicked"), "{said}");
}
