//! Draws the sentiment accuracy chart of `benchmarks/RESULTS.md`:
//! `cargo run -p deberta-train --example bar_chart` (from the repository root) reads
//! `benchmarks/sentiment_deberta.json` (ours, `benchmarks/sentiment_eval.py`) and
//! `benchmarks/sentiment_baselines.json` (VADER, TF-IDF + LR) and writes
//! `benchmarks/sentiment_accuracy.png` / `.svg` and `benchmarks/sentiment_macro_f1.png` / `.svg`:
//! 3-class test accuracy and macro-F1 per domain and overall.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use deberta_train::plot::bars::{write_bar_chart, BarChart};
use serde_json::Value;

const SCOPES: [&str; 5] = ["overall", "amazon", "movie", "nyt", "tweets"];

fn read(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `metric` in % of one method's `3class` table, per scope.
fn scores(table: &Value, metric: &str) -> Vec<f64> {
    let value = |s: &str| table["3class"][s][metric].as_f64();
    SCOPES
        .iter()
        .map(|s| value(s).unwrap_or_else(|| panic!("no {s} {metric}")) * 100.0)
        .collect()
}

fn main() {
    let ours = read("benchmarks/sentiment_deberta.json");
    let baselines = read("benchmarks/sentiment_baselines.json");
    for (metric, name) in [("accuracy", "accuracy"), ("macro_f1", "macro-F1")] {
        let chart = BarChart {
            title: format!("3-class {name} (%) on the VADER test split"),
            y_label: format!("{name} (%)"),
            categories: SCOPES.iter().map(|s| s.to_string()).collect(),
            series: vec![
                ("deberta-v3-tiny-sentiment".into(), scores(&ours, metric)),
                (
                    "VADER lexicon".into(),
                    scores(&baselines["results"]["vader"], metric),
                ),
                (
                    "TF-IDF + LR".into(),
                    scores(&baselines["results"]["tfidf_lr"], metric),
                ),
            ],
        };
        let stem = std::path::PathBuf::from(format!("benchmarks/sentiment_{metric}"));
        write_bar_chart(&stem, &chart).unwrap();
        println!("{}.png {}.svg", stem.display(), stem.display());
    }
}
