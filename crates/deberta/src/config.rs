//! `DebertaV2Config`: every field of transformers' config, with transformers' defaults.
//!
//! Reference: <https://github.com/huggingface/transformers/blob/v5.0.0/src/transformers/models/deberta_v2/configuration_deberta_v2.py>
//! plus the keys the modeling code reads with `getattr` (`embedding_size`, `position_buckets`,
//! `share_att_key`, `norm_rel_ebd`, `conv_*`, `attention_head_size`, `cls_dropout`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::activation::Activation;
use crate::{Error, Result};

/// One kind of disentangled attention term (`pos_att_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PosAttType {
    /// Content-to-position.
    C2p,
    /// Position-to-content.
    P2c,
    /// Position-to-position (DeBERTa-v1 only; DeBERTa-v2 ignores it, as transformers does).
    P2p,
}

impl PosAttType {
    fn as_str(self) -> &'static str {
        match self {
            PosAttType::C2p => "c2p",
            PosAttType::P2c => "p2c",
            PosAttType::P2p => "p2p",
        }
    }
}

/// One normalisation of the relative embeddings (`norm_rel_ebd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormRelEbd {
    LayerNorm,
}

/// `problem_type` of a sequence classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemType {
    Regression,
    SingleLabelClassification,
    MultiLabelClassification,
}

/// The configuration of a DeBERTa-v2/v3 model, read from and written to `config.json`.
///
/// Field names and defaults are transformers'. Keys this struct does not know are kept in
/// [`DebertaV2Config::extra`] and written back on save.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DebertaV2Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    /// 0 means no token-type table (token_type_ids are then ignored).
    pub type_vocab_size: usize,
    pub initializer_range: f64,
    pub layer_norm_eps: f64,
    pub relative_attention: bool,
    /// Values below 1 mean `max_position_embeddings`.
    pub max_relative_positions: i64,
    pub pad_token_id: Option<i64>,
    pub position_biased_input: bool,
    /// Accepts a list or a `"p2c|c2p"` string (lower-cased and trimmed, as transformers does).
    #[serde(
        deserialize_with = "de_pos_att_type",
        serialize_with = "ser_pos_att_type"
    )]
    pub pos_att_type: Vec<PosAttType>,
    pub pooler_dropout: f64,
    pub pooler_hidden_act: Activation,
    /// `None` means `hidden_size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pooler_hidden_size: Option<usize>,
    /// Masked-LM head layout: true = `cls.predictions.*`, false = `lm_predictions.lm_head.*`.
    pub legacy: bool,
    /// `None` means `hidden_size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding_size: Option<usize>,
    /// Values above 0 enable log-bucketed relative positions.
    pub position_buckets: i64,
    pub share_att_key: bool,
    #[serde(
        deserialize_with = "de_norm_rel_ebd",
        serialize_with = "ser_norm_rel_ebd"
    )]
    pub norm_rel_ebd: Vec<NormRelEbd>,
    /// Values above 0 add the nGiE convolution after the first layer.
    pub conv_kernel_size: usize,
    pub conv_groups: usize,
    pub conv_act: Activation,
    /// `None` means `hidden_size / num_attention_heads`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attention_head_size: Option<usize>,
    /// `None` means `hidden_dropout_prob`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cls_dropout: Option<f64>,
    /// `None` means 2 unless `id2label` says otherwise; see [`DebertaV2Config::num_labels`].
    #[serde(rename = "num_labels", skip_serializing_if = "Option::is_none")]
    pub num_labels_field: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id2label: Option<BTreeMap<usize, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label2id: Option<BTreeMap<String, i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<ProblemType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
    pub model_type: String,
    /// Every key this struct does not know, kept for the round trip.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Default for DebertaV2Config {
    fn default() -> Self {
        Self {
            vocab_size: 128100,
            hidden_size: 1536,
            num_hidden_layers: 24,
            num_attention_heads: 24,
            intermediate_size: 6144,
            hidden_act: Activation::Gelu,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 0,
            initializer_range: 0.02,
            layer_norm_eps: 1e-7,
            relative_attention: false,
            max_relative_positions: -1,
            pad_token_id: Some(0),
            position_biased_input: true,
            pos_att_type: Vec::new(),
            pooler_dropout: 0.0,
            pooler_hidden_act: Activation::Gelu,
            pooler_hidden_size: None,
            legacy: true,
            embedding_size: None,
            position_buckets: -1,
            share_att_key: false,
            norm_rel_ebd: Vec::new(),
            conv_kernel_size: 0,
            conv_groups: 1,
            conv_act: Activation::Tanh,
            attention_head_size: None,
            cls_dropout: None,
            num_labels_field: None,
            id2label: None,
            label2id: None,
            problem_type: None,
            architectures: None,
            model_type: "deberta-v2".to_string(),
            extra: BTreeMap::new(),
        }
    }
}

