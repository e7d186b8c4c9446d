//! DeBERTa-v2/v3 in Rust on candle, with the numbers of HuggingFace transformers.
//!
//! ```no_run
//! use candle_core::{Device, Tensor};
//! use deberta::{DebertaV2Model, ForwardOptions, ModelInput};
//!
//! # fn main() -> deberta::Result<()> {
//! let device = Device::Cpu;
//! let (model, report) = DebertaV2Model::from_pretrained("path/to/deberta-v3-base", &device)?;
//! assert!(report.unexpected.is_empty());
//! let ids = Tensor::new(&[[1u32, 2345, 2]], &device)?;
//! let out = model.forward(&ModelInput::from_ids(ids), ForwardOptions::default())?;
//! println!("{:?}", out.last_hidden_state.dims()); // [1, 3, 768]
//! # Ok(())
//! # }
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod activation;
pub mod config;
mod cpu;
pub mod dropout;
mod error;
pub mod export;
pub mod heads;
pub mod limits;
pub mod loss;
mod mmap_safetensors;
pub mod model;
pub mod nn;
pub mod params;
pub mod plan;
pub mod pretrained;
pub mod pth;
pub mod relative_position;
pub mod tensor_json;
pub mod tf;
mod train_ops;
pub mod weights;

pub use activation::Activation;
pub use config::{DebertaV2Config, NormRelEbd, PosAttType, ProblemType};
pub use cpu::{
    KernelTuning, ShapeTuning, CACHE_FILE as KERNEL_CACHE_FILE, MIN_TUNED_WEIGHT, TUNE_BUDGET,
};
pub use deberta_kernels::tune::{
    f32_candidates, F32Choice, F32Kernel, KernelTiming, CLASS_ROWS as KERNEL_CLASS_ROWS,
};
pub use dropout::DropoutRng;
pub use error::{candle_message as error_message_of_candle, Error, Result};
pub use heads::{
    DebertaV2ForMaskedLM, DebertaV2ForMultipleChoice, DebertaV2ForQuestionAnswering,
    DebertaV2ForSequenceClassification, DebertaV2ForTokenClassification, HeadKind, Labels,
    TaskModel, TaskOutput,
};
pub use model::{
    BaseModelOutput, DebertaV2Model, ForwardOptions, LinearFormat, ModelInput, PackedOutput,
    Sequence,
};
pub use params::{Param, Parameters};
pub use plan::{
    Avx512Mode, Backend, ExecutionPlan, KernelOptions, KernelPlan, LoadOptions, PathChoice,
    TuneMode,
};
pub use weights::{Checkpoint, LoadReport, WeightFormat, Weights};
