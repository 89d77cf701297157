//! One record of the log: its byte layout, encoding and checked decoding. Pure: no I/O.
//!
//! A frame is a fixed 88-byte header followed by the stream name, the event type, the metadata and the data.
//! Frames start at 8-byte aligned offsets; the bytes between the end of a frame and the next aligned offset
//! are zero. All integers are little-endian.
//!
//! | offset | size | field            | meaning                                                                  |
//! |-------:|-----:|------------------|--------------------------------------------------------------------------|
//! | 0      | 4    | `frame_len`      | bytes of the frame, header included, padding excluded; 0 = end of log    |
//! | 4      | 4    | `crc`            | CRC-32 (IEEE, crc32fast) of bytes `0..4` and `8..frame_len`              |
//! | 8      | 8    | `position`       | global position, dense from 0                                            |
//! | 16     | 8    | `offset`         | offset within the stream, dense from 0                                   |
//! | 24     | 8    | `prev`           | locator of the stream's previous record, `u64::MAX` for offset 0         |
//! | 32     | 8    | `synced_before`  | every position below this was durable when this record was written       |
//! | 40     | 8    | `timestamp`      | commit time, nanoseconds since the Unix epoch                            |
//! | 48     | 16   | `event_id`       | the event's UUID, big-endian bytes as `Uuid::as_bytes`                   |
//! | 64     | 4    | `txn_after`      | records of the same atomic append that follow this one; 0 = commit mark  |
//! | 68     | 2    | `stream_len`     | bytes of the stream name (UTF-8), 1..=`STREAM_NAME_BYTES_MAX`            |
//! | 70     | 2    | `type_len`       | bytes of the event type (UTF-8), 1..=`EVENT_TYPE_BYTES_MAX`              |
//! | 72     | 4    | `metadata_len`   | bytes of metadata                                                        |
//! | 76     | 4    | `data_len`       | bytes of data                                                            |
//! | 80     | 1    | `codec`          | which codec wrote the data (0 = opaque bytes)                            |
//! | 81     | 7    | reserved         | zero                                                                     |
//! | 88     | …    | body             | stream name, event type, metadata, data, in that order                   |
//!
//! The CRC covers the length and every header field, so a damaged length can not steer the decoder into
//! trusting other bytes. Every length is bounded before it is used.

use uuid::Uuid;

/// Byte offset of each header field, each built from the one before.
const FRAME_LEN_OFFSET: usize = 0;
const CRC_OFFSET: usize = FRAME_LEN_OFFSET + 4;
const POSITION_OFFSET: usize = CRC_OFFSET + 4;
const STREAM_OFFSET_OFFSET: usize = POSITION_OFFSET + 8;
const PREV_OFFSET: usize = STREAM_OFFSET_OFFSET + 8;
const SYNCED_BEFORE_OFFSET: usize = PREV_OFFSET + 8;
const TIMESTAMP_OFFSET: usize = SYNCED_BEFORE_OFFSET + 8;
const EVENT_ID_OFFSET: usize = TIMESTAMP_OFFSET + 8;
const TXN_AFTER_OFFSET: usize = EVENT_ID_OFFSET + 16;
const STREAM_LEN_OFFSET: usize = TXN_AFTER_OFFSET + 4;
const TYPE_LEN_OFFSET: usize = STREAM_LEN_OFFSET + 2;
const METADATA_LEN_OFFSET: usize = TYPE_LEN_OFFSET + 2;
const DATA_LEN_OFFSET: usize = METADATA_LEN_OFFSET + 4;
const CODEC_OFFSET: usize = DATA_LEN_OFFSET + 4;
const RESERVED_OFFSET: usize = CODEC_OFFSET + 1;
/// Length of the fixed frame header.
pub const HEADER_LEN: usize = RESERVED_OFFSET + 7;
const _: () = assert!(HEADER_LEN == 88);
const _: () = assert!(HEADER_LEN.is_multiple_of(FRAME_ALIGN));

