//! The `deberta tokenize` command: JSON lines in (`{"text": ..., "text_pair": ...}`), one JSON
//! line out per input with ids, masks, tokens, character offsets, the decoded text and any
//! overflow windows. A bad line yields `{"line": n, "error": ...}` and processing continues.

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::encoding::{
    EncodeOptions, Encoding, Padding, PaddingStrategy, Truncation, TruncationStrategy,
};
use crate::error::{Error, Result};
use crate::tokenizer::{Impl, Tokenizer};

/// Padding choice of the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaddingMode {
    /// No padding.
    #[default]
    None,
    /// Pad to the longest window of the line (matters with overflow windows).
    Longest,
    /// Pad to `max_length`.
    MaxLength,
}

impl std::str::FromStr for PaddingMode {
    type Err = Error;
    /// Parses `none`, `longest` or `max_length`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(PaddingMode::None),
            "longest" => Ok(PaddingMode::Longest),
            "max_length" => Ok(PaddingMode::MaxLength),
            other => Err(Error::Options(format!(
                "unknown padding {other:?} (expected none, longest or max_length)"
            ))),
        }
    }
}

/// Options of `deberta tokenize`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizeOptions {
    /// slow, fast or auto (fast when `tokenizer.json` exists).
    pub implementation: Impl,
    /// Maximum length including special tokens; defaults to `model_max_length` when truncation
    /// or `max_length` padding needs one.
    pub max_length: Option<usize>,
    /// Truncation strategy; `None` disables truncation.
    pub truncation: Option<TruncationStrategy>,
    /// Overlap between overflow windows (0 = none); windows are emitted whenever truncation
    /// drops tokens.
    pub stride: usize,
    /// Padding.
    pub padding: PaddingMode,
    /// Add `[CLS]` / `[SEP]` (default true).
    pub add_special_tokens: bool,
}

impl Default for TokenizeOptions {
    fn default() -> Self {
        TokenizeOptions {
            implementation: Impl::Auto,
            max_length: None,
            truncation: None,
            stride: 0,
            padding: PaddingMode::None,
            add_special_tokens: true,
        }
    }
}

/// Counts reported by [`run_tokenize_jsonl`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct JsonlSummary {
    /// Non-blank input lines.
    pub lines: usize,
    /// Lines answered with an error object.
    pub errors: usize,
}

#[derive(Deserialize)]
struct InputLine {
    text: String,
    #[serde(default)]
    text_pair: Option<String>,
}

/// Loads the tokenizer in `dir` as `opts.implementation` says and runs
/// [`run_tokenize_jsonl_with`].
pub fn run_tokenize_jsonl(
    dir: &Path,
    opts: &TokenizeOptions,
    reader: impl BufRead,
    writer: impl Write,
) -> Result<JsonlSummary> {
    let tokenizer = Tokenizer::from_dir_with(dir, opts.implementation)?;
    run_tokenize_jsonl_with(&tokenizer, opts, reader, writer)
}

/// Tokenizes every JSON line of `reader` and writes one JSON line per input to `writer`.
/// Only I/O errors and invalid options abort; a bad line produces an error object.
pub fn run_tokenize_jsonl_with(
    tokenizer: &Tokenizer,
    opts: &TokenizeOptions,
    mut reader: impl BufRead,
    mut writer: impl Write,
) -> Result<JsonlSummary> {
    let encode_opts = encode_options(tokenizer, opts)?;
    let mut summary = JsonlSummary::default();
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io("<input>", e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        summary.lines += 1;
        let out = match process_line(tokenizer, &encode_opts, &buf) {
            Ok(v) => v,
            Err(msg) => {
                summary.errors += 1;
                json!({"line": line_no, "error": msg})
            }
        };
        writeln!(writer, "{out}").map_err(|e| Error::io("<output>", e))?;
    }
    writer.flush().map_err(|e| Error::io("<output>", e))?;
    Ok(summary)
}

/// Turns command-line options into [`EncodeOptions`].
pub fn encode_options(tokenizer: &Tokenizer, opts: &TokenizeOptions) -> Result<EncodeOptions> {
    let model_max = tokenizer.config().model_max_length;
    let max_length = opts.max_length.unwrap_or(model_max);
    let truncation = opts.truncation.map(|strategy| Truncation {
        max_length,
        strategy,
        stride: opts.stride,
        side: tokenizer.config().truncation_side,
    });
    let strategy = match opts.padding {
        PaddingMode::None => PaddingStrategy::None,
        PaddingMode::Longest => PaddingStrategy::Longest,
        PaddingMode::MaxLength => {
            if max_length == usize::MAX {
                return Err(Error::Options(
                    "padding max_length needs --max-length (the model has no model_max_length)"
                        .into(),
                ));
            }
            PaddingStrategy::MaxLength(max_length)
        }
    };
    Ok(EncodeOptions {
        add_special_tokens: opts.add_special_tokens,
        truncation,
        padding: Padding {
            strategy,
            side: tokenizer.config().padding_side,
            pad_to_multiple_of: None,
        },
    })
}

fn process_line(
    tokenizer: &Tokenizer,
    opts: &EncodeOptions,
    raw: &[u8],
) -> std::result::Result<Value, String> {
    let text = std::str::from_utf8(raw).map_err(|e| format!("invalid UTF-8: {e}"))?;
    let input: InputLine =
        serde_json::from_str(text.trim_end_matches(['\n', '\r'])).map_err(|e| {
            format!("invalid JSON input (expected {{\"text\": ..., \"text_pair\": ...}}): {e}")
        })?;
    let enc = tokenizer
        .encode(&input.text, input.text_pair.as_deref(), opts)
        .map_err(|e| e.to_string())?;
    let mut obj = encoding_json(tokenizer, &enc).map_err(|e| e.to_string())?;
    if !enc.overflowing.is_empty() {
        let windows = enc
            .overflowing
            .iter()
            .map(|w| encoding_json(tokenizer, w))
            .collect::<Result<Vec<_>>>()
            .map_err(|e| e.to_string())?;
        if let Value::Object(m) = &mut obj {
            m.insert("overflow".into(), Value::Array(windows));
        }
    }
    Ok(obj)
}

/// The JSON object for one encoding (without `overflow`).
pub fn encoding_json(tokenizer: &Tokenizer, enc: &Encoding) -> Result<Value> {
    let decoded = tokenizer.decode(&enc.input_ids, true)?;
    let offsets: Vec<[usize; 2]> = enc.offsets.iter().map(|&(s, e)| [s, e]).collect();
    Ok(json!({
        "input_ids": enc.input_ids,
        "token_type_ids": enc.token_type_ids,
        "attention_mask": enc.attention_mask,
        "special_tokens_mask": enc.special_tokens_mask,
        "tokens": enc.tokens,
        "offset_mapping": offsets,
        "word_ids": enc.word_ids,
        "decoded": decoded,
    }))
}
