//! The outputs: `results.md` (the engine × workload table with ratios to annals, and the machine's limits with
//! the ratios of annals to them) and `results.jsonl` (one object per engine × workload, and one per limit).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::limits::Limit;
use crate::workloads::{Measurement, Sizes};
use crate::{Args, Result};

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// One row of the table: a workload's metric (`None`: the headline value, else an extra field).
pub struct Row {
    pub workload: &'static str,
    pub field: Option<&'static str>,
    pub label: &'static str,
    pub unit: &'static str,
    pub better: Better,
    /// The limit (by key) the annals figure is held against.
    pub limit: Option<&'static str>,
}

pub const ROWS: [Row; 24] = [
    Row {
        workload: "W1",
        field: None,
        label: "W1 durable-1w",
        unit: "events/s",
        better: Better::Higher,
        limit: Some("fsync"),
    },
    Row {
        workload: "W2",
        field: None,
        label: "W2 durable-16w",
        unit: "events/s",
        better: Better::Higher,
        limit: Some("fsync"),
    },
    Row {
        workload: "W2",
        field: Some("p50_us"),
        label: "W2 append latency p50",
        unit: "µs",
        better: Better::Lower,
        limit: Some("fsync_p50"),
    },
    Row {
        workload: "W2",
        field: Some("p99_us"),
        label: "W2 append latency p99",
        unit: "µs",
        better: Better::Lower,
        limit: None,
    },
    Row { workload: "W3", field: None, label: "W3 bulk", unit: "events/s", better: Better::Higher, limit: None },
    Row {
        workload: "W3",
        field: Some("mb_per_s"),
        label: "W3 bulk, payload",
        unit: "MB/s",
        better: Better::Higher,
        limit: Some("seq_write"),
    },
    Row {
        workload: "W3",
        field: Some("disk_bytes_per_event"),
        label: "W3 disk use",
        unit: "bytes/event",
        better: Better::Lower,
        limit: None,
    },
    Row { workload: "W4", field: None, label: "W4 scan-all", unit: "events/s", better: Better::Higher, limit: None },
    Row {
        workload: "W4",
        field: Some("mb_per_s"),
        label: "W4 scan-all, payload",
        unit: "MB/s",
        better: Better::Higher,
        limit: Some("mem_read"),
    },
    Row {
        workload: "W5", field: None, label: "W5 read-stream", unit: "µs/stream", better: Better::Lower, limit: None
    },
    Row {
        workload: "W5",
        field: Some("events_per_s"),
        label: "W5 read-stream",
        unit: "events/s",
        better: Better::Higher,
        limit: None,
    },
    Row { workload: "W6", field: None, label: "W6 reopen", unit: "ms", better: Better::Lower, limit: None },
    Row { workload: "W7", field: None, label: "W7 recover", unit: "ms", better: Better::Lower, limit: None },
    Row { workload: "M1", field: None, label: "M1 memory", unit: "bytes/stream", better: Better::Lower, limit: None },
    Row { workload: "W8", field: None, label: "W8 snapshot-load", unit: "µs", better: Better::Lower, limit: None },
    Row {
        workload: "W8",
        field: Some("snapshot_then_9999_events_us"),
        label: "W8 snapshot + 9,999-event tail",
        unit: "µs",
        better: Better::Lower,
        limit: None,
    },
    Row {
        workload: "W8",
        field: Some("without_snapshots_us"),
        label: "W8 without snapshots",
        unit: "µs",
        better: Better::Lower,
        limit: None,
    },
    Row {
        workload: "W10",
        field: Some("p99_us"),
        label: "W10 delivery latency p99",
        unit: "µs",
        better: Better::Lower,
        limit: None,
    },
    Row {
        workload: "W10",
        field: Some("p50_us"),
        label: "W10 delivery latency p50",
        unit: "µs",
        better: Better::Lower,
        limit: None,
    },
    Row {
        workload: "W10",
        field: Some("writers_events_per_s"),
        label: "W10 writers, 16 subscribers",
        unit: "events/s",
        better: Better::Higher,
        limit: Some("fsync"),
    },
    Row {
        workload: "W10",
        field: Some("writers_alone_events_per_s"),
        label: "W10 writers, no subscribers",
        unit: "events/s",
        better: Better::Higher,
        limit: Some("fsync"),
    },
    Row {
        workload: "W10",
        field: Some("writers_ratio"),
        label: "W10 writers with ÷ without",
        unit: "×",
        better: Better::Higher,
        limit: None,
    },
    Row {
        workload: "W10",
        field: Some("catch_up_events_per_s"),
        label: "W10 catch-up",
        unit: "events/s",
        better: Better::Higher,
        limit: None,
    },
    Row {
        workload: "W10",
        field: Some("catch_up_vs_w4"),
        label: "W10 catch-up ÷ W4 scan",
        unit: "×",
        better: Better::Higher,
        limit: None,
    },
];