/// Frames start at multiples of this.
pub const FRAME_ALIGN: usize = 8;
/// Longest stream name, in bytes of UTF-8.
pub const STREAM_NAME_BYTES_MAX: usize = 1024;
/// Longest event type, in bytes of UTF-8.
pub const EVENT_TYPE_BYTES_MAX: usize = 1024;
/// The `prev` value of a stream's first record.
pub const NO_PREV: u64 = u64::MAX;

/// The fewest bytes from one frame's start to the next: a header, a one-byte stream name and event type, padded.
pub const FRAME_STRIDE_MIN: usize = aligned(HEADER_LEN + 2);
const _: () = assert!(FRAME_STRIDE_MIN == 96);

/// Rounds a frame length up to the next frame start.
pub const fn aligned(len: usize) -> usize {
    (len + FRAME_ALIGN - 1) & !(FRAME_ALIGN - 1)
}

/// The encoded length of a frame with these body parts (padding excluded).
pub const fn frame_len(stream_len: usize, type_len: usize, metadata_len: usize, data_len: usize) -> usize {
    HEADER_LEN + stream_len + type_len + metadata_len + data_len
}

/// Everything the header holds, as the writer fills it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub position: u64,
    pub offset: u64,
    pub prev: u64,
    pub synced_before: u64,
    pub timestamp_nanos: u64,
    pub event_id: Uuid,
    pub txn_after: u32,
    pub codec: u8,
}

/// Appends one frame, padded to `FRAME_ALIGN`, to `out`.
///
/// The caller has validated the lengths (stream name and event type within their maxima, metadata and data
/// under 4 GiB); this asserts them, since breaking them is a bug in annals, not bad input.
pub fn encode(out: &mut Vec<u8>, header: &Header, stream: &str, event_type: &str, metadata: &[u8], data: &[u8]) {
    assert!((1..=STREAM_NAME_BYTES_MAX).contains(&stream.len()));
    assert!((1..=EVENT_TYPE_BYTES_MAX).contains(&event_type.len()));
    let len = frame_len(stream.len(), event_type.len(), metadata.len(), data.len());
    let len_u32 = u32::try_from(len).expect("frame length is bounded by the segment size");
    let start = out.len();
    out.reserve(aligned(len));
    out.extend_from_slice(&len_u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // CRC, filled in below
    out.extend_from_slice(&header.position.to_le_bytes());
    out.extend_from_slice(&header.offset.to_le_bytes());
    out.extend_from_slice(&header.prev.to_le_bytes());
    out.extend_from_slice(&header.synced_before.to_le_bytes());
    out.extend_from_slice(&header.timestamp_nanos.to_le_bytes());
    out.extend_from_slice(header.event_id.as_bytes());
    out.extend_from_slice(&header.txn_after.to_le_bytes());
    out.extend_from_slice(&(stream.len() as u16).to_le_bytes());
    out.extend_from_slice(&(event_type.len() as u16).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.push(header.codec);
    out.extend_from_slice(&[0; 7]);
    debug_assert_eq!(out.len() - start, HEADER_LEN);
    out.extend_from_slice(stream.as_bytes());
    out.extend_from_slice(event_type.as_bytes());
    out.extend_from_slice(metadata);
    out.extend_from_slice(data);
    let crc = checksum(&out[start..start + len]);
    out[start + CRC_OFFSET..start + CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    out.resize(start + aligned(len), 0);
}

/// The frame CRC: bytes `0..4` (the length) and `8..` (everything after the CRC field).
fn checksum(frame: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&frame[FRAME_LEN_OFFSET..CRC_OFFSET]);
    hasher.update(&frame[POSITION_OFFSET..]);
    hasher.finalize()
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// `frame_len` is zero: the end of the written log.
    End,
    /// Fewer bytes remain than a header (or than the frame claims).
    Truncated { needed: usize, available: usize },
    /// Anything else: bad CRC, impossible lengths, invalid UTF-8, nonzero reserved bytes.
    Invalid(&'static str),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::End => f.write_str("end of log (zero frame length)"),
            DecodeError::Truncated { needed, available } => {
                write!(f, "frame needs {needed} bytes but only {available} remain")
            }
            DecodeError::Invalid(why) => f.write_str(why),
        }
    }
}

/// A checked view of one frame inside a byte slice. Ranges are relative to the start of the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: Header,
    /// Bytes of the frame, padding excluded.
    pub len: usize,
    pub stream: std::ops::Range<usize>,
    pub event_type: std::ops::Range<usize>,
    pub metadata: std::ops::Range<usize>,
    pub data: std::ops::Range<usize>,
}

