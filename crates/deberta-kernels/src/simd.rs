//! What the kernels share: [`simd_fn!`] (a body compiled for AVX2 + FMA and for the
//! baseline, picked at run time), strided matrices ([`MatRef`]), disjoint writes from parallel
//! tasks ([`SharedMut`], [`for_each_tile`]) and the linear layers' shape checks.

use crate::rows::Epilogue;
use crate::{Error, Result};

/// Defines a function whose body is compiled twice, for AVX2 + FMA and for the target's
/// baseline, and picks one at run time ([`crate::CpuFeatures::detect`] caches the CPU check).
/// Functions the body calls must be `#[inline(always)]` to be compiled into the AVX2 version.
/// An `unsafe fn` keeps its caller's contract (its `# Safety` section) for both versions; its
/// body wraps its unsafe operations in `unsafe` blocks of its own.
macro_rules! simd_fn {
    ($(#[$meta:meta])* $vis:vis unsafe fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
            /// # Safety
            /// As for the function it is the body of.
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                /// # Safety
                /// The CPU has AVX2 and FMA; as for the function it is the body of.
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    // SAFETY: the caller's contract, passed on.
                    unsafe { body($($arg),*) }
                }
                if crate::features::avx2_fma() {
                    // SAFETY: the CPU has the features `avx2` is compiled for; the rest is the
                    // caller's contract.
                    return unsafe { avx2($($arg),*) };
                }
            }
            // SAFETY: the caller's contract, passed on.
            unsafe { body($($arg),*) }
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
                /// # Safety
                /// The CPU has AVX2 and FMA.
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if crate::features::avx2_fma() {
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
#[derive(Clone, Copy, Debug)]
pub struct MatRef {
    pub ptr: *const f32,
    pub rs: isize,
    pub cs: isize,
}

impl MatRef {
    /// Element `(r, c)`.
    ///
    /// # Safety
    /// `(r, c)` must address a live element.
    #[inline(always)]
    pub(crate) unsafe fn at(self, r: usize, c: usize) -> f32 {
        // SAFETY: the caller's contract.
        unsafe { *self.ptr.offset(r as isize * self.rs + c as isize * self.cs) }
    }
}

/// Checks a prepared linear layer's weight: `w` holds `[out_dim, in_dim]` values, `in_dim > 0`.
pub(crate) fn check_weight(
    kernel: &'static str,
    w: &[f32],
    out_dim: usize,
    in_dim: usize,
) -> Result<()> {
    if in_dim == 0 || w.len() != out_dim * in_dim {
        return Err(Error::shape(
            kernel,
            format!("weight of {} values is not [{out_dim}, {in_dim}]", w.len()),
        ));
    }
    Ok(())
}

/// Checks a prepared linear layer's call: `x [rows, in_dim]` and `out [rows, out_dim]`;
/// returns `rows`.
pub(crate) fn check_io(
    kernel: &'static str,
    x: &[f32],
    out: &[f32],
    in_dim: usize,
    out_dim: usize,
) -> Result<usize> {
    let rows = x.len() / in_dim;
    if x.len() != rows * in_dim || out.len() != rows * out_dim {
        return Err(Error::shape(
            kernel,
            format!(
                "input of {} values or output of {} do not fit [{in_dim}, {out_dim}]",
                x.len(),
                out.len(),
            ),
        ));
    }
    Ok(rows)
}

/// Checks that a prepared linear layer's `epilogue`, if any, fits its `out_dim` columns.
pub(crate) fn check_epilogue(
    kernel: &'static str,
    epilogue: Option<&Epilogue>,
    out_dim: usize,
) -> Result<()> {
    if epilogue.is_some_and(|e| !e.fits(out_dim)) {
        return Err(Error::shape(
            kernel,
            format!("the bias or activation does not fit {out_dim} output columns"),
        ));
    }
    Ok(())
}

/// Calls `tile(r0, tile_rows, panel)` once for every tile of `rows` rows (in tiles of up to
/// `tile_rows`) x `panels` panels, in parallel tasks of `chunk_tiles` row tiles x
/// `chunk_panels` panels; within a task, panel by panel (so a panel stays in cache while the
/// task's rows pass it).
pub(crate) fn for_each_tile(
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

/// A raw pointer that parallel tasks share to write disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub(crate) *mut f32);
// SAFETY: every user writes a region no other task touches (documented at each use).
unsafe impl Send for SharedMut {}
// SAFETY: as for `Send`: shared only to write disjoint regions.
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}
