//! The curves of a run as an SVG file (`OUT/curves.svg`, written beside `log.jsonl` at the end
//! of every run): training loss (raw and smoothed), learning rate, and every evaluation metric
//! of `metrics.jsonl`, one panel each, against the step. Plain SVG, no dependency: browsers and
//! Markdown viewers show it.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::{Error, Result};

const WIDTH: f64 = 720.0;
const PANEL_HEIGHT: f64 = 170.0;
const MARGIN: f64 = 56.0;

/// One plotted series.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
    colour: &'static str,
}

/// Reads `dir/log.jsonl` and `dir/metrics.jsonl` and writes `dir/curves.svg`.
pub fn write_curves(dir: &Path) -> Result<()> {
    let log = read_lines(&dir.join("log.jsonl"))?;
    let metrics = read_lines(&dir.join("metrics.jsonl")).unwrap_or_default();
    let svg = render(&log, &metrics);
    let path = dir.join("curves.svg");
    std::fs::write(&path, svg).map_err(|e| Error::Io {
        path: path.display().to_string(),
        source: e,
    })
}

fn read_lines(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

fn series(rows: &[Value], field: &str, colour: &'static str) -> Series {
    let points = rows
        .iter()
        .filter_map(|r| Some((r["step"].as_f64()?, r[field].as_f64()?)))
        .filter(|(_, y)| y.is_finite())
        .collect();
    Series {
        name: field.to_string(),
        points,
        colour,
    }
}

/// The SVG of a run's log and metrics lines.
pub fn render(log: &[Value], metrics: &[Value]) -> String {
    let mut panels = vec![
        vec![
            series(log, "loss", "#b0c4de"),
            series(log, "smoothed_loss", "#1f4e9c"),
        ],
        vec![series(log, "learning_rate", "#2e8b57")],
    ];
    let mut names: Vec<String> = metrics
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|o| o.keys().cloned())
        .filter(|k| k != "step" && k != "split")
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let mut s = series(metrics, &name, "#c0392b");
        s.name = format!("eval {name}");
        panels.push(vec![s]);
    }
    panels.retain(|p| p.iter().any(|s| !s.points.is_empty()));
    let height = PANEL_HEIGHT * panels.len().max(1) as f64 + 20.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for (i, panel) in panels.iter().enumerate() {
        draw_panel(&mut svg, panel, 10.0 + i as f64 * PANEL_HEIGHT);
    }
    svg.push_str("</svg>\n");
    svg
}

fn draw_panel(svg: &mut String, panel: &[Series], top: f64) {
    let all = panel.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let (left, right) = (MARGIN, WIDTH - 16.0);
    let (upper, lower) = (top + 18.0, top + PANEL_HEIGHT - 24.0);
    let sx = |x: f64| left + (x - x0) / (x1 - x0) * (right - left);
    let sy = |y: f64| lower - (y - y0) / (y1 - y0) * (lower - upper);
    let title: Vec<&str> = panel.iter().map(|s| s.name.as_str()).collect();
    let _ = writeln!(
        svg,
        "<rect x=\"{left}\" y=\"{upper}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>\n\
         <text x=\"{left}\" y=\"{}\" font-weight=\"bold\">{}</text>\n\
         <text x=\"4\" y=\"{}\">{}</text><text x=\"4\" y=\"{}\">{}</text>\n\
         <text x=\"{left}\" y=\"{}\">step {}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
        right - left,
        lower - upper,
        upper - 5.0,
        title.join(", "),
        upper + 9.0,
        short(y1),
        lower,
        short(y0),
        lower + 14.0,
        x0,
        right,
        lower + 14.0,
        x1,
    );
    for s in panel {
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        if pts.len() == 1 {
            let (x, y) = s.points[0];
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"/>",
                sx(x),
                sy(y),
                s.colour
            );
        } else {
            let _ = writeln!(
                svg,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>",
                s.colour,
                pts.join(" ")
            );
        }
    }
}

fn short(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-2 || v.abs() >= 1e4) {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_panel_per_quantity() {
        let log: Vec<Value> = (1..=5)
            .map(|s| serde_json::json!({"step": s, "loss": 2.0 / s as f64, "smoothed_loss": 1.5, "learning_rate": 1e-4}))
            .collect();
        let metrics = vec![serde_json::json!({"step": 5, "split": "eval", "accuracy": 0.5})];
        let svg = render(&log, &metrics);
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<rect x=").count(), 3, "loss, lr, accuracy");
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(svg.contains("eval accuracy"));
    }
}
