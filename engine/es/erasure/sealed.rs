//! A personal value's sealed bytes: its plaintext encrypted with XChaCha20-Poly1305 under its subject's key.
//! Pure apart from drawing the nonce.
//!
//! # Byte map (`format-spec.md` §18.4)
//!
//! | bytes          | field      | meaning                                                                  |
//! |----------------|------------|--------------------------------------------------------------------------|
//! | 0..1           | format     | [`SEALED`] (1): sealed; [`ERASED`] (0): written as forgotten, nothing follows |
//! | 1..9           | key id     | the id of the subject's key that sealed it                              |
//! | 9..33          | nonce      | 24 random bytes, drawn for this value                                    |
//! | 33..end        | ciphertext | the plaintext's length plus the 16-byte Poly1305 tag                     |
//!
//! The additional authenticated data is the format byte, the key id and the subject's UTF-8 bytes, so that a
//! sealed value moved under another subject, or given another key id, fails to open.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use super::key_file::{KeyId, SubjectKey, KEY_ID_LEN};

/// Format byte of a value written as forgotten: its key was destroyed before it was written again.
pub(super) const ERASED: u8 = 0;
/// Format byte of a sealed value.
pub(super) const SEALED: u8 = 1;

const FORMAT_OFFSET: usize = 0;
const KEY_ID_OFFSET: usize = FORMAT_OFFSET + 1;
const NONCE_OFFSET: usize = KEY_ID_OFFSET + KEY_ID_LEN;
const NONCE_LEN: usize = 24;
const CIPHERTEXT_OFFSET: usize = NONCE_OFFSET + NONCE_LEN;
const TAG_LEN: usize = 16;
/// The bytes a sealed value adds to its plaintext.
pub(super) const SEALED_OVERHEAD: usize = CIPHERTEXT_OFFSET + TAG_LEN;
const _: () = assert!(SEALED_OVERHEAD == 49);

/// What a value's sealed bytes hold, before its key is looked up.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Parsed<'a> {
    /// Written as forgotten.
    Erased,
    /// Sealed under the subject's key `key_id`.
    Sealed { key_id: KeyId, rest: &'a [u8] },
}

/// Seals `plaintext` of `subject` under `key`, with a fresh random nonce.
pub(super) fn seal(key: &SubjectKey, subject: &str, plaintext: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut nonce = [0; NONCE_LEN];
    getrandom::fill(&mut nonce)?;
    let cipher = XChaCha20Poly1305::new(&(*key.key).into());
    let aad = aad(&key.id, subject);
    let ciphertext = cipher
        .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: &aad })
        .map_err(|_| std::io::Error::other("XChaCha20-Poly1305 refused the plaintext (longer than 256 GiB?)"))?;
    let mut out = Vec::with_capacity(CIPHERTEXT_OFFSET + ciphertext.len());
    out.push(SEALED);
    out.extend_from_slice(&key.id);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    debug_assert_eq!(out.len(), plaintext.len() + SEALED_OVERHEAD);
    Ok(out)
}

/// Reads the format byte and the key id. Never panics, whatever the bytes.
pub(super) fn parse(sealed: &[u8]) -> Result<Parsed<'_>, String> {
    match sealed.first() {
        None => Err("the sealed bytes are empty".into()),
        Some(&ERASED) if sealed.len() == 1 => Ok(Parsed::Erased),
        Some(&ERASED) => Err(format!("a value written as forgotten carries {} more bytes", sealed.len() - 1)),
        Some(&SEALED) if sealed.len() >= SEALED_OVERHEAD => Ok(Parsed::Sealed {
            key_id: sealed[KEY_ID_OFFSET..NONCE_OFFSET].try_into().expect("8 bytes"),
            rest: &sealed[NONCE_OFFSET..],
        }),
        Some(&SEALED) => {
            Err(format!("{} sealed bytes, fewer than the {SEALED_OVERHEAD} of an empty value", sealed.len()))
        }
        Some(format) => Err(format!("unknown sealed-value format {format}")),
    }
}

/// Opens the nonce and ciphertext (`rest` of [`Parsed::Sealed`]) under `key`. `Err` if they do not
/// authenticate: damaged, tampered with, or moved under another subject.
pub(super) fn open(key: &SubjectKey, subject: &str, rest: &[u8]) -> Result<Zeroizing<Vec<u8>>, ()> {
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("parse checked the length");
    let cipher = XChaCha20Poly1305::new(&(*key.key).into());
    let aad = aad(&key.id, subject);
    cipher.decrypt(&XNonce::from(nonce), Payload { msg: ciphertext, aad: &aad }).map(Zeroizing::new).map_err(|_| ())
}

fn aad(key_id: &KeyId, subject: &str) -> Vec<u8> {
    [&[SEALED][..], key_id, subject.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SubjectKey {
        SubjectKey { id: [byte; KEY_ID_LEN], key: Zeroizing::new([byte; 32]) }
    }

    fn open_all(key: &SubjectKey, subject: &str, sealed: &[u8]) -> Result<Vec<u8>, ()> {
        match parse(sealed) {
            Ok(Parsed::Sealed { key_id, rest }) if key_id == key.id => open(key, subject, rest).map(|p| p.to_vec()),
            _ => Err(()),
        }
    }

    #[test]
    fn a_value_round_trips_and_each_seal_differs() {
        let key = key(1);
        for plaintext in [&b""[..], b"Ada Lovelace", &[0xab; 4096]] {
            let (one, two) = (seal(&key, "c-1", plaintext).unwrap(), seal(&key, "c-1", plaintext).unwrap());
            assert_ne!(one, two, "a fresh nonce each time");
            assert_eq!(one.len(), plaintext.len() + SEALED_OVERHEAD);
            assert_eq!(open_all(&key, "c-1", &one).unwrap(), plaintext);
        }
    }

    #[test]
    fn another_key_another_subject_or_any_flipped_bit_fails() {
        let sealed = seal(&key(1), "c-1", b"Ada").unwrap();
        assert!(open_all(&key(2), "c-1", &sealed).is_err());
        let same_id_other_key = SubjectKey { id: key(1).id, key: Zeroizing::new([9; 32]) };
        assert!(open_all(&same_id_other_key, "c-1", &sealed).is_err());
        assert!(open_all(&key(1), "c-2", &sealed).is_err(), "bound to its subject");
        for bit in 0..sealed.len() * 8 {
            let mut damaged = sealed.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(open_all(&key(1), "c-1", &damaged).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn parsing_never_panics_and_knows_the_erased_form() {
        assert_eq!(parse(&[ERASED]), Ok(Parsed::Erased));
        assert!(parse(&[]).is_err());
        assert!(parse(&[ERASED, 0]).is_err());
        assert!(parse(&[2]).is_err());
        for len in 0..SEALED_OVERHEAD {
            assert!(parse(&[&[SEALED][..], &vec![0; len.saturating_sub(1)]].concat()).is_err(), "{len}");
        }
    }
}
