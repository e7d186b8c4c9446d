//! `NativeTokenizer`: the `deberta-tokenizer` crate (slow or fast) over numpy.

use deberta_tokenizer::{
    flatten_overflow, EncodeOptions, Encoding, Impl, Padding, PaddingStrategy, Side, Tokenizer,
    Truncation, TruncationStrategy,
};
use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::error::{Failure, Outcome};
use crate::runtime::detached;

/// A DeBERTa-v2/v3 tokenizer loaded from a checkpoint directory.
#[pyclass(module = "deberta_rs._deberta_rs", frozen)]
pub struct NativeTokenizer {
    pub(crate) inner: Tokenizer,
    path: String,
}

fn side(name: Option<&str>, what: &str) -> Outcome<Option<Side>> {
    match name {
        None => Ok(None),
        Some("right") => Ok(Some(Side::Right)),
        Some("left") => Ok(Some(Side::Left)),
        Some(other) => Err(Failure::value(format!(
            "{what} must be \"left\" or \"right\", got {other:?}"
        ))),
    }
}

/// The fields of a batch of encodings, flattened row by row.
#[derive(Default)]
struct Columns {
    rows: usize,
    lens: Vec<usize>,
    input_ids: Vec<i64>,
    token_type_ids: Vec<i64>,
    attention_mask: Vec<i64>,
    special_tokens_mask: Vec<i64>,
    offsets: Vec<i64>,
    mapping: Option<Vec<i64>>,
}

impl Columns {
    fn from(encodings: &[Encoding], mapping: Option<Vec<usize>>, offsets: bool) -> Self {
        let mut c = Columns {
            rows: encodings.len(),
            mapping: mapping.map(|m| m.into_iter().map(|i| i as i64).collect()),
            ..Default::default()
        };
        let wide = |v: &[u32]| v.iter().map(|&x| x as i64).collect::<Vec<_>>();
        for e in encodings {
            c.lens.push(e.input_ids.len());
            c.input_ids.extend(wide(&e.input_ids));
            c.token_type_ids.extend(wide(&e.token_type_ids));
            c.attention_mask.extend(wide(&e.attention_mask));
            c.special_tokens_mask.extend(wide(&e.special_tokens_mask));
            if offsets {
                c.offsets
                    .extend(e.offsets.iter().flat_map(|&(s, t)| [s as i64, t as i64]));
            }
        }
        c
    }

    /// The common length of the rows, when they all have one.
    fn width(&self) -> Option<usize> {
        let first = *self.lens.first()?;
        self.lens.iter().all(|&l| l == first).then_some(first)
    }
}

/// `data` as a `[rows, width, inner...]` array (moved into numpy, not copied) when the rows
/// share a width, else as a list of per-row arrays.
fn column<'py>(
    py: Python<'py>,
    data: Vec<i64>,
    lens: &[usize],
    width: Option<usize>,
    inner: usize,
) -> PyResult<Bound<'py, PyAny>> {
    match width {
        Some(w) => {
            let shape: Vec<usize> = if inner == 1 {
                vec![lens.len(), w]
            } else {
                vec![lens.len(), w, inner]
            };
            Ok(PyArray1::from_vec(py, data).reshape(shape)?.into_any())
        }
        None => {
            let list = PyList::empty(py);
            let mut start = 0;
            for &len in lens {
                let row = data.get(start..start + len * inner).unwrap_or(&[]);
                let array = PyArray1::from_slice(py, row);
                if inner == 1 {
                    list.append(array)?;
                } else {
                    list.append(array.reshape([len, inner])?)?;
                }
                start += len * inner;
            }
            Ok(list.into_any())
        }
    }
}