impl DebertaV2Config {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses and validates a config from JSON text.
    pub fn from_json_str(text: &str) -> Result<Self> {
        Self::parse(text, Path::new("config.json"))
    }

    fn parse(text: &str, path: &Path) -> Result<Self> {
        let mut de = serde_json::Deserializer::from_str(text);
        let config: Self = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            // Valid JSON that does not fit the schema is a field error even where serde reports
            // it as a syntax error (values buffered for the flattened `extra` map).
            let schema = inner.classify() == serde_json::error::Category::Data
                || serde_json::from_str::<Value>(text).is_ok();
            if schema {
                let reason = match inner.classify() {
                    serde_json::error::Category::Data => inner.to_string(),
                    _ => format!("wrong type or value ({inner})"),
                };
                Error::Config {
                    field,
                    reason: format!("{reason} (in {})", path.display()),
                }
            } else {
                Error::Json {
                    path: path.to_path_buf(),
                    source: inner,
                }
            }
        })?;
        config.validate().map_err(|e| match e {
            Error::Config { field, reason } => Error::Config {
                field,
                reason: format!("{reason} (in {})", path.display()),
            },
            other => other,
        })?;
        if config.model_type != "deberta-v2" {
            tracing::warn!(
                model_type = %config.model_type,
                path = %path.display(),
                "config.json describes model_type `{}`, not `deberta-v2`; loading it as \
                 DeBERTa-v2 anyway",
                config.model_type
            );
        }
        Ok(config)
    }

    /// Serialises the config as transformers' `config.json` (pretty JSON).
    pub fn to_json_string(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::Json {
            path: "config.json".into(),
            source: e,
        })
    }

    /// Writes `config.json` into `dir`.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let path = dir.as_ref().join("config.json");
        std::fs::write(&path, self.to_json_string()?).map_err(|e| Error::io(&path, e))
    }

    /// Width of the word embeddings (`embedding_size`, default `hidden_size`).
    pub fn embedding_size(&self) -> usize {
        self.embedding_size.unwrap_or(self.hidden_size)
    }

    /// Per-head width (`attention_head_size`, default `hidden_size / num_attention_heads`).
    pub fn attention_head_size(&self) -> usize {
        self.attention_head_size
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Width of the context pooler (`pooler_hidden_size`, default `hidden_size`).
    pub fn pooler_hidden_size(&self) -> usize {
        self.pooler_hidden_size.unwrap_or(self.hidden_size)
    }

    /// Dropout before the classifier (`cls_dropout`, default `hidden_dropout_prob`).
    pub fn cls_dropout(&self) -> f64 {
        self.cls_dropout.unwrap_or(self.hidden_dropout_prob)
    }

    /// `max_relative_positions`, with values below 1 meaning `max_position_embeddings`.
    pub fn max_relative_positions(&self) -> usize {
        if self.max_relative_positions < 1 {
            self.max_position_embeddings
        } else {
            self.max_relative_positions as usize
        }
    }

    /// Half the number of rows of the relative embedding table (`att_span` in transformers).
    pub fn position_span(&self) -> usize {
        if self.position_buckets > 0 {
            self.position_buckets as usize
        } else {
            self.max_relative_positions()
        }
    }

    /// Whether the content-to-position term is on.
    pub fn has_c2p(&self) -> bool {
        self.pos_att_type.contains(&PosAttType::C2p)
    }

    /// Whether the position-to-content term is on.
    pub fn has_p2c(&self) -> bool {
        self.pos_att_type.contains(&PosAttType::P2c)
    }

    /// Whether the relative embeddings are layer-normalised.
    pub fn norm_rel_layer_norm(&self) -> bool {
        self.norm_rel_ebd.contains(&NormRelEbd::LayerNorm)
    }

    /// Number of labels: the size of `id2label` when present, else `num_labels`, else 2.
    pub fn num_labels(&self) -> usize {
        match (&self.id2label, self.num_labels_field) {
            (Some(map), _) if !map.is_empty() => map.len(),
            (_, Some(n)) => n,
            _ => 2,
        }
    }

    /// The label name of class `id` (`id2label`, else `LABEL_{id}`).
    pub fn label_name(&self, id: usize) -> String {
        self.id2label
            .as_ref()
            .and_then(|m| m.get(&id).cloned())
            .unwrap_or_else(|| format!("LABEL_{id}"))
    }

    /// About how many bytes the f32 weights of the backbone and a classification head take.
    pub fn weights_bytes(&self) -> u64 {
        let h = self.hidden_size as u128;
        let e = self.embedding_size() as u128;
        let layer = 4 * h * h + 2 * h * self.intermediate_size as u128 + 9 * h;
        let rows = self.vocab_size as u128
            + self.max_position_embeddings as u128
            + self.type_vocab_size as u128;
        let embeddings = rows * e + 2 * self.position_span() as u128 * h;
        let head = h * (h + self.num_labels() as u128);
        let params = embeddings + self.num_hidden_layers as u128 * layer + head;
        u64::try_from(params * 4).unwrap_or(u64::MAX)
    }

    /// Checks that the model this config describes can be built; names the field at fault.
    pub fn validate(&self) -> Result<()> {
        self.validate_sizes()?;
        self.validate_attention()?;
        self.validate_conv()?;
        self.validate_labels()?;
        for (field, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
            ("pooler_dropout", self.pooler_dropout),
            ("cls_dropout", self.cls_dropout()),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::config(field, format!("{p} is not a probability")));
            }
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(Error::config(
                "layer_norm_eps",
                format!("{} must be a positive number", self.layer_norm_eps),
            ));
        }
        Ok(())
    }

    fn validate_sizes(&self) -> Result<()> {
        // Plausibility caps well above any published DeBERTa (v3-large: vocab 128100, hidden
        // 1024, 24 layers, 16 heads, intermediate 4096, 512 positions, span 256), so a hostile
        // or mistyped config fails here instead of in a huge allocation.
        for (field, v, max) in [
            ("vocab_size", self.vocab_size, 1 << 24),
            ("hidden_size", self.hidden_size, 1 << 16),
            ("num_hidden_layers", self.num_hidden_layers, 1024),
            ("num_attention_heads", self.num_attention_heads, 1024),
            ("intermediate_size", self.intermediate_size, 1 << 18),
            ("embedding_size", self.embedding_size(), 1 << 16),
            ("pooler_hidden_size", self.pooler_hidden_size(), 1 << 16),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                1 << 20,
            ),
            ("type_vocab_size", self.type_vocab_size, 1 << 16),
            (
                "max_relative_positions",
                self.max_relative_positions(),
                1 << 20,
            ),
            ("position_buckets", self.position_span(), 1 << 20),
            ("conv_kernel_size", self.conv_kernel_size, 1 << 10),
            ("num_labels", self.num_labels(), 1 << 20),
        ] {
            if v > max {
                return Err(Error::config(
                    field,
                    format!("{v} is implausibly large (the limit is {max})"),
                ));
            }
        }
        let weights = self.weights_bytes();
        crate::limits::check(
            || "the weights this config describes (f32)".to_string(),
            weights,
        )?;
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("embedding_size", self.embedding_size()),
            ("pooler_hidden_size", self.pooler_hidden_size()),
        ] {
            if v == 0 {
                return Err(Error::config(field, "must be at least 1"));
            }
        }
        if self.position_biased_input && self.max_position_embeddings == 0 {
            return Err(Error::config(
                "max_position_embeddings",
                "must be at least 1 when position_biased_input is true",
            ));
        }
        if let Some(pad) = self.pad_token_id {
            if pad < 0 || pad as usize >= self.vocab_size {
                return Err(Error::config(
                    "pad_token_id",
                    format!(
                        "{pad} is outside the vocabulary (vocab_size {})",
                        self.vocab_size
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_attention(&self) -> Result<()> {
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(Error::config(
                "num_attention_heads",
                format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}",
                    self.hidden_size, self.num_attention_heads
                ),
            ));
        }
        let all_head = self.num_attention_heads * self.attention_head_size();
        if all_head != self.hidden_size {
            return Err(Error::config(
                "attention_head_size",
                format!(
                    "{} heads x {} = {all_head} must equal hidden_size {} (the attention output \
                     projection is hidden_size x hidden_size)",
                    self.num_attention_heads,
                    self.attention_head_size(),
                    self.hidden_size
                ),
            ));
        }
        let mid = self.position_buckets / 2;
        if self.relative_attention
            && self.position_buckets > 0
            && (self.max_relative_positions() as i64) - 1 <= mid
        {
            return Err(Error::config(
                "position_buckets",
                format!(
                    "log buckets need max_relative_positions - 1 ({}) above position_buckets / 2 ({mid})",
                    self.max_relative_positions() as i64 - 1
                ),
            ));
        }
        if self.relative_attention && self.position_span() == 0 {
            return Err(Error::config(
                "max_relative_positions",
                "relative attention needs a positive span (max_relative_positions, \
                 position_buckets or max_position_embeddings)",
            ));
        }
        Ok(())
    }

    fn validate_conv(&self) -> Result<()> {
        if self.conv_kernel_size == 0 {
            return Ok(());
        }
        if self.conv_kernel_size.is_multiple_of(2) {
            return Err(Error::config(
                "conv_kernel_size",
                format!(
                    "{} is even; the convolution keeps the sequence length only for odd kernels",
                    self.conv_kernel_size
                ),
            ));
        }
        if self.conv_groups == 0 || !self.hidden_size.is_multiple_of(self.conv_groups) {
            return Err(Error::config(
                "conv_groups",
                format!(
                    "{} does not divide hidden_size {}",
                    self.conv_groups, self.hidden_size
                ),
            ));
        }
        Ok(())
    }

    fn validate_labels(&self) -> Result<()> {
        if let Some(map) = &self.id2label {
            for (expected, id) in map.keys().enumerate() {
                if *id != expected {
                    return Err(Error::config(
                        "id2label",
                        format!("ids must be 0..{}, found {id}", map.len()),
                    ));
                }
            }
            if let Some(n) = self.num_labels_field {
                if !map.is_empty() && n != map.len() {
                    return Err(Error::config(
                        "num_labels",
                        format!(
                            "{n} disagrees with id2label, which has {} labels",
                            map.len()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Splits a transformers-style `a|b` string: lower-cased and trimmed.
fn split_bar_list(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split('|')
        .map(|s| s.trim().to_string())
        .collect()
}

/// A `|`-separated string (normalised as transformers does) or a list of strings (taken
/// verbatim, as transformers does), or null.
fn bar_list_items<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StrOrList {
        Str(String),
        List(Vec<String>),
    }
    Ok(match Option::<StrOrList>::deserialize(d)? {
        None => Vec::new(),
        Some(StrOrList::Str(s)) => split_bar_list(&s),
        Some(StrOrList::List(items)) => items,
    })
}

/// transformers tests `"c2p" in pos_att_type`, so entries it does not know (`"none"`, or a list
/// item with other casing) are silently inert there; we keep them inert and say so.
fn de_pos_att_type<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<PosAttType>, D::Error> {
    let mut out = Vec::new();
    for item in bar_list_items(d)? {
        let kind = match item.as_str() {
            "c2p" => PosAttType::C2p,
            "p2c" => PosAttType::P2c,
            "p2p" => PosAttType::P2p,
            "none" | "" => continue,
            other => {
                tracing::warn!(
                    "pos_att_type entry `{other}` is not c2p/p2c/p2p; ignored as transformers does"
                );
                continue;
            }
        };
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    Ok(out)
}

fn ser_pos_att_type<S: Serializer>(v: &[PosAttType], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|k| k.as_str()))
}

fn de_norm_rel_ebd<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<NormRelEbd>, D::Error> {
    let mut out = Vec::new();
    for item in bar_list_items(d)? {
        match item.as_str() {
            "layer_norm" => out.push(NormRelEbd::LayerNorm),
            "none" | "" => {}
            other => tracing::warn!(
                "norm_rel_ebd entry `{other}` is not layer_norm; ignored as transformers does"
            ),
        }
    }
    Ok(out)
}

fn ser_norm_rel_ebd<S: Serializer>(v: &[NormRelEbd], s: S) -> std::result::Result<S::Ok, S::Error> {
    if v.is_empty() {
        s.serialize_str("none")
    } else {
        s.serialize_str("layer_norm")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_transformers_defaults() {
        let c = DebertaV2Config::from_json_str("{}").unwrap();
        assert_eq!(
            (c.vocab_size, c.hidden_size, c.num_hidden_layers),
            (128100, 1536, 24)
        );
        assert!(!c.relative_attention && c.position_biased_input && !c.share_att_key);
        assert_eq!(
            (
                c.type_vocab_size,
                c.layer_norm_eps,
                c.max_relative_positions
            ),
            (0, 1e-7, -1)
        );
        assert_eq!(
            (
                c.pooler_hidden_size(),
                c.embedding_size(),
                c.attention_head_size()
            ),
            (1536, 1536, 64)
        );
        assert_eq!(
            (c.position_buckets, c.conv_kernel_size, c.conv_groups),
            (-1, 0, 1)
        );
        assert_eq!(
            (c.conv_act, c.hidden_act, c.pooler_hidden_act),
            (Activation::Tanh, Activation::Gelu, Activation::Gelu)
        );
        assert_eq!((c.cls_dropout(), c.num_labels(), c.legacy), (0.1, 2, true));
        assert_eq!(c.max_relative_positions(), 512);
        assert!(c.pos_att_type.is_empty() && c.norm_rel_ebd.is_empty());
    }

    #[test]
    fn pos_att_type_string_is_normalised_and_list_items_are_verbatim() {
        let c = DebertaV2Config::from_json_str(r#"{"pos_att_type": " P2C | c2p "}"#).unwrap();
        assert_eq!(c.pos_att_type, vec![PosAttType::P2c, PosAttType::C2p]);
        let c = DebertaV2Config::from_json_str(r#"{"pos_att_type": ["c2p", "P2C "]}"#).unwrap();
        assert_eq!(
            c.pos_att_type,
            vec![PosAttType::C2p],
            "transformers ignores `P2C ` in a list"
        );
        for none in [r#""None""#, "null", "[]", r#""none""#] {
            let c =
                DebertaV2Config::from_json_str(&format!(r#"{{"pos_att_type": {none}}}"#)).unwrap();
            assert!(c.pos_att_type.is_empty(), "{none}");
        }
        let c = DebertaV2Config::from_json_str(r#"{"norm_rel_ebd": "Layer_Norm"}"#).unwrap();
        assert!(c.norm_rel_layer_norm());
    }

    #[test]
    fn every_activation_name_parses_and_round_trips() {
        let names = [
            "gelu",
            "gelu_python",
            "gelu_new",
            "gelu_pytorch_tanh",
            "gelu_python_tanh",
            "gelu_fast",
            "gelu_accurate",
            "gelu_10",
            "quick_gelu",
            "relu",
            "relu6",
            "relu2",
            "leaky_relu",
            "silu",
            "swish",
            "tanh",
            "sigmoid",
            "mish",
            "linear",
        ];
        for name in names {
            let c =
                DebertaV2Config::from_json_str(&format!(r#"{{"hidden_act": "{name}"}}"#)).unwrap();
            let saved: Value = serde_json::from_str(&c.to_json_string().unwrap()).unwrap();
            assert_eq!(saved["hidden_act"], name);
        }
    }

    #[test]
    fn unknown_keys_survive_a_round_trip() {
        let text = r#"{"hidden_size": 64, "num_attention_heads": 4, "custom_key": {"a": [1, 2]},
                       "transformers_version": "5.24.0", "id2label": {"0": "NEG", "1": "POS"},
                       "pos_att_type": "p2c|c2p", "norm_rel_ebd": "layer_norm"}"#;
        let c = DebertaV2Config::from_json_str(text).unwrap();
        assert_eq!(c.extra["custom_key"], serde_json::json!({"a": [1, 2]}));
        assert_eq!(c.label_name(1), "POS");
        let again = DebertaV2Config::from_json_str(&c.to_json_string().unwrap()).unwrap();
        assert_eq!(c, again);
        let saved: Value = serde_json::from_str(&c.to_json_string().unwrap()).unwrap();
        assert_eq!(saved["pos_att_type"], serde_json::json!(["p2c", "c2p"]));
        assert_eq!(saved["norm_rel_ebd"], "layer_norm");
        assert_eq!(saved["id2label"]["1"], "POS");
    }

    #[test]
    fn validate_names_the_field() {
        let cases = [
            (
                r#"{"hidden_size": 30, "num_attention_heads": 4}"#,
                "num_attention_heads",
            ),
            (
                r#"{"hidden_size": 32, "num_attention_heads": 4, "attention_head_size": 4}"#,
                "attention_head_size",
            ),
            (r#"{"conv_kernel_size": 4}"#, "conv_kernel_size"),
            (
                r#"{"conv_kernel_size": 3, "conv_groups": 5}"#,
                "conv_groups",
            ),
            (r#"{"layer_norm_eps": -1}"#, "layer_norm_eps"),
            (r#"{"hidden_dropout_prob": 1.5}"#, "hidden_dropout_prob"),
            (r#"{"pad_token_id": 200000}"#, "pad_token_id"),
            (r#"{"vocab_size": 0}"#, "vocab_size"),
            (r#"{"id2label": {"0": "a", "2": "b"}}"#, "id2label"),
            (
                r#"{"num_labels": 3, "id2label": {"0": "a", "1": "b"}}"#,
                "num_labels",
            ),
            (
                r#"{"relative_attention": true, "position_buckets": 256, "max_relative_positions": 100}"#,
                "position_buckets",
            ),
        ];
        for (text, field) in cases {
            match DebertaV2Config::from_json_str(text) {
                Err(Error::Config { field: f, .. }) => assert_eq!(f, field, "{text}"),
                other => panic!("{text}: expected a config error on {field}, got {other:?}"),
            }
        }
    }
}
