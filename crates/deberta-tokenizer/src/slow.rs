//! `DebertaV2Tokenizer` (transformers 4.57 "slow" tokenizer) on the pure-Rust sentencepiece.
//!
//! Pipeline for one text: lower-case everything but special tokens (`do_lower_case`), split
//! out added tokens such as `[MASK]`, cut the rest into punctuation runs (`split_by_punct`)
//! and run sentencepiece on each part. Tokens map back to character offsets in the input.

use std::collections::HashMap;
use std::path::Path;

use crate::added::{AddedVocab, Chunk};
use crate::config::{AddedToken, TokenizerConfig};
use crate::encoding::{RawEncoding, SpecialIds};
use crate::error::{Error, Result};
use crate::spm::SentencePiece;
use crate::spm::SPACE_SYMBOL;
use crate::text::{clean_up_tokenization, is_punctuation, CharIndex, Lowered};

/// transformers' `DebertaV2Tokenizer`.
#[derive(Debug, Clone)]
pub struct SlowTokenizer {
    spm: SentencePiece,
    config: TokenizerConfig,
    added: AddedVocab,
    /// Special-token strings (`all_special_tokens`) and their ids.
    all_special: Vec<(String, u32)>,
    /// spm ids whose piece text is an added token (the added id wins in `convert_tokens_to_ids`).
    overrides: HashMap<u32, u32>,
    specials: SpecialIds,
}

