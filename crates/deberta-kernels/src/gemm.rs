//! Thin wrappers over the `gemm` crate (the kernels candle's CPU matmul uses), for row-major
//! f32 matrices addressed by pointer and strides.

use gemm::Parallelism;

use crate::{Error, MatRef, Result};

/// `dst[m, n] = lhs[m, k] · rhs[k, n]`, `dst` row-major with row stride `dst_rs`.
///
/// # Safety
/// Every element the shapes and strides address must lie inside live allocations, and `dst`
/// must not overlap the inputs or any region another thread writes concurrently.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: isize,
    lhs: MatRef,
    rhs: MatRef,
    parallel: bool,
) {
    let threads = rayon::current_num_threads();
    let parallelism = if parallel && threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the caller's contract: every addressed element is live, `dst` overlaps
    // nothing else in use.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs,
            false,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    };
}

/// `out[rows, out_dim] = x[rows, in_dim] · wᵀ` for an `nn.Linear` weight `w [out_dim, in_dim]`
/// (no bias: callers fuse it into the pass that follows).
pub fn linear(x: &[f32], w: &[f32], in_dim: usize, out: &mut [f32]) -> Result<()> {
    let out_dim = w.len() / in_dim.max(1);
    let rows = x.len() / in_dim.max(1);
    if in_dim == 0
        || x.len() != rows * in_dim
        || w.len() != out_dim * in_dim
        || out.len() != rows * out_dim
    {
        return Err(Error::shape(
            "gemm crate linear",
            format!(
                "shapes do not agree (x {}, w {}, in {in_dim}, out {})",
                x.len(),
                w.len(),
                out.len()
            ),
        ));
    }
    let lhs = MatRef {
        ptr: x.as_ptr(),
        rs: in_dim as isize,
        cs: 1,
    };
    // wᵀ[k, n] = w[n, k]
    let rhs = MatRef {
        ptr: w.as_ptr(),
        rs: 1,
        cs: in_dim as isize,
    };
    // SAFETY: the lengths were checked against the shapes above; `out` is a unique borrow.
    unsafe {
        matmul(
            (rows, out_dim, in_dim),
            out.as_mut_ptr(),
            out_dim as isize,
            lhs,
            rhs,
            true,
        )
    };
    Ok(())
}