impl Row {
    pub fn value(&self, measurements: &[Measurement], engine: &str) -> Option<f64> {
        let measurement = measurements.iter().find(|m| m.engine == engine && m.workload == self.workload)?;
        match self.field {
            None => Some(measurement.value),
            Some(field) => measurement.extra_f64(field),
        }
    }
}

/// Formats a number with thousands separators and a precision that suits its size.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return "—".into();
    }
    let abs = value.abs();
    if abs >= 100.0 {
        let mut digits = format!("{:.0}", abs);
        let mut grouped = String::new();
        while digits.len() > 3 {
            let tail = digits.split_off(digits.len() - 3);
            grouped = format!(",{tail}{grouped}");
        }
        format!("{}{digits}{grouped}", if value < 0.0 { "-" } else { "" })
    } else if abs >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// A ratio, `0.52×`.
pub fn ratio(value: f64) -> String {
    if !value.is_finite() {
        "—".into()
    } else if value >= 10.0 {
        format!("{value:.0}×")
    } else if value >= 0.1 {
        format!("{value:.2}×")
    } else {
        format!("{value:.3}×")
    }
}

/// Resident memory of this process, from `/proc/self/status`, in bytes.
pub struct Resident {
    pub rss: u64,
    pub anon: u64,
    pub file: u64,
}

pub fn resident_memory() -> Result<Resident> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|line| line.starts_with(name))
            .ok_or_else(|| format!("no {name} in /proc/self/status"))?;
        let kib: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse()?;
        Ok(kib * 1024)
    };
    Ok(Resident { rss: field("VmRSS:")?, anon: field("RssAnon:")?, file: field("RssFile:")? })
}

/// The machine and the run, for the report's header.
pub struct Machine {
    pub date: String,
    pub command: String,
    pub cores: usize,
    pub memory: String,
    pub cpu: String,
    pub kernel: String,
    pub disk: String,
    pub scale: f64,
}

fn shell(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_default()
}