impl Frame {
    /// Bytes from this frame's start to the next frame's start.
    pub fn stride(&self) -> usize {
        aligned(self.len)
    }
}

fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(buf[at..at + 2].try_into().expect("two bytes"))
}
fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("four bytes"))
}
fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("eight bytes"))
}

/// The stream-name bytes of the frame at the start of `buf`, bounds-checked but without checking the CRC:
/// for confirming which stream a known-good record belongs to.
pub fn peek_stream(buf: &[u8]) -> Option<&[u8]> {
    let stream_len = usize::from(u16_at(buf.get(..HEADER_LEN)?, STREAM_LEN_OFFSET));
    buf.get(HEADER_LEN..HEADER_LEN + stream_len)
}

/// Reads only the position and `prev` fields, without checking the CRC. For walking a stream's chain, where
/// every record is fully decoded (and checked) before it is handed out.
pub fn peek_position_prev(buf: &[u8]) -> Option<(u64, u64, u64)> {
    if buf.len() < HEADER_LEN {
        return None;
    }
    Some((u64_at(buf, POSITION_OFFSET), u64_at(buf, STREAM_OFFSET_OFFSET), u64_at(buf, PREV_OFFSET)))
}

/// The frame lengths the header at the start of `buf` claims, unchecked: its `frame_len` field, and the header
/// plus the body lengths it lists (summed in u64, so no value overflows). The two are equal in an intact frame.
/// For the proof search of recovery, which must not take the zeros inside a damaged frame for the end of the
/// log when one of these fields is the damaged one. `None` if `buf` is shorter than a header.
pub fn claimed_lens(buf: &[u8]) -> Option<[u64; 2]> {
    let head = buf.get(..HEADER_LEN)?;
    let body = u64::from(u16_at(head, STREAM_LEN_OFFSET))
        + u64::from(u16_at(head, TYPE_LEN_OFFSET))
        + u64::from(u32_at(head, METADATA_LEN_OFFSET))
        + u64::from(u32_at(head, DATA_LEN_OFFSET));
    Some([u64::from(u32_at(head, FRAME_LEN_OFFSET)), HEADER_LEN as u64 + body])
}

/// UTF-8 validation with a fast path for ASCII, which nearly every stream name and event type is: measured,
/// `from_utf8` alone was a fifth of the instructions of reading an event.
fn is_utf8(bytes: &[u8]) -> bool {
    bytes.is_ascii() || std::str::from_utf8(bytes).is_ok()
}

/// Checks what the 88 header bytes at the start of `buf` can tell without the body: the length is neither zero
/// nor shorter than a header, the body lengths add up to it, the name lengths are in range and the reserved
/// bytes are zero. Returns the frame length. Never panics on any input.
///
/// These checks come before the CRC so that a reader never has to fetch a body that a damaged (or garbage)
/// length points at: garbage passes them by chance about once in 2^40 (the sum alone is 32 random bits).
pub fn check_header(buf: &[u8]) -> Result<usize, DecodeError> {
    if buf.len() < 4 {
        return Err(DecodeError::Truncated { needed: 4, available: buf.len() });
    }
    let len = u32_at(buf, FRAME_LEN_OFFSET) as usize;
    if len == 0 {
        return Err(DecodeError::End);
    }
    if len < HEADER_LEN {
        return Err(DecodeError::Invalid("frame length is shorter than a frame header"));
    }
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::Truncated { needed: len, available: buf.len() });
    }
    let stream_len = usize::from(u16_at(buf, STREAM_LEN_OFFSET));
    let type_len = usize::from(u16_at(buf, TYPE_LEN_OFFSET));
    // Summed in u64: four u32-bounded values can not overflow it, whatever the bytes say.
    let body = stream_len as u64
        + type_len as u64
        + u64::from(u32_at(buf, METADATA_LEN_OFFSET))
        + u64::from(u32_at(buf, DATA_LEN_OFFSET));
    if HEADER_LEN as u64 + body != len as u64 {
        return Err(DecodeError::Invalid("body lengths do not add up to the frame length"));
    }
    if !(1..=STREAM_NAME_BYTES_MAX).contains(&stream_len) {
        return Err(DecodeError::Invalid("stream name length out of range"));
    }
    if !(1..=EVENT_TYPE_BYTES_MAX).contains(&type_len) {
        return Err(DecodeError::Invalid("event type length out of range"));
    }
    if buf[RESERVED_OFFSET..HEADER_LEN].iter().any(|&b| b != 0) {
        return Err(DecodeError::Invalid("reserved header bytes are not zero"));
    }
    Ok(len)
}

