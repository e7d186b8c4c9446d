//! The CPU f32 inference path: the encoder layer computed on flat row-major buffers, with one
//! GEMM per linear layer and fused passes for everything between them.
//!
//! candle runs a layer as ~30 separate tensor ops, most of them single-threaded element-wise
//! passes that each allocate their output. This path keeps candle's weights (read in place,
//! no copy) and the same arithmetic, but:
//! - runs every product on its own AVX2 GEMM ([`sgemm`]): the linear layers' weights packed
//!   once, on first use, into the micro-kernel's layout, their inputs read in place, and the
//!   per-head attention products' right operands packed once per (head, sequence), writing
//!   Q/K/V and each head's context in place through strides instead of permuting copies
//!   (CPUs with AVX-512 run the linear layers on the 512-bit kernels of [`avx512`] through
//!   [`avx512_linear`] and [`int8`], and the attention products on the `gemm` crate, as do
//!   CPUs without AVX2 + FMA);
//! - applies bias + activation (and the Q/K/V biases and key scaling) to each GEMM tile as it
//!   is stored ([`rows::Epilogue`]), and fuses bias + residual + LayerNorm, and
//!   c2c + c2p gather + p2c gather + mask + softmax, each as one multi-threaded pass;
//! - runs attention as one task per (head, sequence), each with its own scratch buffers, in
//!   blocks of query rows whose scores stay in L2;
//! - compiles its element-wise kernels for AVX2/FMA, chosen at run time ([`simd`]).
//!
//! The candle path stays for other devices and dtypes; both are held to transformers by the
//! same golden cases (`tests/golden_model.rs` on this path, `tests/golden_candle_path.rs` with
//! `DEBERTA_CPU_FAST=0`).

mod attention;
mod avx512;
mod avx512_linear;
mod bf16;
mod context;
mod gemm;
pub mod int8;
mod layer;
mod rows;
mod sgemm;

pub use context::AttentionContext;
pub use layer::{
    forward as layer_forward, linear_kernel, LayerBuffers, LayerParams, PreparedLayer,
};

use candle_core::{DType, Storage, Tensor, WithDType};

use crate::{Error, Result};

/// `DEBERTA_CPU_FAST=0` turns the fast path off (to compare against the candle path).
fn disabled() -> bool {
    std::env::var("DEBERTA_CPU_FAST").is_ok_and(|v| v == "0")
}

/// How the AVX-512 linear-layer kernels (f32 `vfmadd231ps`, bf16 `vdpbf16ps`, int8 `vpdpbusd`)
/// are used, from
/// `DEBERTA_CPU_AVX512`, read when a model's linear format is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Avx512 {
    /// Unset: where the CPU has them.
    Auto,
    /// `0`: never (to compare against the AVX2 or portable kernels on the same machine).
    Off,
    /// `portable`: their layouts on the kernels' portable twins, which give the same results
    /// bit for bit, slowly, on any CPU (to test those paths end to end where the CPU lacks
    /// the instructions).
    Portable,
}

fn avx512_switch() -> Avx512 {
    match std::env::var("DEBERTA_CPU_AVX512").as_deref() {
        Ok("0") => Avx512::Off,
        Ok("portable") => Avx512::Portable,
        _ => Avx512::Auto,
    }
}

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
    Error::Input(format!("CPU fast path: tensor {name} {what}"))
}

