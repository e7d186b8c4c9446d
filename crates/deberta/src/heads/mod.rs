//! The task heads, each owning one backbone, and [`TaskModel`], which picks a head from
//! `config.json`'s `architectures` (transformers' `DebertaV2PreTrainedModel` behaviour: any head
//! loads from any DeBERTa-v2 checkpoint, missing head weights are initialised and reported).

pub mod masked_lm;
pub mod multiple_choice;
pub mod pooler;
pub mod question_answering;
pub mod sequence_classification;
mod sequences;
pub mod token_classification;

use std::path::Path;
use std::str::FromStr;

use candle_core::{Device, Tensor};

use crate::config::DebertaV2Config;
use crate::dropout::DropoutRng;
use crate::model::{BaseModelOutput, DebertaV2Model, ForwardOptions, LinearFormat, ModelInput};
use crate::params::Parameters;
use crate::plan::{ExecutionPlan, LoadOptions};
use crate::pretrained::{ignored_by_all, load_config, load_with, Loaded};
use crate::weights::{Checkpoint, LoadReport, Weights};
use crate::{Error, Result};
pub use masked_lm::{DebertaV2ForMaskedLM, MlmLayout};
pub use multiple_choice::DebertaV2ForMultipleChoice;
pub use question_answering::DebertaV2ForQuestionAnswering;
pub use sequence_classification::DebertaV2ForSequenceClassification;
pub use token_classification::DebertaV2ForTokenClassification;

/// The outputs of any head, named as transformers' output fields.
#[derive(Debug, Clone, Default)]
pub struct TaskOutput {
    /// Scalar loss, when labels were given.
    pub loss: Option<Tensor>,
    /// `[B, L, H]` for the bare model.
    pub last_hidden_state: Option<Tensor>,
    /// Masked LM `[B, L, vocab]`, sequence `[B, labels]`, token `[B, L, labels]`, choice `[B, C]`.
    pub logits: Option<Tensor>,
    /// Question answering `[B, L]`.
    pub start_logits: Option<Tensor>,
    /// Question answering `[B, L]`.
    pub end_logits: Option<Tensor>,
    pub hidden_states: Option<Vec<Tensor>>,
    pub attentions: Option<Vec<Tensor>>,
}

impl TaskOutput {
    pub(crate) fn logits(logits: Tensor, loss: Option<Tensor>, out: BaseModelOutput) -> Self {
        Self {
            loss,
            logits: Some(logits),
            hidden_states: out.hidden_states,
            attentions: out.attentions,
            ..Default::default()
        }
    }
}

/// `(B, L)` of a 2-D input.
pub(crate) fn model_input_dims(input: &ModelInput) -> Result<(usize, usize)> {
    input.input_ids.dims2().map_err(|_| {
        Error::input(format!(
            "input_ids must be [batch, len], got {:?}",
            input.input_ids.dims()
        ))
    })
}

/// Cross-entropy of per-token `logits [B, L, C]` against `labels [B, L]` (-100 ignored), as the
/// masked-LM and token-classification heads compute it.
pub(crate) fn per_token_loss(
    logits: &Tensor,
    labels: &Tensor,
    input: &ModelInput,
) -> Result<Tensor> {
    let (b, l) = model_input_dims(input)?;
    if labels.dims() != [b, l] {
        return Err(Error::input(format!(
            "labels must be [{b}, {l}], got {:?}",
            labels.dims()
        )));
    }
    let flat = logits.flatten_to(candle_core::D::Minus2)?; // [B*L, C]
    crate::loss::cross_entropy(
        &flat,
        &crate::loss::label_ids(labels)?,
        crate::loss::IGNORE_INDEX,
        "labels",
    )
}

/// The model classes, by transformers class name and by CLI name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadKind {
    Base,
    MaskedLm,
    SequenceClassification,
    TokenClassification,
    QuestionAnswering,
    MultipleChoice,
}

