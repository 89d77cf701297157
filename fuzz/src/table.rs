//! The `decode_table` target: one index table file, opened and checked by `annals::__fuzz::check_table`
//! (open, check every page's CRC, look up keys in every section, probe the bloom filter), which must never
//! panic whatever the file holds.
//!
//! # Input format
//!
//! The first byte picks the mode.
//!
//! - Even: **raw**. The rest of the input is the file. Mode bit 1 rewrites the CRC of every whole page and
//!   mode bit 2 pads the file with zeros to whole pages, so that the fuzzer gets past the page checks. The
//!   file is named after the range its header claims (bytes 24..40) when that range is not empty, so that the
//!   name check passes too; else it gets a fixed name, which fails it.
//! - Odd: **structured**. A valid table written by [`crate::format::encode_table`] from a few parameters,
//!   then mutations. Parameters: records `u16` (modulo 3000, at least 1), streams `u8` (at least 1), first
//!   position `u64`, seed `u64`, flags `u8` (bit 0: every hash masked to 0; bit 1: separator `.`, else `-`;
//!   bit 2: event types per record alternate among 3, else 1). Then mutations, each a kind byte (modulo 6)
//!   and its arguments:
//!
//! | kind | mutation | arguments |
//! |-----:|----------|-----------|
//! | 0 | xor one byte, page CRC left stale | `u32` offset (modulo the length), `u8` xor |
//! | 1 | xor one byte, then rewrite that page's CRC | `u32` offset, `u8` xor |
//! | 2 | write a `u64`, then rewrite that page's CRC | `u32` offset, `u64` value |
//! | 3 | set a section descriptor in the header (CRC rewritten) | `u8` section (modulo 9), `u64` first page, `u64` entries |
//! | 4 | cut the file | `u32` new length (modulo the length + 1) |
//! | 5 | append bytes | `u8` length + bytes |
//!
//! An unmutated structured table must check out: `check_table` returns true (the engine reads what this
//! crate writes from the format's description).

use crate::format::{self, TableEntries, TableMeta, TableRecord, PAGE_BYTES};

/// Reads the input; missing bytes read as zeros.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let bytes = self.bytes(N);
        out[..bytes.len()].copy_from_slice(bytes);
        out
    }
    fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }
}

/// The parameters of a structured table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub records: u16,
    pub streams: u8,
    pub first_position: u64,
    pub seed: u64,
    pub flags: u8,
}

/// A mutation of a structured table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    Xor { at: u32, xor: u8 },
    XorFixCrc { at: u32, xor: u8 },
    SetU64 { at: u32, value: u64 },
    Section { section: u8, first_page: u64, entries: u64 },
    Cut { len: u32 },
    Append(Vec<u8>),
}

/// The valid table of a structured input: its file bytes and the range it covers.
pub fn valid_table(params: &Params) -> (Vec<u8>, u64, u64) {
    let count = u64::from(params.records % 3000).max(1);
    let streams = u64::from(params.streams.max(1));
    let separator = if params.flags & 2 != 0 { '.' } else { '-' };
    let hash_mask = if params.flags & 1 != 0 { 0 } else { u64::MAX };
    let types: &[&[u8]] = if params.flags & 4 != 0 { &[b"Opened", b"Deposited", b"Closed"] } else { &[b"T"] };
    let first = params.first_position.min(u64::MAX - count);
    let records: Vec<TableRecord> = (0..count)
        .map(|i| TableRecord {
            stream: format!("s{separator}{}", i % streams).into_bytes(),
            event_type: types[(i % types.len() as u64) as usize].to_vec(),
            offset: i / streams,
            position: first + i,
            // 128-byte records, 32 to a segment of 4 KiB.
            locator: format::locator((i / 31) as u32, 64 + (i % 31) as u32 * 128),
            timestamp: 1_700_000_000_000_000_000 + i,
        })
        .collect();
    let last = records.last().expect("at least one record");
    let meta = TableMeta {
        seed: params.seed,
        first_position: first,
        end_position: first + count,
        end_locator: last.locator + 128,
        last_locator: last.locator,
        last_event_id: (u128::from(count) << 64 | 0xa11a15).to_be_bytes(),
        first_timestamp: records[0].timestamp,
        last_timestamp: last.timestamp,
        new_streams: streams.min(count),
        separator,
        hash_mask,
    };
    let entries = TableEntries::of(&records, params.seed, hash_mask, separator);
    (format::encode_table(&meta, &entries), first, first + count)
}

/// Applies one mutation.
pub fn mutate(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let len = bytes.len();
    let fix = |bytes: &mut Vec<u8>, at: usize| {
        let page = at / PAGE_BYTES * PAGE_BYTES;
        if page + PAGE_BYTES <= bytes.len() {
            format::fix_page_crc(&mut bytes[page..page + PAGE_BYTES]);
        }
    };
    match *mutation {
        Mutation::Xor { at, xor } if len > 0 => bytes[at as usize % len] ^= xor.max(1),
        Mutation::XorFixCrc { at, xor } if len > 0 => {
            let at = at as usize % len;
            bytes[at] ^= xor.max(1);
            fix(bytes, at);
        }
        Mutation::SetU64 { at, value } if len >= 8 => {
            let at = at as usize % (len - 7);
            bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
            fix(bytes, at);
            fix(bytes, at + 7);
        }
        Mutation::Section { section, first_page, entries } if len >= PAGE_BYTES => {
            let at = format::SECTIONS_AT + usize::from(section % 9) * 16;
            bytes[at..at + 8].copy_from_slice(&first_page.to_le_bytes());
            bytes[at + 8..at + 16].copy_from_slice(&entries.to_le_bytes());
            fix(bytes, 0);
        }
        Mutation::Cut { len: new } => bytes.truncate(new as usize % (len + 1)),
        Mutation::Append(ref extra) => bytes.extend_from_slice(extra),
        _ => {}
    }
}