/// Whether this CPU has AVX2 and FMA (what [`simd_fn!`] bodies and the attention's vector
/// tiles are compiled for; std caches the check).
fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines a function whose body is compiled twice, for AVX2 + FMA and for the target's
/// baseline, and picks one at run time (std caches the CPU check). Functions the body calls
/// must be `#[inline(always)]` to be compiled into the AVX2 version. An `unsafe fn` keeps its
/// caller's contract (its `# Safety` section) for both versions.
macro_rules! simd_fn {
    ($(#[$meta:meta])* $vis:vis unsafe fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if crate::cpu::avx2_fma() {
                    // SAFETY: the CPU has the features `avx2` is compiled for; the rest is the
                    // caller's contract.
                    return avx2($($arg),*);
                }
            }
            body($($arg),*)
        }
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if crate::cpu::avx2_fma() {
                    // SAFETY: the CPU has the features `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use simd_fn;

/// A strided read-only matrix: element `(r, c)` is at `ptr + r * rs + c * cs`.
#[derive(Clone, Copy)]
pub struct MatRef {
    pub ptr: *const f32,
    pub rs: isize,
    pub cs: isize,
}

impl MatRef {
    /// # Safety
    /// `(r, c)` must address a live element.
    #[inline(always)]
    pub(crate) unsafe fn at(self, r: usize, c: usize) -> f32 {
        *self.ptr.offset(r as isize * self.rs + c as isize * self.cs)
    }
}

/// Checks a prepared linear layer's weight: `w` holds `[out_dim, in_dim]` values, `in_dim > 0`.
fn check_weight(what: &str, w: &[f32], out_dim: usize, in_dim: usize) -> Result<()> {
    if in_dim == 0 || w.len() != out_dim * in_dim {
        return Err(Error::Input(format!(
            "{what}: weight of {} values is not [{out_dim}, {in_dim}]",
            w.len()
        )));
    }
    Ok(())
}

/// Checks a prepared linear layer's call: `x [rows, in_dim]` and `out [rows, out_dim]`;
/// returns `rows`.
fn check_io(what: &str, x: &[f32], out: &[f32], in_dim: usize, out_dim: usize) -> Result<usize> {
    let rows = x.len() / in_dim;
    if x.len() != rows * in_dim || out.len() != rows * out_dim {
        return Err(Error::Input(format!(
            "{what}: input of {} values or output of {} do not fit [{in_dim}, {out_dim}]",
            x.len(),
            out.len(),
        )));
    }
    Ok(rows)
}

/// Calls `tile(r0, tile_rows, panel)` once for every tile of `rows` rows (in tiles of up to
/// `tile_rows`) x `panels` panels, in parallel tasks of `chunk_tiles` row tiles x
/// `chunk_panels` panels; within a task, panel by panel (so a panel stays in cache while the
/// task's rows pass it).
fn for_each_tile(
    (rows, tile_rows, chunk_tiles): (usize, usize, usize),
    (panels, chunk_panels): (usize, usize),
    tile: impl Fn(usize, usize, usize) + Sync,
) {
    use rayon::prelude::*;
    let chunk_rows = tile_rows * chunk_tiles;
    let row_chunks = rows.div_ceil(chunk_rows);
    let panel_chunks = panels.div_ceil(chunk_panels);
    (0..row_chunks * panel_chunks)
        .into_par_iter()
        .for_each(|task| {
            let (rc, pc) = (task / panel_chunks, task % panel_chunks);
            let row_end = ((rc + 1) * chunk_rows).min(rows);
            for panel in pc * chunk_panels..((pc + 1) * chunk_panels).min(panels) {
                let mut r0 = rc * chunk_rows;
                while r0 < row_end {
                    let n = (row_end - r0).min(tile_rows);
                    tile(r0, n, panel);
                    r0 += n;
                }
            }
        });
}

/// Checks that a prepared linear layer's `epilogue`, if any, fits its `out_dim` columns.
fn check_epilogue(what: &str, epilogue: Option<&rows::Epilogue>, out_dim: usize) -> Result<()> {
    if epilogue.is_some_and(|e| !e.fits(out_dim)) {
        return Err(Error::Input(format!(
            "{what}: the bias or activation does not fit {out_dim} output columns"
        )));
    }
    Ok(())
}

/// A raw pointer that parallel tasks share to write disjoint parts of one buffer.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: every user writes a region no other task touches (documented at each use).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Deterministic values in [-0.5, 0.5) for the kernels' unit tests.
#[cfg(test)]
fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

/// The largest `|a - b|` over two slices (tests).
#[cfg(test)]
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}
