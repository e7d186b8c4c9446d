//! The CPU kernels of the `deberta` crate's fused f32 path, on slices and raw strided
//! matrices (no tensor types):
//! - GEMMs for the linear layers: our packed AVX2 GEMM ([`sgemm`]), the AVX-512 f32 / bf16 /
//!   int8 micro-kernels ([`avx512`]) with their portable twins, the int8 kernels ([`int8`]),
//!   bf16 rounding ([`bf16`]), and the `gemm` crate where none of ours fits ([`gemm`]); each
//!   applies the layer's bias and activation ([`rows::Epilogue`]) to a tile as it is stored;
//! - the fused row passes: bias + residual + LayerNorm, softmax, activations ([`rows`]);
//! - disentangled attention, one task per (head, sequence) ([`attention`]), its products in
//!   f32 or, for int8 models, on the int8 kernels ([`int8_products`]).
//!
//! Which kernel runs is chosen once, from the CPU's features ([`CpuFeatures::detect`]) and the
//! caller's settings, in a [`KernelPlan`], and may be refined per weight shape by measurement
//! ([`tune`]); preparing a linear layer's weights
//! ([`PreparedLinear`]) takes the plan. This crate reads no environment variable.
//!
//! Without the default `std` feature only [`avx512`] is built, on `core` alone, so that
//! `tools/avx512-emu` can run the AVX-512 micro-kernels in a freestanding binary under an
//! emulator.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod avx512;

#[cfg(feature = "std")]
pub mod attention;
#[cfg(feature = "std")]
mod avx512_linear;
#[cfg(feature = "std")]
pub mod bf16;
#[cfg(feature = "std")]
mod error;
#[cfg(feature = "std")]
mod features;
#[cfg(feature = "std")]
pub mod gemm;
#[cfg(feature = "std")]
pub mod int8;
#[cfg(feature = "std")]
pub mod int8_products;
#[cfg(feature = "std")]
mod linear;
#[cfg(feature = "std")]
mod plan;
#[cfg(feature = "std")]
pub mod rows;
#[cfg(feature = "std")]
pub mod sgemm;
#[cfg(feature = "std")]
mod simd;
#[cfg(feature = "std")]
#[doc(hidden)]
pub mod test_util;
#[cfg(feature = "std")]
pub mod tune;

#[cfg(feature = "std")]
pub use error::{Error, Result};
#[cfg(feature = "std")]
pub use features::CpuFeatures;
#[cfg(feature = "std")]
pub use linear::{linear_f32, LinearScratch, PreparedLinear};
#[cfg(feature = "std")]
pub use plan::{AttentionProducts, Avx512Mode, KernelPlan, LinearFormat};
#[cfg(feature = "std")]
pub use simd::MatRef;
#[cfg(feature = "std")]
pub(crate) use simd::{check_epilogue, check_io, check_weight, for_each_tile, simd_fn, SharedMut};