const KINDS: [(HeadKind, &str, &str); 6] = [
    (HeadKind::Base, "DebertaV2Model", "base"),
    (HeadKind::MaskedLm, "DebertaV2ForMaskedLM", "masked-lm"),
    (
        HeadKind::SequenceClassification,
        "DebertaV2ForSequenceClassification",
        "sequence-classification",
    ),
    (
        HeadKind::TokenClassification,
        "DebertaV2ForTokenClassification",
        "token-classification",
    ),
    (
        HeadKind::QuestionAnswering,
        "DebertaV2ForQuestionAnswering",
        "question-answering",
    ),
    (
        HeadKind::MultipleChoice,
        "DebertaV2ForMultipleChoice",
        "multiple-choice",
    ),
];

impl HeadKind {
    /// transformers' class name (`DebertaV2ForMaskedLM`, ...).
    pub fn class_name(self) -> &'static str {
        KINDS
            .iter()
            .find(|k| k.0 == self)
            .map_or("DebertaV2Model", |k| k.1)
    }

    /// The CLI name (`masked-lm`, ...).
    pub fn cli_name(self) -> &'static str {
        KINDS.iter().find(|k| k.0 == self).map_or("base", |k| k.2)
    }

    /// The head `config.json`'s first `architectures` entry names; the bare model when absent.
    pub fn from_config(cfg: &DebertaV2Config) -> Result<Self> {
        let Some(arch) = cfg.architectures.as_ref().and_then(|a| a.first()) else {
            return Ok(HeadKind::Base);
        };
        KINDS
            .iter()
            .find(|k| k.1 == arch)
            .map(|k| k.0)
            .ok_or_else(|| {
                let known: Vec<&str> = KINDS.iter().map(|k| k.1).collect();
                Error::config(
                    "architectures",
                    format!("`{arch}` is not one of {}", known.join(", ")),
                )
            })
    }
}

impl FromStr for HeadKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        KINDS
            .iter()
            .find(|k| k.2 == s || k.1 == s)
            .map(|k| k.0)
            .ok_or_else(|| {
                let known: Vec<&str> = KINDS.iter().map(|k| k.2).collect();
                Error::input(format!(
                    "unknown head `{s}` (expected one of {})",
                    known.join(", ")
                ))
            })
    }
}

/// The labels a forward pass may take.
#[derive(Debug, Clone, Copy, Default)]
pub struct Labels<'a> {
    pub labels: Option<&'a Tensor>,
    pub start_positions: Option<&'a Tensor>,
    pub end_positions: Option<&'a Tensor>,
}

enum AnyHead {
    Base(DebertaV2Model),
    MaskedLm(DebertaV2ForMaskedLM),
    SequenceClassification(DebertaV2ForSequenceClassification),
    TokenClassification(DebertaV2ForTokenClassification),
    QuestionAnswering(DebertaV2ForQuestionAnswering),
    MultipleChoice(DebertaV2ForMultipleChoice),
}

/// Any DeBERTa-v2 model class, loaded from a checkpoint directory, with its parameters kept by
/// name for training and [`TaskModel::save_pretrained`].
pub struct TaskModel {
    kind: HeadKind,
    head: AnyHead,
    config: DebertaV2Config,
    loaded: Loaded<()>,
}

impl TaskModel {
    fn backbone(&self) -> &DebertaV2Model {
        match &self.head {
            AnyHead::Base(m) => m,
            AnyHead::MaskedLm(m) => m.deberta(),
            AnyHead::SequenceClassification(m) => m.deberta(),
            AnyHead::TokenClassification(m) => m.deberta(),
            AnyHead::QuestionAnswering(m) => m.deberta(),
            AnyHead::MultipleChoice(m) => m.deberta(),
        }
    }

    fn backbone_mut(&mut self) -> &mut DebertaV2Model {
        match &mut self.head {
            AnyHead::Base(m) => m,
            AnyHead::MaskedLm(m) => m.deberta_mut(),
            AnyHead::SequenceClassification(m) => m.deberta_mut(),
            AnyHead::TokenClassification(m) => m.deberta_mut(),
            AnyHead::QuestionAnswering(m) => m.deberta_mut(),
            AnyHead::MultipleChoice(m) => m.deberta_mut(),
        }
    }

