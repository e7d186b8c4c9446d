//! AVX-512 micro-kernels for the linear layers, each with a portable twin that computes the
//! same bits as the instruction's definition in Intel's SDM (bf16: real CPUs may round a pair's
//! two products differently, so native tests hold the bf16 kernel to its twin within 1e-5):
//! - [`f32_tile`]: `vfmadd231ps` (AVX512F), one fused multiply-add per input, in input order;
//! - [`bf16_tile`]: `vdpbf16ps` (AVX512-BF16), bf16 pairs multiplied and summed in f32;
//! - [`int8_tile`]: `vpdpbusd` (AVX512-VNNI), u8 x i8 quads summed exactly in i32.
//!
//! A tile is up to [`MAX_ROWS`] input rows against [`COLS`] output columns, each row's sum
//! held in two 16-lane registers (24 accumulators, 2 weight vectors and 1 broadcast of the 32
//! zmm registers). The drivers (the f32 / bf16 linear layers' and the int8 GEMM) cut the work
//! into tiles and store them.
//!
//! This module uses nothing else from the crate and only what `core` has (it is all the crate
//! builds without its `std` feature), so that `tools/avx512-emu` can build it into a
//! freestanding binary and check the kernels against their twins under an emulator, on CPUs
//! without these instructions.

/// Output columns per tile (two 16-lane vectors).
pub const COLS: usize = 32;
/// Most input rows per tile.
pub const MAX_ROWS: usize = 12;

/// One tile's operands, as 32-bit groups: one f32 (its bits), two bf16 values (the even `k` in
/// the low half) or four 8-bit values (`k` ascending from the low byte).
///
/// - `a`: row `r`'s groups at `a + r * lda`, `groups` of them;
/// - `b`: the weight panel, `[groups][COLS]` groups.
#[derive(Clone, Copy)]
pub struct Tile {
    pub a: *const u32,
    pub lda: usize,
    pub rows: usize,
    pub b: *const u32,
    pub groups: usize,
}

/// `acc + x · w` rounded once, as `vfmadd231ps` computes it, in `core` arithmetic: the product
/// is exact in f64, the f64 sum's rounding error is recovered exactly (two-sum), and when the
/// f64 sum lands exactly halfway between two f32 values (where rounding it again would be
/// wrong) the error decides between them.
#[inline(always)]
fn fma(acc: f32, x: f32, w: f32) -> f32 {
    let (a, p) = (f64::from(acc), f64::from(x) * f64::from(w));
    let s = a + p;
    let b = s - a;
    let err = (a - (s - b)) + (p - b);
    let r = s as f32;
    if err == 0.0 || !r.is_finite() {
        return r;
    }
    // The f32 magnitudes on either side of |s|, and whether |s| is exactly between them.
    let (mag, target) = (r.abs(), s.abs());
    let (lo, hi) = if f64::from(mag) > target {
        (f32::from_bits(mag.to_bits() - 1), mag)
    } else {
        (mag, f32::from_bits(mag.to_bits() + 1))
    };
    if (f64::from(lo) + f64::from(hi)) / 2.0 != target {
        return r;
    }
    // The true magnitude is |s| plus `err` taken with `s`'s sign.
    let bigger = (err > 0.0) == (s > 0.0);
    let pick = if bigger { hi } else { lo };
    if s < 0.0 {
        -pick
    } else {
        pick
    }
}

/// `out[r][c] = fma(... fma(fma(0, a[r][0], b[0][c]), a[r][1], b[1][c]) ...)` over the
/// `groups` inputs in order, for `r < rows`: what [`f32_tile`] computes, in plain Rust.
///
/// # Safety
/// `a` holds `rows` rows of `groups` f32 bit patterns (row stride `lda`), `b` `groups * COLS`.
pub unsafe fn f32_tile_portable(t: &Tile, out: &mut [[f32; COLS]; MAX_ROWS]) {
    for (r, out_row) in out.iter_mut().enumerate().take(t.rows) {
        for (c, o) in out_row.iter_mut().enumerate() {
            let mut acc = 0f32;
            for g in 0..t.groups {
                // SAFETY: row r < rows, group g < groups: inside `a` and `b` by the contract.
                let (x, w) = unsafe { (*t.a.add(r * t.lda + g), *t.b.add(g * COLS + c)) };
                acc = fma(acc, f32::from_bits(x), f32::from_bits(w));
            }
            *o = acc;
        }
    }
}

