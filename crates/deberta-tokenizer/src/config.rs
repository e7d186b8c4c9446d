//! Reading `tokenizer_config.json`, `special_tokens_map.json` and `added_tokens.json` the way
//! transformers 4.57 does for `DebertaV2Tokenizer(Fast)`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// An added token (`AddedToken` in transformers / tokenizers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedToken {
    /// Token text.
    pub content: String,
    /// Token id.
    pub id: u32,
    /// Whether it is a special token (skipped by `decode(skip_special_tokens=True)`).
    pub special: bool,
    /// Swallow whitespace on the left.
    pub lstrip: bool,
    /// Swallow whitespace on the right.
    pub rstrip: bool,
    /// Only match whole words.
    pub single_word: bool,
    /// Match against normalised text (fast tokenizer only).
    pub normalized: bool,
}

/// The names of the special tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialTokenNames {
    /// `[CLS]`.
    pub cls: String,
    /// `[SEP]`.
    pub sep: String,
    /// `[PAD]`.
    pub pad: String,
    /// `[UNK]`.
    pub unk: String,
    /// `[MASK]`.
    pub mask: String,
    /// Beginning of sequence (`[CLS]` for DeBERTa).
    pub bos: String,
    /// End of sequence (`[SEP]` for DeBERTa).
    pub eos: String,
    /// `additional_special_tokens`.
    pub additional: Vec<String>,
}

impl Default for SpecialTokenNames {
    fn default() -> Self {
        SpecialTokenNames {
            cls: "[CLS]".into(),
            sep: "[SEP]".into(),
            pad: "[PAD]".into(),
            unk: "[UNK]".into(),
            mask: "[MASK]".into(),
            bos: "[CLS]".into(),
            eos: "[SEP]".into(),
            additional: Vec::new(),
        }
    }
}

impl SpecialTokenNames {
    /// `all_special_tokens` in transformers order (bos, eos, unk, sep, pad, cls, mask,
    /// additional), without duplicates.
    pub fn all(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let named = [
            &self.bos, &self.eos, &self.unk, &self.sep, &self.pad, &self.cls, &self.mask,
        ];
        for t in named.into_iter().chain(self.additional.iter()) {
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
        out
    }
}

/// Which side padding or truncation applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The end of the sequence (default).
    #[default]
    Right,
    /// The start of the sequence.
    Left,
}

/// Options read from the tokenizer configuration files.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizerConfig {
    /// Lower-case the input before sentencepiece.
    pub do_lower_case: bool,
    /// Split punctuation into its own sentencepiece call.
    pub split_by_punct: bool,
    /// `model_max_length` (saturated to `usize::MAX`).
    pub model_max_length: usize,
    /// Default padding side.
    pub padding_side: Side,
    /// Default truncation side.
    pub truncation_side: Side,
    /// Apply `clean_up_tokenization` after decoding.
    pub clean_up_tokenization_spaces: bool,
    /// Special token names.
    pub special: SpecialTokenNames,
    /// Added tokens with explicit ids (`added_tokens_decoder` and `added_tokens.json`).
    pub added_tokens: Vec<AddedToken>,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        TokenizerConfig {
            do_lower_case: false,
            split_by_punct: false,
            model_max_length: usize::MAX,
            padding_side: Side::Right,
            truncation_side: Side::Right,
            clean_up_tokenization_spaces: true,
            special: SpecialTokenNames::default(),
            added_tokens: Vec::new(),
        }
    }
}

fn read_json(path: &Path) -> Result<Option<Map<String, Value>>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let value: Value = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    match value {
        Value::Object(map) => Ok(Some(map)),
        _ => Err(Error::Config {
            path: path.to_path_buf(),
            field: "<root>".into(),
            reason: "expected a JSON object".into(),
        }),
    }
}

fn config_err(path: &Path, field: &str, reason: &str) -> Error {
    Error::Config {
        path: path.to_path_buf(),
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

fn get_bool(map: &Map<String, Value>, path: &Path, key: &str, default: bool) -> Result<bool> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(config_err(path, key, "expected true or false")),
    }
}

fn get_side(map: &Map<String, Value>, path: &Path, key: &str) -> Result<Side> {
    match map.get(key).and_then(Value::as_str) {
        None => Ok(Side::Right),
        Some("right") => Ok(Side::Right),
        Some("left") => Ok(Side::Left),
        Some(_) => Err(config_err(path, key, "expected \"left\" or \"right\"")),
    }
}

/// A special token value: a string or an `AddedToken` dict with `content`; `null` is none.
fn token_content(v: &Value, path: &Path, field: &str) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Object(m) => match m.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(config_err(
                path,
                field,
                "an AddedToken object needs a string `content`",
            )),
        },
        _ => Err(config_err(
            path,
            field,
            "expected a string or an AddedToken object",
        )),
    }
}

