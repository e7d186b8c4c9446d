//! Fill-mask: the most likely tokens for each `[MASK]`.
//!
//! Mirrors transformers' `FillMaskPipeline`:
//! <https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/pipelines/fill_mask.py>

use std::path::Path;

use candle_core::Device;
use deberta::HeadKind;
use deberta_tokenizer::EncodeOptions;
use serde::{Deserialize, Serialize};

use crate::engine::{run_items, Engine, Feature, Staged, UnitOutput};
use crate::error::{Error, Result};
use crate::util::{non_empty, softmax, special_id, token_to_id};

/// Options of [`FillMask`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FillMaskOptions {
    /// Predictions per mask (capped at the number of targets).
    pub top_k: usize,
    /// Restrict predictions to these tokens; a target that is not one vocabulary entry is
    /// replaced by the first token of its tokenization, as transformers does.
    pub targets: Option<Vec<String>>,
}

impl Default for FillMaskOptions {
    fn default() -> Self {
        FillMaskOptions {
            top_k: 5,
            targets: None,
        }
    }
}

/// One prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FillMaskPrediction {
    /// Probability of the token at this mask.
    pub score: f64,
    /// Token id.
    pub token: u32,
    /// The token, decoded.
    pub token_str: String,
    /// The input with this token in place of the mask.
    pub sequence: String,
}

/// The predictions of one input: a list for a single mask, a list per mask otherwise
/// (transformers' output shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FillMaskOutput {
    /// One `[MASK]`.
    Single(Vec<FillMaskPrediction>),
    /// Several `[MASK]`s, in text order.
    Multiple(Vec<Vec<FillMaskPrediction>>),
}

/// The fill-mask pipeline.
pub struct FillMask {
    engine: Engine,
    mask_id: u32,
}

/// A text tokenized, with its mask positions, for [`Staged::finish`].
pub struct Prepared {
    feature: Feature,
    masks: Vec<usize>,
    targets: Option<Vec<u32>>,
    top_k: usize,
}