/// The f32 with the bf16 `h` as its upper half, as `vdpbf16ps` reads it: subnormals as zero.
#[inline(always)]
fn bf16_input(h: u32) -> f32 {
    let bits = (h & 0xffff) << 16;
    if bits & 0x7f80_0000 == 0 {
        f32::from_bits(bits & 0x8000_0000)
    } else {
        f32::from_bits(bits)
    }
}

/// `acc + x · w` rounded once, subnormal results flushed to zero: how the SDM specifies that
/// `vdpbf16ps` adds each product (a fused multiply-add, so a product below f32's range still
/// counts in full).
#[inline(always)]
fn bf16_step(acc: f32, x: f32, w: f32) -> f32 {
    let sum = fma(acc, x, w);
    if sum != 0.0 && sum.abs() < f32::MIN_POSITIVE {
        f32::from_bits(sum.to_bits() & 0x8000_0000)
    } else {
        sum
    }
}

/// `out[r][c] = Σ_g` (odd `k` product, then even `k` product, each added to the running f32
/// sum), for `r < rows`: what [`bf16_tile`] computes, in plain Rust.
///
/// # Safety
/// `a` holds `rows` rows of `groups` groups (row stride `lda`), `b` `groups * COLS` groups.
pub unsafe fn bf16_tile_portable(t: &Tile, out: &mut [[f32; COLS]; MAX_ROWS]) {
    for (r, out_row) in out.iter_mut().enumerate().take(t.rows) {
        for (c, o) in out_row.iter_mut().enumerate() {
            let mut acc = 0f32;
            for g in 0..t.groups {
                // SAFETY: row r < rows, group g < groups: inside `a` and `b` by the contract.
                let (x, w) = unsafe { (*t.a.add(r * t.lda + g), *t.b.add(g * COLS + c)) };
                acc = bf16_step(acc, bf16_input(x >> 16), bf16_input(w >> 16));
                acc = bf16_step(acc, bf16_input(x), bf16_input(w));
            }
            *o = acc;
        }
    }
}

/// `out[r][c] = Σ_g Σ_i u8(a[r][g] byte i) · i8(b[g][c] byte i)` in wrapping i32 arithmetic,
/// for `r < rows`: what [`int8_tile`] computes, in plain Rust.
///
/// # Safety
/// As for [`bf16_tile_portable`].
pub unsafe fn int8_tile_portable(t: &Tile, out: &mut [[i32; COLS]; MAX_ROWS]) {
    for (r, out_row) in out.iter_mut().enumerate().take(t.rows) {
        for (c, o) in out_row.iter_mut().enumerate() {
            let mut acc = 0i32;
            for g in 0..t.groups {
                // SAFETY: row r < rows, group g < groups: inside `a` and `b` by the contract.
                let (x, w) = unsafe { (*t.a.add(r * t.lda + g), *t.b.add(g * COLS + c)) };
                let (x, w) = (x.to_le_bytes(), w.to_le_bytes());
                for (&xv, &wv) in x.iter().zip(&w) {
                    acc = acc.wrapping_add(i32::from(xv) * i32::from(wv as i8));
                }
            }
            *o = acc;
        }
    }
}

