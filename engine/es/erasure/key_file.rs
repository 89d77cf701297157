//! The key file's bytes: every subject's key, sorted by subject, under one CRC. Pure: no I/O.
//!
//! # Byte map, key file format 1 (all integers little-endian; `format-spec.md` §18.2)
//!
//! | bytes              | field              | meaning                                                   |
//! |--------------------|--------------------|-----------------------------------------------------------|
//! | 0..8               | magic              | `ANNLKEYS`                                                |
//! | 8..12              | format version     | u32, [`KEY_FILE_FORMAT_VERSION`] (1)                      |
//! | 12..16             | entry count `c`    | u32                                                       |
//! | 16..16+Σ           | `c` entries        | sorted by subject bytes, strictly increasing              |
//! | 16+Σ..20+Σ         | CRC-32             | crc32 (IEEE, `crc32fast`) of every byte before it         |
//!
//! One entry (`41 + n` bytes):
//!
//! | bytes              | field              | meaning                                                   |
//! |--------------------|--------------------|-----------------------------------------------------------|
//! | 0..1               | subject length `n` | u8, 1 to [`SUBJECT_BYTES_MAX`] (255)                      |
//! | 1..1+n             | subject            | UTF-8                                                     |
//! | 1+n..9+n           | key id             | 8 random bytes, written into every value sealed with it   |
//! | 9+n..41+n          | key                | 32 random bytes, the XChaCha20-Poly1305 key               |
//!
//! The file's length must be exactly the header, the entries and the CRC: nothing may follow.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

/// The key file format this build writes and reads (`format-spec.md` §18.2).
///
/// ```
/// # use annals::{Erasure, Store};
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = Store::open(dir.path()).unwrap();
/// let bytes = std::fs::read(Erasure::open(&store).unwrap().key_file()).unwrap();
/// assert_eq!(&bytes[..8], b"ANNLKEYS");
/// assert_eq!(bytes[8..12], annals::KEY_FILE_FORMAT_VERSION.to_le_bytes());
/// ```
pub const KEY_FILE_FORMAT_VERSION: u32 = 1;
/// Longest subject id, in bytes of UTF-8.
///
/// ```
/// # use annals::{Erasure, Error, Store};
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = Store::open(dir.path()).unwrap();
/// let erasure = Erasure::open(&store).unwrap();
/// let longest = "x".repeat(annals::SUBJECT_BYTES_MAX);
/// assert_eq!(erasure.add_subjects([longest.as_str()]).unwrap(), 1);
/// let too_long = erasure.add_subjects([format!("{longest}x")]);
/// assert!(matches!(too_long, Err(Error::InvalidSubject { .. })));
/// ```
pub const SUBJECT_BYTES_MAX: usize = 255;

pub(super) const MAGIC: [u8; 8] = *b"ANNLKEYS";
const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = MAGIC_OFFSET + MAGIC.len();
const COUNT_OFFSET: usize = VERSION_OFFSET + size_of::<u32>();
const HEADER_LEN: usize = COUNT_OFFSET + size_of::<u32>();
const _: () = assert!(HEADER_LEN == 16);

pub(super) const KEY_ID_LEN: usize = 8;
pub(super) const KEY_LEN: usize = 32;
/// An entry's bytes besides its subject: the length byte, the key id and the key.
const ENTRY_FIXED_LEN: usize = 1 + KEY_ID_LEN + KEY_LEN;
const _: () = assert!(ENTRY_FIXED_LEN == 41);
const CRC_LEN: usize = size_of::<u32>();
/// The smallest file: no entries.
pub(super) const EMPTY_FILE_LEN: usize = HEADER_LEN + CRC_LEN;

/// Names one key of a subject: sealed values carry it, so a value sealed under a key that was destroyed (and
/// maybe replaced by a new key for the same subject) is known to be forgotten, not damaged.
pub(super) type KeyId = [u8; KEY_ID_LEN];

/// One subject's key. Wiped from memory when dropped.
#[derive(Clone)]
pub(super) struct SubjectKey {
    pub(super) id: KeyId,
    pub(super) key: Zeroizing<[u8; KEY_LEN]>,
}

/// Every subject's key, sorted by subject (the order the file stores them in).
pub(super) type Keys = BTreeMap<String, SubjectKey>;

/// Why the bytes are not a key file this build can use.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Damage {
    /// Damaged: bad magic, length, CRC, order or subject; `offset` is the first byte found wrong.
    Corrupt { offset: u64, reason: String },
    /// Intact as far as the header goes, but of another format version.
    Unsupported { found: u32 },
}

/// Encodes `keys` as a key file. The buffer holds keys, so it is wiped when dropped.
pub(super) fn encode(keys: &Keys) -> Zeroizing<Vec<u8>> {
    let count = u32::try_from(keys.len()).expect("fewer than 2^32 subjects (checked when keys are added)");
    let len = EMPTY_FILE_LEN + keys.keys().map(|subject| ENTRY_FIXED_LEN + subject.len()).sum::<usize>();
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&KEY_FILE_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    assert_eq!(out.len(), HEADER_LEN);
    for (subject, key) in keys {
        let subject_len = u8::try_from(subject.len()).expect("subjects are checked when their key is made");
        assert!(subject_len > 0, "subjects are checked when their key is made");
        out.push(subject_len);
        out.extend_from_slice(subject.as_bytes());
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&key.key[..]);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(out.len(), len, "the computed length matches what was written");
    out
}