    /// The device the parameters live on.
    pub fn device(&self) -> &Device {
        self.backbone().device()
    }

    /// The execution plan the next forward pass runs (path, kernels, format, dtype).
    pub fn plan(&self) -> &ExecutionPlan {
        self.backbone().plan()
    }

    /// Builds the backbone's fused weights now; see [`DebertaV2Model::prepare`].
    pub fn prepare(&self) -> Result<()> {
        self.backbone().prepare()
    }

    /// The backbone's measured f32 kernel choice; see [`DebertaV2Model::kernel_tuning`].
    pub fn kernel_tuning(&self) -> Result<Option<crate::KernelTuning>> {
        self.backbone().kernel_tuning()
    }

    /// Every parameter by transformers name (tied ones once). Changing one through
    /// [`Parameters::set`] changes what the forward pass computes and what
    /// [`Self::save_pretrained`] writes.
    pub fn parameters(&self) -> &Parameters {
        &self.loaded.parameters
    }

    /// Training mode (dropout from `rng`, gradients to the parameters, the candle path).
    pub fn train(&mut self, rng: DropoutRng) -> Result<()> {
        self.backbone_mut().train(rng)
    }

    /// Inference mode (the default).
    pub fn eval(&mut self) -> Result<()> {
        self.backbone_mut().eval()
    }

    /// Switches the backbone's encoder linear layers to dynamic int8 (CPU only); see
    /// [`DebertaV2Model::quantize_int8`].
    pub fn quantize_int8(&mut self) -> Result<()> {
        self.set_linear_format(LinearFormat::Int8)
    }

    /// The backbone's encoder linear layers in `format` (CPU only); see
    /// [`DebertaV2Model::set_linear_format`].
    pub fn set_linear_format(&mut self, format: LinearFormat) -> Result<()> {
        self.backbone_mut().set_linear_format(format)
    }

    /// Loads `kind` (or the head `config.json` names, when `None`) from a checkpoint directory.
    pub fn from_pretrained(
        dir: impl AsRef<Path>,
        kind: Option<HeadKind>,
        device: &Device,
    ) -> Result<Self> {
        Self::from_pretrained_with(dir, kind, device, LoadOptions::default())
    }

    /// [`Self::from_pretrained`] with a dtype and kernel options.
    pub fn from_pretrained_with(
        dir: impl AsRef<Path>,
        kind: Option<HeadKind>,
        device: &Device,
        options: LoadOptions,
    ) -> Result<Self> {
        let config = load_config(&dir)?;
        let checkpoint = Checkpoint::from_dir(&dir)?;
        Self::from_checkpoint_with(&checkpoint, config, kind, device, options)
    }

    /// Loads from an opened checkpoint.
    pub fn from_checkpoint(
        checkpoint: &Checkpoint,
        config: DebertaV2Config,
        kind: Option<HeadKind>,
        device: &Device,
    ) -> Result<Self> {
        Self::from_checkpoint_with(checkpoint, config, kind, device, LoadOptions::default())
    }

    /// [`Self::from_checkpoint`] with a dtype and kernel options.
    pub fn from_checkpoint_with(
        checkpoint: &Checkpoint,
        config: DebertaV2Config,
        kind: Option<HeadKind>,
        device: &Device,
        options: LoadOptions,
    ) -> Result<Self> {
        let kind = match kind {
            Some(k) => k,
            None => HeadKind::from_config(&config)?,
        };
        let ignore = |name: &str| match kind {
            HeadKind::MaskedLm => masked_lm::ignored(name),
            _ => ignored_by_all(name),
        };
        let loaded = load_with(checkpoint, &config, (device, options), ignore, |w, cfg| {
            build(kind, w, cfg)
        })?;
        let Loaded {
            model: head,
            parameters,
            report,
        } = loaded;
        Ok(Self {
            kind,
            head,
            config,
            loaded: Loaded {
                model: (),
                parameters,
                report,
            },
        })
    }

    /// The model class.
    pub fn kind(&self) -> HeadKind {
        self.kind
    }

