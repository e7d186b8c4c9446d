//! Grouped bar charts (`stem.png` and `stem.svg`): one group of bars per category, one bar per
//! series, each bar labelled with its value. `benchmarks/RESULTS.md` draws the sentiment
//! accuracy of our model against the baselines with it
//! (`cargo run -p deberta-train --example bar_chart`).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{draw_legend, write_png_and_svg, Picture, FAMILY};
use crate::{Error, Result};

const WIDTH: u32 = 900;
const HEIGHT: u32 = 420;
/// Series colours, in order (cycled past the sixth).
const COLOURS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x4e, 0x9c),
    RGBColor(0xe6, 0x7e, 0x22),
    RGBColor(0x7f, 0x8c, 0x8d),
    RGBColor(0x2e, 0x8b, 0x57),
    RGBColor(0xc0, 0x39, 0x2b),
    RGBColor(0x8e, 0x44, 0xad),
];

/// A grouped bar chart: `series[j].1[i]` is the bar of series `j` in category `i`.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    pub title: String,
    pub y_label: String,
    pub categories: Vec<String>,
    pub series: Vec<(String, Vec<f64>)>,
}

impl BarChart {
    /// Checks that every series has one finite, non-negative value per category.
    fn check(&self) -> Result<()> {
        if self.categories.is_empty() || self.series.is_empty() {
            return Err(Error::Plot(format!(
                "{:?}: no category or no series",
                self.title
            )));
        }
        for (name, values) in &self.series {
            if values.len() != self.categories.len() {
                return Err(Error::Plot(format!(
                    "{:?}: series {name:?} has {} values for {} categories",
                    self.title,
                    values.len(),
                    self.categories.len()
                )));
            }
            if let Some(v) = values.iter().find(|v| !v.is_finite() || **v < 0.0) {
                return Err(Error::Plot(format!(
                    "{:?}: series {name:?} has the value {v} (bars need finite values >= 0)",
                    self.title
                )));
            }
        }
        Ok(())
    }

    fn y_max(&self) -> f64 {
        let max = self
            .series
            .iter()
            .flat_map(|(_, v)| v)
            .fold(0.0f64, |a, &b| a.max(b));
        if max > 0.0 {
            max * 1.4
        } else {
            1.0
        }
    }
}

/// Writes `stem.png` and `stem.svg` (`stem` without extension).
pub fn write_bar_chart(stem: &Path, chart: &BarChart) -> Result<()> {
    chart.check()?;
    write_png_and_svg(stem, (WIDTH, HEIGHT), chart)
}

impl Picture for BarChart {
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        draw_bars(area, self).map_err(|e| e.to_string())
    }
}

fn draw_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    bars: &BarChart,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let n = bars.categories.len() as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(&bars.title, (FAMILY, 20))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..n, 0.0..bars.y_max())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(&bars.y_label)
        .y_label_formatter(&|y| super::short(*y))
        .label_style((FAMILY, 13))
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .draw()?;
    let width = 0.8 / bars.series.len() as f64;
    let value_style = TextStyle::from((FAMILY, 12)).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (j, (name, values)) in bars.series.iter().enumerate() {
        let colour = COLOURS[j % COLOURS.len()];
        let left = |i: usize| i as f64 + 0.1 + j as f64 * width;
        chart
            .draw_series(values.iter().enumerate().map(|(i, &v)| {
                Rectangle::new(
                    [(left(i), 0.0), (left(i) + width * 0.92, v)],
                    colour.filled(),
                )
            }))?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled()));
        chart.draw_series(values.iter().enumerate().map(|(i, &v)| {
            Text::new(
                format!("{v:.1}"),
                (left(i) + width * 0.46, v),
                value_style.clone(),
            )
        }))?;
    }
    let label_style = TextStyle::from((FAMILY, 14)).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, category) in bars.categories.iter().enumerate() {
        // The plotting area's pixel of the category's centre on the x axis, drawn on the root.
        let (x, y) = chart.plotting_area().map_coordinate(&(i as f64 + 0.5, 0.0));
        area.draw_text(category, &label_style, (x, y + 8))?;
    }
    draw_legend(&mut chart)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart() -> BarChart {
        BarChart {
            title: "accuracy".into(),
            y_label: "%".into(),
            categories: vec!["overall".into(), "movie".into()],
            series: vec![
                ("ours".into(), vec![70.0, 72.5]),
                ("baseline".into(), vec![60.0, 0.0]),
            ],
        }
    }

    #[test]
    fn writes_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("bars");
        write_bar_chart(&stem, &chart()).unwrap();
        let png = std::fs::read(stem.with_extension("png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), WIDTH);
        let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
        for label in ["overall", "movie", "ours", "baseline", "72.5", "60.0"] {
            assert!(svg.contains(label), "{label} missing from the SVG");
        }
    }

    #[test]
    fn bad_series_are_named_errors() {
        let mut short = chart();
        short.series[1].1.pop();
        let err = write_bar_chart(Path::new("/nonexistent/x"), &short)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"baseline\" has 1 values for 2 categories"),
            "{err}"
        );
        let mut nan = chart();
        nan.series[0].1[0] = f64::NAN;
        let err = write_bar_chart(Path::new("/nonexistent/x"), &nan)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"ours\" has the value NaN"), "{err}");
    }
}