impl SlowTokenizer {
    /// Loads `spm.model` and the configuration files from `dir`.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let spm = SentencePiece::from_file(dir.join("spm.model"))?;
        let config = TokenizerConfig::from_dir(dir)?;
        Self::new(spm, config)
    }

    /// Builds the tokenizer from a loaded model and configuration. Special tokens missing from
    /// `config.added_tokens` get the sentencepiece id of the same piece, or a new id after the
    /// vocabulary (as transformers does when it adds them).
    pub fn new(spm: SentencePiece, mut config: TokenizerConfig) -> Result<Self> {
        complete_added_tokens(&spm, &mut config);
        let added = AddedVocab::new(config.added_tokens.clone());
        let id_of = |t: &str| {
            added
                .get(t)
                .map(|a| a.id)
                .unwrap_or_else(|| spm.piece_to_id(t))
        };
        let all_special = config
            .special
            .all()
            .into_iter()
            .map(|t| {
                let id = id_of(&t);
                (t, id)
            })
            .collect();
        let s = &config.special;
        let specials = SpecialIds {
            cls: (id_of(&s.cls), s.cls.clone()),
            sep: (id_of(&s.sep), s.sep.clone()),
            pad: (id_of(&s.pad), s.pad.clone()),
        };
        let overrides = added
            .tokens()
            .iter()
            .filter_map(|t| {
                let spm_id = spm.piece_to_id(&t.content);
                let is_piece = spm.id_to_piece(spm_id) == Some(t.content.as_str());
                (is_piece && spm_id != t.id).then_some((spm_id, t.id))
            })
            .collect();
        Ok(SlowTokenizer {
            spm,
            config,
            added,
            all_special,
            overrides,
            specials,
        })
    }

    /// The sentencepiece model.
    pub fn sentencepiece(&self) -> &SentencePiece {
        &self.spm
    }

    /// The configuration in use.
    pub fn config(&self) -> &TokenizerConfig {
        &self.config
    }

    /// Ids of `[CLS]`, `[SEP]` and `[PAD]`.
    pub fn special_ids(&self) -> &SpecialIds {
        &self.specials
    }

    /// `vocab_size`: the number of sentencepiece pieces (added tokens excluded).
    pub fn vocab_size(&self) -> usize {
        self.spm.len()
    }

    /// `len(tokenizer)`: pieces plus added tokens beyond them.
    pub fn len_with_added(&self) -> usize {
        let extra = self
            .added
            .tokens()
            .iter()
            .filter(|t| t.id as usize >= self.spm.len())
            .count();
        self.spm.len() + extra
    }

    /// `all_special_ids`.
    pub fn all_special_ids(&self) -> Vec<u32> {
        self.all_special.iter().map(|(_, id)| *id).collect()
    }

    /// `tokenize(text)`: token strings.
    pub fn tokenize(&self, text: &str) -> Vec<String> {
        self.encode_raw(text).tokens
    }

    /// Tokens with ids, character offsets and word indices.
    pub fn encode_raw(&self, text: &str) -> RawEncoding {
        let lowered = if self.config.do_lower_case {
            Lowered::lower_except(text, &self.all_special)
        } else {
            Lowered::identity(text)
        };
        let chars = CharIndex::new(text);
        let mut out = RawEncoding::default();
        let mut word = 0u32;
        for chunk in self.added.split(lowered.text()) {
            match chunk {
                Chunk::Added(idx, s, e) => {
                    let Some(tok) = self.added.tokens().get(idx) else {
                        continue;
                    };
                    let offsets = lowered.char_span(&chars, s, e);
                    push(&mut out, tok.id, tok.content.clone(), offsets, word);
                    word += 1;
                }
                Chunk::Text(s, e) => {
                    self.encode_text(&lowered, &chars, s, e, &mut word, &mut out);
                }
            }
        }
        out
    }

    /// Runs sentencepiece over `lowered[s..e]`, one call per punctuation run if configured.
    fn encode_text(
        &self,
        lowered: &Lowered,
        chars: &CharIndex,
        s: usize,
        e: usize,
        word: &mut u32,
        out: &mut RawEncoding,
    ) {
        let chunk = lowered.text().get(s..e).unwrap_or("");
        if self.config.split_by_punct {
            for (rs, re) in punct_runs(chunk) {
                self.encode_run(lowered, chars, s + rs, s + re, word, out);
            }
        } else {
            self.encode_run(lowered, chars, s, e, word, out);
        }
    }

    fn encode_run(
        &self,
        lowered: &Lowered,
        chars: &CharIndex,
        s: usize,
        e: usize,
        word: &mut u32,
        out: &mut RawEncoding,
    ) {
        let run = lowered.text().get(s..e).unwrap_or("");
        let pieces = self.spm.encode(run);
        for (k, p) in pieces.into_iter().enumerate() {
            if k > 0 && p.piece.starts_with(SPACE_SYMBOL) {
                *word += 1;
            }
            let id = self.token_id(&p.piece, p.id);
            let offsets = lowered.char_span(chars, s + p.begin, s + p.end);
            push(out, id, p.piece.into_owned(), offsets, *word);
        }
        if !run.is_empty() {
            *word += 1;
        }
    }

    /// `convert_tokens_to_ids` for a sentencepiece piece.
    fn token_id(&self, piece: &str, spm_id: u32) -> u32 {
        if spm_id == self.spm.unk_id() {
            return match self.added.get(piece) {
                Some(t) => t.id,
                None => self.spm.piece_to_id(piece),
            };
        }
        self.overrides.get(&spm_id).copied().unwrap_or(spm_id)
    }

    /// The id of `token` in `get_vocab()` (sentencepiece pieces, then added tokens, which win):
    /// `None` when it is neither (where `convert_tokens_to_ids` answers the unknown id).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        if let Some(t) = self.added.get(token) {
            return Some(t.id);
        }
        let id = self.spm.piece_to_id(token);
        (self.spm.id_to_piece(id) == Some(token)).then_some(id)
    }

    /// `convert_ids_to_tokens`.
    pub fn id_to_token(&self, id: u32) -> String {
        if let Some(t) = self.added.by_id(id) {
            return t.content.clone();
        }
        match self.spm.id_to_piece(id) {
            Some(p) => p.to_string(),
            None => self.config.special.unk.clone(),
        }
    }

    /// `convert_tokens_to_string`: sentencepiece decoding with special tokens kept verbatim.
    pub fn convert_tokens_to_string<S: AsRef<str>>(&self, tokens: &[S]) -> String {
        let mut out = String::new();
        let mut current: Vec<&str> = Vec::new();
        let mut prev_is_special = false;
        for t in tokens {
            let t = t.as_ref();
            if self.all_special.iter().any(|(s, _)| s == t) {
                if !prev_is_special {
                    out.push(' ');
                }
                out.push_str(&self.spm.decode_pieces(&current));
                out.push_str(t);
                prev_is_special = true;
                current.clear();
            } else {
                current.push(t);
                prev_is_special = false;
            }
        }
        out.push_str(&self.spm.decode_pieces(&current));
        out.trim_matches(crate::added::py_is_space).to_string()
    }

    /// `decode(ids, skip_special_tokens)` with transformers' defaults
    /// (`spaces_between_special_tokens=True`, `clean_up_tokenization_spaces` from the config).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> String {
        let special_ids = self.all_special_ids();
        let is_special_str = |t: &str| self.all_special.iter().any(|(s, _)| s == t);
        let mut sub_texts: Vec<String> = Vec::new();
        let mut current: Vec<String> = Vec::new();
        for &id in ids {
            if skip_special_tokens && special_ids.contains(&id) {
                continue;
            }
            let token = self.id_to_token(id);
            if skip_special_tokens && is_special_str(&token) {
                continue;
            }
            let legacy_added = self
                .added
                .get(&token)
                .is_some_and(|t| !is_special_str(&t.content));
            if legacy_added {
                if !current.is_empty() {
                    let s = self.convert_tokens_to_string(&current);
                    if !s.is_empty() {
                        sub_texts.push(s);
                    }
                    current.clear();
                }
                sub_texts.push(token);
            } else {
                current.push(token);
            }
        }
        if !current.is_empty() {
            sub_texts.push(self.convert_tokens_to_string(&current));
        }
        let text = sub_texts.join(" ");
        if self.config.clean_up_tokenization_spaces {
            clean_up_tokenization(&text)
        } else {
            text
        }
    }

    /// `build_inputs_with_special_tokens`: `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`.
    pub fn build_inputs_with_special_tokens(&self, a: &[u32], b: Option<&[u32]>) -> Vec<u32> {
        let (cls, sep) = (self.specials.cls.0, self.specials.sep.0);
        let mut out = Vec::with_capacity(a.len() + b.map_or(0, <[u32]>::len) + 3);
        out.push(cls);
        out.extend_from_slice(a);
        out.push(sep);
        if let Some(b) = b {
            out.extend_from_slice(b);
            out.push(sep);
        }
        out
    }

    /// `get_special_tokens_mask`. With `already_has_special_tokens` every id in
    /// `all_special_ids` is flagged (then `b` must be `None`, as in transformers).
    pub fn get_special_tokens_mask(
        &self,
        a: &[u32],
        b: Option<&[u32]>,
        already_has_special_tokens: bool,
    ) -> Result<Vec<u32>> {
        if already_has_special_tokens {
            if b.is_some() {
                return Err(Error::Options(
                    "already_has_special_tokens takes a single, already formatted sequence".into(),
                ));
            }
            let ids = self.all_special_ids();
            return Ok(a.iter().map(|id| u32::from(ids.contains(id))).collect());
        }
        let mut out = vec![1];
        out.extend(std::iter::repeat_n(0, a.len()));
        out.push(1);
        if let Some(b) = b {
            out.extend(std::iter::repeat_n(0, b.len()));
            out.push(1);
        }
        Ok(out)
    }

    /// `create_token_type_ids_from_sequences`: 0 for `[CLS] A [SEP]`, 1 for `B [SEP]`.
    pub fn create_token_type_ids_from_sequences(&self, a: &[u32], b: Option<&[u32]>) -> Vec<u32> {
        let mut out = vec![0; a.len() + 2];
        if let Some(b) = b {
            out.extend(std::iter::repeat_n(1, b.len() + 1));
        }
        out
    }

    /// `save_vocabulary`: writes the sentencepiece model to `dir/[prefix-]spm.model`.
    pub fn save_vocabulary(
        &self,
        dir: impl AsRef<Path>,
        prefix: Option<&str>,
    ) -> Result<std::path::PathBuf> {
        let name = match prefix {
            Some(p) => format!("{p}-spm.model"),
            None => "spm.model".to_string(),
        };
        let path = dir.as_ref().join(name);
        std::fs::write(&path, self.spm.serialized()).map_err(|e| Error::io(&path, e))?;
        Ok(path)
    }
}

