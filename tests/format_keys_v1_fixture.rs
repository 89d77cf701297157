//! The frozen fixture of key file format 1 and of sealed values (`tests/fixtures/keys-v1/`): a key file with two
//! subjects of known keys, an event sealed under one in bincode and one under the other in JSON. Proves that
//! the key file decodes by the byte map of `format-spec.md` §18.2, that a sealed value opens by §18.4 with the
//! AEAD alone (not through annals), that this build reads both events, and that it writes the same key file
//! for the same keys.

mod erasure_support;

use std::path::Path;

use annals::{Erasure, EventCodec, EventData, ExpectedVersion, JsonCodec, Store};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use erasure_support::*;

const FIXTURE: &str = "tests/fixtures/keys-v1";

fn fixture_entries() -> Vec<SpecEntry> {
    vec![
        SpecEntry {
            subject: "customer-1".into(),
            key_id: std::array::from_fn(|i| i as u8 + 1),
            key: std::array::from_fn(|i| i as u8 + 0x10),
        },
        SpecEntry {
            subject: "customer-2".into(),
            key_id: std::array::from_fn(|i| i as u8 + 0x11),
            key: std::array::from_fn(|i| i as u8 + 0x40),
        },
    ]
}

/// A store directory holding the fixture's `keys/`.
fn store_with_fixture_keys(dir: &Path) -> Store {
    std::fs::create_dir(dir.join("keys")).unwrap();
    std::fs::copy(Path::new(FIXTURE).join("keys/subjects.keys"), dir.join("keys/subjects.keys")).unwrap();
    Store::open(dir).unwrap()
}

#[test]
fn the_key_file_decodes_by_the_byte_map() {
    let bytes = std::fs::read(Path::new(FIXTURE).join("keys/subjects.keys")).unwrap();
    assert_eq!(bytes.len(), 20 + 2 * (41 + 10));
    assert_eq!(spec_decode(&bytes), fixture_entries());
}

#[test]
fn a_sealed_value_opens_by_the_spec_with_the_aead_alone() {
    let json = std::fs::read_to_string(Path::new(FIXTURE).join("moved-2.json")).unwrap();
    let hex = json.split(r#""sealed":""#).nth(1).unwrap().split('"').next().unwrap();
    let sealed: Vec<u8> =
        (0..hex.len()).step_by(2).map(|at| u8::from_str_radix(&hex[at..at + 2], 16).unwrap()).collect();
    let entry = &fixture_entries()[1];
    assert_eq!(sealed[0], 1, "format 1: sealed");
    assert_eq!(sealed[1..9], entry.key_id);
    let nonce: [u8; 24] = sealed[9..33].try_into().unwrap();
    let aad = [&[1u8][..], &entry.key_id, b"customer-2"].concat();
    let cipher = XChaCha20Poly1305::new(&entry.key.into());
    let plaintext = cipher.decrypt(&XNonce::from(nonce), Payload { msg: &sealed[33..], aad: &aad }).unwrap();
    // bincode 2, standard configuration: each string as its varint length and its bytes.
    assert_eq!(plaintext, [&[17u8][..], b"221B Baker Street", &[6], b"London"].concat());
    assert_eq!(sealed.len(), plaintext.len() + 49);
}

#[test]
fn this_build_reads_the_frozen_events_and_forgets_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_fixture_keys(dir.path());
    let bincode = std::fs::read(Path::new(FIXTURE).join("registered-1.bincode")).unwrap();
    let json = std::fs::read(Path::new(FIXTURE).join("moved-2.json")).unwrap();
    store.append(&stream(1), ExpectedVersion::Any, &[EventData::new("Registered", bincode).with_codec(1)]).unwrap();
    store.append(&stream(2), ExpectedVersion::Any, &[EventData::new("Moved", json).with_codec(2)]).unwrap();

    let erasure = Erasure::open(&store).unwrap();
    let json_codec = EventCodec::<CustomerEvent, JsonCodec>::default().with_erasure(erasure.clone());
    assert_eq!(read(&store, &codec(&erasure), 1), [registered(1)]);
    let recorded = store.read_stream(&stream(2), 0).unwrap().next().unwrap().unwrap();
    assert_eq!(json_codec.decode(&recorded).unwrap(), moved(2, "221B Baker Street"));

    erasure.forget("customer-1").unwrap();
    assert_eq!(read(&store, &codec(&erasure), 1), [forgotten(&registered(1))]);
    assert_eq!(read(&store, &codec(&erasure), 2), [moved(2, "221B Baker Street")]);
}

#[test]
fn this_build_writes_the_same_key_file_for_the_same_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_fixture_keys(dir.path());
    let erasure = Erasure::open(&store).unwrap();
    erasure.add_subjects(["customer-3"]).unwrap();
    erasure.forget("customer-3").unwrap();
    let written = std::fs::read(erasure.key_file()).unwrap();
    assert_eq!(written, std::fs::read(Path::new(FIXTURE).join("keys/subjects.keys")).unwrap());
}
