//! [`Personal<T>`]: a field marked personal, serialized as its subject and its sealed value.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, SeqAccess, Visitor};
use serde::ser::{Error as _, Serializer};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::key_file::KeyId;
use super::sealed::{self, Parsed, ERASED};
use super::{check_subject, current, key_for_opening, report, Erasure};
use crate::es::codec::{BincodeCodec, Codec};
use crate::Error;

const NO_KEY_STORE: &str = "a Personal value needs a key store: give the codec an Erasure \
                            (EventCodec::with_erasure, Repository::with_erasure, \
                            ProjectionRunner::start_with_erasure) or run it inside Erasure::scope";

/// A value that is personal data of one subject (a customer, a patient, an employee): stored sealed under the
/// subject's key, and read as forgotten once the subject is forgotten ([`Erasure::forget`]).
///
/// Wrap each personal field of an event (or of an aggregate's or a projection's state, which snapshots and
/// checkpoints store) and name whose data it is. The subject id is stored in the clear beside the sealed value,
/// so that it can be read without the key, and it stays in the log after the subject is forgotten: make it an
/// opaque id (`customer-42`, a UUID), never personal data itself (an e-mail address, a name).
///
/// Serialized (by any serde format, inside an [`Erasure::scope`]) as a struct `Personal` of two fields:
/// `subject`, a string, and `sealed`, bytes (a hex string in human-readable formats such as JSON) holding
/// the value encoded with bincode and sealed with XChaCha20-Poly1305 (`format-spec.md` §18.4). Serializing
/// without a key store is an error, never a value in the clear.
///
/// `Debug` never shows the value, so personal data does not reach logs through `{:?}`. Equality compares the
/// subject and the value (all forgotten values of a subject are equal). `Send`/`Sync` as `T` is.
///
/// ```
/// use annals::{BincodeCodec, Codec, Erasure, Personal, Store};
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = Store::open(dir.path()).unwrap();
/// let erasure = Erasure::open(&store).unwrap();
/// let name = Personal::new("customer-42", "Ada Lovelace".to_owned());
/// assert_eq!((name.subject(), name.value().map(String::as_str)), ("customer-42", Some("Ada Lovelace")));
/// assert_eq!(format!("{name:?}"), r#"Personal { subject: "customer-42", value: <hidden> }"#);
///
/// let bytes = erasure.scope(|| BincodeCodec.encode(&name)).unwrap();
/// erasure.forget("customer-42").unwrap();
/// let read: Personal<String> = erasure.scope(|| BincodeCodec.decode(&bytes)).unwrap();
/// assert!(read.is_forgotten());
/// assert_eq!(read, Personal::forgotten("customer-42"));
/// assert_eq!(read.value().map_or("(forgotten)", String::as_str), "(forgotten)");
/// ```
pub struct Personal<T> {
    subject: String,
    state: State<T>,
}

enum State<T> {
    Known {
        value: T,
        /// The key it was read under (`None`: made by the application, sealed under the subject's current
        /// key). A value read under a key that was destroyed since is written as forgotten, never sealed anew:
        /// a copy read before the forget (a projection's state, say) must not bring it back.
        sealed_under: Option<KeyId>,
    },
    Forgotten,
}

impl<T> Personal<T> {
    /// `value`, personal data of `subject`. The subject id must be 1 to 255 bytes (checked when the value is
    /// sealed); the first value sealed for a subject creates its key.
    ///
    /// ```
    /// let email = annals::Personal::new("customer-7", "ada@example.com".to_owned());
    /// assert!(!email.is_forgotten());
    /// ```
    pub fn new(subject: impl Into<String>, value: T) -> Self {
        Personal { subject: subject.into(), state: State::Known { value, sealed_under: None } }
    }

    /// The marker a value of `subject` reads as once the subject is forgotten. Serialized, it stays forgotten.
    ///
    /// ```
    /// let gone = annals::Personal::<String>::forgotten("customer-7");
    /// assert_eq!((gone.subject(), gone.value()), ("customer-7", None));
    /// ```
    pub fn forgotten(subject: impl Into<String>) -> Self {
        Personal { subject: subject.into(), state: State::Forgotten }
    }

