//! A linear layer's weight in the format a [`KernelPlan`] multiplies fastest, and the one
//! call that multiplies through it: int8 ([`crate::int8`]), bf16 or f32 packed for the AVX2
//! kernel ([`crate::sgemm`]) or the AVX-512 kernels ([`crate::avx512`]), or bf16-rounded f32
//! for the `gemm` crate ([`crate::gemm`]).

use crate::avx512_linear::{Avx512Linear, Kind};
use crate::bf16;
use crate::gemm::linear;
use crate::int8::QuantLinear;
use crate::plan::Packing;
use crate::rows::{epilogue_pass, Epilogue};
use crate::sgemm::PackedLinear;
use crate::tune::F32Kernel;
use crate::{check_weight, Error, KernelPlan, Result};

/// An `nn.Linear` weight `[out_dim, in_dim]` prepared for a kernel.
pub enum PreparedLinear {
    /// Quantised to int8 ([`crate::int8`]).
    Int8(QuantLinear),
    /// f32 or bf16 panels for the AVX2 kernel.
    Packed(PackedLinear),
    /// f32 or bf16 panels for the AVX-512 kernels (or their portable twins with
    /// [`crate::Avx512Mode::Portable`]).
    Avx512(Avx512Linear),
    /// The weight rounded to bf16, kept as f32 `[out, in]` for the `gemm` crate (CPUs
    /// without the AVX2 kernel, or plans without packing).
    Bf16Gemm { weight: Vec<f32>, in_dim: usize },
}

impl PreparedLinear {
    /// Quantises `w [out_dim, in_dim]` (row-major) to int8 for the plan's int8 kernel.
    pub fn int8(plan: &KernelPlan, w: &[f32], out_dim: usize, in_dim: usize) -> Result<Self> {
        Ok(Self::Int8(QuantLinear::new(plan, w, out_dim, in_dim)?))
    }

    /// Packs `w [out_dim, in_dim]` for the f32 kernel the plan picks; `None` where it picks
    /// none ([`linear_f32`] then multiplies the weight as it is).
    pub fn packed_f32(
        plan: &KernelPlan,
        w: &[f32],
        out_dim: usize,
        in_dim: usize,
    ) -> Result<Option<Self>> {
        Ok(match plan.packing(Kind::F32) {
            Packing::Avx512 => Some(Self::Avx512(Avx512Linear::new(
                plan,
                w,
                out_dim,
                in_dim,
                Kind::F32,
            )?)),
            Packing::Avx2 => Some(Self::Packed(PackedLinear::new(w, out_dim, in_dim)?)),
            Packing::None => None,
        })
    }

    /// Packs `w [out_dim, in_dim]` for the f32 kernel `packing` (one of [`Self::packed_f32`]'s
    /// packed kernels, as a measured plan chose it: [`crate::tune`]). An error for
    /// [`F32Kernel::GemmCrate`] (which reads the weight as it is) and where this CPU lacks the
    /// kernel's instructions.
    pub fn packed_f32_as(
        plan: &KernelPlan,
        packing: F32Kernel,
        w: &[f32],
        out_dim: usize,
        in_dim: usize,
    ) -> Result<Self> {
        match packing {
            F32Kernel::Avx512 => Ok(Self::Avx512(Avx512Linear::new(
                plan,
                w,
                out_dim,
                in_dim,
                Kind::F32,
            )?)),
            F32Kernel::Avx2 if crate::sgemm::available() => {
                Ok(Self::Packed(PackedLinear::new(w, out_dim, in_dim)?))
            }
            F32Kernel::Avx2 => Err(Error::Unsupported {
                kernel: "packed f32 linear",
                needs: "AVX2 and FMA",
            }),
            F32Kernel::GemmCrate => Err(Error::shape(
                "packed f32 linear",
                "the gemm crate multiplies the weight unpacked",
            )),
        }
    }

    /// Whether [`Self::packed_f32`] packs under `plan` (the same answer for every weight).
    pub fn packs_f32(plan: &KernelPlan) -> bool {
        plan.packing(Kind::F32) != Packing::None
    }

    /// Rounds `w [out_dim, in_dim]` to bf16: packed for the kernel the plan picks (bf16 pairs
    /// for `vdpbf16ps`, or bf16 panels for the AVX2 kernel), else kept as f32 for the `gemm`
    /// crate.
    pub fn bf16(plan: &KernelPlan, w: &[f32], out_dim: usize, in_dim: usize) -> Result<Self> {
        Ok(match plan.packing(Kind::Bf16) {
            Packing::Avx512 => {
                Self::Avx512(Avx512Linear::new(plan, w, out_dim, in_dim, Kind::Bf16)?)
            }
            Packing::Avx2 => Self::Packed(PackedLinear::new_bf16(w, out_dim, in_dim)?),
            Packing::None => {
                check_weight("bf16 linear", w, out_dim, in_dim)?;
                Self::Bf16Gemm {
                    weight: w.iter().map(|&v| bf16::round(v)).collect(),
                    in_dim,
                }
            }
        })
    }

    /// `out = epilogue(x · wᵀ)` for `x [rows, in_dim]`, `out [rows, out_dim]` (the packed and
    /// int8 GEMMs apply the epilogue tile by tile, the `gemm` crate's as a pass of its own).
    /// The bf16 formats round `x` into `scratch` first.
    pub fn forward(
        &self,
        x: &[f32],
        out: &mut [f32],
        epilogue: Option<&Epilogue>,
        scratch: &mut LinearScratch,
    ) -> Result<()> {
        let LinearScratch { values, pairs } = scratch;
        match self {
            Self::Packed(p) if p.is_bf16() => {
                p.forward(bf16::round_rows(x, p.in_dim(), values), out, epilogue)
            }
            Self::Avx512(a) => a.forward(x, out, epilogue, pairs),
            Self::Packed(p) => p.forward(x, out, epilogue),
            Self::Int8(q) => q.forward(x, out, epilogue),
            Self::Bf16Gemm { weight, in_dim } => {
                let x = bf16::round_rows(x, *in_dim, values);
                linear_f32(x, weight, *in_dim, out, epilogue)
            }
        }
    }
}

/// `out = epilogue(x · wᵀ)` for an f32 weight `w [out_dim, in_dim]` as it is, on the `gemm`
/// crate, the epilogue as a pass of its own.
pub fn linear_f32(
    x: &[f32],
    weight: &[f32],
    in_dim: usize,
    out: &mut [f32],
    epilogue: Option<&Epilogue>,
) -> Result<()> {
    linear(x, weight, in_dim, out)?;
    match epilogue {
        Some(e) => epilogue_pass(out, e),
        None => Ok(()),
    }
}

/// A linear layer's input rounded to bf16, reused from call to call (bf16 format only): as
/// f32 values (AVX2 and `gemm` crate paths) or as bf16 pairs (`vdpbf16ps`).
#[derive(Default)]
pub struct LinearScratch {
    values: Vec<f32>,
    pairs: Vec<u32>,
}