impl Machine {
    pub fn describe(data_dir: &Path, args: &Args) -> Result<Machine> {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown".into());
        let data = data_dir.to_string_lossy();
        let df = shell("df", &["-hT", &data]);
        let disk =
            df.lines().nth(1).map(|line| line.split_whitespace().collect::<Vec<_>>().join(" ")).unwrap_or_default();
        let mut command = String::from("cargo run --release -p annals-compare --");
        for arg in std::env::args().skip(1) {
            command.push(' ');
            command.push_str(&arg);
        }
        Ok(Machine {
            date: shell("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            command,
            cores: std::thread::available_parallelism().map(|cores| cores.get()).unwrap_or(0),
            memory: format!("{:.1} GiB", memory_kib / (1 << 20) as f64),
            cpu,
            kernel: shell("uname", &["-sr"]),
            disk: format!(
                "{disk} (df -hT of the data directory: filesystem, type, size, used, available, use%, mount)"
            ),
            scale: args.scale,
        })
    }
}

/// Engines in table order, those with at least one result.
pub fn engines_in(measurements: &[Measurement]) -> Vec<String> {
    let mut engines: Vec<String> = Vec::new();
    for measurement in measurements {
        if !engines.contains(&measurement.engine) {
            engines.push(measurement.engine.clone());
        }
    }
    engines
}

pub fn write(
    out: &Path,
    machine: &Machine,
    sizes: &Sizes,
    limits: &[Limit],
    measurements: &[Measurement],
    notes: &[String],
) -> Result<()> {
    let mut jsonl = std::fs::File::create(out.join("results.jsonl"))?;
    for measurement in measurements {
        writeln!(jsonl, "{}", measurement.to_json())?;
    }
    for limit in limits {
        writeln!(
            jsonl,
            "{}",
            json!({"engine": "machine", "workload": limit.key, "value": limit.value, "unit": limit.unit, "label": limit.label})
        )?;
    }
    std::fs::write(out.join("results.md"), markdown(machine, sizes, limits, measurements, notes))?;
    Ok(())
}

pub fn markdown(
    machine: &Machine,
    sizes: &Sizes,
    limits: &[Limit],
    measurements: &[Measurement],
    notes: &[String],
) -> String {
    let engines = engines_in(measurements);
    let limit = |key: &str| limits.iter().find(|limit| limit.key == key);
    let mut md = String::new();
    let _ = writeln!(md, "# annals and its peers on the standard workloads\n");
    let _ = writeln!(md, "- date: {}", machine.date);
    let _ = writeln!(md, "- command: `{}`", machine.command);
    let _ = writeln!(md, "- scale: {} (sizes: {sizes:?})", machine.scale);
    let _ = writeln!(
        md,
        "- machine: {} cores ({}), {} RAM, {}",
        machine.cores, machine.cpu, machine.memory, machine.kernel
    );
    let _ = writeln!(md, "- disk: {}", machine.disk);
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "Each cell: the engine's figure, then in brackets the engine's figure divided by annals' (for ↑ rows above \
         1× means the engine beats annals, for ↓ rows below 1× does). The last columns hold annals against the \
         machine's limit measured at the start of the same run.\n"
    );
    let _ = write!(md, "| workload | unit | |");
    for engine in &engines {
        let _ = write!(md, " {engine} |");
    }
    let _ = writeln!(md, " machine limit | annals ÷ limit |");
    let _ = writeln!(md, "|---|---|---|{}---|---|", "---:|".repeat(engines.len()));
    for row in &ROWS {
        let annals = row.value(measurements, "annals");
        if engines.iter().all(|engine| row.value(measurements, engine).is_none()) {
            continue;
        }
        let arrow = if row.better == Better::Higher { "↑" } else { "↓" };
        let _ = write!(md, "| {} | {} | {arrow} |", row.label, row.unit);
        for engine in &engines {
            let cell = match (row.value(measurements, engine), annals) {
                (None, _) => "—".to_owned(),
                (Some(value), _) if engine == "annals" => format!("**{}**", number(value)),
                (Some(value), Some(reference)) if reference != 0.0 => {
                    format!("{} ({})", number(value), ratio(value / reference))
                }
                (Some(value), _) => number(value),
            };
            let _ = write!(md, " {cell} |");
        }
        match (row.limit.and_then(limit), annals) {
            (Some(limit), Some(annals)) => {
                let _ = writeln!(md, " {} {} | {} |", number(limit.value), limit.unit, ratio(annals / limit.value));
            }
            _ => {
                let _ = writeln!(md, " | |");
            }
        }
    }
    w9_markdown(&mut md, measurements);
    let _ = writeln!(md, "\n## Machine limits (same run)\n");
    let _ = writeln!(md, "| limit | value |");
    let _ = writeln!(md, "|---|---:|");
    for limit in limits {
        let _ = writeln!(md, "| {} | {} {} |", limit.label, number(limit.value), limit.unit);
    }
    if !notes.is_empty() {
        let _ = writeln!(md, "\n## Notes: skipped, failed, not comparable\n");
        for note in notes {
            let _ = writeln!(md, "- {note}");
        }
    }
    let _ = writeln!(md, "\n## Extra figures\n");
    let _ = writeln!(md, "| engine | workload | figures |");
    let _ = writeln!(md, "|---|---|---|");
    for measurement in measurements.iter().filter(|measurement| !measurement.extra.is_empty()) {
        let figures: Vec<String> = measurement
            .extra
            .iter()
            .map(|(key, value)| match value.as_f64() {
                Some(number_value) if !value.is_u64() => format!("{key} {}", number(number_value)),
                _ => format!("{key} {value}"),
            })
            .collect();
        let _ = writeln!(md, "| {} | {} | {} |", measurement.engine, measurement.workload, figures.join(", "));
    }
    md
}

/// One row of the W9 table: a field of the W9 measurements (`None`: the headline), scaled for display.
struct W9Row {
    field: Option<&'static str>,
    label: &'static str,
    unit: &'static str,
    better: Better,
    /// Divides the stored figure for display (bytes to MiB).
    divisor: f64,
}

const MIB: f64 = (1 << 20) as f64;

