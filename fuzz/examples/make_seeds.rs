//! Writes the hand-picked seed corpora into `corpus/<target>/seed-*`. Run from `fuzz/`:
//!
//!     cargo run --release --example make_seeds
//!
//! Seeds are made with the real engine where they can be (frames and index tables it wrote, a small store
//! directory it wrote), and with the input formats' encoders otherwise.

use std::path::Path;

use annals::{EventData, ExpectedVersion, Options, Store, StreamAppend};
use annals_fuzz::directory::{self, FrameSpec, Op, SegmentSpec, TableEdits, TableKind, TableSpec};
use annals_fuzz::format;
use annals_fuzz::model::{self, Ev, Expected, Input, Part};
use annals_fuzz::table::{self, Mutation, Params};

fn save(target: &str, name: &str, bytes: &[u8]) {
    match target {
        "open_directory" => directory::run(bytes),
        "decode_table" => table::run(bytes),
        _ => {}
    }
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

/// A small store written by the engine: three streams, a multi-stream transaction, segment rolls (each writes
/// an index table in the background), a close (the last table). Files are named relative to the store.
fn real_store(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let options = Options { segment_size_bytes: 4096, ..Options::default() };
    let store = Store::open_with(dir, options).unwrap();
    let ev = |t: &str, data: &[u8]| EventData::new(t, data.to_vec());
    store.append("account-42", ExpectedVersion::NoStream, &[ev("Opened", b"{\"owner\":\"Ada\"}")]).unwrap();
    store
        .append("account-42", ExpectedVersion::Exact(0), &[ev("MoneyDeposited", b"100"), ev("MoneyDeposited", b"5")])
        .unwrap();
    store
        .append_multi(&[
            StreamAppend { stream: "a".into(), expected: ExpectedVersion::Any, events: vec![ev("T", b"x")] },
            StreamAppend {
                stream: "b".into(),
                expected: ExpectedVersion::NoStream,
                events: vec![ev("T", b"y").with_metadata(&b"{\"corr\":1}"[..]).with_codec(1)],
            },
        ])
        .unwrap();
    for i in 0..12u8 {
        store.append("a", ExpectedVersion::Any, &[ev("T", &[i; 300])]).unwrap();
    }
    store.close().unwrap();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for sub in ["", format::INDEX_DIR] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".seg") || name.ends_with(".tbl") {
                let name = if sub.is_empty() { name } else { format!("{sub}/{name}") };
                files.push((name, std::fs::read(entry.path()).unwrap()));
            }
        }
    }
    files.sort();
    files
}

