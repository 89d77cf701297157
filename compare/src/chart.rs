//! The chart: one group of bars per workload (W10: its delivery latency p99), one bar per peer, each bar the peer's speed relative to annals
//! on a log scale, oriented so that up is always better for the peer (for time and memory the ratio is
//! annals ÷ peer). annals is the line at 1×; its own figure is printed above each group.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{number, ratio, Better, ROWS};
use crate::workloads::Measurement;
use crate::Result;

/// The headline row of each workload (its first row in the table).
const CHARTED: [(&str, &str); 9] = [
    ("W1", "W1 durable-1w"),
    ("W2", "W2 durable-16w"),
    ("W3", "W3 bulk"),
    ("W4", "W4 scan-all"),
    ("W5", "W5 read-stream"),
    ("W6", "W6 reopen"),
    ("W7", "W7 recover"),
    ("M1", "M1 memory"),
    ("W10", "W10 delivery p99"),
];

const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// The axis runs from `AXIS_MIN` to `AXIS_MAX`; bars are clamped a little inside it so their labels fit.
const AXIS_MIN: f64 = 0.001;
const AXIS_MAX: f64 = 1000.0;
const RATIO_MIN: f64 = 0.004;
const RATIO_MAX: f64 = 250.0;

fn color(engine: &str) -> RGBColor {
    match engine {
        "sqlite" => RGBColor(0x1f, 0x77, 0xb4),
        "postgres" => RGBColor(0x2c, 0xa0, 0x2c),
        "fjall" => RGBColor(0xff, 0x7f, 0x0e),
        "redb" => RGBColor(0xd6, 0x27, 0x28),
        _ => RGBColor(0x7f, 0x7f, 0x7f),
    }
}

fn register_font() -> Result<()> {
    let path = FONT_PATHS
        .iter()
        .find(|path| Path::new(path).exists())
        .ok_or("no DejaVuSans.ttf found (apt-get install -y fonts-dejavu-core)")?;
    let bytes: &'static [u8] = Box::leak(std::fs::read(path)?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| "DejaVuSans.ttf is not a usable font")?;
    Ok(())
}

/// A figure short enough to print above a group of bars: `133k events/s`, `46.8 µs/stream`.
fn compact(value: f64, unit: &str) -> String {
    let unit = unit.replace("events", "ev");
    if value >= 1e6 {
        format!("{:.1}M {unit}", value / 1e6)
    } else if value >= 1e4 {
        format!("{:.0}k {unit}", value / 1e3)
    } else {
        format!("{} {unit}", number(value))
    }
}

/// An axis label: `100×`, `1×`, `0.01×`.
fn axis_ratio(value: f64) -> String {
    if value >= 1.0 {
        format!("{value:.0}×")
    } else {
        let text = format!("{value:.3}");
        format!("{}×", text.trim_end_matches('0'))
    }
}

/// Draws the chart to `path` (PNG).
pub fn draw(path: &Path, measurements: &[Measurement]) -> Result<()> {
    register_font()?;
    let peers: Vec<String> =
        crate::report::engines_in(measurements).into_iter().filter(|engine| engine != "annals").collect();
    // (label, annals figure, [(peer, ratio)]) per charted workload that annals has a figure for.
    let mut groups = Vec::new();
    for (workload, label) in CHARTED {
        let Some(row) = ROWS.iter().find(|row| row.workload == workload) else { continue };
        let Some(annals) = row.value(measurements, "annals") else { continue };
        let bars: Vec<(String, f64)> = peers
            .iter()
            .filter_map(|peer| {
                let value = row.value(measurements, peer)?;
                let speed = match row.better {
                    Better::Higher => value / annals,
                    Better::Lower if value <= 0.0 => RATIO_MAX,
                    Better::Lower => annals / value,
                };
                Some((peer.clone(), speed.clamp(RATIO_MIN, RATIO_MAX)))
            })
            .collect();
        groups.push((label, format!("annals: {}", compact(annals, row.unit)), bars));
    }
    if groups.is_empty() {
        return Err("no annals results to chart".into());
    }

    let root = BitMapBackend::new(path, (1600, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, legend) = root.split_horizontally(1420);
    let groups_len = groups.len() as f64;
    let mut chart = ChartBuilder::on(&plot)
        .caption(
            "Peers relative to annals, same machine and run (log scale; above 1× the peer is better)",
            ("sans-serif", 26),
        )
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d(-0.5f64..(groups_len - 0.5), (AXIS_MIN..AXIS_MAX).log_scale())?;
    let labels: Vec<&str> = groups.iter().map(|(label, _, _)| *label).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len())
        .x_label_formatter(&|x| {
            let index = x.round();
            if (x - index).abs() < 1e-6 && index >= 0.0 && (index as usize) < labels.len() {
                labels[index as usize].to_owned()
            } else {
                String::new()
            }
        })
        .x_label_style(("sans-serif", 17))
        .y_desc("peer speed ÷ annals speed (time and memory: annals ÷ peer)")
        .y_label_formatter(&|y| axis_ratio(*y))
        .y_label_style(("sans-serif", 16))
        .draw()?;

    let width = 0.8 / peers.len().max(1) as f64;
    for (slot, peer) in peers.iter().enumerate() {
        let fill = color(peer);
        let bars: Vec<(f64, f64)> = groups
            .iter()
            .enumerate()
            .filter_map(|(index, (_, _, bars))| {
                bars.iter()
                    .find(|(name, _)| name == peer)
                    .map(|(_, speed)| (index as f64 - 0.4 + slot as f64 * width, *speed))
            })
            .collect();
        chart.draw_series(bars.iter().map(|&(x, speed)| {
            let (low, high) = if speed >= 1.0 { (1.0, speed) } else { (speed, 1.0) };
            Rectangle::new([(x + 0.05 * width, low), (x + 0.95 * width, high)], fill.filled())
        }))?;
        let label_style = TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
        chart.draw_series(bars.iter().map(|&(x, speed)| {
            // Neighbouring labels are staggered so that wide ones do not run into each other.
            let away = if slot % 2 == 0 { 1.45 } else { 2.3 };
            let y = if speed >= 1.0 { speed * away } else { speed / away };
            Text::new(ratio(speed), (x + 0.5 * width, y), label_style.clone())
        }))?;
    }
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(-0.5, 1.0), (groups_len - 0.5, 1.0)],
        BLACK.stroke_width(2),
    )))?;
    let note_style = TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
    chart.draw_series(
        groups
            .iter()
            .enumerate()
            .map(|(index, (_, annals, _))| Text::new(annals.clone(), (index as f64, 400.0), note_style.clone())),
    )?;
    // The legend sits beside the plot, where no bar can be under it.
    let legend_font = ("sans-serif", 18).into_font();
    for (index, peer) in peers.iter().enumerate() {
        let y = 120 + 34 * index as i32;
        legend.draw(&Rectangle::new([(10, y - 9), (30, y + 9)], color(peer).filled()))?;
        legend.draw(&Text::new(peer.clone(), (40, y - 9), legend_font.clone()))?;
    }
    let y = 120 + 34 * peers.len() as i32;
    legend.draw(&PathElement::new(vec![(10, y), (30, y)], BLACK.stroke_width(2)))?;
    legend.draw(&Text::new("annals = 1×", (40, y - 9), legend_font))?;
    root.present()?;
    Ok(())
}