    /// Whose personal data this is. Readable whether or not the subject was forgotten.
    ///
    /// ```
    /// assert_eq!(annals::Personal::new("patient-3", 1980).subject(), "patient-3");
    /// ```
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The value; `None` once its subject was forgotten.
    ///
    /// ```
    /// assert_eq!(annals::Personal::new("patient-3", 1980).value(), Some(&1980));
    /// ```
    pub fn value(&self) -> Option<&T> {
        match &self.state {
            State::Known { value, .. } => Some(value),
            State::Forgotten => None,
        }
    }

    /// The value, owned; `None` once its subject was forgotten.
    ///
    /// ```
    /// assert_eq!(annals::Personal::new("patient-3", 1980).into_value(), Some(1980));
    /// ```
    pub fn into_value(self) -> Option<T> {
        match self.state {
            State::Known { value, .. } => Some(value),
            State::Forgotten => None,
        }
    }

    /// Whether the subject was forgotten when this value was read.
    ///
    /// ```
    /// assert!(annals::Personal::<u8>::forgotten("patient-3").is_forgotten());
    /// ```
    pub fn is_forgotten(&self) -> bool {
        matches!(self.state, State::Forgotten)
    }

    /// A value derived from this one, personal data of the same subject, that stays forgotten if this one is
    /// (and is written as forgotten, as this one would be, once the key it was read under is destroyed). For
    /// upcasters and read models.
    ///
    /// ```
    /// let name = annals::Personal::new("customer-1", "Ada Lovelace".to_owned());
    /// let initial = name.map(|name| name.chars().next());
    /// assert_eq!(initial.value(), Some(&Some('A')));
    /// ```
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Personal<U> {
        let state = match self.state {
            State::Known { value, sealed_under } => State::Known { value: f(value), sealed_under },
            State::Forgotten => State::Forgotten,
        };
        Personal { subject: self.subject, state }
    }
}

impl<T: Clone> Clone for Personal<T> {
    fn clone(&self) -> Self {
        let state = match &self.state {
            State::Known { value, sealed_under } => State::Known { value: value.clone(), sealed_under: *sealed_under },
            State::Forgotten => State::Forgotten,
        };
        Personal { subject: self.subject.clone(), state }
    }
}

impl<T: PartialEq> PartialEq for Personal<T> {
    fn eq(&self, other: &Self) -> bool {
        self.subject == other.subject && self.value() == other.value()
    }
}

impl<T: Eq> Eq for Personal<T> {}

impl<T> fmt::Debug for Personal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = if self.is_forgotten() { "<forgotten>" } else { "<hidden>" };
        f.debug_struct("Personal").field("subject", &self.subject).field("value", &format_args!("{value}")).finish()
    }
}

impl<T: Serialize> Serialize for Personal<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let sealed = match &self.state {
            State::Forgotten => vec![ERASED],
            State::Known { value, sealed_under } => {
                let erasure = current().ok_or_else(|| S::Error::custom(NO_KEY_STORE))?;
                seal(&erasure, &self.subject, value, *sealed_under).map_err(S::Error::custom)?
            }
        };
        WireRef { subject: &self.subject, sealed: SealedRef(&sealed) }.serialize(serializer)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Personal<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let WireOwned { subject, sealed } = WireOwned::deserialize(deserializer)?;
        open(subject, &sealed.0).map_err(de::Error::custom)
    }
}

/// Seals `value` of `subject`: under the key it was read under if that key still exists (else as forgotten),
/// or, for a value the application made, under the subject's key, made now if it has none.
fn seal<T: Serialize>(
    erasure: &Erasure,
    subject: &str,
    value: &T,
    read_under: Option<KeyId>,
) -> Result<Vec<u8>, String> {
    let key = match read_under {
        Some(id) => match erasure.inner.key_with_id(subject, &id) {
            Some(key) => key,
            None => return Ok(vec![ERASED]),
        },
        None => super::key_for_sealing_in_scope(erasure, subject).map_err(reported)?,
    };
    let plaintext = Zeroizing::new(
        BincodeCodec.encode(value).map_err(|err| format!("a personal value of subject {subject:?}: {err}"))?,
    );
    sealed::seal(&key, subject, &plaintext)
        .map_err(|err| reported(Error::io(format!("sealing a personal value of subject {subject:?}"), err)))
}