fn apply_special_names(
    map: &Map<String, Value>,
    names: &mut SpecialTokenNames,
    path: &Path,
) -> Result<()> {
    let slots: [(&str, &mut String); 7] = [
        ("cls_token", &mut names.cls),
        ("sep_token", &mut names.sep),
        ("pad_token", &mut names.pad),
        ("unk_token", &mut names.unk),
        ("mask_token", &mut names.mask),
        ("bos_token", &mut names.bos),
        ("eos_token", &mut names.eos),
    ];
    for (key, slot) in slots {
        if let Some(v) = map.get(key) {
            if let Some(v) = token_content(v, path, key)? {
                *slot = v;
            }
        }
    }
    const ADDITIONAL: &str = "additional_special_tokens";
    match map.get(ADDITIONAL) {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            let mut out = Vec::with_capacity(list.len());
            for (i, v) in list.iter().enumerate() {
                out.extend(token_content(v, path, &format!("{ADDITIONAL}[{i}]"))?);
            }
            names.additional = out;
        }
        Some(_) => return Err(config_err(path, ADDITIONAL, "expected a list")),
    }
    Ok(())
}

fn parse_added_decoder(map: &Map<String, Value>, path: &Path) -> Result<Vec<AddedToken>> {
    let Some(Value::Object(dec)) = map.get("added_tokens_decoder") else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (id, v) in dec {
        let field = format!("added_tokens_decoder.{id}");
        let id: u32 = id
            .parse()
            .map_err(|_| config_err(path, &field, "key is not a token id"))?;
        let Value::Object(t) = v else {
            return Err(config_err(path, &field, "expected an object"));
        };
        let content = t
            .get("content")
            .and_then(Value::as_str)
            .ok_or_else(|| config_err(path, &field, "missing `content`"))?;
        let flag = |k: &str, d: bool| t.get(k).and_then(Value::as_bool).unwrap_or(d);
        out.push(AddedToken {
            content: content.to_string(),
            id,
            special: flag("special", false),
            lstrip: flag("lstrip", false),
            rstrip: flag("rstrip", false),
            single_word: flag("single_word", false),
            normalized: flag("normalized", true),
        });
    }
    out.sort_by_key(|t| t.id);
    Ok(out)
}

/// `model_max_length`: a non-negative number (transformers writes `1e30`-like floats for "no
/// limit", saturated here); missing or `null` means no limit.
fn max_length(map: &Map<String, Value>, path: &Path) -> Result<usize> {
    const FIELD: &str = "model_max_length";
    let bad = |reason: &str| config_err(path, FIELD, reason);
    match map.get(FIELD) {
        None | Some(Value::Null) => Ok(usize::MAX),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_u64() {
                return Ok(usize::try_from(v).unwrap_or(usize::MAX));
            }
            match n.as_f64() {
                Some(f) if f >= 0.0 && f >= usize::MAX as f64 => Ok(usize::MAX),
                Some(f) if f >= 0.0 && f.fract() == 0.0 => Ok(f as usize),
                _ => Err(bad(&format!("{n} is not a non-negative whole number"))),
            }
        }
        Some(_) => Err(bad("expected a non-negative number")),
    }
}

impl TokenizerConfig {
    /// Reads the configuration files in `dir`; missing files leave transformers' defaults.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let mut cfg = TokenizerConfig::default();
        let cfg_path: PathBuf = dir.join("tokenizer_config.json");
        if let Some(map) = read_json(&cfg_path)? {
            cfg.do_lower_case = get_bool(&map, &cfg_path, "do_lower_case", false)?;
            cfg.split_by_punct = get_bool(&map, &cfg_path, "split_by_punct", false)?;
            cfg.clean_up_tokenization_spaces =
                get_bool(&map, &cfg_path, "clean_up_tokenization_spaces", true)?;
            cfg.padding_side = get_side(&map, &cfg_path, "padding_side")?;
            cfg.truncation_side = get_side(&map, &cfg_path, "truncation_side")?;
            cfg.model_max_length = max_length(&map, &cfg_path)?;
            apply_special_names(&map, &mut cfg.special, &cfg_path)?;
            cfg.added_tokens = parse_added_decoder(&map, &cfg_path)?;
        }
        let special_path = dir.join("special_tokens_map.json");
        if let Some(map) = read_json(&special_path)? {
            apply_special_names(&map, &mut cfg.special, &special_path)?;
        }
        let added_path = dir.join("added_tokens.json");
        if let Some(map) = read_json(&added_path)? {
            cfg.merge_legacy_added(&map, &added_path)?;
        }
        Ok(cfg)
    }

    /// Adds `added_tokens.json` entries (`{"content": id}`) not already known.
    fn merge_legacy_added(&mut self, map: &Map<String, Value>, path: &Path) -> Result<()> {
        let all_special = self.special.all();
        let mut extra: Vec<AddedToken> = Vec::new();
        for (content, id) in map {
            let id = id
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| config_err(path, content, "expected a token id"))?;
            if self
                .added_tokens
                .iter()
                .any(|t| t.content == *content || t.id == id)
            {
                continue;
            }
            let special = all_special.contains(content);
            extra.push(AddedToken {
                content: content.clone(),
                id,
                special,
                lstrip: false,
                rstrip: false,
                single_word: false,
                normalized: !special,
            });
        }
        extra.sort_by_key(|t| t.id);
        self.added_tokens.extend(extra);
        Ok(())
    }
}
