//! Writes the hand-picked seed corpora into `corpus/<target>/seed-*`. Run from `fuzz/`:
//!
//!     cargo run --release --example make_seeds
//!
//! Seeds are made with the real engine where they can be (frames and checkpoints it wrote, a small store
//! directory it wrote), and with the input formats' encoders otherwise.

use std::path::Path;

use annals::{EventData, ExpectedVersion, Options, Store, StreamAppend};
use annals_fuzz::directory::{self, CheckpointEdits, CheckpointSpec, FrameSpec, Op, SegmentSpec};
use annals_fuzz::format;
use annals_fuzz::model::{self, Ev, Expected, Input, Part};

fn save(target: &str, name: &str, bytes: &[u8]) {
    if target == "open_directory" {
        directory::run(bytes);
    }
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

/// A small store written by the engine: three streams, a multi-stream transaction, a segment roll.
fn real_store(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let options = Options { segment_size_bytes: 4096, index_interval_events: 2, ..Options::default() };
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
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap())
        .map(|entry| (entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path()).unwrap()))
        .filter(|(name, _)| name.ends_with(".seg") || name == format::CHECKPOINT_FILE)
        .collect();
    files.sort();
    files
}

fn main() {
    let tmp = annals_fuzz::tempdir();
    let files = real_store(tmp.path());

    // decode_frame: every frame of the real store, and its checkpoint.
    let mut frames = 0;
    for (name, bytes) in &files {
        if name == format::CHECKPOINT_FILE {
            save("decode_frame", "checkpoint", bytes);
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
    assert!(frames >= 6, "the real store holds frames");

    // open_directory: the real store, serialized as segment headers + raw bodies + the raw checkpoint.
    let mut ops = vec![Op::Options { interval_bits: 1 }];
    for (name, bytes) in &files {
        if name == format::CHECKPOINT_FILE {
            ops.push(Op::Checkpoint(CheckpointSpec::Raw { bytes: bytes.clone(), add_crc: false }));
        } else {
            ops.push(Op::NewSegment(SegmentSpec { two_pages: bytes.len() > 4096, ..SegmentSpec::default() }));
            let body = &bytes[format::SEGMENT_HEADER_LEN..];
            let used = body.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            ops.push(Op::Raw(body[..used].to_vec()));
        }
    }
    save("open_directory", "real-store", &directory::encode(&ops));

    // open_directory: valid programs (exact checks apply).
    let plain = |stream: u8, data: &[u8]| Op::Frame(FrameSpec::plain(stream, stream % 3, data));
    let auto_checkpoint = || Op::Checkpoint(CheckpointSpec::Auto(CheckpointEdits::default()));
    let mut three_segments = vec![Op::Options { interval_bits: 1 }];
    for i in 0..40u8 {
        three_segments.push(plain(i % 4, &[i; 200]));
        if i == 25 {
            three_segments.push(auto_checkpoint());
        }
    }
    save("open_directory", "three-segments-checkpoint", &directory::encode(&three_segments));

    let mut collide = vec![Op::Options { interval_bits: 8 | 2 }];
    for i in 0..12u8 {
        collide.push(plain(i % 5, &[i; 3]));
    }
    collide.push(auto_checkpoint());
    collide.push(plain(2, b"after the checkpoint"));
    save("open_directory", "collided-streams", &directory::encode(&collide));

    let txn = |stream: u8, txn_after: u32| {
        Op::Frame(FrameSpec { txn_after: Some(txn_after), ..FrameSpec::plain(stream, 0, b"txn") })
    };
    let transactions =
        vec![plain(0, b"first"), txn(1, 2), txn(2, 1), txn(1, 0), auto_checkpoint(), plain(0, b"x"), txn(3, 1)];
    save("open_directory", "transactions-torn-tail", &directory::encode(&transactions));

    let rolled = vec![
        Op::NewSegment(SegmentSpec { two_pages: true, ..SegmentSpec::default() }),
        plain(0, &[1; 250]),
        plain(1, &[2; 250]),
        Op::NewSegment(SegmentSpec::default()),
        auto_checkpoint(),
    ];
    save("open_directory", "empty-last-segment-checkpoint", &directory::encode(&rolled));

    let damaged = vec![
        plain(0, b"one"),
        plain(0, b"two"),
        Op::Frame(FrameSpec { flip: Some((100, 4)), ..FrameSpec::plain(0, 0, b"three") }),
        Op::NewSegment(SegmentSpec::default()),
        plain(1, b"four"),
    ];
    save("open_directory", "damage-in-sealed-segment", &directory::encode(&damaged));

    // operations_vs_model.
    let ev = |t: u8, len: u16| Ev { event_type: t, data_len: len, fill: 7, metadata: vec![1, 2], id: None, codec: 3 };
    let inputs = [
        (
            "appends-reads-reopen",
            Input {
                interval: 1,
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
                    Op2::Reopen { interval: None },
                    Op2::ReadStream { stream: 0, from: 0 },
                ],
            },
        ),
        (
            "multi-and-invalid",
            Input {
                interval: 3,
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
                    Op2::ReopenWithoutCheckpoint,
                    Op2::ReadAll { from: 0 },
                ],
            },
        ),
        (
            "damage-and-torn-tail",
            Input {
                interval: 0,
                buffered: false,
                collide: false,
                ops: vec![
                    Op2::Append(Part { stream: 0, expected: Expected::Any, events: vec![ev(0, 3000)] }),
                    Op2::Append(Part { stream: 1, expected: Expected::Any, events: vec![ev(0, 3000)] }),
                    Op2::CorruptTail { at: 3, bytes: vec![0x58, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8] },
                    Op2::DamageCheckpoint { at: 20, xor: 0x10 },
                    Op2::Reopen { interval: Some(4) },
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
    for (target, count) in [("decode_frame", 0), ("open_directory", 0), ("operations_vs_model", 0)] {
        let n = std::fs::read_dir(Path::new("corpus").join(target)).map_or(count, |d| d.count());
        println!("corpus/{target}: {n} files");
    }
}

use model::Op as Op2;
