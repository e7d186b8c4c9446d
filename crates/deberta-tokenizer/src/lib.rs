//! DeBERTa-v2/v3 tokenizers in Rust, matching transformers 4.57.
//!
//! * [`SlowTokenizer`]: `DebertaV2Tokenizer` on a pure-Rust re-implementation of the
//!   sentencepiece library ([`SentencePiece`]: protobuf model reader, precompiled-charsmap
//!   normaliser, unigram Viterbi, BPE, byte fallback). No C++.
//! * [`FastTokenizer`]: `DebertaV2TokenizerFast` on the HF `tokenizers` crate, from
//!   `tokenizer.json` or converted from `spm.model` like `DebertaV2Converter`.
//! * [`Tokenizer`]: one API over both (single texts, pairs, batches, truncation with overflow
//!   windows, padding, character offsets, word ids, decoding).
//!
//! ```no_run
//! use deberta_tokenizer::{EncodeOptions, Tokenizer};
//! let tok = Tokenizer::from_dir("models/deberta-v3-base")?;
//! let enc = tok.encode("Hello [MASK]!", None, &EncodeOptions::default())?;
//! println!("{:?} {:?}", enc.input_ids, enc.offsets);
//! # Ok::<(), deberta_tokenizer::Error>(())
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod added;
pub mod config;
pub mod encoding;
mod error;
pub mod fast;
pub mod slow;
pub mod spm;
mod text;
mod tokenizer;

/// The `spm.model` protobuf, now [`spm::model`] (kept under its former path).
pub use spm::model as proto;

pub use config::{AddedToken, Side, SpecialTokenNames, TokenizerConfig};
pub use encoding::{
    EncodeOptions, Encoding, Padding, PaddingStrategy, RawEncoding, SpecialIds, Truncation,
    TruncationStrategy,
};
pub use error::{Error, Result};
pub use fast::FastTokenizer;
pub use slow::SlowTokenizer;
pub use spm::{SentencePiece, SpmPiece};
pub use tokenizer::{flatten_overflow, Impl, Tokenizer};
