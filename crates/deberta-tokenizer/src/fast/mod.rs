//! `DebertaV2TokenizerFast`: the HF `tokenizers` pipeline from `tokenizer.json` (or converted
//! from `spm.model` by `convert.rs`), with character offsets as Python reports them.

mod convert;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::str::FromStr;

use crate::config::TokenizerConfig;
use crate::encoding::{RawEncoding, SpecialIds};
use crate::error::{Error, Result};
use crate::spm::SentencePiece;
use crate::text::clean_up_tokenization;
use convert::tokenizer_json;

/// transformers' `DebertaV2TokenizerFast`.
#[derive(Clone)]
pub struct FastTokenizer {
    inner: tokenizers::Tokenizer,
    config: TokenizerConfig,
    specials: SpecialIds,
}

impl std::fmt::Debug for FastTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastTokenizer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Runs a `tokenizers` call, turning its error, or a panic inside the library, into an
/// [`Error`] saying what was being done.
fn guarded<T>(what: impl Fn() -> String, f: impl FnOnce() -> tokenizers::Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(|source| Error::Fast {
            what: what(),
            source,
        }),
        Err(_) => Err(Error::FastPanicked { what: what() }),
    }
}

impl FastTokenizer {
    /// Loads `dir/tokenizer.json`, or converts `dir/spm.model` when there is none.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let config = TokenizerConfig::from_dir(dir)?;
        let json_path = dir.join("tokenizer.json");
        if json_path.exists() {
            let text = std::fs::read_to_string(&json_path).map_err(|e| Error::io(&json_path, e))?;
            let inner = guarded(
                || format!("loading {}", json_path.display()),
                || tokenizers::Tokenizer::from_str(&text),
            )?;
            return Self::new(inner, config);
        }
        let spm = SentencePiece::from_file(dir.join("spm.model"))?;
        Self::from_spm(&spm, config)
    }

    /// Converts a sentencepiece model as transformers' `DebertaV2Converter` does.
    pub fn from_spm(spm: &SentencePiece, config: TokenizerConfig) -> Result<Self> {
        let slow = crate::slow::SlowTokenizer::new(spm.clone(), config)?;
        let config = slow.config().clone();
        let ids = slow.special_ids();
        let doc = tokenizer_json(spm.proto(), &config, spm.unk_id(), ids.cls.0, ids.sep.0);
        let text = doc.to_string();
        let inner = guarded(
            || "loading the tokenizer converted from spm.model".into(),
            || tokenizers::Tokenizer::from_str(&text),
        )?;
        Self::new(inner, config)
    }

    /// Wraps a `tokenizers::Tokenizer`; its own truncation and padding are switched off (the
    /// crate's [`crate::encoding`] engine does both).
    pub fn new(mut inner: tokenizers::Tokenizer, config: TokenizerConfig) -> Result<Self> {
        inner.with_truncation(None).map_err(|source| Error::Fast {
            what: "switching truncation off".into(),
            source,
        })?;
        inner.with_padding(None);
        let id = |t: &str| {
            inner
                .token_to_id(t)
                .ok_or_else(|| Error::MissingSpecialToken {
                    token: t.to_string(),
                })
        };
        let s = &config.special;
        let specials = SpecialIds {
            cls: (id(&s.cls)?, s.cls.clone()),
            sep: (id(&s.sep)?, s.sep.clone()),
            pad: (id(&s.pad)?, s.pad.clone()),
        };
        Ok(FastTokenizer {
            inner,
            config,
            specials,
        })
    }

    /// The wrapped `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// The configuration in use.
    pub fn config(&self) -> &TokenizerConfig {
        &self.config
    }

    /// Ids of `[CLS]`, `[SEP]` and `[PAD]`.
    pub fn special_ids(&self) -> &SpecialIds {
        &self.specials
    }

    /// Vocabulary size including added tokens (`len(tokenizer)`).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Tokens of `text` without special tokens, with character offsets.
    pub fn encode_raw(&self, text: &str) -> Result<RawEncoding> {
        let enc = guarded(
            || "encoding".into(),
            || self.inner.encode_char_offsets(text, false),
        )?;
        Ok(RawEncoding {
            ids: enc.get_ids().to_vec(),
            tokens: enc.get_tokens().to_vec(),
            offsets: enc.get_offsets().to_vec(),
            words: enc.get_word_ids().to_vec(),
            special: enc.get_special_tokens_mask().to_vec(),
        })
    }

    /// `tokenize(text)`: token strings.
    pub fn tokenize(&self, text: &str) -> Result<Vec<String>> {
        Ok(self.encode_raw(text)?.tokens)
    }

    /// `decode(ids, skip_special_tokens)` (with `clean_up_tokenization_spaces` from the config).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let text = guarded(
            || "decoding".into(),
            || self.inner.decode(ids, skip_special_tokens),
        )?;
        Ok(if self.config.clean_up_tokenization_spaces {
            clean_up_tokenization(&text)
        } else {
            text
        })
    }

    /// `convert_ids_to_tokens`.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of `token` in the vocabulary or the added tokens (`None` when it is neither, where
    /// `convert_tokens_to_ids` answers the unknown id).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// `convert_tokens_to_string`: the `tokenizer.json` decoder over token strings (their
    /// concatenation when there is no decoder).
    pub fn convert_tokens_to_string<S: AsRef<str>>(&self, tokens: &[S]) -> Result<String> {
        use tokenizers::Decoder;
        let tokens: Vec<String> = tokens.iter().map(|t| t.as_ref().to_string()).collect();
        match self.inner.get_decoder() {
            Some(decoder) => guarded(|| "decoding tokens".into(), || decoder.decode(tokens)),
            None => Ok(tokens.concat()),
        }
    }
}
