//! Shared helpers of the erasure tests: a customer's events with personal fields, a key-file decoder written
//! from `format-spec.md` §18.2 (not the engine's), and scans of a store directory's bytes.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code, reason = "each test binary uses a different subset of the helpers")]

use std::path::{Path, PathBuf};

use annals::{Erasure, Event, EventCodec, ExpectedVersion, Personal, Store};
use serde::{Deserialize, Serialize};

/// A postal address: a personal value that is a struct.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub street: String,
    pub city: String,
}

/// A customer's events: personal fields beside ordinary ones.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum CustomerEvent {
    Registered { customer: u64, name: Personal<String>, email: Personal<String>, country: String },
    Moved { customer: u64, address: Personal<Address> },
    Purchased { customer: u64, cents: i64 },
}

impl Event for CustomerEvent {}

/// The subject id of customer `n`.
pub fn subject(n: u64) -> String {
    format!("customer-{n}")
}

/// The stream of customer `n`.
pub fn stream(n: u64) -> String {
    format!("customer-{n}")
}

pub fn name_of(n: u64) -> String {
    format!("Ada Lovelace the {n}th")
}

pub fn email_of(n: u64) -> String {
    format!("ada.{n}@example.com")
}

pub fn registered(n: u64) -> CustomerEvent {
    CustomerEvent::Registered {
        customer: n,
        name: Personal::new(subject(n), name_of(n)),
        email: Personal::new(subject(n), email_of(n)),
        country: "UK".into(),
    }
}

pub fn moved(n: u64, street: &str) -> CustomerEvent {
    let address = Address { street: street.into(), city: "London".into() };
    CustomerEvent::Moved { customer: n, address: Personal::new(subject(n), address) }
}

/// What `event` reads as once its subject is forgotten.
pub fn forgotten(event: &CustomerEvent) -> CustomerEvent {
    match event.clone() {
        CustomerEvent::Registered { customer, name, email, country } => CustomerEvent::Registered {
            customer,
            name: Personal::forgotten(name.subject()),
            email: Personal::forgotten(email.subject()),
            country,
        },
        CustomerEvent::Moved { customer, address } => {
            CustomerEvent::Moved { customer, address: Personal::forgotten(address.subject()) }
        }
        other => other,
    }
}

/// The codec of the tests: bincode, with `erasure`.
pub fn codec(erasure: &Erasure) -> EventCodec<CustomerEvent> {
    EventCodec::default().with_erasure(erasure.clone())
}

/// Appends `events` to customer `n`'s stream.
pub fn append(store: &Store, codec: &EventCodec<CustomerEvent>, n: u64, events: &[CustomerEvent]) {
    let data = events.iter().map(|event| codec.encode(event).unwrap()).collect::<Vec<_>>();
    store.append(&stream(n), ExpectedVersion::Any, &data).unwrap();
}

/// Customer `n`'s events, decoded.
pub fn read(store: &Store, codec: &EventCodec<CustomerEvent>, n: u64) -> Vec<CustomerEvent> {
    store.read_stream(&stream(n), 0).unwrap().map(|recorded| codec.decode(&recorded.unwrap()).unwrap()).collect()
}

/// Every record of the log as raw parts: stream, offset, position, id, type, data. Compared before and after a
/// forget to show that nothing in the log moved or changed.
pub fn raw_log(store: &Store) -> Vec<(String, u64, u64, uuid::Uuid, String, Vec<u8>)> {
    store
        .read_all(0)
        .unwrap()
        .map(|event| {
            let event = event.unwrap();
            let parts = (event.stream().to_owned(), event.offset(), event.position(), event.event_id());
            (parts.0, parts.1, parts.2, parts.3, event.event_type().to_owned(), event.data().to_vec())
        })
        .collect()
}

/// One entry of a key file, as `format-spec.md` §18.2 lays it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecEntry {
    pub subject: String,
    pub key_id: [u8; 8],
    pub key: [u8; 32],
}

/// Decodes a key file by the byte map of `format-spec.md` §18.2, checking every rule there; panics on a
/// violation. Written from the document, not from the engine's decoder.
pub fn spec_decode(bytes: &[u8]) -> Vec<SpecEntry> {
    assert!(bytes.len() >= 20, "an empty key file is 20 bytes");
    assert_eq!(&bytes[0..8], b"ANNLKEYS", "magic");
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 1, "format version");
    let count = u32::from_le_bytes(bytes[12..16].try_into().unwrap());
    let crc_at = bytes.len() - 4;
    assert_eq!(u32::from_le_bytes(bytes[crc_at..].try_into().unwrap()), crc32fast::hash(&bytes[..crc_at]), "CRC");
    let mut entries: Vec<SpecEntry> = Vec::new();
    let mut at = 16;
    for _ in 0..count {
        let n = usize::from(bytes[at]);
        assert!(n >= 1, "subject length");
        let subject = std::str::from_utf8(&bytes[at + 1..at + 1 + n]).unwrap().to_owned();
        if let Some(previous) = entries.last() {
            assert!(previous.subject.as_bytes() < subject.as_bytes(), "strictly increasing subjects");
        }
        let key_id = bytes[at + 1 + n..at + 9 + n].try_into().unwrap();
        let key = bytes[at + 9 + n..at + 41 + n].try_into().unwrap();
        entries.push(SpecEntry { subject, key_id, key });
        at += 41 + n;
    }
    assert_eq!(at, crc_at, "the entries end where the CRC begins");
    entries
}

/// The entry of `subject` in the key file of `erasure`.
pub fn entry_of(erasure: &Erasure, subject: &str) -> Option<SpecEntry> {
    spec_decode(&std::fs::read(erasure.key_file()).unwrap()).into_iter().find(|entry| entry.subject == subject)
}

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// The files under `dir` whose bytes contain `needle`.
pub fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files_under(dir).into_iter().filter(|path| contains(&std::fs::read(path).unwrap(), needle)).collect()
}

/// A new store in a temporary directory, and its key store.
pub fn fresh() -> (tempfile::TempDir, Store, Erasure) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let erasure = Erasure::open(&store).unwrap();
    (dir, store, erasure)
}