#[pymethods]
impl NativeTokenizer {
    /// Loads from `path`: `kind` is "auto" (fast when tokenizer.json exists), "fast" or "slow".
    #[new]
    #[pyo3(signature = (path, kind = "auto".to_string()))]
    fn new(py: Python<'_>, path: String, kind: String) -> PyResult<Self> {
        let which: Impl = kind.parse().map_err(Failure::from)?;
        let dir = path.clone();
        let inner = detached(py, move || Ok(Tokenizer::from_dir_with(&dir, which)?))?;
        Ok(NativeTokenizer { inner, path })
    }

    /// The directory it was loaded from.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    /// "fast" or "slow".
    #[getter]
    fn kind(&self) -> &'static str {
        match self.inner.kind() {
            Impl::Fast => "fast",
            _ => "slow",
        }
    }

    /// `model_max_length` from tokenizer_config.json.
    #[getter]
    fn model_max_length(&self) -> usize {
        self.inner.config().model_max_length
    }

    /// "right" or "left".
    #[getter]
    fn padding_side(&self) -> &'static str {
        match self.inner.config().padding_side {
            Side::Left => "left",
            Side::Right => "right",
        }
    }

    /// "right" or "left".
    #[getter]
    fn truncation_side(&self) -> &'static str {
        match self.inner.config().truncation_side {
            Side::Left => "left",
            Side::Right => "right",
        }
    }

    /// Special tokens by role (`cls_token`, `sep_token`, `pad_token`, `unk_token`, `mask_token`,
    /// `bos_token`, `eos_token`).
    fn special_tokens<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = &self.inner.config().special;
        let d = PyDict::new(py);
        for (k, v) in [
            ("cls_token", &s.cls),
            ("sep_token", &s.sep),
            ("pad_token", &s.pad),
            ("unk_token", &s.unk),
            ("mask_token", &s.mask),
            ("bos_token", &s.bos),
            ("eos_token", &s.eos),
        ] {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    /// Encodes texts (or pairs) into a dict of arrays: `[batch, len]` int64 arrays when every
    /// row has the same length (padding makes it so), else lists of 1-D arrays.
    #[pyo3(signature = (
        texts, pairs = None, add_special_tokens = true, max_length = None,
        strategy = "longest_first".to_string(), stride = 0, truncation_side = None,
        padding = "none".to_string(),
        pad_length = None, pad_to_multiple_of = None, padding_side = None,
        return_offsets = false, return_overflowing = false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        pairs: Option<Vec<String>>,
        add_special_tokens: bool,
        max_length: Option<usize>,
        strategy: String,
        stride: usize,
        truncation_side: Option<String>,
        padding: String,
        pad_length: Option<usize>,
        pad_to_multiple_of: Option<usize>,
        padding_side: Option<String>,
        return_offsets: bool,
        return_overflowing: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let config = self.inner.config();
        let truncation = match max_length {
            None => None,
            Some(max_length) => Some(Truncation {
                max_length,
                strategy: strategy
                    .parse::<TruncationStrategy>()
                    .map_err(Failure::from)?,
                stride,
                side: side(truncation_side.as_deref(), "truncation_side")?
                    .unwrap_or(config.truncation_side),
            }),
        };
        let strategy =
            match (padding.as_str(), pad_length) {
                ("none", _) => PaddingStrategy::None,
                ("longest", _) => PaddingStrategy::Longest,
                ("max_length", Some(n)) => PaddingStrategy::MaxLength(n),
                ("max_length", None) => return Err(Failure::value(
                    "padding=\"max_length\" needs max_length (or the tokenizer's model_max_length)",
                )
                .into()),
                (other, _) => {
                    return Err(Failure::value(format!(
                        "padding must be True, False, \"longest\", \"max_length\" or \
                     \"do_not_pad\", got {other:?}"
                    ))
                    .into())
                }
            };
        let opts = EncodeOptions {
            add_special_tokens,
            truncation,
            padding: Padding {
                strategy,
                side: side(padding_side.as_deref(), "padding_side")?.unwrap_or(config.padding_side),
                pad_to_multiple_of,
            },
        };
        if let Some(p) = &pairs {
            if p.len() != texts.len() {
                return Err(Failure::value(format!(
                    "text_pair has {} entries for {} texts",
                    p.len(),
                    texts.len()
                ))
                .into());
            }
        }
        let tokenizer = &self.inner;
        let columns = detached(py, move || {
            let inputs: Vec<(&str, Option<&str>)> = match &pairs {
                Some(p) => texts
                    .iter()
                    .zip(p)
                    .map(|(a, b)| (a.as_str(), Some(b.as_str())))
                    .collect(),
                None => texts.iter().map(|a| (a.as_str(), None)).collect(),
            };
            let mut encodings = tokenizer.encode_batch(&inputs, &opts)?;
            let mapping = if return_overflowing {
                let (flat, mapping) = flatten_overflow(encodings);
                encodings = flat;
                Some(mapping)
            } else {
                None
            };
            Ok(Columns::from(&encodings, mapping, return_offsets))
        })?;
        let out = PyDict::new(py);
        let width = columns.width().or((columns.rows == 0).then_some(0));
        let lens = &columns.lens;
        out.set_item("input_ids", column(py, columns.input_ids, lens, width, 1)?)?;
        out.set_item(
            "token_type_ids",
            column(py, columns.token_type_ids, lens, width, 1)?,
        )?;
        out.set_item(
            "attention_mask",
            column(py, columns.attention_mask, lens, width, 1)?,
        )?;
        out.set_item(
            "special_tokens_mask",
            column(py, columns.special_tokens_mask, lens, width, 1)?,
        )?;
        if return_offsets {
            out.set_item(
                "offset_mapping",
                column(py, columns.offsets, lens, width, 2)?,
            )?;
        }
        if let Some(m) = columns.mapping {
            out.set_item("overflow_to_sample_mapping", PyArray1::from_vec(py, m))?;
        }
        Ok(out)
    }

    /// `tokenize(text)`: the tokens, without special tokens.
    fn tokenize(&self, py: Python<'_>, text: String) -> PyResult<Vec<String>> {
        let tokenizer = &self.inner;
        detached(py, move || Ok(tokenizer.tokenize(&text)?))
    }

    /// Decodes each row of ids.
    #[pyo3(signature = (rows, skip_special_tokens = false))]
    fn decode_batch(
        &self,
        py: Python<'_>,
        rows: Vec<Vec<i64>>,
        skip_special_tokens: bool,
    ) -> PyResult<Vec<String>> {
        let tokenizer = &self.inner;
        detached(py, move || {
            rows.iter()
                .map(|row| {
                    let ids = to_u32(row, "token id")?;
                    Ok(tokenizer.decode(&ids, skip_special_tokens)?)
                })
                .collect()
        })
    }

    /// `convert_ids_to_tokens`.
    fn convert_ids_to_tokens(&self, ids: Vec<i64>) -> PyResult<Vec<String>> {
        let ids = to_u32(&ids, "token id")?;
        let tokens: Outcome<Vec<String>> = ids
            .iter()
            .map(|&i| Ok(self.inner.id_to_token(i)?))
            .collect();
        Ok(tokens?)
    }

    /// The id of a token (vocabulary entry or added token), `None` when it has none.
    fn token_to_id(&self, token: String) -> Option<u32> {
        self.inner.token_to_id(&token)
    }

    /// `convert_tokens_to_string`.
    fn convert_tokens_to_string(&self, tokens: Vec<String>) -> PyResult<String> {
        Ok(self
            .inner
            .convert_tokens_to_string(&tokens)
            .map_err(Failure::from)?)
    }
}

/// Ids from Python ints, each checked to be a valid u32.
pub fn to_u32(values: &[i64], what: &str) -> Outcome<Vec<u32>> {
    values
        .iter()
        .map(|&v| {
            u32::try_from(v)
                .map_err(|_| Failure::value(format!("{what} {v} is out of range (0..2^32)")))
        })
        .collect()
}
