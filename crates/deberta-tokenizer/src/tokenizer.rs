//! One API over both implementations: [`Tokenizer`] encodes singles, pairs and batches with
//! truncation, overflow windows and padding, and decodes.

use std::path::Path;

use crate::config::TokenizerConfig;
use crate::encoding::{build, pad_batch, EncodeOptions, Encoding, Flavor, RawEncoding, SpecialIds};
use crate::error::{Error, Result};
use crate::fast::FastTokenizer;
use crate::slow::SlowTokenizer;

/// Which implementation to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Impl {
    /// Fast when `tokenizer.json` exists, else slow.
    #[default]
    Auto,
    /// `DebertaV2Tokenizer` on the pure-Rust sentencepiece (needs `spm.model`).
    Slow,
    /// `DebertaV2TokenizerFast` (`tokenizer.json`, or converted from `spm.model`).
    Fast,
}

impl std::str::FromStr for Impl {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Impl::Auto),
            "slow" => Ok(Impl::Slow),
            "fast" => Ok(Impl::Fast),
            other => Err(Error::Options(format!(
                "unknown tokenizer implementation {other:?} (expected auto, slow or fast)"
            ))),
        }
    }
}

/// A DeBERTa-v2/v3 tokenizer, slow or fast.
#[derive(Debug, Clone)]
pub enum Tokenizer {
    /// Sentencepiece-based `DebertaV2Tokenizer`.
    Slow(Box<SlowTokenizer>),
    /// `tokenizers`-based `DebertaV2TokenizerFast`.
    Fast(Box<FastTokenizer>),
}

impl Tokenizer {
    /// Loads from `dir`: fast when `tokenizer.json` exists, else slow from `spm.model`.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        Self::from_dir_with(dir, Impl::Auto)
    }

    /// Loads the requested implementation from `dir`.
    pub fn from_dir_with(dir: impl AsRef<Path>, which: Impl) -> Result<Self> {
        let dir = dir.as_ref();
        let has_json = dir.join("tokenizer.json").is_file();
        let has_spm = dir.join("spm.model").is_file();
        if !has_json && !has_spm {
            return Err(Error::NoTokenizerFiles(dir.to_path_buf()));
        }
        match which {
            Impl::Fast => Ok(Tokenizer::Fast(Box::new(FastTokenizer::from_dir(dir)?))),
            Impl::Auto if has_json => Ok(Tokenizer::Fast(Box::new(FastTokenizer::from_dir(dir)?))),
            Impl::Slow | Impl::Auto => Ok(Tokenizer::Slow(Box::new(SlowTokenizer::from_dir(dir)?))),
        }
    }

    /// Which implementation this is (`Slow` or `Fast`).
    pub fn kind(&self) -> Impl {
        match self {
            Tokenizer::Slow(_) => Impl::Slow,
            Tokenizer::Fast(_) => Impl::Fast,
        }
    }

    fn flavor(&self) -> Flavor {
        match self {
            Tokenizer::Slow(_) => Flavor::Slow,
            Tokenizer::Fast(_) => Flavor::Fast,
        }
    }

    /// The configuration read from the directory.
    pub fn config(&self) -> &TokenizerConfig {
        match self {
            Tokenizer::Slow(t) => t.config(),
            Tokenizer::Fast(t) => t.config(),
        }
    }

    /// Ids of `[CLS]`, `[SEP]` and `[PAD]`.
    pub fn special_ids(&self) -> &SpecialIds {
        match self {
            Tokenizer::Slow(t) => t.special_ids(),
            Tokenizer::Fast(t) => t.special_ids(),
        }
    }

    /// Tokens of `text` without special tokens.
    pub fn encode_raw(&self, text: &str) -> Result<RawEncoding> {
        match self {
            Tokenizer::Slow(t) => Ok(t.encode_raw(text)),
            Tokenizer::Fast(t) => t.encode_raw(text),
        }
    }

    /// `tokenize(text)`.
    pub fn tokenize(&self, text: &str) -> Result<Vec<String>> {
        Ok(self.encode_raw(text)?.tokens)
    }

    /// Encodes one text or a pair; padding applies to this encoding alone.
    pub fn encode(&self, text: &str, pair: Option<&str>, opts: &EncodeOptions) -> Result<Encoding> {
        let mut batch = self.encode_batch(&[(text, pair)], opts)?;
        batch
            .pop()
            .ok_or_else(|| Error::Options("empty batch".into()))
    }

    /// Encodes a batch of texts or pairs; `Longest` padding uses the longest encoding of the
    /// batch. Overflow windows stay in each encoding's `overflowing` (see [`flatten_overflow`]).
    pub fn encode_batch(
        &self,
        inputs: &[(&str, Option<&str>)],
        opts: &EncodeOptions,
    ) -> Result<Vec<Encoding>> {
        let mut out = Vec::with_capacity(inputs.len());
        for (text, pair) in inputs {
            let a = self.encode_raw(text)?;
            let b = pair.map(|p| self.encode_raw(p)).transpose()?;
            out.push(build(
                &a,
                b.as_ref(),
                opts,
                self.special_ids(),
                self.flavor(),
            )?);
        }
        pad_batch(&mut out, &opts.padding, &self.special_ids().pad);
        Ok(out)
    }

    /// `decode(ids, skip_special_tokens)`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        match self {
            Tokenizer::Slow(t) => Ok(t.decode(ids, skip_special_tokens)),
            Tokenizer::Fast(t) => t.decode(ids, skip_special_tokens),
        }
    }

    /// `convert_ids_to_tokens` for one id (the slow tokenizer answers its unknown token out of
    /// range, as sentencepiece does; the fast one fails with [`Error::UnknownId`]).
    pub fn id_to_token(&self, id: u32) -> Result<String> {
        match self {
            Tokenizer::Slow(t) => Ok(t.id_to_token(id)),
            Tokenizer::Fast(t) => t.id_to_token(id).ok_or(Error::UnknownId(id)),
        }
    }

    /// The id of `token` in `get_vocab()`: a vocabulary entry or an added token (`[MASK]`),
    /// `None` when it is neither (where transformers' `convert_tokens_to_ids` answers the
    /// unknown id).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        match self {
            Tokenizer::Slow(t) => t.token_to_id(token),
            Tokenizer::Fast(t) => t.token_to_id(token),
        }
    }

    /// `convert_tokens_to_string`: tokens back to text (slow: sentencepiece decoding with
    /// special tokens kept verbatim; fast: the `tokenizer.json` decoder).
    pub fn convert_tokens_to_string<S: AsRef<str>>(&self, tokens: &[S]) -> Result<String> {
        match self {
            Tokenizer::Slow(t) => Ok(t.convert_tokens_to_string(tokens)),
            Tokenizer::Fast(t) => t.convert_tokens_to_string(tokens),
        }
    }
}

/// Flattens a batch with overflow windows as transformers' `return_overflowing_tokens=True`
/// does: each encoding followed by its windows, plus `overflow_to_sample_mapping`.
pub fn flatten_overflow(batch: Vec<Encoding>) -> (Vec<Encoding>, Vec<usize>) {
    let mut flat = Vec::new();
    let mut mapping = Vec::new();
    for (i, mut e) in batch.into_iter().enumerate() {
        let windows = std::mem::take(&mut e.overflowing);
        flat.push(e);
        mapping.push(i);
        for w in windows {
            flat.push(w);
            mapping.push(i);
        }
    }
    (flat, mapping)
}
