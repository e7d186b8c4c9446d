//! The execution plan: which implementation runs the encoder, chosen once when a model is
//! loaded (or its linear format or training mode is set), from the device, the compute dtype
//! and typed options, and logged once.
//!
//! - [`Backend::Candle`]: candle tensor ops, on any device and dtype, differentiable (training
//!   runs here).
//! - [`Backend::CpuFused`]: the fused CPU f32 path (`crate::cpu` on the `deberta-kernels` GEMMs
//!   and row passes), inference only, with a [`KernelPlan`] holding the CPU features detected
//!   once and the kernel switches.
//!
//! Asking for what the chosen path cannot do (int8 on the candle path, the fused path on CUDA or
//! in bf16, training with int8 weights) is an [`Error::Unsupported`] naming both.

use std::fmt;

use candle_core::{DType, Device};

pub use crate::cpu::TuneMode;
use crate::model::LinearFormat;
use crate::{Error, Result};
pub use deberta_kernels::{Avx512Mode, CpuFeatures, KernelPlan};

/// Which implementation to run, as asked by the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathChoice {
    /// The fused CPU path where it can run (CPU, f32), else candle.
    #[default]
    Auto,
    /// Candle ops everywhere (to compare, or for a device or dtype the fused path lacks).
    Candle,
    /// The fused CPU path, or an error where it cannot run.
    CpuFused,
}

/// Kernel and path options of a load (the CLI fills them from its flags and the `DEBERTA_CPU_*`
/// environment variables through [`KernelOptions::from_vars`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelOptions {
    pub path: PathChoice,
    /// Whether the fused path uses the AVX-512 linear-layer kernels.
    pub avx512: Avx512Mode,
    /// Whether f32 linear layers run on our packed kernels (`false`: the `gemm` crate).
    pub packed: bool,
    /// How the encoder's linear layers are stored and multiplied.
    pub linear_format: LinearFormat,
    /// Whether the fused path's f32 kernels are chosen by measurement (and cached).
    pub tune: TuneMode,
    /// Whether int8 models multiply their attention products in int8 too (default `false`:
    /// in f32). On the AVX2 EPYC they measured no faster and moved real-text logits more
    /// (`benchmarks/RESULTS.md`), so they are opt-in.
    pub int8_attention: bool,
}

impl Default for KernelOptions {
    fn default() -> Self {
        Self {
            path: PathChoice::Auto,
            avx512: Avx512Mode::Auto,
            packed: true,
            linear_format: LinearFormat::F32,
            tune: TuneMode::default(),
            int8_attention: false,
        }
    }
}

impl KernelOptions {
    /// Options from `DEBERTA_CPU_FAST=0` (candle path), `DEBERTA_CPU_AVX512=0|portable`,
    /// `DEBERTA_CPU_PACKED=0`, `DEBERTA_CPU_TUNE=0|fresh` (no measured kernel choice, or a
    /// new measurement whatever the cache holds) and `DEBERTA_INT8_ATTENTION=1` (int8 models
    /// multiply their attention products in int8 too), read through `var` (the CLI passes
    /// `std::env::var`).
    /// Unknown values are errors naming the variable.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut opts = Self::default();
        let bad = |name: &str, value: &str, allowed: &str| {
            Error::input(format!("{name}={value}: expected {allowed}"))
        };
        if let Some(v) = var("DEBERTA_CPU_FAST") {
            opts.path = match v.as_str() {
                "0" => PathChoice::Candle,
                "1" | "" => PathChoice::Auto,
                _ => return Err(bad("DEBERTA_CPU_FAST", &v, "0 or 1")),
            };
        }
        if let Some(v) = var("DEBERTA_CPU_AVX512") {
            opts.avx512 = match v.as_str() {
                "0" => Avx512Mode::Off,
                "portable" => Avx512Mode::Portable,
                "1" | "" => Avx512Mode::Auto,
                _ => return Err(bad("DEBERTA_CPU_AVX512", &v, "0, 1 or portable")),
            };
        }
        if let Some(v) = var("DEBERTA_CPU_PACKED") {
            opts.packed = match v.as_str() {
                "0" => false,
                "1" | "" => true,
                _ => return Err(bad("DEBERTA_CPU_PACKED", &v, "0 or 1")),
            };
        }
        if let Some(v) = var("DEBERTA_CPU_TUNE") {
            opts.tune = match v.as_str() {
                "0" => TuneMode::Off,
                "1" | "" => TuneMode::Cached,
                "fresh" => TuneMode::Fresh,
                _ => return Err(bad("DEBERTA_CPU_TUNE", &v, "0, 1 or fresh")),
            };
        }
        if let Some(v) = var("DEBERTA_INT8_ATTENTION") {
            opts.int8_attention = match v.as_str() {
                "0" => false,
                "1" | "" => true,
                _ => return Err(bad("DEBERTA_INT8_ATTENTION", &v, "0 or 1")),
            };
        }
        Ok(opts)
    }
}

