//! The formats the CPU fast path can keep the encoder's linear layers in.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// How the encoder's linear layers are stored and multiplied on the CPU (`--dtype`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LinearFormat {
    /// f32 weights and inputs (packed for the AVX2 kernel on first use).
    #[default]
    F32,
    /// Weights and each call's inputs rounded to bf16 (nearest, ties to even), products
    /// summed in f32; bias and activation in f32. On CPUs with AVX512-BF16 `vdpbf16ps`
    /// multiplies them; on AVX2 CPUs the packed copy is half the size of f32's; elsewhere the
    /// rounded weights are an extra f32 copy.
    Bf16,
    /// Dynamic int8: weights per output channel once, activations per token at each call,
    /// exact integer sums (`vpdpbusd` on CPUs with AVX512-VNNI, else AVX2 or portable, all with
    /// the same results).
    Int8,
}

impl LinearFormat {
    /// Every format, in the order of [`Self::NAMES`].
    pub const ALL: [Self; 3] = [Self::F32, Self::Bf16, Self::Int8];
    /// The names `FromStr` accepts and `Display` writes, as the CLI lists them.
    pub const NAMES: [&'static str; 3] = ["f32", "bf16", "int8"];

    /// This format's name in [`Self::NAMES`].
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// The kernel the CPU fast path multiplies this format's linear layers with on this CPU
    /// (chosen at run time from its features and the `DEBERTA_CPU_*` switches), for reports.
    pub fn cpu_kernel(self) -> &'static str {
        crate::cpu::linear_kernel(self)
    }
}

impl FromStr for LinearFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                Error::Input(format!(
                    "unknown linear-layer format {s:?}; expected one of {:?}",
                    Self::NAMES
                ))
            })
    }
}

impl fmt::Display for LinearFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