/// A decoded input: the file's name and bytes, and whether it must check out.
#[derive(Debug)]
pub struct Case {
    pub name: String,
    pub bytes: Vec<u8>,
    pub must_check_out: bool,
    pub mutations: Vec<Mutation>,
}

/// Decodes an input.
pub fn decode(data: &[u8]) -> Case {
    let mut r = Reader { data };
    let mode = r.u8();
    if mode & 1 == 0 {
        let mut bytes = r.data.to_vec();
        if mode & 4 != 0 {
            bytes.resize(bytes.len().div_ceil(PAGE_BYTES) * PAGE_BYTES, 0);
        }
        if mode & 2 != 0 {
            format::fix_page_crcs(&mut bytes);
        }
        let first = format::u64_at(&bytes, format::FIRST_POSITION_AT);
        let end = format::u64_at(&bytes, format::END_POSITION_AT);
        let name = match (first, end) {
            (Some(first), Some(end)) if first < end => format::table_file_name(first, end),
            _ => format::table_file_name(0, 1),
        };
        return Case { name, bytes, must_check_out: false, mutations: Vec::new() };
    }
    let params = Params { records: r.u16(), streams: r.u8(), first_position: r.u64(), seed: r.u64(), flags: r.u8() };
    let (mut bytes, first, end) = valid_table(&params);
    let mut mutations = Vec::new();
    while !r.data.is_empty() && mutations.len() < 16 {
        let mutation = match r.u8() % 6 {
            0 => Mutation::Xor { at: r.u32(), xor: r.u8() },
            1 => Mutation::XorFixCrc { at: r.u32(), xor: r.u8() },
            2 => Mutation::SetU64 { at: r.u32(), value: r.u64() },
            3 => Mutation::Section { section: r.u8(), first_page: r.u64(), entries: r.u64() },
            4 => Mutation::Cut { len: r.u32() },
            _ => {
                let len = r.u8();
                Mutation::Append(r.bytes(usize::from(len)).to_vec())
            }
        };
        mutate(&mut bytes, &mutation);
        mutations.push(mutation);
    }
    Case { name: format::table_file_name(first, end), bytes, must_check_out: mutations.is_empty(), mutations }
}

/// Encodes structured parameters and mutations as an input (for seeds).
pub fn encode_structured(params: &Params, mutations: &[Mutation]) -> Vec<u8> {
    let mut out = vec![1];
    out.extend_from_slice(&params.records.to_le_bytes());
    out.push(params.streams);
    out.extend_from_slice(&params.first_position.to_le_bytes());
    out.extend_from_slice(&params.seed.to_le_bytes());
    out.push(params.flags);
    for mutation in mutations {
        match mutation {
            Mutation::Xor { at, xor } => {
                out.push(0);
                out.extend_from_slice(&at.to_le_bytes());
                out.push(*xor);
            }
            Mutation::XorFixCrc { at, xor } => {
                out.push(1);
                out.extend_from_slice(&at.to_le_bytes());
                out.push(*xor);
            }
            Mutation::SetU64 { at, value } => {
                out.push(2);
                out.extend_from_slice(&at.to_le_bytes());
                out.extend_from_slice(&value.to_le_bytes());
            }
            Mutation::Section { section, first_page, entries } => {
                out.push(3);
                out.push(*section);
                out.extend_from_slice(&first_page.to_le_bytes());
                out.extend_from_slice(&entries.to_le_bytes());
            }
            Mutation::Cut { len } => {
                out.push(4);
                out.extend_from_slice(&len.to_le_bytes());
            }
            Mutation::Append(bytes) => {
                out.push(5);
                let len = bytes.len().min(255);
                out.push(len as u8);
                out.extend_from_slice(&bytes[..len]);
            }
        }
    }
    out
}

/// The target: write the file into a fresh directory and check it.
pub fn run(data: &[u8]) {
    let case = decode(data);
    let dir = crate::tempdir();
    let path = dir.path().join(&case.name);
    std::fs::write(&path, &case.bytes).expect("writing the table file");
    let checked_out = annals::__fuzz::check_table(&path);
    if case.must_check_out {
        assert!(checked_out, "a valid table ({}) does not check out", case.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_inputs_round_trip_and_valid_tables_check_out() {
        for flags in 0..8 {
            let params = Params { records: 2999, streams: 40, first_position: 77, seed: 5, flags };
            let bytes = encode_structured(&params, &[]);
            let case = decode(&bytes);
            assert!(case.must_check_out);
            run(&bytes);
        }
        let mutations = vec![
            Mutation::Xor { at: 5000, xor: 1 },
            Mutation::XorFixCrc { at: 9000, xor: 2 },
            Mutation::SetU64 { at: 4100, value: u64::MAX },
            Mutation::Section { section: 8, first_page: 1, entries: 1 << 40 },
            Mutation::Cut { len: 12345 },
            Mutation::Append(vec![1, 2, 3]),
        ];
        let params = Params { records: 300, streams: 3, first_position: 0, seed: 1, flags: 1 };
        let case = decode(&encode_structured(&params, &mutations));
        assert_eq!(case.mutations, mutations);
        run(&encode_structured(&params, &mutations));
    }
}
