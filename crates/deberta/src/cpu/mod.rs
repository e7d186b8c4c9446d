//! The CPU f32 inference path: the encoder layer computed on flat row-major buffers, with one
//! GEMM per linear layer and fused passes for everything between them.
//!
//! candle runs a layer as ~30 separate tensor ops, most of them single-threaded element-wise
//! passes that each allocate their output. This path keeps candle's weights (read in place,
//! no copy) and the same arithmetic, but:
//! - runs every product on its own AVX2 GEMM (`deberta_kernels::sgemm`): the linear layers'
//!   weights packed once, on first use, into the micro-kernel's layout, their inputs read in
//!   place, and the per-head attention products' right operands packed once per (head,
//!   sequence), writing Q/K/V and each head's context in place through strides instead of
//!   permuting copies (CPUs with AVX-512 run the linear layers on the 512-bit kernels of
//!   `deberta_kernels::avx512`, and the attention products on the `gemm` crate, as do CPUs
//!   without AVX2 + FMA);
//! - applies bias + activation (and the Q/K/V biases and key scaling) to each GEMM tile as it
//!   is stored (`deberta_kernels::rows::Epilogue`), and fuses bias + residual + LayerNorm, and
//!   c2c + c2p gather + p2c gather + mask + softmax, each as one multi-threaded pass;
//! - runs attention as one task per (head, sequence), each with its own scratch buffers, in
//!   blocks of query rows whose scores stay in L2;
//! - compiles its element-wise kernels for AVX2/FMA, chosen at run time.
//!
//! The kernels live in the `deberta-kernels` crate, on slices; this module borrows candle's
//! tensors as slices ([`View`]) and runs a layer's steps on them. Which kernels run is the
//! model's `deberta_kernels::KernelPlan`, chosen once at load ([`crate::plan`]), refined for
//! the f32 linear layers per weight shape and rows class by measurement ([`tuning`], cached per
//! CPU). This module
//! imports nothing from `crate::model`: the encoder (the dispatcher) builds its inputs.
//!
//! The candle path stays for other devices, dtypes and training; both are held to
//! transformers by the same golden cases (`tests/golden_model.rs` on this path,
//! `tests/golden_candle_path.rs` on candle, and the heads and TF suites on both).

mod attention;
mod context;
mod layer;
mod tuning;

pub use context::{AttentionContext, UnpaddedContext};
pub use layer::{
    forward as layer_forward, forward_unpadded as layer_forward_unpadded, LayerBuffers,
    LayerParams, PreparedLayer,
};
pub use tuning::{
    tune_f32, KernelTuning, ShapeTuning, TuneMode, CACHE_FILE, MIN_TUNED_WEIGHT, TUNE_BUDGET,
};

use candle_core::{Storage, Tensor, WithDType};

use crate::{Error, Result};

/// A read lock on a contiguous CPU tensor's storage, from which its `&[T]` can be borrowed.
pub struct View<'a> {
    guard: candle_core::StorageRef<'a>,
    start: usize,
    len: usize,
    name: &'static str,
}

impl<'a> View<'a> {
    pub fn new(t: &'a Tensor, name: &'static str) -> Result<Self> {
        let (guard, layout) = t.storage_and_layout();
        let Some((start, end)) = layout.contiguous_offsets() else {
            return Err(internal(name, "is not contiguous"));
        };
        Ok(Self {
            guard,
            start,
            len: end - start,
            name,
        })
    }

    /// The tensor's elements (an error if the storage holds another dtype).
    pub fn slice<T: WithDType>(&self) -> Result<&[T]> {
        let Storage::Cpu(cpu) = &*self.guard else {
            return Err(internal(self.name, "is not on the CPU"));
        };
        let all = cpu.as_slice::<T>()?;
        all.get(self.start..self.start + self.len)
            .ok_or_else(|| internal(self.name, "has a layout outside its storage"))
    }
}

fn internal(name: &str, what: &str) -> Error {
    Error::Internal(format!("CPU fast path: tensor {name} {what}"))
}
