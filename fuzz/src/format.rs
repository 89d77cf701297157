//! The on-disk layouts, written independently of the engine (see the module docs of `engine/log/frame.rs`,
//! `engine/log/segment.rs`, `engine/log/checkpoint.rs`).

/// Bytes of a frame header.
pub const FRAME_HEADER_LEN: usize = 88;
/// Bytes of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 64;
/// `prev` of a stream's first record, and `last` of an empty log's checkpoint.
pub const NO_PREV: u64 = u64::MAX;
/// The checkpoint's file name.
pub const CHECKPOINT_FILE: &str = "index.ckpt";

/// Rounds up to the next frame start (8 bytes).
pub fn aligned(len: usize) -> usize {
    (len + 7) & !7
}

/// `ordinal << 32 | offset`.
pub fn locator(ordinal: u32, offset: u32) -> u64 {
    (u64::from(ordinal) << 32) | u64::from(offset)
}

/// Every field of a frame, as raw as the format allows (names are bytes, so invalid UTF-8 can be written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub position: u64,
    pub offset: u64,
    pub prev: u64,
    pub synced_before: u64,
    pub timestamp: u64,
    pub event_id: [u8; 16],
    pub txn_after: u32,
    pub codec: u8,
    pub stream: Vec<u8>,
    pub event_type: Vec<u8>,
    pub metadata: Vec<u8>,
    pub data: Vec<u8>,
}

/// Encodes a frame with a correct CRC, padded with zeros to 8 bytes. Names longer than `u16::MAX` are cut.
pub fn encode_frame(frame: &RawFrame) -> Vec<u8> {
    let stream = &frame.stream[..frame.stream.len().min(usize::from(u16::MAX))];
    let event_type = &frame.event_type[..frame.event_type.len().min(usize::from(u16::MAX))];
    let len = FRAME_HEADER_LEN + stream.len() + event_type.len() + frame.metadata.len() + frame.data.len();
    let mut out = Vec::with_capacity(aligned(len));
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for value in [frame.position, frame.offset, frame.prev, frame.synced_before, frame.timestamp] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.extend_from_slice(&frame.event_id);
    out.extend_from_slice(&frame.txn_after.to_le_bytes());
    out.extend_from_slice(&(stream.len() as u16).to_le_bytes());
    out.extend_from_slice(&(event_type.len() as u16).to_le_bytes());
    out.extend_from_slice(&(frame.metadata.len() as u32).to_le_bytes());
    out.extend_from_slice(&(frame.data.len() as u32).to_le_bytes());
    out.push(frame.codec);
    out.extend_from_slice(&[0; 7]);
    debug_assert_eq!(out.len(), FRAME_HEADER_LEN);
    out.extend_from_slice(stream);
    out.extend_from_slice(event_type);
    out.extend_from_slice(&frame.metadata);
    out.extend_from_slice(&frame.data);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&out[0..4]);
    hasher.update(&out[8..]);
    out[4..8].copy_from_slice(&hasher.finalize().to_le_bytes());
    out.resize(aligned(len), 0);
    out
}

/// A valid segment header (magic, version 1, header length 64, size, base, ordinal, zero reserved bytes, CRC).
pub fn segment_header(size: u64, base_position: u64, ordinal: u32) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header[0..8].copy_from_slice(b"ANNALSEG");
    header[8..12].copy_from_slice(&1u32.to_le_bytes());
    header[12..16].copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
    header[16..24].copy_from_slice(&size.to_le_bytes());
    header[24..32].copy_from_slice(&base_position.to_le_bytes());
    header[32..36].copy_from_slice(&ordinal.to_le_bytes());
    fix_segment_header_crc(&mut header);
    header
}

/// Recomputes the CRC of a (possibly edited) segment header.
pub fn fix_segment_header_crc(header: &mut [u8; SEGMENT_HEADER_LEN]) {
    let crc = crc32fast::hash(&header[..60]);
    header[60..64].copy_from_slice(&crc.to_le_bytes());
}