const W9_ROWS: [W9Row; 16] = [
    W9Row { field: None, label: "load", unit: "events/s", better: Better::Higher, divisor: 1.0 },
    W9Row {
        field: Some("load_append_p99_ms"),
        label: "load append p99",
        unit: "ms",
        better: Better::Lower,
        divisor: 1.0,
    },
    W9Row {
        field: Some("load_append_max_ms"),
        label: "load append max",
        unit: "ms",
        better: Better::Lower,
        divisor: 1.0,
    },
    W9Row { field: Some("lone_p50_ms"), label: "lone append p50", unit: "ms", better: Better::Lower, divisor: 1.0 },
    W9Row { field: Some("lone_p99_ms"), label: "lone append p99", unit: "ms", better: Better::Lower, divisor: 1.0 },
    W9Row { field: Some("lone_max_ms"), label: "lone append max", unit: "ms", better: Better::Lower, divisor: 1.0 },
    W9Row { field: Some("close_ms"), label: "close", unit: "ms", better: Better::Lower, divisor: 1.0 },
    W9Row { field: Some("open_ms"), label: "reopen + first read", unit: "ms", better: Better::Lower, divisor: 1.0 },
    W9Row { field: Some("rss_bytes"), label: "RSS after reopen", unit: "MiB", better: Better::Lower, divisor: MIB },
    W9Row {
        field: Some("rss_growth_bytes"),
        label: "RSS growth by the reopen",
        unit: "MiB",
        better: Better::Lower,
        divisor: MIB,
    },
    W9Row { field: Some("read_us"), label: "random stream read", unit: "µs", better: Better::Lower, divisor: 1.0 },
    W9Row {
        field: Some("read_p99_us"),
        label: "random stream read p99",
        unit: "µs",
        better: Better::Lower,
        divisor: 1.0,
    },
    W9Row { field: Some("index_bytes"), label: "index on disk", unit: "MiB", better: Better::Lower, divisor: MIB },
    W9Row { field: Some("disk_bytes"), label: "store on disk", unit: "MiB", better: Better::Lower, divisor: MIB },
    W9Row {
        field: Some("written_bytes"),
        label: "written (write calls) by load, lone appends, close",
        unit: "MiB",
        better: Better::Lower,
        divisor: MIB,
    },
    W9Row {
        field: Some("rss_after_reads_bytes"),
        label: "RSS after the 1,000 reads",
        unit: "MiB",
        better: Better::Lower,
        divisor: MIB,
    },
];

/// The W9 table: one column per size and engine, sizes side by side, each cell with its ratio to annals at
/// the same size.
fn w9_markdown(md: &mut String, measurements: &[Measurement]) {
    let w9: Vec<&Measurement> = measurements.iter().filter(|m| m.workload == "W9").collect();
    let mut sizes: Vec<u64> = w9.iter().filter_map(|m| m.extra.get("streams").and_then(Value::as_u64)).collect();
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.is_empty() {
        return;
    }
    let engines = engines_in(measurements);
    let columns: Vec<(u64, &String)> = sizes
        .iter()
        .flat_map(|&size| engines.iter().map(move |engine| (size, engine)))
        .filter(|&(size, engine)| w9.iter().any(|m| &m.engine == engine && streams_of(m) == Some(size)))
        .collect();
    let find = |size: u64, engine: &str| w9.iter().find(|m| m.engine == engine && streams_of(m) == Some(size));
    let value = |row: &W9Row, size: u64, engine: &str| -> Option<f64> {
        let measurement = find(size, engine)?;
        let raw = match row.field {
            None => Some(measurement.value),
            Some(field) => measurement.extra_f64(field),
        };
        raw.map(|raw| raw / row.divisor)
    };
    let _ = writeln!(md, "\n## W9 scale: how each cost grows with the number of streams\n");
    let _ = writeln!(
        md,
        "Each column is one engine at one size (streams); each cell the figure, then in brackets its ratio to \
         annals' at the same size. RSS is the fresh reopening process' (embedded engines only).\n"
    );
    let _ = write!(md, "| W9 | unit | |");
    for (size, engine) in &columns {
        let _ = write!(md, " {engine} @ {} |", number(*size as f64));
    }
    let _ = writeln!(md, "\n|---|---|---|{}", "---:|".repeat(columns.len()));
    for row in &W9_ROWS {
        if columns.iter().all(|&(size, engine)| value(row, size, engine).is_none()) {
            continue;
        }
        let arrow = if row.better == Better::Higher { "↑" } else { "↓" };
        let _ = write!(md, "| {} | {} | {arrow} |", row.label, row.unit);
        for &(size, engine) in &columns {
            let cell = match (value(row, size, engine), value(row, size, "annals")) {
                (None, _) => "—".to_owned(),
                (Some(figure), _) if engine == "annals" => format!("**{}**", number(figure)),
                (Some(figure), Some(reference)) if reference != 0.0 => {
                    format!("{} ({})", number(figure), ratio(figure / reference))
                }
                (Some(figure), _) => number(figure),
            };
            let _ = write!(md, " {cell} |");
        }
        let _ = writeln!(md);
    }
}

fn streams_of(measurement: &Measurement) -> Option<u64> {
    measurement.extra.get("streams").and_then(Value::as_u64)
}
