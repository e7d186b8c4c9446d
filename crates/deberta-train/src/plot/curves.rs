//! The curves of a run (`OUT/curves.png` and `OUT/curves.svg`, written beside `log.jsonl` at the
//! end of every run): training loss (raw and smoothed), learning rate, and every evaluation
//! metric of `metrics.jsonl`, one panel each, against the step.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::Value;

use super::{draw_legend, short, write_png_and_svg, Picture, FAMILY};
use crate::{Error, Result};

const WIDTH: u32 = 900;
const PANEL_HEIGHT: u32 = 240;
/// The most panels a run's picture has (loss, learning rate and 30 evaluation metrics).
const MAX_PANELS: usize = 32;
/// The largest `log.jsonl` / `metrics.jsonl` read (a million steps is about 300 MB).
const MAX_LOG_BYTES: u64 = 1 << 30;

/// One plotted line.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
    colour: RGBColor,
}

/// One panel: a title and the lines that share its axes.
struct Panel {
    title: String,
    series: Vec<Series>,
}

/// The panels of a run.
struct Curves(Vec<Panel>);

/// Reads `dir/log.jsonl` and `dir/metrics.jsonl` (optional) and writes `dir/curves.png` and
/// `dir/curves.svg`.
pub fn write_curves(dir: &Path) -> Result<()> {
    let log = read_lines(&dir.join("log.jsonl"))?;
    let metrics = read_lines(&dir.join("metrics.jsonl")).unwrap_or_default();
    let curves = panels(&log, &metrics);
    if curves.0.is_empty() {
        return Err(Error::Plot(format!(
            "{}: no step with a finite loss, learning rate or metric",
            dir.join("log.jsonl").display()
        )));
    }
    if curves.0.len() > MAX_PANELS {
        // Each panel is PANEL_HEIGHT rows of the bitmap: a metrics file with thousands of
        // names would otherwise ask for gigabytes.
        return Err(Error::Plot(format!(
            "{}: {} evaluation metrics to plot, at most {} are drawn",
            dir.join("metrics.jsonl").display(),
            curves.0.len() - 2,
            MAX_PANELS - 2
        )));
    }
    let height = PANEL_HEIGHT * curves.0.len() as u32;
    write_png_and_svg(&dir.join("curves"), (WIDTH, height), &curves)
}

