//! The one JSON-lines driver of the CLI: `deberta tokenize` and every task command read their
//! inputs through [`run`].
//!
//! Every non-blank input line gets exactly one output line, in input order: the command's
//! result, or `{"line": n, "error": "..."}` when the line fails in any way (invalid UTF-8,
//! malformed JSON, an unknown, missing or ill-typed field, an error of the model). Lines are
//! numbered from 1 and blank lines count. The output is flushed after every chunk of lines, so
//! lines already answered survive a later failure or an abort; [`Summary::into_result`] fails
//! (non-zero exit) naming the failed lines.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// How [`run`] reads and reports.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// Input lines handed to the command at once (tasks sort and batch within a chunk); the
    /// output is flushed after each chunk.
    pub chunk: usize,
    /// The shape of an input line, quoted in the error for malformed JSON
    /// (`{"text": ..., "text_pair": ...}`).
    pub shape: &'a str,
    /// Number of input lines when known in advance (sizes the progress bar and its ETA).
    pub total: Option<u64>,
}

/// What a finished job saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Non-blank input lines.
    pub lines: usize,
    /// Numbers of the lines answered with an error object.
    pub failed: Vec<usize>,
}

impl Summary {
    /// `Ok` when every line succeeded, else an error naming the failed lines.
    pub fn into_result(self) -> Result<()> {
        if self.failed.is_empty() {
            return Ok(());
        }
        const SHOWN: usize = 20;
        let mut list: Vec<String> = self
            .failed
            .iter()
            .take(SHOWN)
            .map(usize::to_string)
            .collect();
        if self.failed.len() > SHOWN {
            list.push("...".into());
        }
        bail!(
            "{} of {} lines failed: line(s) {}",
            self.failed.len(),
            self.lines,
            list.join(", ")
        )
    }
}

/// Opens `--input` (`None` or `-`: stdin) and counts its lines when it is a file.
pub fn open_input(path: Option<&Path>) -> Result<(Box<dyn BufRead>, Option<u64>)> {
    match path {
        Some(p) if p.as_os_str() != "-" => {
            let open =
                || std::fs::File::open(p).with_context(|| format!("opening {}", p.display()));
            let total = count_lines(BufReader::new(open()?)).ok();
            Ok((Box::new(BufReader::new(open()?)), total))
        }
        _ => Ok((Box::new(BufReader::new(std::io::stdin().lock())), None)),
    }
}