impl FillMask {
    /// Loads a masked-LM checkpoint directory (model and tokenizer).
    pub fn from_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::new(Engine::from_dir(dir, HeadKind::MaskedLm, device)?)
    }

    /// Uses a loaded engine (its model must be a masked LM).
    pub fn new(engine: Engine) -> Result<Self> {
        let name = engine.tokenizer().config().special.mask.clone();
        let mask_id = special_id(engine.tokenizer(), &name, "mask")?;
        Ok(FillMask { engine, mask_id })
    }

    /// The engine (model, tokenizer, batch settings).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Predicts the masks of one text.
    pub fn run(&self, text: &str, options: &FillMaskOptions) -> Result<FillMaskOutput> {
        self.run_batch(&[text], options)
            .pop()
            .unwrap_or_else(|| Err(Error::input("text", "no input")))
    }

    /// Predicts the masks of many texts; one result per text, in order.
    pub fn run_batch(
        &self,
        texts: &[&str],
        options: &FillMaskOptions,
    ) -> Vec<Result<FillMaskOutput>> {
        run_items(
            &self.engine,
            self.prepare_texts(texts, options),
            <Self as Staged>::units,
            |p, out| self.post(p, out),
        )
    }

    fn prepare_texts(&self, texts: &[&str], options: &FillMaskOptions) -> Vec<Result<Prepared>> {
        let targets = options
            .targets
            .as_deref()
            .map(|t| self.target_ids(t))
            .transpose();
        texts
            .iter()
            .map(|t| match &targets {
                Ok(ids) => self.prepare(t, ids.clone(), options.top_k),
                Err(e) => Err(Error::option("targets", e.to_string())),
            })
            .collect()
    }

    fn prepare(&self, text: &str, targets: Option<Vec<u32>>, top_k: usize) -> Result<Prepared> {
        non_empty("text", text)?;
        let opts = EncodeOptions {
            truncation: crate::text_classification::truncation(&self.engine, None),
            ..Default::default()
        };
        let enc = self.engine.tokenizer().encode(text, None, &opts)?;
        let masks: Vec<usize> = (0..enc.input_ids.len())
            .filter(|&i| enc.input_ids.get(i) == Some(&self.mask_id))
            .collect();
        if masks.is_empty() {
            let name = &self.engine.tokenizer().config().special.mask;
            return Err(Error::input(
                "text",
                format!("no mask token ({name}) found"),
            ));
        }
        let top_k = targets.as_ref().map_or(top_k, |t| top_k.min(t.len()));
        Ok(Prepared {
            feature: Feature::from(&enc),
            masks,
            targets,
            top_k,
        })
    }

    /// `get_target_ids`: vocabulary entries, else the first token of the target's encoding.
    fn target_ids(&self, targets: &[String]) -> Result<Vec<u32>> {
        let tok = self.engine.tokenizer();
        let mut ids = Vec::new();
        for target in targets {
            let id = match token_to_id(tok, target) {
                Some(id) => Some(id),
                None => tok.encode_raw(target)?.ids.first().copied(),
            };
            match id {
                Some(id) => ids.push(id),
                None => tracing::warn!("target `{target}` encodes to nothing; ignored"),
            }
        }
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Err(Error::option(
                "targets",
                "at least one target must be provided",
            ));
        }
        Ok(ids)
    }

    fn post(&self, p: &Prepared, out: &[UnitOutput]) -> Result<FillMaskOutput> {
        let out = out
            .first()
            .ok_or_else(|| Error::Model("no output".into()))?;
        let single = p.masks.len() == 1;
        let mut rows = Vec::with_capacity(p.masks.len());
        for &pos in &p.masks {
            let probs = softmax(out.row(pos));
            let candidates: Vec<(u32, f64)> = match &p.targets {
                Some(t) => t.iter().map(|&id| (id, prob(&probs, id))).collect(),
                None => (0..probs.len() as u32)
                    .map(|id| (id, prob(&probs, id)))
                    .collect(),
            };
            let best = top_k(candidates, p.top_k);
            let row = best
                .into_iter()
                .map(|(id, score)| self.prediction(&p.feature.ids, pos, id, score, single))
                .collect::<Result<Vec<_>>>()?;
            rows.push(row);
        }
        Ok(match (single, rows.pop()) {
            (true, Some(row)) => FillMaskOutput::Single(row),
            (_, last) => {
                rows.extend(last);
                FillMaskOutput::Multiple(rows)
            }
        })
    }

    fn prediction(
        &self,
        ids: &[u32],
        pos: usize,
        token: u32,
        score: f64,
        single: bool,
    ) -> Result<FillMaskPrediction> {
        let tok = self.engine.tokenizer();
        let pad = tok.special_ids().pad.0;
        let filled: Vec<u32> = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| if i == pos { token } else { id })
            .filter(|&id| id != pad)
            .collect();
        Ok(FillMaskPrediction {
            score,
            token,
            token_str: tok.decode(&[token], false)?,
            sequence: tok.decode(&filled, single)?,
        })
    }
}

impl Staged for FillMask {
    type Input = String;
    type Options = FillMaskOptions;
    type Prepared = Prepared;
    type Output = FillMaskOutput;

    fn engine(&self) -> &Engine {
        &self.engine
    }

    fn prepare(&self, texts: &[String], options: &FillMaskOptions) -> Vec<Result<Prepared>> {
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        self.prepare_texts(&texts, options)
    }

    fn units(p: &Prepared) -> Vec<Vec<Feature>> {
        vec![vec![p.feature.clone()]]
    }

    fn finish(
        &self,
        p: &Prepared,
        out: &[UnitOutput],
        _: &FillMaskOptions,
    ) -> Result<FillMaskOutput> {
        self.post(p, out)
    }
}

fn prob(probs: &[f64], id: u32) -> f64 {
    probs.get(id as usize).copied().unwrap_or(0.0)
}

/// The `k` best `(id, score)` pairs, best first (ties: lower id first).
fn top_k(mut candidates: Vec<(u32, f64)>, k: usize) -> Vec<(u32, f64)> {
    let k = k.min(candidates.len());
    if k == 0 {
        return Vec::new();
    }
    let cmp = |a: &(u32, f64), b: &(u32, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if k < candidates.len() {
        candidates.select_nth_unstable_by(k - 1, cmp);
        candidates.truncate(k);
    }
    candidates.sort_by(cmp);
    candidates
}