    /// The config the model was built from.
    pub fn config(&self) -> &DebertaV2Config {
        &self.config
    }

    /// What the load did with the checkpoint's tensors.
    pub fn report(&self) -> &LoadReport {
        &self.loaded.report
    }

    /// Runs the model; labels are checked against the head.
    pub fn forward(
        &self,
        input: &ModelInput,
        labels: Labels,
        opts: ForwardOptions,
    ) -> Result<TaskOutput> {
        let has_positions = labels.start_positions.is_some() || labels.end_positions.is_some();
        if has_positions && self.kind != HeadKind::QuestionAnswering {
            return Err(Error::input(
                "start_positions/end_positions are for question answering only",
            ));
        }
        match &self.head {
            AnyHead::Base(m) => {
                if labels.labels.is_some() {
                    return Err(Error::input(
                        "the base model takes no labels; choose a head",
                    ));
                }
                let out = m.forward(input, opts)?;
                Ok(TaskOutput {
                    last_hidden_state: Some(out.last_hidden_state),
                    hidden_states: out.hidden_states,
                    attentions: out.attentions,
                    ..Default::default()
                })
            }
            AnyHead::MaskedLm(m) => m.forward(input, labels.labels, opts),
            AnyHead::SequenceClassification(m) => m.forward(input, labels.labels, opts),
            AnyHead::TokenClassification(m) => m.forward(input, labels.labels, opts),
            AnyHead::MultipleChoice(m) => m.forward(input, labels.labels, opts),
            AnyHead::QuestionAnswering(m) => {
                if labels.labels.is_some() {
                    return Err(Error::input(
                        "question answering takes start_positions and end_positions, not labels",
                    ));
                }
                let positions = match (labels.start_positions, labels.end_positions) {
                    (Some(s), Some(e)) => Some((s, e)),
                    (None, None) => None,
                    _ => return Err(Error::input("give both start_positions and end_positions")),
                };
                m.forward(input, positions, opts)
            }
        }
    }

    /// Every weight's current value, by transformers (PyTorch) name.
    pub fn state_dict(&self) -> std::collections::BTreeMap<String, Tensor> {
        self.loaded.parameters.state_dict()
    }

    /// The config to save with the weights: `architectures` names this class and `legacy`
    /// names the masked-LM head layout actually loaded.
    pub fn saved_config(&self) -> DebertaV2Config {
        let mut config = self.config.clone();
        config.architectures = Some(vec![self.kind.class_name().to_string()]);
        if let AnyHead::MaskedLm(m) = &self.head {
            config.legacy = m.layout() == MlmLayout::Legacy;
        }
        config
    }

    /// Writes `config.json` and `model.safetensors` as transformers' `save_pretrained` does, so
    /// that transformers loads them back with no missing or unexpected keys.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        self.saved_config().save(dir)?;
        let path = dir.join("model.safetensors");
        let tensors: std::collections::HashMap<String, Tensor> =
            self.state_dict().into_iter().collect();
        candle_core::safetensors::save(&tensors, &path).map_err(|e| Error::weight_file(&path, e))
    }
}

fn build(kind: HeadKind, w: &Weights, cfg: &DebertaV2Config) -> Result<AnyHead> {
    Ok(match kind {
        HeadKind::Base => AnyHead::Base(DebertaV2Model::load(&w.backbone_saved_as(""), cfg)?),
        HeadKind::MaskedLm => AnyHead::MaskedLm(DebertaV2ForMaskedLM::load(w, cfg)?),
        HeadKind::SequenceClassification => {
            AnyHead::SequenceClassification(DebertaV2ForSequenceClassification::load(w, cfg)?)
        }
        HeadKind::TokenClassification => {
            AnyHead::TokenClassification(DebertaV2ForTokenClassification::load(w, cfg)?)
        }
        HeadKind::QuestionAnswering => {
            AnyHead::QuestionAnswering(DebertaV2ForQuestionAnswering::load(w, cfg)?)
        }
        HeadKind::MultipleChoice => {
            AnyHead::MultipleChoice(DebertaV2ForMultipleChoice::load(w, cfg)?)
        }
    })
}