/// Decodes and checks the frame at the start of `buf` (which may hold more bytes after it).
///
/// Checks, in order: the header ([`check_header`]), that the whole frame is in `buf`, the CRC, and that the
/// names are UTF-8. Never panics on any input.
pub fn decode(buf: &[u8]) -> Result<Frame, DecodeError> {
    let len = check_header(buf)?;
    if len > buf.len() {
        return Err(DecodeError::Truncated { needed: len, available: buf.len() });
    }
    let frame = &buf[..len];
    if checksum(frame) != u32_at(frame, CRC_OFFSET) {
        return Err(DecodeError::Invalid("CRC mismatch"));
    }
    let stream_len = usize::from(u16_at(frame, STREAM_LEN_OFFSET));
    let type_len = usize::from(u16_at(frame, TYPE_LEN_OFFSET));
    let metadata_len = u32_at(frame, METADATA_LEN_OFFSET) as usize;
    let data_len = u32_at(frame, DATA_LEN_OFFSET) as usize;
    let stream = HEADER_LEN..HEADER_LEN + stream_len;
    let event_type = stream.end..stream.end + type_len;
    let metadata = event_type.end..event_type.end + metadata_len;
    let data = metadata.end..metadata.end + data_len;
    if !is_utf8(&frame[stream.clone()]) {
        return Err(DecodeError::Invalid("stream name is not UTF-8"));
    }
    if !is_utf8(&frame[event_type.clone()]) {
        return Err(DecodeError::Invalid("event type is not UTF-8"));
    }
    let header = Header {
        position: u64_at(frame, POSITION_OFFSET),
        offset: u64_at(frame, STREAM_OFFSET_OFFSET),
        prev: u64_at(frame, PREV_OFFSET),
        synced_before: u64_at(frame, SYNCED_BEFORE_OFFSET),
        timestamp_nanos: u64_at(frame, TIMESTAMP_OFFSET),
        event_id: Uuid::from_bytes(frame[EVENT_ID_OFFSET..EVENT_ID_OFFSET + 16].try_into().expect("16 bytes")),
        txn_after: u32_at(frame, TXN_AFTER_OFFSET),
        codec: frame[CODEC_OFFSET],
    };
    Ok(Frame { header, len, stream, event_type, metadata, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_header() -> Header {
        Header {
            position: 42,
            offset: 7,
            prev: (3 << 32) | 4096,
            synced_before: 40,
            timestamp_nanos: 1_700_000_000_123_456_789,
            event_id: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            txn_after: 2,
            codec: 1,
        }
    }

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, &sample_header(), "account-42", "MoneyDeposited", b"{\"corr\":1}", b"payload!!");
        out
    }

    #[test]
    fn decode_errors_say_what_is_wrong() {
        // The reason becomes the text of `Error::Corrupt`: it must name the problem (cargo-mutants found an
        // empty Display surviving every test).
        let mut buf = sample();
        buf[HEADER_LEN] ^= 0x01;
        assert_eq!(decode(&buf).unwrap_err().to_string(), "CRC mismatch");
        assert_eq!(DecodeError::End.to_string(), "end of log (zero frame length)");
        assert_eq!(
            DecodeError::Truncated { needed: 96, available: 10 }.to_string(),
            "frame needs 96 bytes but only 10 remain"
        );
        // A length of exactly a header is no shorter than one: the empty stream name is what is wrong.
        let mut buf = sample();
        buf[FRAME_LEN_OFFSET..FRAME_LEN_OFFSET + 4].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        for (at, width) in
            [(STREAM_LEN_OFFSET, 2), (TYPE_LEN_OFFSET, 2), (METADATA_LEN_OFFSET, 4), (DATA_LEN_OFFSET, 4)]
        {
            buf[at..at + width].fill(0);
        }
        assert_eq!(check_header(&buf), Err(DecodeError::Invalid("stream name length out of range")));
        buf[FRAME_LEN_OFFSET..FRAME_LEN_OFFSET + 4].copy_from_slice(&(HEADER_LEN as u32 - 1).to_le_bytes());
        assert_eq!(check_header(&buf), Err(DecodeError::Invalid("frame length is shorter than a frame header")));
    }

    #[test]
    fn a_damaged_length_still_leaves_the_claim_of_the_body_lengths() {
        let mut frame = sample();
        let len = u64::from(u32_at(&frame, FRAME_LEN_OFFSET));
        assert_eq!(aligned(len as usize), frame.len(), "the sample is one padded frame");
        assert_eq!(claimed_lens(&frame), Some([len, len]));
        frame[2] ^= 0x01;
        assert_eq!(claimed_lens(&frame), Some([len ^ 0x1_0000, len]));
        frame[..4].fill(0);
        assert_eq!(claimed_lens(&frame), Some([0, len]));
        assert_eq!(claimed_lens(&frame[..HEADER_LEN - 1]), None);
    }

    #[test]
    fn round_trips_every_field() {
        let buf = sample();
        assert_eq!(buf.len() % FRAME_ALIGN, 0);
        let frame = decode(&buf).unwrap();
        assert_eq!(frame.header, sample_header());
        assert_eq!(&buf[frame.stream.clone()], b"account-42");
        assert_eq!(&buf[frame.event_type.clone()], b"MoneyDeposited");
        assert_eq!(&buf[frame.metadata.clone()], b"{\"corr\":1}");
        assert_eq!(&buf[frame.data.clone()], b"payload!!");
        assert_eq!(frame.stride(), buf.len());
        assert_eq!(peek_position_prev(&buf), Some((42, 7, (3 << 32) | 4096)));
    }

    #[test]
    fn empty_metadata_and_data_round_trip() {
        let mut buf = Vec::new();
        encode(&mut buf, &sample_header(), "s", "t", b"", b"");
        let frame = decode(&buf).unwrap();
        assert!(frame.metadata.is_empty() && frame.data.is_empty());
        assert_eq!(frame.len, HEADER_LEN + 2);
    }

    #[test]
    fn a_frame_cut_at_every_byte_is_rejected() {
        let buf = sample();
        let len = decode(&buf).unwrap().len;
        for cut in 0..len {
            let err = decode(&buf[..cut]).unwrap_err();
            assert!(matches!(err, DecodeError::Truncated { .. }), "cut at {cut}: {err:?}");
        }
    }

    #[test]
    fn every_flipped_bit_is_rejected() {
        let buf = sample();
        let len = decode(&buf).unwrap().len;
        for byte in 0..len {
            for bit in 0..8 {
                let mut damaged = buf.clone();
                damaged[byte] ^= 1 << bit;
                assert!(decode(&damaged).is_err(), "flip of bit {bit} in byte {byte} was accepted");
            }
        }
    }

    #[test]
    fn zero_length_is_the_end_of_the_log() {
        assert_eq!(decode(&[0; 200]), Err(DecodeError::End));
    }

    #[test]
    fn lengths_that_do_not_add_up_are_rejected_even_with_a_valid_crc() {
        let mut buf = sample();
        // Grow data_len by one and fix the CRC: the CRC passes, the length check must not.
        let data_len = u32_at(&buf, DATA_LEN_OFFSET) + 1;
        buf[DATA_LEN_OFFSET..DATA_LEN_OFFSET + 4].copy_from_slice(&data_len.to_le_bytes());
        let len = u32_at(&buf, 0) as usize;
        let crc = checksum(&buf[..len]);
        buf[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&buf), Err(DecodeError::Invalid("body lengths do not add up to the frame length")));
    }
}