fn push(out: &mut RawEncoding, id: u32, token: String, offsets: (usize, usize), word: u32) {
    out.ids.push(id);
    out.tokens.push(token);
    out.offsets.push(offsets);
    out.words.push(Some(word));
    out.special.push(0);
}

/// `_run_split_on_punc`: byte ranges of runs, each punctuation character on its own.
fn punct_runs(text: &str) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut start_new = true;
    for (i, c) in text.char_indices() {
        let end = i + c.len_utf8();
        if is_punctuation(c) {
            runs.push((i, end));
            start_new = true;
        } else if start_new {
            runs.push((i, end));
            start_new = false;
        } else if let Some(last) = runs.last_mut() {
            last.1 = end;
        }
    }
    runs
}

/// Gives every special token an id: the sentencepiece piece of the same text if there is one,
/// else the next id after the vocabulary (transformers' `_add_tokens`).
fn complete_added_tokens(spm: &SentencePiece, config: &mut TokenizerConfig) {
    for name in config.special.all() {
        if config.added_tokens.iter().any(|t| t.content == name) {
            continue;
        }
        let spm_id = spm.piece_to_id(&name);
        let id = if spm.id_to_piece(spm_id) == Some(name.as_str()) {
            spm_id
        } else {
            let next = config
                .added_tokens
                .iter()
                .map(|t| t.id + 1)
                .max()
                .unwrap_or(0)
                .max(spm.len() as u32);
            next
        };
        let normalized = name == config.special.unk;
        config.added_tokens.push(AddedToken {
            content: name,
            id,
            special: true,
            lstrip: false,
            rstrip: false,
            single_word: false,
            normalized,
        });
    }
    config.added_tokens.sort_by_key(|t| t.id);
}