/// Calls `kernel::<R>` with `R` = the tile's rows (1-12); a one-row tile runs as two rows
/// ([`one_row_as_two`]).
#[cfg(target_arch = "x86_64")]
macro_rules! by_rows {
    ($kernel:path, $t:expr, $out:expr) => {{
        use $kernel as kernel;
        // SAFETY: `kernel::<R>` is called with R = the tile's rows (a one-row tile as two rows
        // reading the same row), under the caller's contract and target features.
        unsafe {
            match $t.rows {
                12 => kernel::<12>($t, $out),
                11 => kernel::<11>($t, $out),
                10 => kernel::<10>($t, $out),
                9 => kernel::<9>($t, $out),
                8 => kernel::<8>($t, $out),
                7 => kernel::<7>($t, $out),
                6 => kernel::<6>($t, $out),
                5 => kernel::<5>($t, $out),
                4 => kernel::<4>($t, $out),
                3 => kernel::<3>($t, $out),
                2 => kernel::<2>($t, $out),
                1 => kernel::<2>(&one_row_as_two($t), $out),
                _ => {}
            }
        }
    }};
}

/// [`f32_tile_portable`] on `vfmadd231ps`.
///
/// # Safety
/// The CPU has AVX512F; `1 <= rows <= MAX_ROWS`; as for [`f32_tile_portable`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub unsafe fn f32_tile(t: &Tile, out: &mut [[f32; COLS]; MAX_ROWS]) {
    by_rows!(kernels::f32, t, out)
}

/// [`bf16_tile_portable`] on `vdpbf16ps`.
///
/// # Safety
/// The CPU has AVX512F and AVX512-BF16; `1 <= rows <= MAX_ROWS`; as for
/// [`bf16_tile_portable`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn bf16_tile(t: &Tile, out: &mut [[f32; COLS]; MAX_ROWS]) {
    by_rows!(kernels::bf16, t, out)
}

/// [`int8_tile_portable`] on `vpdpbusd`.
///
/// # Safety
/// The CPU has AVX512F and AVX512-VNNI; `1 <= rows <= MAX_ROWS`; as for
/// [`int8_tile_portable`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
pub unsafe fn int8_tile(t: &Tile, out: &mut [[i32; COLS]; MAX_ROWS]) {
    by_rows!(kernels::int8, t, out)
}

/// A one-row tile as a two-row tile that reads its row twice (the second result row is a
/// copy). The one-row kernel would leave the weights as memory operands of `vdpbf16ps`, a form
/// the emulator that checks these kernels (Bochs 2.8) computes wrongly; two rows load them into
/// registers, and the extra row is free next to the weight loads.
#[cfg(target_arch = "x86_64")]
fn one_row_as_two(t: &Tile) -> Tile {
    Tile {
        lda: 0,
        rows: 2,
        ..*t
    }
}

#[cfg(target_arch = "x86_64")]
mod kernels {
    use core::arch::x86_64::*;

    use super::{Tile, COLS, MAX_ROWS};