/// Decodes and checks a key file. Never panics, whatever the bytes.
pub(super) fn decode(bytes: &[u8]) -> Result<Keys, Damage> {
    let corrupt = |offset: usize, reason: String| Err(Damage::Corrupt { offset: offset as u64, reason });
    if bytes.len() < VERSION_OFFSET + size_of::<u32>() {
        return corrupt(0, format!("{} bytes, shorter than a key file's header", bytes.len()));
    }
    if bytes[MAGIC_OFFSET..VERSION_OFFSET] != MAGIC {
        return corrupt(MAGIC_OFFSET, "not a key file (bad magic)".into());
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let version = u32_at(VERSION_OFFSET);
    if version != KEY_FILE_FORMAT_VERSION {
        return Err(Damage::Unsupported { found: version });
    }
    if bytes.len() < EMPTY_FILE_LEN {
        return corrupt(0, format!("{} bytes, shorter than an empty key file ({EMPTY_FILE_LEN})", bytes.len()));
    }
    let crc_at = bytes.len() - CRC_LEN;
    let (stored, computed) = (u32_at(crc_at), crc32fast::hash(&bytes[..crc_at]));
    if stored != computed {
        return corrupt(crc_at, format!("CRC mismatch: stored {stored:08x}, computed {computed:08x}"));
    }
    let count = u32_at(COUNT_OFFSET);
    let mut keys = Keys::new();
    let mut at = HEADER_LEN;
    for entry in 0..count {
        let entry_at = at;
        let Some(&subject_len) = bytes[..crc_at].get(at) else {
            return corrupt(at, format!("the file ends before entry {entry} of {count}"));
        };
        let subject_len = usize::from(subject_len);
        if subject_len == 0 {
            return corrupt(at, format!("entry {entry} has an empty subject"));
        }
        let end = at + ENTRY_FIXED_LEN + subject_len;
        if end > crc_at {
            return corrupt(at, format!("entry {entry} of {count} runs past the end of the file"));
        }
        at += 1;
        let Ok(subject) = std::str::from_utf8(&bytes[at..at + subject_len]) else {
            return corrupt(at, format!("the subject of entry {entry} is not UTF-8"));
        };
        if keys.last_key_value().is_some_and(|(previous, _)| previous.as_bytes() >= subject.as_bytes()) {
            return corrupt(entry_at, format!("entry {entry} ({subject:?}) is out of order or repeated"));
        }
        at += subject_len;
        let id = bytes[at..at + KEY_ID_LEN].try_into().expect("8 bytes");
        at += KEY_ID_LEN;
        let mut key = Zeroizing::new([0; KEY_LEN]);
        key.copy_from_slice(&bytes[at..at + KEY_LEN]);
        at += KEY_LEN;
        debug_assert_eq!(at, end);
        keys.insert(subject.to_owned(), SubjectKey { id, key });
    }
    if at != crc_at {
        return corrupt(at, format!("{} bytes after the last of {count} entries", crc_at - at));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SubjectKey {
        SubjectKey { id: [byte; KEY_ID_LEN], key: Zeroizing::new([byte ^ 0x5a; KEY_LEN]) }
    }

    fn sample() -> Keys {
        [("customer-1", 1), ("customer-2", 2), ("é", 3)].into_iter().map(|(s, b)| (s.to_owned(), key(b))).collect()
    }

    #[test]
    fn a_key_file_round_trips() {
        let keys = sample();
        let bytes = encode(&keys);
        assert_eq!(bytes.len(), EMPTY_FILE_LEN + 3 * ENTRY_FIXED_LEN + 10 + 10 + 2);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.len(), 3);
        for (subject, key) in &keys {
            assert_eq!(back[subject].id, key.id);
            assert_eq!(*back[subject].key, *key.key);
        }
        assert_eq!(decode(&encode(&Keys::new())).unwrap().len(), 0);
        assert_eq!(encode(&Keys::new()).len(), EMPTY_FILE_LEN);
    }

    #[test]
    fn every_cut_and_every_flipped_bit_is_rejected() {
        let bytes = encode(&sample());
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "cut at {len}");
        }
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.to_vec();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&damaged).is_err(), "bit {bit} flipped");
        }
    }

    /// Damage behind a valid CRC (a writer's bug, not bit rot): each rule is checked on its own.
    #[test]
    fn entries_are_checked_behind_the_crc() {
        let with_crc = |mut body: Vec<u8>| {
            let crc = crc32fast::hash(&body);
            body.extend_from_slice(&crc.to_le_bytes());
            body
        };
        let header = |count: u32| [&MAGIC[..], &1u32.to_le_bytes(), &count.to_le_bytes()].concat();
        let entry = |subject: &[u8]| [&[subject.len() as u8][..], subject, &[7; KEY_ID_LEN], &[9; KEY_LEN]].concat();
        let cases = [
            ("count too high", [header(2), entry(b"a")].concat()),
            ("out of order", [header(2), entry(b"b"), entry(b"a")].concat()),
            ("repeated", [header(2), entry(b"a"), entry(b"a")].concat()),
            ("empty subject", [header(1), entry(b"")].concat()),
            ("not UTF-8", [header(1), entry(&[0xff])].concat()),
            ("trailing bytes", [header(1), entry(b"a"), vec![0]].concat()),
        ];
        for (case, body) in cases {
            assert!(matches!(decode(&with_crc(body)), Err(Damage::Corrupt { .. })), "{case}");
        }
        let newer = with_crc([&MAGIC[..], &2u32.to_le_bytes(), &0u32.to_le_bytes()].concat());
        assert_eq!(decode(&newer).err(), Some(Damage::Unsupported { found: 2 }));
    }
}