/// Reads a value of `subject` from its sealed bytes: the value if its key exists, forgotten if the key that
/// sealed it was destroyed, an error if the bytes are damaged.
fn open<T: DeserializeOwned>(subject: String, sealed: &[u8]) -> Result<Personal<T>, String> {
    check_subject(&subject).map_err(|error| error.to_string())?;
    let (key_id, rest) = match sealed::parse(sealed) {
        Ok(Parsed::Erased) => return Ok(Personal::forgotten(subject)),
        Ok(Parsed::Sealed { key_id, rest }) => (key_id, rest),
        Err(reason) => return Err(format!("the personal value of subject {subject:?}: {reason}")),
    };
    // IMPORTANT: the key is copied out under the read lock and used after it: a forget that removes it
    // meanwhile leaves this read with the value, the one before or after it with the marker, never half.
    let Some(key) = key_for_opening(&subject, &key_id).map_err(|()| NO_KEY_STORE)? else {
        return Ok(Personal::forgotten(subject));
    };
    let plaintext = sealed::open(&key, &subject, rest).map_err(|()| {
        format!(
            "the personal value of subject {subject:?} does not authenticate under the subject's key: its bytes \
             were changed, or it was sealed with another key file's key of the same id"
        )
    })?;
    let value = BincodeCodec
        .decode(&plaintext)
        .map_err(|err| format!("the personal value of subject {subject:?} does not decode: {err}"))?;
    Ok(Personal { subject, state: State::Known { value, sealed_under: Some(key_id) } })
}

/// Keeps a key-store error for the codec that runs the scope, and gives serde its text.
fn reported(error: Error) -> String {
    let text = error.to_string();
    report(error);
    text
}

/// The serialized form: `Personal { subject, sealed }`.
#[derive(Serialize)]
#[serde(rename = "Personal")]
struct WireRef<'a> {
    subject: &'a str,
    sealed: SealedRef<'a>,
}

#[derive(Deserialize)]
#[serde(rename = "Personal")]
struct WireOwned {
    subject: String,
    sealed: SealedBuf,
}

/// Sealed bytes: serde bytes, or lowercase hex in human-readable formats.
struct SealedRef<'a>(&'a [u8]);

struct SealedBuf(Vec<u8>);

impl Serialize for SealedRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            let hex: String = self.0.iter().map(|byte| format!("{byte:02x}")).collect();
            serializer.serialize_str(&hex)
        } else {
            serializer.serialize_bytes(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for SealedBuf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let hex = String::deserialize(deserializer)?;
            return from_hex(&hex).map(SealedBuf).ok_or_else(|| de::Error::custom("sealed bytes: not lowercase hex"));
        }
        deserializer.deserialize_byte_buf(BytesVisitor).map(SealedBuf)
    }
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    let digit = |byte: u8| match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    };
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.as_bytes().chunks_exact(2).map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sealed bytes")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
        Ok(bytes.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(bytes)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(byte) = seq.next_element()? {
            bytes.push(byte);
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_anything_else() {
        assert_eq!(from_hex("00ff10ab"), Some(vec![0, 0xff, 0x10, 0xab]));
        assert_eq!(from_hex(""), Some(vec![]));
        for bad in ["0", "0g", "FF", "é0"] {
            assert_eq!(from_hex(bad), None, "{bad}");
        }
    }

    #[test]
    fn without_a_key_store_nothing_is_sealed_or_opened() {
        let error = BincodeCodec.encode(&Personal::new("c-1", 5u8)).unwrap_err();
        assert!(error.to_string().contains("needs a key store"), "{error}");
        // A forgotten value needs no key, either way.
        let bytes = BincodeCodec.encode(&Personal::<u8>::forgotten("c-1")).unwrap();
        assert_eq!(BincodeCodec.decode::<Personal<u8>>(&bytes).unwrap(), Personal::forgotten("c-1"));
    }
}
