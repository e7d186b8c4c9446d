//! [`Metrics`]: named scores in insertion order, one JSON object per evaluation.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Named scores (`"accuracy" -> 0.91`) in the order they were inserted, as one line of
/// `metrics.jsonl` or one `eval_*` group of transformers' `Trainer` logs.
///
/// Serialises to a JSON object with the keys in insertion order. A non-finite value (NaN from
/// an undefined metric, infinite perplexity) is written as `null`, which is what `serde_json`
/// does with them (JSON has no NaN); reading `null` back gives NaN.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    entries: Vec<(String, f64)>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`: replaces the value in place when `name` is present, appends
    /// otherwise.
    pub fn insert(&mut self, name: impl Into<String>, value: f64) {
        let name = name.into();
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((name, value)),
        }
    }

    /// Builder form of [`Metrics::insert`].
    pub fn with(mut self, name: impl Into<String>, value: f64) -> Self {
        self.insert(name, value);
        self
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `(name, value)` in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), *v))
    }

    /// Inserts every entry of `other` (later values win, order as in [`Metrics::insert`]).
    pub fn extend(&mut self, other: &Metrics) {
        for (name, value) in other.iter() {
            self.insert(name, value);
        }
    }

    /// Every name prefixed (`"accuracy"` -> `"eval_accuracy"`, as `Trainer.evaluate` does with
    /// `metric_key_prefix="eval"`); names that already start with the prefix are kept.
    pub fn prefixed(&self, prefix: &str) -> Metrics {
        let mut out = Metrics::new();
        for (name, value) in self.iter() {
            if name.starts_with(prefix) {
                out.insert(name, value);
            } else {
                out.insert(format!("{prefix}{name}"), value);
            }
        }
        out
    }
}

impl<'a> IntoIterator for &'a Metrics {
    type Item = (&'a str, f64);
    type IntoIter = Box<dyn Iterator<Item = (&'a str, f64)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl<S: Into<String>> FromIterator<(S, f64)> for Metrics {
    fn from_iter<I: IntoIterator<Item = (S, f64)>>(iter: I) -> Self {
        let mut out = Metrics::new();
        for (name, value) in iter {
            out.insert(name, value);
        }
        out
    }
}

impl Serialize for Metrics {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (name, value) in &self.entries {
            if value.is_finite() {
                map.serialize_entry(name, value)?;
            } else {
                map.serialize_entry(name, &None::<f64>)?;
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Metrics {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MetricsVisitor;

        impl<'de> Visitor<'de> for MetricsVisitor {
            type Value = Metrics;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of metric names to numbers or null")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Metrics, A::Error> {
                let mut out = Metrics::new();
                while let Some((name, value)) = access.next_entry::<String, Option<f64>>()? {
                    out.insert(name, value.unwrap_or(f64::NAN));
                }
                Ok(out)
            }
        }

        deserializer.deserialize_map(MetricsVisitor)
    }
}

impl fmt::Display for Metrics {
    /// `name=value` pairs separated by spaces, values with 4 decimals, for log lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{name}={value:.4}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_insertion_order_and_replaces_in_place() {
        let mut m = Metrics::new().with("f1", 0.5).with("accuracy", 0.75);
        m.insert("f1", 0.25);
        let names: Vec<&str> = m.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["f1", "accuracy"]);
        assert_eq!(m.get("f1"), Some(0.25));
        assert_eq!(m.get("missing"), None);
        assert_eq!(m.len(), 2);
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"f1":0.25,"accuracy":0.75}"#
        );
    }

    #[test]
    fn non_finite_values_are_null_and_read_back_as_nan() {
        let m = Metrics::new()
            .with("pearson", f64::NAN)
            .with("perplexity", f64::INFINITY)
            .with("loss", 1.5);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"pearson":null,"perplexity":null,"loss":1.5}"#);
        let back: Metrics = serde_json::from_str(&json).unwrap();
        assert!(back.get("pearson").unwrap().is_nan());
        assert!(back.get("perplexity").unwrap().is_nan());
        assert_eq!(back.get("loss"), Some(1.5));
        let names: Vec<&str> = back.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["pearson", "perplexity", "loss"]);
    }

    #[test]
    fn prefixed_extend_display() {
        let mut m: Metrics = [("accuracy", 0.5), ("eval_loss", 2.0)]
            .into_iter()
            .collect();
        let p = m.prefixed("eval_");
        let names: Vec<&str> = p.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["eval_accuracy", "eval_loss"]);
        m.extend(&Metrics::new().with("accuracy", 0.6).with("f1", 0.125));
        assert_eq!(m.to_string(), "accuracy=0.6000 eval_loss=2.0000 f1=0.1250");
    }
}
