//! Reading JSON-lines files with bounded memory: every line is checked against
//! [`MAX_LINE_BYTES`] before it is kept, and the file against [`MAX_FILE_BYTES`] before it is
//! opened, so that hostile input cannot exhaust memory.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::{Map, Value};

use super::BadLine;
use crate::{Error, Result};

/// The longest line read (16 MiB); a longer one is a bad line, skipped without being stored.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// The largest data file read (4 GiB).
pub const MAX_FILE_BYTES: u64 = 4 << 30;

/// One non-blank line: its 1-based number and its JSON object.
pub(crate) struct JsonLine {
    pub line: usize,
    pub object: Map<String, Value>,
}

/// Every non-blank line of `path` parsed as a JSON object; the others are returned as bad lines.
pub(crate) fn read_objects(path: &Path) -> Result<(Vec<JsonLine>, Vec<BadLine>)> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_FILE_BYTES {
        return Err(Error::Data {
            path: path.display().to_string(),
            message: format!("the file has {size} bytes, more than the {MAX_FILE_BYTES} accepted"),
        });
    }
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let mut buf = Vec::new();
    let mut line = 0;
    while let Some(read) = next_line(&mut reader, &mut buf).map_err(io)? {
        line += 1;
        match read {
            LineRead::TooLong => bad.push(BadLine {
                line,
                message: format!("the line is longer than {MAX_LINE_BYTES} bytes"),
            }),
            LineRead::Line => match parse_object(&buf) {
                Ok(Some(object)) => good.push(JsonLine { line, object }),
                Ok(None) => {}
                Err(message) => bad.push(BadLine { line, message }),
            },
        }
    }
    Ok((good, bad))
}

/// `Ok(None)` for a blank line.
fn parse_object(bytes: &[u8]) -> std::result::Result<Option<Map<String, Value>>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("the line is not UTF-8: {e}"))?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(other) => Err(format!("expected a JSON object, got {}", json_type(&other))),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

enum LineRead {
    Line,
    TooLong,
}

/// Reads the next line (without its `\n` / `\r\n`) into `buf`; `None` at the end of the file.
fn next_line<R: BufRead>(reader: &mut R, buf: &mut Vec<u8>) -> std::io::Result<Option<LineRead>> {
    buf.clear();
    let n = reader
        .by_ref()
        .take(MAX_LINE_BYTES as u64 + 1)
        .read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Ok(Some(LineRead::Line));
    }
    if buf.len() <= MAX_LINE_BYTES {
        return Ok(Some(LineRead::Line)); // the last line, without a newline
    }
    buf.clear();
    // Skip the rest of the line without keeping it.
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        if let Some(p) = chunk.iter().position(|&b| b == b'\n') {
            reader.consume(p + 1);
            break;
        }
        let len = chunk.len();
        reader.consume(len);
    }
    Ok(Some(LineRead::TooLong))
}

/// The JSON type of a value, for messages.
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A required field.
pub(crate) fn field<'a>(
    object: &'a Map<String, Value>,
    name: &str,
) -> std::result::Result<&'a Value, String> {
    object
        .get(name)
        .ok_or_else(|| format!("missing field `{name}`"))
}

/// A required non-blank string field.
pub(crate) fn text_field(
    object: &Map<String, Value>,
    name: &str,
) -> std::result::Result<String, String> {
    let v = field(object, name)?;
    non_blank(v, name)
}

/// An optional non-blank string field (`null` counts as absent).
pub(crate) fn optional_text(
    object: &Map<String, Value>,
    name: &str,
) -> std::result::Result<Option<String>, String> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => non_blank(v, name).map(Some),
    }
}

/// A non-blank string, else a message naming `what`.
pub(crate) fn non_blank(v: &Value, what: &str) -> std::result::Result<String, String> {
    match v {
        Value::String(s) if s.trim().is_empty() => Err(format!("`{what}` is empty")),
        Value::String(s) => Ok(s.clone()),
        other => Err(format!(
            "`{what}` must be a string, got {}",
            json_type(other)
        )),
    }
}

/// A required list field.
pub(crate) fn list_field<'a>(
    object: &'a Map<String, Value>,
    name: &str,
) -> std::result::Result<&'a Vec<Value>, String> {
    match field(object, name)? {
        Value::Array(a) => Ok(a),
        other => Err(format!("`{name}` must be a list, got {}", json_type(other))),
    }
}

/// A non-negative integer (an integral float such as `2.0` counts).
pub(crate) fn as_index(v: &Value) -> Option<usize> {
    if let Some(u) = v.as_u64() {
        return usize::try_from(u).ok();
    }
    match v.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 9.0e15 => Some(f as usize),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_long_lines_skipped_without_storing_them() {
        let mut data = b"{\"a\":1}\r\n\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        data.extend(b"\n{\"b\":2}");
        let mut reader = BufReader::new(&data[..]);
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        while let Some(r) = next_line(&mut reader, &mut buf).unwrap() {
            seen.push(match r {
                LineRead::Line => String::from_utf8(buf.clone()).unwrap(),
                LineRead::TooLong => "<long>".to_string(),
            });
        }
        assert_eq!(seen, ["{\"a\":1}", "", "<long>", "{\"b\":2}"]);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_kept() {
        let mut data = vec![b' '; MAX_LINE_BYTES];
        data.push(b'\n');
        let mut reader = BufReader::new(&data[..]);
        let mut buf = Vec::new();
        assert!(matches!(
            next_line(&mut reader, &mut buf).unwrap(),
            Some(LineRead::Line)
        ));
        assert_eq!(buf.len(), MAX_LINE_BYTES);
    }
}