/// Options of a model load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadOptions {
    /// The dtype parameters are stored and computed in (`None`: f32). f16/bf16 run on the
    /// candle path.
    pub dtype: Option<DType>,
    pub kernels: KernelOptions,
}

/// The implementation that runs the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Candle,
    CpuFused(KernelPlan),
}

/// The path chosen for a model, with what it was chosen from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutionPlan {
    /// The path inference runs on (training always runs on candle: [`Self::backend`]).
    inference: Backend,
    dtype: DType,
    training: bool,
    options: KernelOptions,
}

impl ExecutionPlan {
    /// Chooses the path for `device` and `dtype`; an error names an impossible request.
    pub fn choose(device: &Device, dtype: DType, options: KernelOptions) -> Result<Self> {
        let fused_blocker = fused_blocker(device, dtype);
        let inference = match (options.path, &fused_blocker) {
            (PathChoice::Candle, _) | (PathChoice::Auto, Some(_)) => Backend::Candle,
            (PathChoice::CpuFused, Some(why)) => {
                return Err(Error::unsupported("the fused CPU path", why.clone()))
            }
            (_, None) => Backend::CpuFused(KernelPlan {
                int8_attention: options.int8_attention,
                ..KernelPlan::new(CpuFeatures::detect(), options.avx512, options.packed)
            }),
        };
        let format = options.linear_format;
        if format != LinearFormat::F32 && inference == Backend::Candle {
            let why = match fused_blocker {
                Some(why) => why,
                None => "the candle path was chosen (DEBERTA_CPU_FAST=0 or PathChoice::Candle)"
                    .to_string(),
            };
            return Err(Error::unsupported(
                format!("the {format} linear-layer format"),
                format!("it runs on the fused CPU path only, and {why}"),
            ));
        }
        let plan = Self {
            inference,
            dtype,
            training: false,
            options,
        };
        tracing::info!(plan = %plan, "execution plan");
        Ok(plan)
    }

    /// The same plan with another linear format (an error where the path cannot run it).
    pub fn with_linear_format(&self, format: LinearFormat, device: &Device) -> Result<Self> {
        if self.training && format != LinearFormat::F32 {
            return Err(Error::unsupported(
                format!("the {format} linear-layer format"),
                "the model is in training mode, which computes f32 (or the load dtype) weights",
            ));
        }
        let options = KernelOptions {
            linear_format: format,
            ..self.options
        };
        Self::choose(device, self.dtype, options)
    }

    /// The same plan in training mode (candle path: the fused path has no backward) or back in
    /// inference.
    pub fn with_training(&self, training: bool) -> Result<Self> {
        if training && self.linear_format() != LinearFormat::F32 {
            return Err(Error::unsupported(
                "training",
                format!(
                    "the encoder's linear layers are {} (training needs the f32 parameters; set \
                     LinearFormat::F32 first)",
                    self.linear_format()
                ),
            ));
        }
        let plan = Self { training, ..*self };
        if plan.backend() != self.backend() {
            tracing::info!(plan = %plan, "execution plan");
        }
        Ok(plan)
    }

    /// The implementation the next forward pass runs.
    pub fn backend(&self) -> Backend {
        if self.training {
            Backend::Candle
        } else {
            self.inference
        }
    }

    /// Whether the fused path measures its f32 kernels.
    pub fn tune_mode(&self) -> TuneMode {
        self.options.tune
    }

    pub fn linear_format(&self) -> LinearFormat {
        self.options.linear_format
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn training(&self) -> bool {
        self.training
    }

    /// `candle` or `cpu-fused` (reports).
    pub fn path_name(&self) -> &'static str {
        match self.backend() {
            Backend::Candle => "candle",
            Backend::CpuFused(_) => "cpu-fused",
        }
    }

