//! Plots drawn with `plotters`: a run's curves ([`curves`], `curves.png` and `curves.svg`
//! beside `log.jsonl` at the end of every run) and grouped bar charts ([`bars`], e.g. the
//! accuracy table of `benchmarks/RESULTS.md`).
//!
//! Every plot is drawn once by code generic over the plotters backend and written twice: a PNG
//! (the bitmap backend; text rasterised with the DejaVu Sans font embedded in this crate, so the
//! output does not depend on the machine's fonts) and an SVG (text left to the viewer).

pub mod bars;
pub mod curves;

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::{Error, Result};

/// DejaVu Sans 2.37 (Bitstream Vera licence, `assets/DejaVuSans.LICENSE`).
const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
/// The family name every plot asks for; [`register_font`] maps it to [`FONT`].
const FAMILY: &str = "sans-serif";

/// Registers [`FONT`] with plotters once per process.
fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::Plot(
            "the embedded DejaVu Sans font did not load".into(),
        ))
    }
}

/// Something drawn on any plotters backend.
trait Picture {
    /// Draws on `area`, already filled white; errors as text.
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String>;
}

/// Draws `picture` as `stem.png` and `stem.svg` (`stem` is a path without extension).
fn write_png_and_svg(stem: &Path, size: (u32, u32), picture: &impl Picture) -> Result<()> {
    register_font()?;
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    let named = |path: &Path, e: String| Error::Plot(format!("{}: {e}", path.display()));
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| named(&png, e.to_string()))?;
        picture.draw(&root).map_err(|e| named(&png, e))?;
        root.present().map_err(|e| named(&png, e.to_string()))?;
    }
    let root = SVGBackend::new(&svg, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| named(&svg, e.to_string()))?;
    picture.draw(&root).map_err(|e| named(&svg, e))?;
    root.present().map_err(|e| named(&svg, e.to_string()))
}

/// The chart's legend (its series' labels), upper right.
fn draw_legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FAMILY, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0x99, 0x99, 0x99))
        .draw()
}

/// A number as a short axis or bar label.
fn short(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-2 || v.abs() >= 1e4) {
        format!("{v:.1e}")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::short;

    #[test]
    fn short_labels() {
        assert_eq!(short(0.5), "0.5");
        assert_eq!(short(6.0), "6");
        assert_eq!(short(3e-4), "3.0e-4");
        assert_eq!(short(12345.0), "1.2e4");
        assert_eq!(short(0.0), "0");
    }
}