    /// `R` rows x 32 columns: per input, 2 weight loads and `R` broadcasts feed `2R`
    /// `vfmadd231ps`.
    ///
    /// # Safety
    /// As for [`super::f32_tile`], with `rows == R`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub unsafe fn f32<const R: usize>(t: &Tile, out: &mut [[f32; COLS]; MAX_ROWS]) {
        // SAFETY: the CPU has AVX512F (contract); group g < groups of the panel's
        // `groups * COLS` and of each of the R rows lie inside `b` and `a`; each output row
        // holds COLS = 32 values.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 2]; R];
            for g in 0..t.groups {
                let w = t.b.add(g * COLS).cast::<f32>();
                let (w0, w1) = (_mm512_loadu_ps(w), _mm512_loadu_ps(w.add(16)));
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(f32::from_bits(*t.a.add(r * t.lda + g)));
                    acc_row[0] = _mm512_fmadd_ps(x, w0, acc_row[0]);
                    acc_row[1] = _mm512_fmadd_ps(x, w1, acc_row[1]);
                }
            }
            for (acc_row, out_row) in acc.iter().zip(out.iter_mut()) {
                _mm512_storeu_ps(out_row.as_mut_ptr(), acc_row[0]);
                _mm512_storeu_ps(out_row.as_mut_ptr().add(16), acc_row[1]);
            }
        }
    }

    /// `R` rows x 32 columns: per group, 2 weight loads and `R` broadcasts feed `2R`
    /// `vdpbf16ps`.
    ///
    /// # Safety
    /// As for [`super::bf16_tile`], with `rows == R`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    pub unsafe fn bf16<const R: usize>(t: &Tile, out: &mut [[f32; COLS]; MAX_ROWS]) {
        // SAFETY: the CPU has AVX512F and AVX512-BF16 (contract); the loads stay inside `a`
        // and `b` as in `f32`; the transmutes reinterpret 512 bits as 32 bf16 (same size, any
        // bit pattern valid).
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 2]; R];
            for g in 0..t.groups {
                let w = t.b.add(g * COLS);
                let w0: __m512bh = core::mem::transmute(_mm512_loadu_si512(w.cast()));
                let w1: __m512bh = core::mem::transmute(_mm512_loadu_si512(w.add(16).cast()));
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    let x = *t.a.add(r * t.lda + g) as i32;
                    let x: __m512bh = core::mem::transmute(_mm512_set1_epi32(x));
                    acc_row[0] = _mm512_dpbf16_ps(acc_row[0], x, w0);
                    acc_row[1] = _mm512_dpbf16_ps(acc_row[1], x, w1);
                }
            }
            for (acc_row, out_row) in acc.iter().zip(out.iter_mut()) {
                _mm512_storeu_ps(out_row.as_mut_ptr(), acc_row[0]);
                _mm512_storeu_ps(out_row.as_mut_ptr().add(16), acc_row[1]);
            }
        }
    }

    /// `R` rows x 32 columns: per group, 2 weight loads and `R` broadcasts feed `2R`
    /// `vpdpbusd` (u8 inputs x i8 weights).
    ///
    /// # Safety
    /// As for [`super::int8_tile`], with `rows == R`.
    #[target_feature(enable = "avx512f,avx512vnni")]
    #[inline]
    pub unsafe fn int8<const R: usize>(t: &Tile, out: &mut [[i32; COLS]; MAX_ROWS]) {
        // SAFETY: the CPU has AVX512F and AVX512-VNNI (contract); the loads stay inside `a`
        // and `b` as in `f32`; each output row holds COLS = 32 values.
        unsafe {
            let mut acc = [[_mm512_setzero_si512(); 2]; R];
            for g in 0..t.groups {
                let w = t.b.add(g * COLS);
                let w0 = _mm512_loadu_si512(w.cast());
                let w1 = _mm512_loadu_si512(w.add(16).cast());
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_epi32(*t.a.add(r * t.lda + g) as i32);
                    acc_row[0] = _mm512_dpbusd_epi32(acc_row[0], x, w0);
                    acc_row[1] = _mm512_dpbusd_epi32(acc_row[1], x, w1);
                }
            }
            for (acc_row, out_row) in acc.iter().zip(out.iter_mut()) {
                _mm512_storeu_si512(out_row.as_mut_ptr().cast(), acc_row[0]);
                _mm512_storeu_si512(out_row.as_mut_ptr().add(16).cast(), acc_row[1]);
            }
        }
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    fn lcg(n: usize, seed: u32) -> Vec<u32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                s
            })
            .collect()
    }

    /// bf16 pairs of values in about [-2, 2] (exponent 0x78..0x80, any sign and mantissa).
    fn bf16_groups(n: usize, seed: u32) -> Vec<u32> {
        let half = |v: u32| ((v & 0x807f) | (0x3c00 + ((v >> 8) % 9) * 0x80)) & 0xffff;
        lcg(n, seed)
            .into_iter()
            .map(|v| half(v) | (half(v >> 16) << 16))
            .collect()
    }

    fn tile(a: &[u32], lda: usize, rows: usize, b: &[u32], groups: usize) -> Tile {
        assert!(a.len() >= (rows - 1) * lda + groups && b.len() >= groups * COLS);
        Tile {
            a: a.as_ptr(),
            lda,
            rows,
            b: b.as_ptr(),
            groups,
        }
    }

    #[test]
    fn portable_bf16_tile_is_the_dot_product_of_the_bf16_values() {
        let (groups, lda) = (37, 40);
        let a = bf16_groups(MAX_ROWS * lda, 1);
        let b = bf16_groups(groups * COLS, 2);
        let mut out = [[0f32; COLS]; MAX_ROWS];
        // SAFETY: `tile` checked that `a` and `b` hold the tile's rows and panel.
        unsafe { bf16_tile_portable(&tile(&a, lda, MAX_ROWS, &b, groups), &mut out) };
        let value = |h: u32| f64::from(f32::from_bits((h & 0xffff) << 16));
        let mut max = 0f64;
        for (r, row) in out.iter().enumerate() {
            for (c, &o) in row.iter().enumerate() {
                let exact: f64 = (0..groups)
                    .map(|g| {
                        let (x, w) = (a[r * lda + g], b[g * COLS + c]);
                        value(x) * value(w) + value(x >> 16) * value(w >> 16)
                    })
                    .sum();
                max = max.max((f64::from(o) - exact).abs());
            }
        }
        println!("portable bf16 tile vs f64: max |diff| {max:.3e}");
        assert!(max < 1e-4, "{max}");
    }

    #[test]
    fn portable_int8_tile_is_the_exact_dot_product() {
        let (groups, lda) = (29, 31);
        let a = lcg(MAX_ROWS * lda, 3);
        let b = lcg(groups * COLS, 4);
        let mut out = [[0i32; COLS]; MAX_ROWS];
        // SAFETY: `tile` checked that `a` and `b` hold the tile's rows and panel.
        unsafe { int8_tile_portable(&tile(&a, lda, MAX_ROWS, &b, groups), &mut out) };
        for (r, row) in out.iter().enumerate() {
            for (c, &o) in row.iter().enumerate() {
                let exact: i64 = (0..groups)
                    .flat_map(|g| {
                        let x = a[r * lda + g].to_le_bytes();
                        let w = b[g * COLS + c].to_le_bytes();
                        (0..4).map(move |i| i64::from(x[i]) * i64::from(w[i] as i8))
                    })
                    .sum();
                assert_eq!(i64::from(o), exact, "row {r} column {c}");
            }
        }
    }

    /// The f64 emulation of a fused multiply-add equals the hardware's (`f32::mul_add`), on
    /// random values and on a sum whose f64 rounding lands exactly halfway between two f32.
    #[test]
    fn portable_fma_rounds_once() {
        let vals = lcg(30_000, 11);
        let f = |v: u32| f32::from_bits((v & 0x807f_ffff) | ((0x70 + (v >> 24) % 32) << 23));
        for chunk in vals.chunks_exact(3) {
            let (acc, x, w) = (f(chunk[0]), f(chunk[1]), f(chunk[2]));
            assert_eq!(fma(acc, x, w).to_bits(), x.mul_add(w, acc).to_bits());
        }
        // (1 + 2^-23) + 2^-24 (1 - 2^-30): in f64 the 2^-54 is lost and the sum sits on the f32
        // tie 1 + 2^-23 + 2^-24, which rounds to even (up); the true value is just below it.
        let acc = 1.0 + f32::EPSILON;
        let (x, w) = (
            2f32.powi(-24) * (1.0 + 2f32.powi(-15)),
            1.0 - 2f32.powi(-15),
        );
        let want = x.mul_add(w, acc);
        assert_eq!(want, acc, "the true value rounds down");
        assert_eq!(fma(acc, x, w).to_bits(), want.to_bits());
        // Results in the subnormal range, ties included.
        let tiny = |v: u32| f32::from_bits((v & 0x807f_ffff) | ((v >> 24) % 4) << 23);
        let scale = |v: u32| f32::from_bits((v & 0x807f_ffff) | ((0x3c + (v >> 24) % 8) << 23));
        for chunk in vals.chunks_exact(3) {
            let (acc, x, w) = (tiny(chunk[0]), scale(chunk[1]), scale(chunk[2]));
            assert_eq!(fma(acc, x, w).to_bits(), x.mul_add(w, acc).to_bits());
        }
        let (acc, x, w) = (
            f32::from_bits(0x007f_ffff),
            1.0 + f32::EPSILON,
            2f32.powi(-150),
        );
        assert_eq!(fma(acc, x, w).to_bits(), x.mul_add(w, acc).to_bits());
    }

    #[test]
    fn bf16_flushes_subnormal_inputs_and_results() {
        assert_eq!(bf16_input(0x0001).to_bits(), 0);
        assert_eq!(bf16_input(0x8001).to_bits(), 0x8000_0000);
        assert_eq!(bf16_input(0x3f80), 1.0);
        let tiny = f32::MIN_POSITIVE;
        assert_eq!(bf16_step(0.0, tiny, 0.5).to_bits(), 0);
        assert_eq!(bf16_step(0.0, -tiny, 0.5).to_bits(), 0x8000_0000);
        // A product below f32's range still moves a sum it is added to (fused).
        let acc = f32::MIN_POSITIVE * (1.0 + f32::EPSILON);
        let (x, w) = (-f32::MIN_POSITIVE, f32::EPSILON / 2.0);
        assert_eq!(bf16_step(acc, x, w).to_bits(), x.mul_add(w, acc).to_bits());
    }

    /// The AVX-512 kernels equal their twins bit for bit, on every row count (only where the
    /// CPU has them; `tools/avx512-emu` runs the same check under an emulator).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_kernels_equal_their_portable_twins() {
        let f32s = is_x86_feature_detected!("avx512f");
        let bf16 = f32s && is_x86_feature_detected!("avx512bf16");
        let vnni = f32s && is_x86_feature_detected!("avx512vnni");
        if !f32s {
            println!("skipped: this CPU has no AVX-512");
            return;
        }
        for (rows, groups) in (1..=MAX_ROWS).zip([1, 2, 5, 17, 64, 3, 128, 9, 31, 7, 384, 33]) {
            let lda = groups + rows % 3;
            let b = bf16_groups(groups * COLS, rows as u32);
            let a = bf16_groups(rows * lda, 100 + rows as u32);
            let t = tile(&a, lda, rows, &b, groups);
            let (mut want, mut got) = ([[0f32; COLS]; MAX_ROWS], [[0f32; COLS]; MAX_ROWS]);
            // SAFETY: AVX512F is present; `tile` checked the buffers; 1 <= rows <= MAX_ROWS.
            unsafe {
                f32_tile_portable(&t, &mut want);
                f32_tile(&t, &mut got);
            }
            let bits = |o: &[[f32; COLS]; MAX_ROWS]| o.map(|row| row.map(f32::to_bits));
            assert_eq!(bits(&want)[..rows], bits(&got)[..rows], "f32, {rows} rows");
            if bf16 {
                let (mut want, mut got) = ([[0f32; COLS]; MAX_ROWS], [[0f32; COLS]; MAX_ROWS]);
                // SAFETY: as above, and AVX512-BF16 is present.
                unsafe {
                    bf16_tile_portable(&t, &mut want);
                    bf16_tile(&t, &mut got);
                }
                // Real CPUs need not follow the SDM's order of the two products' roundings
                // (the emulator does, bit for bit): equal here to f32 summation error.
                let worst = want[..rows]
                    .iter()
                    .flatten()
                    .zip(got[..rows].iter().flatten())
                    .map(|(w, g)| (w - g).abs() / w.abs().max(1.0))
                    .fold(0f32, f32::max);
                assert!(worst < 1e-5, "bf16, {rows} rows, {groups} groups: {worst}");
            }
            if vnni {
                let (mut want, mut got) = ([[0i32; COLS]; MAX_ROWS], [[0i32; COLS]; MAX_ROWS]);
                // SAFETY: as above, and AVX512-VNNI is present.
                unsafe {
                    int8_tile_portable(&t, &mut want);
                    int8_tile(&t, &mut got);
                }
                assert_eq!(
                    want[..rows],
                    got[..rows],
                    "int8, {rows} rows, {groups} groups"
                );
            }
        }
    }
}