/// Non-blank lines of `reader` (for the progress bar; the job itself reads the file again).
fn count_lines(mut reader: impl BufRead) -> std::io::Result<u64> {
    let mut buf = Vec::new();
    let mut n = 0;
    while reader.read_until(b'\n', &mut buf)? > 0 {
        n += u64::from(!is_blank(&buf));
        buf.clear();
    }
    Ok(n)
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// A line's text without its line ending, or why it is not text.
fn line_text(raw: &[u8]) -> std::result::Result<&str, String> {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    std::str::from_utf8(raw).map_err(|e| {
        format!(
            "invalid UTF-8 at byte {} of the line (JSON lines must be UTF-8)",
            e.valid_up_to() + 1
        )
    })
}

/// Parses one line as `T`; the message tells malformed JSON from a well-formed line with the
/// wrong fields (serde names an unknown field and the accepted ones).
fn parse_line<T: DeserializeOwned>(text: &str, shape: &str) -> std::result::Result<T, String> {
    serde_json::from_str(text).map_err(|e| {
        let full = e.to_string();
        let position = format!(" at line {} column {}", e.line(), e.column());
        let message = full.strip_suffix(&position).unwrap_or(&full);
        match e.classify() {
            serde_json::error::Category::Data => {
                format!("invalid input at column {}: {message}", e.column())
            }
            _ => format!(
                "malformed JSON at column {} (expected {shape}): {message}",
                e.column()
            ),
        }
    })
}

/// The error object of a failed line (model errors arrive with their whole cause chain, `{:#}`).
fn error_line(line: usize, error: impl std::fmt::Display) -> String {
    serde_json::json!({ "line": line, "error": error.to_string() }).to_string()
}

/// Reads JSON lines from `reader`, hands each chunk of well-formed lines to `process` (one
/// result per input, in order) and writes one line per input line to `writer`.
///
/// Only a failure to read the input or to write the output ends the job early; the lines
/// answered before it are already flushed.
pub fn run<T, R, E>(
    mut reader: impl BufRead,
    mut writer: impl Write,
    opts: &Options<'_>,
    mut process: impl FnMut(&[T]) -> Vec<std::result::Result<R, E>>,
) -> Result<Summary>
where
    T: DeserializeOwned,
    R: Serialize,
    E: Into<anyhow::Error>,
{
    let bar = progress(opts.total);
    let chunk = opts.chunk.max(1);
    let mut summary = Summary::default();
    let mut line_no = 0usize;
    let mut at_end = false;
    let mut buf = Vec::new();
    while !at_end {
        // (line number, parsed input or the line's error), up to `chunk` non-blank lines.
        let mut group: Vec<(usize, std::result::Result<T, String>)> = Vec::new();
        while group.len() < chunk {
            buf.clear();
            let read = reader.read_until(b'\n', &mut buf);
            let n = read.with_context(|| format!("reading input line {}", line_no + 1));
            let n = match n {
                Ok(n) => n,
                Err(e) => {
                    // Answer what was read before giving up.
                    finish_group(&mut writer, group, &mut process, &mut summary)?;
                    bar.abandon();
                    return Err(e);
                }
            };
            if n == 0 {
                at_end = true;
                break;
            }
            line_no += 1;
            if is_blank(&buf) {
                continue;
            }
            let parsed = line_text(&buf).and_then(|text| parse_line::<T>(text, opts.shape));
            group.push((line_no, parsed));
        }
        let done = group.len() as u64;
        finish_group(&mut writer, group, &mut process, &mut summary)?;
        bar.inc(done);
    }
    bar.finish_and_clear();
    Ok(summary)
}

/// Runs `process` on the parsed lines of `group`, writes every line's answer in order, flushes.
fn finish_group<T, R, E>(
    writer: &mut impl Write,
    group: Vec<(usize, std::result::Result<T, String>)>,
    process: &mut impl FnMut(&[T]) -> Vec<std::result::Result<R, E>>,
    summary: &mut Summary,
) -> Result<()>
where
    R: Serialize,
    E: Into<anyhow::Error>,
{
    if group.is_empty() {
        return Ok(());
    }
    let mut numbers = Vec::with_capacity(group.len());
    let mut inputs = Vec::with_capacity(group.len());
    for (n, parsed) in group {
        match parsed {
            Ok(input) => {
                numbers.push((n, None));
                inputs.push(input);
            }
            Err(e) => numbers.push((n, Some(e))),
        }
    }
    let mut results = if inputs.is_empty() {
        Vec::new()
    } else {
        process(&inputs)
    }
    .into_iter();
    for (n, parse_error) in numbers {
        summary.lines += 1;
        let line = match parse_error {
            Some(e) => Err(e),
            None => match results.next() {
                // Serialised directly, so fields keep the order of the single-input output.
                Some(Ok(r)) => serde_json::to_string(&r).map_err(|e| e.to_string()),
                Some(Err(e)) => Err(format!("{:#}", Into::<anyhow::Error>::into(e))),
                None => Err("internal error: the command returned no result for this line".into()),
            },
        };
        let text = line.unwrap_or_else(|e| {
            summary.failed.push(n);
            error_line(n, e)
        });
        writeln!(writer, "{text}").context("writing the output")?;
    }
    writer.flush().context("writing the output")?;
    Ok(())
}

/// A bar with rate (and ETA when the number of lines is known) on stderr; hidden when stderr
/// is not a terminal.
fn progress(total: Option<u64>) -> ProgressBar {
    let (bar, template) = match total {
        Some(n) => (
            ProgressBar::new(n),
            "{bar:40} {pos}/{len} inputs {per_sec} ETA {eta}",
        ),
        None => (ProgressBar::no_length(), "{pos} inputs {per_sec}"),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Line {
        text: String,
    }

    const OPTS: Options<'static> = Options {
        chunk: 2,
        shape: "{\"text\": ...}",
        total: None,
    };

    /// Upper-cases texts; a text `fail` is a model error.
    fn upper(lines: &[Line]) -> Vec<Result<String>> {
        lines
            .iter()
            .map(|l| match l.text.as_str() {
                "fail" => Err(anyhow::anyhow!("cannot run").context("the model")),
                t => Ok(t.to_uppercase()),
            })
            .collect()
    }

    fn output(input: &[u8], opts: &Options<'_>) -> (Summary, Vec<serde_json::Value>) {
        let mut out = Vec::new();
        let summary = run(input, &mut out, opts, upper).unwrap();
        let lines = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (summary, lines)
    }

    #[test]
    fn every_kind_of_bad_line_is_answered_in_order() {
        let input = b"{\"text\": \"a\"}\n\n{\"text\": \"b\xff\"}\r\nnot json\n{\"text\": \"c\", \"extra\": 1}\n  \n{\"text\": \"fail\"}\n{\"text\": 5}\n{\"text\": \"d\"}";
        let (summary, lines) = output(input, &OPTS);
        assert_eq!(summary.lines, 7);
        assert_eq!(summary.failed, [3, 4, 5, 7, 8]);
        assert_eq!(lines.len(), 7);
        assert_eq!(lines[0], "A");
        assert_eq!(lines[1]["line"], 3);
        let err = |i: usize| lines[i]["error"].as_str().unwrap().to_string();
        assert!(err(1).contains("invalid UTF-8 at byte 12"), "{}", err(1));
        assert_eq!(lines[2]["line"], 4);
        assert!(err(2).starts_with("malformed JSON at column 2 (expected {\"text\": ...})"));
        assert_eq!(lines[3]["line"], 5);
        assert!(
            err(3).contains("unknown field `extra`, expected `text`"),
            "{}",
            err(3)
        );
        assert_eq!(err(4), "the model: cannot run");
        assert_eq!(lines[5]["line"], 8);
        assert!(err(5).contains("invalid type: integer `5`"), "{}", err(5));
        assert_eq!(lines[6], "D");
        let message = summary.into_result().unwrap_err().to_string();
        assert_eq!(message, "5 of 7 lines failed: line(s) 3, 4, 5, 7, 8");
    }

    #[test]
    fn finished_chunks_are_flushed_before_a_read_error() {
        /// Gives some lines, then fails.
        struct Broken(&'static [u8]);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Err(std::io::Error::other("disk gone"));
                }
                let n = self.0.len().min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let reader = BufReader::new(Broken(
            b"{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": \"c\"}\n",
        ));
        let mut out = Vec::new();
        let err = run(reader, &mut out, &OPTS, upper).unwrap_err();
        assert_eq!(format!("{err:#}"), "reading input line 4: disk gone");
        assert_eq!(String::from_utf8(out).unwrap(), "\"A\"\n\"B\"\n\"C\"\n");
    }

    #[test]
    fn a_missing_result_is_an_error_line_not_a_shifted_answer() {
        let mut out = Vec::new();
        let summary = run(
            &b"{\"text\": \"a\"}\n{\"text\": \"b\"}\n"[..],
            &mut out,
            &OPTS,
            |lines: &[Line]| upper(&lines[..1]),
        )
        .unwrap();
        assert_eq!(summary.failed, [2]);
        assert!(String::from_utf8(out).unwrap().contains("internal error"));
    }

    #[test]
    fn long_failure_lists_are_cut() {
        let summary = Summary {
            lines: 30,
            failed: (1..=25).collect(),
        };
        let message = summary.into_result().unwrap_err().to_string();
        assert!(message.starts_with("25 of 30 lines failed: line(s) 1, 2,"));
        assert!(message.ends_with("19, 20, ..."));
        assert!(Summary::default().into_result().is_ok());
    }

    #[test]
    fn files_are_counted_for_the_progress_bar() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, "{}\n\n {}\n{}").unwrap();
        let (_, total) = open_input(Some(&path)).unwrap();
        assert_eq!(total, Some(3));
        assert!(open_input(Some(&dir.path().join("missing"))).is_err());
    }

    /// Property tests (proptest): arbitrary lines through the driver, every non-blank line is
    /// answered exactly once, in order, with the result or its `{"line": n, "error": ...}`.
    mod props {
        use std::time::{Duration, Instant};

        use proptest::prelude::*;
        use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

        use super::*;

        /// A line type that accepts unknown fields (as zero-shot and classify do).
        #[derive(serde::Deserialize, Debug)]
        struct Loose {
            text: String,
            #[allow(dead_code)]
            text_pair: Option<String>,
        }

        trait Texted: DeserializeOwned {
            fn text(&self) -> &str;
        }
        impl Texted for Line {
            fn text(&self) -> &str {
                &self.text
            }
        }
        impl Texted for Loose {
            fn text(&self) -> &str {
                &self.text
            }
        }

        /// One input line, without its `\n`.
        fn line() -> impl Strategy<Value = Vec<u8>> {
            let text = prop_oneof![
                "\\PC{0,12}",
                Just("fail".to_string()),
                any::<String>().prop_map(|s| s.chars().take(16).collect()),
            ];
            let value = prop_oneof![
                Just("null".to_string()),
                Just("5".into()),
                Just("1e99999".into()),
                Just("-0".into()),
                Just("\"\\ud800\"".into()),
                Just("{\"a\": [1, {}]}".into()),
                "\\PC{0,8}".prop_map(|s| serde_json::Value::from(s).to_string()),
            ];
            let valid = text
                .clone()
                .prop_map(|t| serde_json::json!({ "text": t }).to_string());
            prop_oneof![
                6 => valid.clone().prop_map(String::into_bytes),
                // A pair, an unknown field, a wrong type, missing or duplicate fields.
                1 => (text.clone(), text.clone()).prop_map(|(a, b)| {
                    serde_json::json!({ "text": a, "text_pair": b }).to_string().into_bytes()
                }),
                2 => ("[a-z_]{1,8}", value.clone()).prop_map(|(k, v)| {
                    format!("{{\"text\": \"a\", \"{k}\": {v}}}").into_bytes()
                }),
                2 => value.clone().prop_map(|v| format!("{{\"text\": {v}}}").into_bytes()),
                1 => prop::sample::select(vec!["{}", "[]", "[\"a\"]", "\"a\"", "0", "null",
                    "{\"text\": \"a\", \"text\": \"b\"}", "{\"text\": \"a\"} x", "{"])
                    .prop_map(|s| s.as_bytes().to_vec()),
                // Blank lines (they count in the numbering but get no answer).
                2 => prop::collection::vec(
                    prop::sample::select(vec![b' ', b'\t', b'\r', 0x0b, 0x0c]),
                    0..4,
                ),
                // Arbitrary bytes, invalid UTF-8 among them.
                3 => prop::collection::vec(any::<u8>(), 0..48)
                    .prop_map(|b| b.into_iter().filter(|&c| c != b'\n').collect()),
                2 => (valid, any::<prop::sample::Index>(), 0x80u8..=0xff).prop_map(
                    |(v, i, b)| {
                        let mut v = v.into_bytes();
                        let at = i.index(v.len() + 1);
                        v.insert(at, b);
                        v
                    }
                ),
                // Deep nesting, alone or as the value of an unknown field.
                1 => (1usize..4000, any::<bool>()).prop_map(|(d, field)| {
                    let nested = format!("{}{}", "[".repeat(d), "]".repeat(d));
                    if field {
                        format!("{{\"text\": \"a\", \"x\": {nested}}}").into_bytes()
                    } else {
                        nested.into_bytes()
                    }
                }),
                // A long line.
                1 => (1usize..16_000).prop_map(|n| {
                    serde_json::json!({ "text": "ab ".repeat(n / 3) }).to_string().into_bytes()
                }),
            ]
        }

        /// Lines, each maybe ending in `\r\n`, and whether the input ends with a line break.
        fn input() -> impl Strategy<Value = Vec<u8>> {
            (
                prop::collection::vec((line(), prop::bool::weighted(0.2)), 0..24),
                any::<bool>(),
            )
                .prop_map(|(lines, final_newline)| {
                    let mut out = Vec::new();
                    for (i, (l, crlf)) in lines.iter().enumerate() {
                        if i > 0 {
                            out.push(b'\n');
                        }
                        out.extend_from_slice(l);
                        if *crlf {
                            out.push(b'\r');
                        }
                    }
                    if final_newline && !lines.is_empty() {
                        out.push(b'\n');
                    }
                    out
                })
        }

        /// What the driver must answer for each non-blank line: (line number, `Some(result)`
        /// or `None` for an error line). With `short`, the command answers one input fewer per
        /// chunk than it was given.
        fn expected<T: Texted>(
            input: &[u8],
            chunk: usize,
            short: bool,
        ) -> Vec<(usize, Option<String>)> {
            let mut lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
            if input.last() == Some(&b'\n') || input.is_empty() {
                lines.pop();
            }
            let answered: Vec<(usize, Option<T>)> = lines
                .iter()
                .enumerate()
                .filter(|(_, l)| !is_blank(l))
                .map(|(i, l)| {
                    let l = l.strip_suffix(b"\r").unwrap_or(l);
                    let parsed = std::str::from_utf8(l)
                        .ok()
                        .and_then(|t| serde_json::from_str::<T>(t).ok());
                    (i + 1, parsed)
                })
                .collect();
            let mut out = Vec::new();
            for group in answered.chunks(chunk) {
                let last_ok = group.iter().rposition(|(_, p)| p.is_some());
                for (j, (n, parsed)) in group.iter().enumerate() {
                    let result = parsed.as_ref().and_then(|p| {
                        let dropped = short && Some(j) == last_ok;
                        (!dropped && p.text() != "fail").then(|| p.text().to_uppercase())
                    });
                    out.push((*n, result));
                }
            }
            out
        }

        fn check_driver<T: Texted>(
            input: &[u8],
            chunk: usize,
            short: bool,
        ) -> Result<(), TestCaseError> {
            let started = Instant::now();
            let opts = Options {
                chunk,
                shape: "{\"text\": ...}",
                total: None,
            };
            let process = |lines: &[T]| -> Vec<Result<String>> {
                let n = lines.len() - usize::from(short);
                lines[..n]
                    .iter()
                    .map(|l| match l.text() {
                        "fail" => Err(anyhow::anyhow!("cannot run")),
                        t => Ok(t.to_uppercase()),
                    })
                    .collect()
            };
            let mut out = Vec::new();
            let summary = run(input, &mut out, &opts, process)
                .map_err(|e| TestCaseError::fail(format!("the job failed: {e:#}")))?;
            let want = expected::<T>(input, chunk, short);
            let text = String::from_utf8(out).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(text.is_empty() || text.ends_with('\n'));
            let got: Vec<&str> = text.lines().collect();
            prop_assert_eq!(got.len(), want.len(), "one output line per input line");
            let mut failed = Vec::new();
            for (line, (n, result)) in got.iter().zip(&want) {
                let value: serde_json::Value = serde_json::from_str(line)
                    .map_err(|e| TestCaseError::fail(format!("{line:?}: {e}")))?;
                match result {
                    Some(r) => prop_assert_eq!(&value, &serde_json::Value::from(r.as_str())),
                    None => {
                        failed.push(*n);
                        let object = value.as_object();
                        prop_assert!(object.is_some_and(|o| o.len() == 2), "{value}");
                        prop_assert_eq!(&value["line"], &serde_json::Value::from(*n));
                        let error = value["error"].as_str().unwrap_or_default();
                        prop_assert!(!error.is_empty(), "{value}");
                    }
                }
            }
            prop_assert_eq!(summary.lines, want.len());
            prop_assert_eq!(summary.failed, failed);
            prop_assert!(started.elapsed() < Duration::from_secs(10));
            Ok(())
        }

        fn check<S: Strategy>(
            seed: u64,
            strategy: S,
            test: impl Fn(S::Value) -> Result<(), TestCaseError>,
        ) {
            let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
            let config = Config {
                cases: env("PROPTEST_CASES").map_or(256, |n| n as u32),
                rng_seed: RngSeed::Fixed(env("PROPTEST_RNG_SEED").unwrap_or(seed)),
                failure_persistence: None,
                ..Config::default()
            };
            if let Err(e) = TestRunner::new(config).run(&strategy, test) {
                panic!("{e}");
            }
        }

        fn args() -> impl Strategy<Value = (Vec<u8>, usize, bool)> {
            (input(), 1usize..6, prop::bool::weighted(0.2))
                .prop_filter("inputs stay under 64 KiB", |(i, _, _)| i.len() < 64 << 10)
        }

        #[test]
        fn every_line_is_answered_once_in_order_strict_fields() {
            check(1, args(), |(input, chunk, short)| {
                check_driver::<Line>(&input, chunk, short)
            });
        }

        #[test]
        fn every_line_is_answered_once_in_order_unknown_fields_accepted() {
            check(2, args(), |(input, chunk, short)| {
                check_driver::<Loose>(&input, chunk, short)
            });
        }
    }
}
