//! `deberta tokenize`: JSON lines `{"text": ..., "text_pair": ...}` on stdin, one JSON line of
//! ids, type ids, masks, tokens, character offsets, decode and overflow windows per input
//! (through the CLI's JSONL driver, [`crate::jsonl`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use deberta_tokenizer::{
    EncodeOptions, Encoding, Impl, Padding, PaddingStrategy, Tokenizer, Truncation,
    TruncationStrategy,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::jsonl;

#[derive(Args)]
pub struct TokenizeArgs {
    /// Checkpoint directory with tokenizer.json and/or spm.model (+ tokenizer_config.json).
    #[arg(long)]
    model: PathBuf,
    /// slow = pure-Rust sentencepiece (spm.model), fast = tokenizer.json; default: fast when
    /// tokenizer.json exists.
    #[arg(long = "impl", value_parser = ["slow", "fast"])]
    implementation: Option<String>,
    /// Maximum length including special tokens (truncates with longest_first unless
    /// --truncation says otherwise, as transformers does).
    #[arg(long)]
    max_length: Option<usize>,
    /// Truncation strategy.
    #[arg(long, value_parser = ["longest_first", "only_first", "only_second"])]
    truncation: Option<String>,
    /// Overlap of the overflow windows.
    #[arg(long, default_value_t = 0)]
    stride: usize,
    /// Padding.
    #[arg(long, value_parser = ["longest", "max_length"])]
    padding: Option<String>,
}

/// Padding choice of the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum PaddingMode {
    /// No padding.
    #[default]
    None,
    /// Pad to the longest window of the line (matters with overflow windows).
    Longest,
    /// Pad to `max_length`.
    MaxLength,
}

impl std::str::FromStr for PaddingMode {
    type Err = anyhow::Error;
    /// Parses `none`, `longest` or `max_length`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(PaddingMode::None),
            "longest" => Ok(PaddingMode::Longest),
            "max_length" => Ok(PaddingMode::MaxLength),
            other => bail!("unknown padding {other:?} (expected none, longest or max_length)"),
        }
    }
}

/// Options of `deberta tokenize`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TokenizeOptions {
    /// slow, fast or auto (fast when `tokenizer.json` exists).
    implementation: Impl,
    /// Maximum length including special tokens; defaults to `model_max_length` when truncation
    /// or `max_length` padding needs one.
    max_length: Option<usize>,
    /// Truncation strategy; `None` disables truncation.
    truncation: Option<TruncationStrategy>,
    /// Overlap between overflow windows (0 = none); windows are emitted whenever truncation
    /// drops tokens.
    stride: usize,
    /// Padding.
    padding: PaddingMode,
    /// Add `[CLS]` / `[SEP]` (default true).
    add_special_tokens: bool,
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

/// One input line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputLine {
    text: String,
    #[serde(default)]
    text_pair: Option<String>,
}

const SHAPE: &str = r#"{"text": ..., "text_pair": ...}"#;

pub fn run(args: TokenizeArgs) -> Result<()> {
    let implementation = match args.implementation.as_deref() {
        Some(name) => name.parse::<Impl>()?,
        None => Impl::Auto,
    };
    let truncation = match (&args.truncation, args.max_length) {
        (Some(s), _) => Some(s.parse::<TruncationStrategy>()?),
        (None, Some(_)) => Some(TruncationStrategy::LongestFirst),
        (None, None) => None,
    };
    let padding = match args.padding.as_deref() {
        Some(p) => p.parse::<PaddingMode>()?,
        None => PaddingMode::None,
    };
    let opts = TokenizeOptions {
        implementation,
        max_length: args.max_length,
        truncation,
        stride: args.stride,
        padding,
        add_special_tokens: true,
    };
    let stdin = std::io::stdin().lock();
    let stdout = std::io::BufWriter::new(std::io::stdout().lock());
    tokenize_jsonl(&args.model, &opts, stdin, stdout)
        .with_context(|| format!("tokenizing with {}", args.model.display()))?
        .into_result()
}

/// Loads the tokenizer in `dir` as `opts.implementation` says and answers every JSON line of
/// `reader` on `writer`.
fn tokenize_jsonl(
    dir: &Path,
    opts: &TokenizeOptions,
    reader: impl std::io::BufRead,
    writer: impl std::io::Write,
) -> Result<jsonl::Summary> {
    let tokenizer = Tokenizer::from_dir_with(dir, opts.implementation)?;
    let encode_opts = encode_options(&tokenizer, opts)?;
    let driver = jsonl::Options {
        chunk: 64,
        shape: SHAPE,
        total: None,
    };
    jsonl::run(reader, writer, &driver, |lines: &[InputLine]| {
        lines
            .iter()
            .map(|line| line_json(&tokenizer, &encode_opts, line))
            .collect()
    })
}