fn main() {
    let tmp = annals_fuzz::tempdir();
    let files = real_store(tmp.path());

    // decode_frame: frames of the real store. decode_table: its tables, raw.
    let mut frames = 0;
    let mut tables = 0;
    for (name, bytes) in &files {
        if name.ends_with(".tbl") {
            let mut input = vec![0u8];
            input.extend_from_slice(bytes);
            save("decode_table", &format!("real-table-{tables}"), &input);
            tables += 1;
            continue;
        }
        let mut at = format::SEGMENT_HEADER_LEN;
        while let Some(len) = annals::__fuzz::decode_frame(&bytes[at..]) {
            if frames < 6 {
                save("decode_frame", &format!("frame-{frames}"), &bytes[at..at + len]);
            }
            frames += 1;
            at += format::aligned(len);
        }
    }
    assert!(frames >= 6 && tables >= 2, "the real store holds frames ({frames}) and tables ({tables})");

    // decode_table: structured tables (many pages, collided hashes, another separator), some mutated.
    let structured = [
        ("structured-small", Params { records: 5, streams: 2, first_position: 0, seed: 1, flags: 0 }, vec![]),
        ("structured-pages", Params { records: 2900, streams: 200, first_position: 64, seed: 2, flags: 4 }, vec![]),
        ("structured-collided", Params { records: 300, streams: 9, first_position: 7, seed: 3, flags: 3 }, vec![]),
        (
            "structured-forged",
            Params { records: 700, streams: 30, first_position: 0, seed: 4, flags: 4 },
            vec![Mutation::SetU64 { at: 4096 + 24 * 5, value: u64::MAX }, Mutation::XorFixCrc { at: 9000, xor: 0x80 }],
        ),
        (
            "structured-sections",
            Params { records: 400, streams: 3, first_position: 0, seed: 5, flags: 0 },
            vec![Mutation::Section { section: 1, first_page: 2, entries: 600 }],
        ),
    ];
    for (name, params, mutations) in structured {
        save("decode_table", name, &table::encode_structured(&params, &mutations));
    }

    // open_directory: the real store, serialized as segment headers + raw bodies + its tables as raw files.
    let mut ops = Vec::new();
    for (name, bytes) in &files {
        if let Some(stem) = name.strip_prefix(&format!("{}/", format::INDEX_DIR)).and_then(|n| n.strip_suffix(".tbl")) {
            let (first, end) = stem.split_once('-').unwrap();
            let kind = TableKind::Raw {
                first: first.parse().unwrap(),
                end: end.parse().unwrap(),
                bytes: bytes.clone(),
                fix_pages: false,
            };
            ops.push(Op::Table(TableSpec { kind, edits: None }));
        } else {
            ops.push(Op::NewSegment(SegmentSpec { two_pages: bytes.len() > 4096, ..SegmentSpec::default() }));
            let body = &bytes[format::SEGMENT_HEADER_LEN..];
            let used = body.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            ops.push(Op::Raw(body[..used].to_vec()));
        }
    }
    // Tables first: a raw op writes a table file, a segment op starts a segment, in any order.
    ops.sort_by_key(|op| !matches!(op, Op::Table(_)));
    save("open_directory", "real-store", &directory::encode(&ops));

    // open_directory: valid logs (exact checks apply) with tables in every state.
    let plain = |stream: u8, data: &[u8]| Op::Frame(FrameSpec::plain(stream, stream % 3, data));
    let table = |kind: TableKind, edits: Option<TableEdits>| Op::Table(TableSpec { kind, edits });
    let auto = || table(TableKind::Auto, None);
    let mut three_segments = vec![Op::Options { bits: 0 }];
    for i in 0..40u8 {
        three_segments.push(plain(i % 4, &[i; 200]));
        if i % 8 == 7 {
            three_segments.push(auto());
        }
    }
    save("open_directory", "three-segments-tables", &directory::encode(&three_segments));

    let mut merged = vec![Op::Options { bits: 1 }];
    for i in 0..30u8 {
        merged.push(plain(i % 5, &[i; 40]));
        if i % 5 == 4 {
            merged.push(auto());
        }
    }
    merged.push(table(TableKind::Merge { n: 2, delete_inputs: false }, None));
    merged.push(plain(1, b"after the merge"));
    merged.push(table(TableKind::Unfinished, None));
    save("open_directory", "merge-inputs-and-tmp-left", &directory::encode(&merged));

    let mut collide = vec![Op::Options { bits: 8 | 2 }];
    for i in 0..12u8 {
        collide.push(plain(i % 5, &[i; 3]));
    }
    collide.push(auto());
    collide.push(plain(2, b"after the table"));
    save("open_directory", "collided-streams", &directory::encode(&collide));

    let damaged_page = TableEdits { damaged_page: Some((0, 100, 1)), ..TableEdits::default() };
    let foreign = TableEdits { foreign: true, ..TableEdits::default() };
    let forged = TableEdits { forged_entry: Some((0, 1, 1, u64::MAX)), ..TableEdits::default() };
    for (name, edits) in [("damaged-page", damaged_page), ("foreign-table", foreign), ("forged-offset", forged)] {
        let mut ops = vec![plain(0, b"one"), plain(1, b"two"), auto(), plain(0, b"three"), plain(1, b"four")];
        ops.push(table(TableKind::Auto, Some(edits)));
        ops.push(plain(0, b"five"));
        save("open_directory", name, &directory::encode(&ops));
    }

    let txn = |stream: u8, txn_after: u32| {
        Op::Frame(FrameSpec { txn_after: Some(txn_after), ..FrameSpec::plain(stream, 0, b"txn") })
    };
    let transactions = vec![plain(0, b"first"), txn(1, 2), txn(2, 1), txn(1, 0), auto(), plain(0, b"x"), txn(3, 1)];
    save("open_directory", "transactions-torn-tail", &directory::encode(&transactions));

    let rolled = vec![
        Op::NewSegment(SegmentSpec { two_pages: true, ..SegmentSpec::default() }),
        plain(0, &[1; 250]),
        plain(1, &[2; 250]),
        Op::NewSegment(SegmentSpec::default()),
        auto(),
    ];
    save("open_directory", "empty-last-segment-table", &directory::encode(&rolled));

    let damaged = vec![
        plain(0, b"one"),
        plain(0, b"two"),
        Op::Frame(FrameSpec { flip: Some((100, 4)), ..FrameSpec::plain(0, 0, b"three") }),
        Op::NewSegment(SegmentSpec::default()),
        plain(1, b"four"),
        auto(),
    ];
    save("open_directory", "damage-in-sealed-segment", &directory::encode(&damaged));

    // operations_vs_model.
    let ev = |t: u8, len: u16| Ev { event_type: t, data_len: len, fill: 7, metadata: vec![1, 2], id: None, codec: 3 };
    let inputs = [
        (
            "appends-reads-reopen",
            Input {
                small_cache: false,
                buffered: false,
                collide: false,
                ops: vec![
                    Op2::Append(Part { stream: 0, expected: Expected::NoStream, events: vec![ev(0, 10), ev(1, 20)] }),
                    Op2::Append(Part { stream: 0, expected: Expected::Exact(1), events: vec![ev(2, 1500)] }),
                    Op2::Append(Part { stream: 1, expected: Expected::Any, events: vec![ev(0, 2500)] }),
                    Op2::Append(Part { stream: 0, expected: Expected::Exact(0), events: vec![ev(0, 1)] }),
                    Op2::ReadStream { stream: 0, from: 1 },
                    Op2::ReadStreamBackwards { stream: 0, from: Some(1) },
                    Op2::ReadAll { from: 1 },
                    Op2::Reopen { other_separator: false },
                    Op2::ReadCategory { category: 4, from: 0 },
                    Op2::ReadEventType { event_type: 2, from: 1 },
                    Op2::ReadStream { stream: 0, from: 0 },
                ],
            },
        ),
        (
            "multi-and-invalid",
            Input {
                small_cache: true,
                buffered: true,
                collide: true,
                ops: vec![
                    Op2::AppendMulti(vec![
                        Part { stream: 2, expected: Expected::Any, events: vec![ev(0, 100)] },
                        Part { stream: 3, expected: Expected::NoStream, events: vec![ev(1, 100), ev(2, 100)] },
                    ]),
                    Op2::AppendMulti(vec![
                        Part { stream: 2, expected: Expected::Any, events: vec![ev(0, 1)] },
                        Part { stream: 2, expected: Expected::Any, events: vec![ev(0, 1)] },
                    ]),
                    Op2::Append(Part { stream: 6, expected: Expected::Any, events: vec![ev(0, 1)] }),
                    Op2::Append(Part { stream: 0, expected: Expected::Any, events: vec![ev(4, 1)] }),
                    Op2::Append(Part { stream: 0, expected: Expected::Any, events: vec![ev(0, 4100)] }),
                    Op2::Append(Part { stream: 5, expected: Expected::Any, events: vec![ev(3, 1000), ev(3, 100)] }),
                    Op2::Append(Part { stream: 4, expected: Expected::StreamExists, events: vec![ev(0, 1)] }),
                    Op2::ReopenWithoutIndex,
                    Op2::ReadCategory { category: 2, from: 0 },
                    Op2::ReadAll { from: 0 },
                ],
            },
        ),
        (
            "damage-and-torn-tail",
            Input {
                small_cache: false,
                buffered: false,
                collide: false,
                ops: vec![
                    Op2::Append(Part { stream: 0, expected: Expected::Any, events: vec![ev(0, 3000)] }),
                    Op2::Append(Part { stream: 1, expected: Expected::Any, events: vec![ev(0, 3000)] }),
                    Op2::CorruptTail { at: 3, bytes: vec![0x58, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8] },
                    Op2::DamageTableHeader { table: 0, at: 20, xor: 0x10 },
                    Op2::DamageTablePage { table: 1, at: 100, xor: 1 },
                    Op2::Reopen { other_separator: true },
                    Op2::ReadCategory { category: 3, from: 0 },
                    Op2::ReadStreamBackwards { stream: 1, from: None },
                ],
            },
        ),
    ];
    for (name, input) in inputs {
        let bytes = model::encode::input(&input);
        assert_eq!(model::decode(&bytes).as_ref(), Some(&input), "the seed encoder matches arbitrary");
        model::run(&input);
        save("operations_vs_model", name, &bytes);
    }
    for (target, count) in [("decode_frame", 0), ("decode_table", 0), ("open_directory", 0), ("operations_vs_model", 0)]
    {
        let n = std::fs::read_dir(Path::new("corpus").join(target)).map_or(count, |d| d.count());
        println!("corpus/{target}: {n} files");
    }
}

use model::Op as Op2;