/// The segment file name for a base position.
pub fn segment_file_name(base_position: u64) -> String {
    format!("{base_position:020}.seg")
}

/// One stream's entry in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointStream {
    pub name: Vec<u8>,
    pub last_offset: u64,
    pub head: u64,
    pub sparse: Vec<u64>,
}

/// The fields of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawCheckpoint {
    pub version: u32,
    pub interval: u32,
    pub next_position: u64,
    pub end: u64,
    pub last: u64,
    pub last_timestamp: u64,
    pub streams: Vec<CheckpointStream>,
}

/// Encodes a checkpoint's body (without its CRC).
pub fn encode_checkpoint_body(checkpoint: &RawCheckpoint) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"ANNALIDX");
    out.extend_from_slice(&checkpoint.version.to_le_bytes());
    out.extend_from_slice(&checkpoint.interval.to_le_bytes());
    for value in [
        checkpoint.next_position,
        checkpoint.end,
        checkpoint.last,
        checkpoint.last_timestamp,
        checkpoint.streams.len() as u64,
    ] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    for stream in &checkpoint.streams {
        out.extend_from_slice(&(stream.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&stream.name);
        out.extend_from_slice(&stream.last_offset.to_le_bytes());
        out.extend_from_slice(&stream.head.to_le_bytes());
        out.extend_from_slice(&(stream.sparse.len() as u32).to_le_bytes());
        for locator in &stream.sparse {
            out.extend_from_slice(&locator.to_le_bytes());
        }
    }
    out
}

/// Appends the CRC-32 of everything before it.
pub fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

/// The stream names a checkpoint lists, if its fixed part and entries parse (CRC not checked).
pub fn checkpoint_stream_names(bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let body = bytes.get(..bytes.len().checked_sub(4)?)?;
    let count = u64::from_le_bytes(body.get(48..56)?.try_into().ok()?);
    let mut at = 56;
    let mut names = Vec::new();
    for _ in 0..count {
        let len = usize::from(u16::from_le_bytes(body.get(at..at + 2)?.try_into().ok()?));
        names.push(body.get(at + 2..at + 2 + len)?.to_vec());
        at += 2 + len + 16;
        let sparse = u32::from_le_bytes(body.get(at..at + 4)?.try_into().ok()?) as usize;
        at = at.checked_add(4 + sparse.checked_mul(8)?)?;
    }
    Some(names)
}

/// Where the valid frames of a segment file's bytes end (walking from the header with `decode_frame`).
pub fn end_of_frames(segment: &[u8]) -> usize {
    let mut at = SEGMENT_HEADER_LEN;
    while at + 4 <= segment.len() {
        match annals::__fuzz::decode_frame(&segment[at..]) {
            Some(len) => at += aligned(len),
            None => break,
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_frames_decode_in_the_engine() {
        let frame = RawFrame {
            position: 3,
            offset: 1,
            prev: 64,
            synced_before: 3,
            timestamp: 9,
            event_id: [7; 16],
            txn_after: 0,
            codec: 2,
            stream: b"account-42".to_vec(),
            event_type: b"Opened".to_vec(),
            metadata: b"m".to_vec(),
            data: b"data!".to_vec(),
        };
        let bytes = encode_frame(&frame);
        assert_eq!(annals::__fuzz::decode_frame(&bytes), Some(88 + 10 + 6 + 1 + 5));
    }

    #[test]
    fn our_checkpoints_decode_in_the_engine() {
        let checkpoint = RawCheckpoint {
            version: 1,
            interval: 2,
            next_position: 3,
            end: locator(0, 400),
            last: locator(0, 300),
            last_timestamp: 5,
            streams: vec![CheckpointStream { name: b"a".to_vec(), last_offset: 2, head: 300, sparse: vec![200] }],
        };
        assert!(annals::__fuzz::decode_checkpoint(&with_crc(encode_checkpoint_body(&checkpoint))));
    }
}