/// Turns command-line options into [`EncodeOptions`].
fn encode_options(tokenizer: &Tokenizer, opts: &TokenizeOptions) -> Result<EncodeOptions> {
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
                bail!("padding max_length needs --max-length (the model has no model_max_length)");
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

/// The output object of one line: its encoding plus `overflow` windows, if any.
fn line_json(
    tokenizer: &Tokenizer,
    opts: &EncodeOptions,
    input: &InputLine,
) -> deberta_tokenizer::Result<Value> {
    let enc = tokenizer.encode(&input.text, input.text_pair.as_deref(), opts)?;
    let mut obj = encoding_json(tokenizer, &enc)?;
    if !enc.overflowing.is_empty() {
        let windows = enc
            .overflowing
            .iter()
            .map(|w| encoding_json(tokenizer, w))
            .collect::<deberta_tokenizer::Result<Vec<_>>>()?;
        if let Value::Object(m) = &mut obj {
            m.insert("overflow".into(), Value::Array(windows));
        }
    }
    Ok(obj)
}

/// The JSON object for one encoding (without `overflow`).
fn encoding_json(tokenizer: &Tokenizer, enc: &Encoding) -> deberta_tokenizer::Result<Value> {
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

#[cfg(test)]
mod tests {
    //! Moved from `deberta-tokenizer/tests/api.rs` with the JSONL runner.
    use super::*;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deberta-tokenizer/tests/fixtures")
    }

    fn v3() -> PathBuf {
        fixtures().join("deberta-v3")
    }

    fn small() -> PathBuf {
        fixtures().join("models/unigram-nobyte")
    }

    #[test]
    fn jsonl_runner_reports_bad_lines_and_continues() {
        let input = b"{\"text\": \"Hello world\"}\nnot json\n\n{\"text\": \"a\xff\"}\n{\"text\": \"What?\", \"text_pair\": \"The Amazon rainforest covers much of the basin of South America.\"}\n{\"txt\": \"typo\"}\n";
        let opts = TokenizeOptions {
            implementation: Impl::Fast,
            max_length: Some(12),
            truncation: Some(TruncationStrategy::OnlySecond),
            stride: 2,
            padding: PaddingMode::MaxLength,
            ..TokenizeOptions::default()
        };
        let mut out = Vec::new();
        let summary = tokenize_jsonl(&v3(), &opts, &input[..], &mut out).unwrap();
        assert_eq!((summary.lines, summary.failed.len()), (5, 3));
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0]["decoded"], "Hello world");
        assert_eq!(lines[0]["input_ids"].as_array().unwrap().len(), 12);
        assert_eq!(lines[1]["line"], 2);
        assert!(lines[1]["error"]
            .as_str()
            .unwrap()
            .contains("malformed JSON"));
        assert_eq!(lines[2]["line"], 4);
        assert!(lines[2]["error"].as_str().unwrap().contains("UTF-8"));
        let overflow = lines[3]["overflow"].as_array().unwrap();
        assert!(!overflow.is_empty());
        assert_eq!(lines[3]["offset_mapping"][1], serde_json::json!([0, 4]));
        assert_eq!(lines[4]["line"], 6);
        assert!(
            lines[4]["error"]
                .as_str()
                .unwrap()
                .contains("unknown field `txt`, expected `text` or `text_pair`"),
            "{}",
            lines[4]
        );
    }

    #[test]
    fn jsonl_runner_slow_auto() {
        let input = "{\"text\": \"Hello [MASK] world\", \"text_pair\": \"x\"}\n";
        let mut out = Vec::new();
        let opts = TokenizeOptions::default();
        let summary = tokenize_jsonl(&small(), &opts, input.as_bytes(), &mut out).unwrap();
        assert_eq!((summary.lines, summary.failed.len()), (1, 0));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["tokens"][2], "[MASK]");
        assert_eq!(v["token_type_ids"].as_array().unwrap().last().unwrap(), 1);
        assert!(v.get("overflow").is_none());
        assert_eq!(
            "only_second".parse::<TruncationStrategy>().unwrap(),
            TruncationStrategy::OnlySecond
        );
        assert_eq!(
            "max_length".parse::<PaddingMode>().unwrap(),
            PaddingMode::MaxLength
        );
        assert!("sideways".parse::<PaddingMode>().is_err());
        assert!("sideways".parse::<Impl>().is_err());
    }
}