fn read_lines(path: &Path) -> Result<Vec<Value>> {
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    if size > MAX_LOG_BYTES {
        return Err(Error::Plot(format!(
            "{}: {size} bytes, more than the {MAX_LOG_BYTES} a plot reads",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

fn series(rows: &[Value], field: &str, name: String, colour: RGBColor) -> Series {
    let points = rows
        .iter()
        .filter_map(|r| Some((r["step"].as_f64()?, r[field].as_f64()?)))
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    Series {
        name,
        points,
        colour,
    }
}

/// The panels of a run's log and metrics lines: loss, learning rate, then one per evaluation
/// metric (sorted by name); panels with no point are left out.
fn panels(log: &[Value], metrics: &[Value]) -> Curves {
    let mut panels = vec![
        Panel {
            title: "training loss".into(),
            series: vec![
                series(log, "loss", "loss".into(), RGBColor(0xb0, 0xc4, 0xde)),
                series(
                    log,
                    "smoothed_loss",
                    "smoothed".into(),
                    RGBColor(0x1f, 0x4e, 0x9c),
                ),
            ],
        },
        Panel {
            title: "learning rate".into(),
            series: vec![series(
                log,
                "learning_rate",
                "learning rate".into(),
                RGBColor(0x2e, 0x8b, 0x57),
            )],
        },
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
        let title = format!("eval {name}");
        let colour = RGBColor(0xc0, 0x39, 0x2b);
        panels.push(Panel {
            series: vec![series(metrics, &name, title.clone(), colour)],
            title,
        });
    }
    panels.retain(|p| p.series.iter().any(|s| !s.points.is_empty()));
    Curves(panels)
}

/// The lowest and highest value of `values`, widened by `pad(lo, hi)` on each side.
fn span(values: impl Iterator<Item = f64>, pad: impl Fn(f64, f64) -> f64) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let p = pad(lo, hi);
    lo - p..hi + p
}

/// The y range of a panel: 5% margins, or ±50% around a single value.
fn y_range(panel: &Panel) -> std::ops::Range<f64> {
    let ys = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1));
    span(ys, |lo, hi| {
        if hi > lo {
            (hi - lo) * 0.05
        } else {
            lo.abs().max(1.0) * 0.5
        }
    })
}

impl Picture for Curves {
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        // Every panel shares the run's steps, so that an evaluation lines up with the loss.
        let xs = self
            .0
            .iter()
            .flat_map(|p| p.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
        let steps = span(xs, |lo, hi| if hi > lo { 0.0 } else { 0.5 });
        let cells = area.split_evenly((self.0.len(), 1));
        for (cell, panel) in cells.iter().zip(&self.0) {
            draw_panel(cell, panel, steps.clone())
                .map_err(|e| format!("panel {:?}: {e}", panel.title))?;
        }
        Ok(())
    }
}

/// Series with at most this many points get a marker at each point (evaluations).
const MARKED_POINTS: usize = 60;

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    xs: std::ops::Range<f64>,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, (FAMILY, 18))
        .margin(10)
        .margin_right(28) // room for the last step's label
        .x_label_area_size(34)
        .y_label_area_size(64)
        .build_cartesian_2d(xs, y_range(panel))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| short(*y))
        .label_style((FAMILY, 13))
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .draw()?;
    for s in panel.series.iter().filter(|s| !s.points.is_empty()) {
        if s.points.len() <= MARKED_POINTS {
            chart.draw_series(
                s.points
                    .iter()
                    .map(|&p| Circle::new(p, 3, s.colour.filled())),
            )?;
        }
        let colour = s.colour;
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                colour.stroke_width(2),
            ))?
            .label(&s.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
    }
    // One line needs no legend: the panel's title names it.
    if panel.series.iter().filter(|s| !s.points.is_empty()).count() > 1 {
        draw_legend(&mut chart)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> (Vec<Value>, Vec<Value>) {
        let log = (1..=5)
            .map(|s| serde_json::json!({"step": s, "loss": 2.0 / s as f64, "smoothed_loss": 1.5, "learning_rate": 1e-4}))
            .collect();
        let metrics = vec![serde_json::json!({"step": 5, "split": "eval", "accuracy": 0.5})];
        (log, metrics)
    }

    #[test]
    fn one_panel_per_quantity() {
        let (log, metrics) = run();
        let curves = panels(&log, &metrics);
        let titles: Vec<&str> = curves.0.iter().map(|p| p.title.as_str()).collect();
        assert_eq!(titles, ["training loss", "learning rate", "eval accuracy"]);
        assert_eq!(curves.0[0].series[0].points.len(), 5);
        assert_eq!(curves.0[2].series[0].points, [(5.0, 0.5)]);
    }

    #[test]
    fn writes_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let (log, metrics) = run();
        let lines = |rows: &[Value]| rows.iter().map(|r| format!("{r}\n")).collect::<String>();
        std::fs::write(dir.path().join("log.jsonl"), lines(&log)).unwrap();
        std::fs::write(dir.path().join("metrics.jsonl"), lines(&metrics)).unwrap();
        write_curves(dir.path()).unwrap();
        let png = std::fs::read(dir.path().join("curves.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR: width and height, big-endian, at bytes 16..24.
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), WIDTH);
        assert_eq!(
            u32::from_be_bytes(png[20..24].try_into().unwrap()),
            3 * PANEL_HEIGHT
        );
        let svg = std::fs::read_to_string(dir.path().join("curves.svg")).unwrap();
        assert!(svg.contains("eval accuracy") && svg.contains("learning rate"));
    }

    #[test]
    fn too_many_metrics_are_an_error_not_a_huge_bitmap() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("log.jsonl"),
            "{\"step\": 1, \"loss\": 1.0}\n",
        )
        .unwrap();
        let names: serde_json::Map<String, Value> = (0..1000)
            .map(|i| (format!("m{i}"), serde_json::json!(0.5)))
            .collect();
        let mut line = Value::Object(names);
        line["step"] = serde_json::json!(1);
        std::fs::write(dir.path().join("metrics.jsonl"), format!("{line}\n")).unwrap();
        let err = write_curves(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("metrics.jsonl") && err.contains("at most 30"),
            "{err}"
        );
        assert!(!dir.path().join("curves.png").exists());
    }

    #[test]
    fn a_log_without_points_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("log.jsonl"),
            "{\"step\": 1, \"loss\": NaN}\nnot json\n",
        )
        .unwrap();
        let err = write_curves(dir.path()).unwrap_err().to_string();
        assert!(err.contains("log.jsonl"), "{err}");
    }
}