    /// The linear-layer kernel the plan runs (reports): `candle` on the candle path.
    pub fn linear_kernel(&self) -> &'static str {
        match self.backend() {
            Backend::Candle => "candle",
            Backend::CpuFused(k) => k.linear_kernel(self.linear_format()),
        }
    }
}

impl fmt::Display for ExecutionPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "path={} dtype={:?} linear_format={} linear_kernel={} threads={}{}",
            self.path_name(),
            self.dtype,
            self.linear_format(),
            self.linear_kernel(),
            candle_core::utils::get_num_threads(),
            if self.training { " training" } else { "" }
        )?;
        if let Backend::CpuFused(k) = self.backend() {
            write!(f, " kernels=[{k}]")?;
        }
        Ok(())
    }
}

/// Why the fused path cannot run on `device` / `dtype`, if it cannot.
fn fused_blocker(device: &Device, dtype: DType) -> Option<String> {
    if !device.is_cpu() {
        return Some(format!(
            "it runs on the CPU only and the model is on {device:?}"
        ));
    }
    if dtype != DType::F32 {
        return Some(format!(
            "it computes in f32 only and the model's dtype is {dtype:?}"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_on_the_candle_path_is_an_error_naming_both() {
        let options = KernelOptions {
            path: PathChoice::Candle,
            linear_format: LinearFormat::Int8,
            ..Default::default()
        };
        let err = ExecutionPlan::choose(&Device::Cpu, DType::F32, options).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("int8") && msg.contains("candle path"), "{msg}");
    }

    #[test]
    fn bf16_compute_cannot_take_the_fused_path() {
        let options = KernelOptions {
            path: PathChoice::CpuFused,
            ..Default::default()
        };
        let err = ExecutionPlan::choose(&Device::Cpu, DType::BF16, options).unwrap_err();
        assert!(err.to_string().contains("fused CPU path"), "{err}");
        let auto = ExecutionPlan::choose(&Device::Cpu, DType::BF16, KernelOptions::default());
        assert_eq!(auto.unwrap().path_name(), "candle");
    }

    #[test]
    fn training_runs_on_candle_and_refuses_int8() {
        let plan =
            ExecutionPlan::choose(&Device::Cpu, DType::F32, KernelOptions::default()).unwrap();
        assert_eq!(plan.path_name(), "cpu-fused");
        let train = plan.with_training(true).unwrap();
        assert_eq!(train.path_name(), "candle");
        assert_eq!(train.with_training(false).unwrap().path_name(), "cpu-fused");
        let int8 = plan
            .with_linear_format(LinearFormat::Int8, &Device::Cpu)
            .unwrap();
        assert!(int8.with_training(true).is_err());
    }

    #[test]
    fn env_values_are_parsed_once_and_checked() {
        let vars = |name: &str| match name {
            "DEBERTA_CPU_FAST" => Some("0".to_string()),
            "DEBERTA_CPU_AVX512" => Some("portable".to_string()),
            _ => None,
        };
        let opts = KernelOptions::from_vars(vars).unwrap();
        assert_eq!(opts.path, PathChoice::Candle);
        assert_eq!(opts.avx512, Avx512Mode::Portable);
        assert!(opts.packed);
        assert_eq!(opts.tune, TuneMode::default());
        let bad = KernelOptions::from_vars(|n| (n == "DEBERTA_CPU_PACKED").then(|| "x".into()));
        assert!(bad.unwrap_err().to_string().contains("DEBERTA_CPU_PACKED"));
        for (value, want) in [
            ("0", TuneMode::Off),
            ("fresh", TuneMode::Fresh),
            ("1", TuneMode::Cached),
        ] {
            let opts =
                KernelOptions::from_vars(|n| (n == "DEBERTA_CPU_TUNE").then(|| value.into()));
            assert_eq!(opts.unwrap().tune, want);
        }
        let bad = KernelOptions::from_vars(|n| (n == "DEBERTA_CPU_TUNE").then(|| "yes".into()));
        assert!(bad.unwrap_err().to_string().contains("DEBERTA_CPU_TUNE"));
    }
}
