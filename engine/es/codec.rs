//! Codecs: how typed values (events, aggregate states) become bytes and back, through serde.
//!
//! Each codec has a one-byte id that is stored with every event it encodes
//! ([`EventData::with_codec`](crate::EventData::with_codec), [`RecordedEvent::codec`](crate::RecordedEvent::codec)),
//! so a reader picks the codec that wrote the bytes and never decodes with the wrong one. Id 0 means opaque
//! bytes (no codec); ids 1 to 127 belong to annals' own codecs; an application's own codec takes an id from
//! 128 to 255.
//!
//! bincode is pinned to 2.0.x (3.0 is a deliberate compile error and the crate is unmaintained); it appears
//! only in this file, so another binary codec can replace it behind the trait.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The boxed cause of a codec failure.
type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A serde data format for payloads, with the id stored beside every payload it writes.
///
/// Implementations are stateless or immutable (`Send + Sync`), so one value serves every thread.
///
/// ```
/// use annals::{BincodeCodec, Codec};
/// let bytes = BincodeCodec.encode(&(7u32, "seven")).unwrap();
/// let back: (u32, String) = BincodeCodec.decode(&bytes).unwrap();
/// assert_eq!(back, (7, "seven".to_owned()));
/// assert_eq!(BincodeCodec::ID, 1);
/// ```
pub trait Codec: Send + Sync + 'static {
    /// The id stored with each payload (see the module documentation for who owns which ids). Never 0.
    const ID: u8;
    /// A short name for messages.
    const NAME: &'static str;

    /// Encodes `value`.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError>;

    /// Decodes a whole payload into a `T`; bytes left over are an error.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

/// Compact binary payloads (bincode 2, its standard configuration: little-endian, variable-length integers).
/// The default codec. Id 1.
///
/// Not self-describing: decoding needs the exact type that encoded, so an event type's old versions are kept
/// as Rust types and upcast (see [`Upcasters`](crate::Upcasters)).
///
/// ```
/// use annals::{BincodeCodec, Codec};
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Deposited { amount: i64 }
/// let bytes = BincodeCodec.encode(&Deposited { amount: 100 }).unwrap();
/// assert_eq!(bytes.len(), 1, "small integers take one byte");
/// assert_eq!(BincodeCodec.decode::<Deposited>(&bytes).unwrap(), Deposited { amount: 100 });
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BincodeCodec;

impl BincodeCodec {
    fn config() -> bincode::config::Configuration {
        bincode::config::standard()
    }
}

impl Codec for BincodeCodec {
    const ID: u8 = 1;
    const NAME: &'static str = "bincode";

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        bincode::serde::encode_to_vec(value, Self::config())
            .map_err(|cause| CodecError::Encode { codec: Self::NAME, cause: Box::new(cause) })
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let decode_error = |cause: Cause| CodecError::Decode { codec: Self::NAME, cause };
        let (value, read) =
            bincode::serde::decode_from_slice(bytes, Self::config()).map_err(|cause| decode_error(Box::new(cause)))?;
        if read != bytes.len() {
            return Err(decode_error(format!("{} bytes left over after the value", bytes.len() - read).into()));
        }
        Ok(value)
    }
}

/// Human-readable JSON payloads (serde_json), for streams that people read with other tools. Id 2.
/// Needs the `json` feature.
///
/// ```
/// use annals::{Codec, JsonCodec};
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Deposited { amount: i64 }
/// let bytes = JsonCodec.encode(&Deposited { amount: 100 }).unwrap();
/// assert_eq!(bytes, br#"{"amount":100}"#);
/// assert_eq!(JsonCodec.decode::<Deposited>(&bytes).unwrap(), Deposited { amount: 100 });
/// ```
#[cfg(feature = "json")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonCodec;

#[cfg(feature = "json")]
impl Codec for JsonCodec {
    const ID: u8 = 2;
    const NAME: &'static str = "json";

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(value).map_err(|cause| CodecError::Encode { codec: Self::NAME, cause: Box::new(cause) })
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        // from_slice already refuses trailing characters other than whitespace.
        serde_json::from_slice(bytes).map_err(|cause| CodecError::Decode { codec: Self::NAME, cause: Box::new(cause) })
    }
}

/// Decodes `bytes` that the codec with id `id` wrote: with `preferred` if it is that codec, else with
/// whichever of annals' codecs (compiled into this build) has that id.
///
/// ```
/// use annals::{decode_tagged, BincodeCodec, Codec, CodecError, JsonCodec};
/// // A reader configured for bincode still reads what JSON wrote, because the id says so.
/// let bytes = JsonCodec.encode(&42u8).unwrap();
/// assert_eq!(decode_tagged::<_, u8>(&BincodeCodec, JsonCodec::ID, &bytes).unwrap(), 42);
/// assert!(matches!(decode_tagged::<_, u8>(&BincodeCodec, 0, &bytes), Err(CodecError::UnknownCodec { id: 0 })));
/// ```
pub fn decode_tagged<C: Codec, T: DeserializeOwned>(preferred: &C, id: u8, bytes: &[u8]) -> Result<T, CodecError> {
    if id == C::ID {
        return preferred.decode(bytes);
    }
    match id {
        BincodeCodec::ID => BincodeCodec.decode(bytes),
        #[cfg(feature = "json")]
        JsonCodec::ID => JsonCodec.decode(bytes),
        _ => Err(CodecError::UnknownCodec { id }),
    }
}

/// A value could not be encoded or decoded.
///
/// ```
/// use annals::{BincodeCodec, Codec, CodecError};
/// let error = BincodeCodec.decode::<String>(&[5, b'a']).unwrap_err();
/// assert!(matches!(error, CodecError::Decode { codec: "bincode", .. }));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum CodecError {
    /// The codec refused the value (for example a map key JSON cannot represent).
    Encode {
        /// The codec's name.
        codec: &'static str,
        /// The codec's error.
        cause: Cause,
    },
    /// The bytes are not a value of the requested type in this codec.
    Decode {
        /// The codec's name.
        codec: &'static str,
        /// The codec's error.
        cause: Cause,
    },
    /// The payload's codec id is none this reader knows: 0 (opaque bytes written without a codec), an
    /// application codec other than the reader's, or `json` in a build without the `json` feature.
    UnknownCodec {
        /// The id stored with the payload.
        id: u8,
    },
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Encode { codec, cause } => write!(f, "{codec} could not encode the value: {cause}"),
            CodecError::Decode { codec, cause } => write!(f, "{codec} could not decode the bytes: {cause}"),
            CodecError::UnknownCodec { id: 0 } => {
                f.write_str("the payload was written as opaque bytes (codec id 0), not by a codec")
            }
            CodecError::UnknownCodec { id } => write!(
                f,
                "the payload was written by codec id {id}, which this reader does not have (is the `json` \
                 feature off, or is it another application codec?)"
            ),
        }
    }
}

impl std::error::Error for CodecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CodecError::Encode { cause, .. } | CodecError::Decode { cause, .. } => Some(&**cause),
            CodecError::UnknownCodec { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut bytes = BincodeCodec.encode(&7u64).unwrap();
        bytes.push(0);
        assert!(matches!(BincodeCodec.decode::<u64>(&bytes), Err(CodecError::Decode { .. })));
    }

    #[test]
    fn a_huge_length_prefix_fails_without_allocating_it() {
        // A vector claiming u64::MAX elements in nine bytes.
        let bytes = [253, 255, 255, 255, 255, 255, 255, 255, 255];
        assert!(BincodeCodec.decode::<Vec<u64>>(&bytes).is_err());
    }
}
