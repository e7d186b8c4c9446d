//! Checks the AVX-512 kernels of `deberta-kernels` (`crates/deberta-kernels/src/avx512.rs`,
//! the crate built without `std`) against their portable twins,
//! as a freestanding binary (no libc, no syscalls) that `run.py` loads into an emulated
//! Sapphire Rapids CPU (Bochs, through the `bochscpu` Python package): CPUs without
//! AVX512-BF16 / AVX512-VNNI cannot run the kernels natively.
//!
//! `run(cases)` fills [`REPORT`] and returns the number of mismatches.

#![no_std]
#![no_main]

use deberta_kernels::avx512::{self, Tile, COLS, MAX_ROWS};

/// What the run found (read by `run.py`).
#[repr(C)]
pub struct Report {
    pub magic: u64,
    pub cases: u64,
    pub bf16_mismatches: u64,
    pub int8_mismatches: u64,
    pub f32_mismatches: u64,
    /// The first mismatching case (`u64::MAX` if none): `rows << 32 | groups`.
    pub first_bad: u64,
    /// The bits of one bf16 result (kernel, twin) and one int8 result, from the last case,
    /// so `run.py` can see that something was computed.
    pub sample: [u64; 2],
}

#[no_mangle]
pub static mut REPORT: Report = Report {
    magic: 0,
    cases: 0,
    bf16_mismatches: 0,
    int8_mismatches: 0,
    f32_mismatches: 0,
    first_bad: u64::MAX,
    sample: [0; 2],
};

const MAX_GROUPS: usize = 400;
static mut A: [u32; MAX_ROWS * (MAX_GROUPS + 3)] = [0; MAX_ROWS * (MAX_GROUPS + 3)];
static mut B: [u32; MAX_GROUPS * COLS] = [0; MAX_GROUPS * COLS];

fn lcg(s: &mut u32) -> u32 {
    *s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
    *s
}

/// Two bf16 values in about [-2, 2] (as in the kernel file's unit test), or, `tiny`, with
/// exponents 57-68 (about 2^-70 to 2^-59, with a few subnormals: sums and products reach
/// below f32's normal range, where the instruction flushes and fuses).
fn bf16_pair(v: u32, tiny: bool) -> u32 {
    let half = |v: u32| {
        let exponent = if tiny {
            // 0 (subnormal) once in 16, else 57-68.
            if (v >> 4).is_multiple_of(16) {
                0
            } else {
                57 + (v >> 8) % 12
            }
        } else {
            0x78 + (v >> 8) % 9
        };
        ((v & 0x807f) | (exponent << 7)) & 0xffff
    };
    half(v) | (half(v >> 16) << 16)
}

/// f32 values in about [2^-15, 2^16], either sign (normal sums, as the twin's FMA needs).
fn f32_bits(v: u32) -> u32 {
    (v & 0x807f_ffff) | ((0x70 + (v >> 24) % 32) << 23)
}

/// Runs every row count against several group counts; `mode` bit 0 checks bf16, bit 1 int8,
/// bit 2 f32.
///
/// # Safety
/// Called once, on one thread, on a CPU with the features `mode` names.
#[no_mangle]
pub unsafe extern "C" fn run(mode: u64) -> u64 {
    let report = &mut *core::ptr::addr_of_mut!(REPORT);
    let a = &mut *core::ptr::addr_of_mut!(A);
    let b = &mut *core::ptr::addr_of_mut!(B);
    report.magic = 0xA5A5_0512;
    let group_counts = [1usize, 2, 3, 7, 16, 33, 64, 129, 384];
    let mut seed = 12345u32;
    for rows in 1..=MAX_ROWS {
        for &groups in &group_counts {
            let lda = groups + rows % 3;
            for v in a.iter_mut().take(rows * lda) {
                *v = lcg(&mut seed);
            }
            for v in b.iter_mut().take(groups * COLS) {
                *v = lcg(&mut seed);
            }
            let t = Tile {
                a: a.as_ptr(),
                lda,
                rows,
                b: b.as_ptr(),
                groups,
            };
            let mut bad = false;
            if mode & 2 != 0 {
                let mut want = [[0i32; COLS]; MAX_ROWS];
                let mut got = [[0i32; COLS]; MAX_ROWS];
                avx512::int8_tile_portable(&t, &mut want);
                avx512::int8_tile(&t, &mut got);
                if want[..rows] != got[..rows] {
                    report.int8_mismatches += 1;
                    bad = true;
                }
                report.sample[1] = got[rows - 1][COLS - 1] as u32 as u64;
            }
            if mode & 4 != 0 {
                for v in a.iter_mut().take(rows * lda) {
                    *v = f32_bits(*v);
                }
                for v in b.iter_mut().take(groups * COLS) {
                    *v = f32_bits(*v);
                }
                let mut want = [[0f32; COLS]; MAX_ROWS];
                let mut got = [[0f32; COLS]; MAX_ROWS];
                avx512::f32_tile_portable(&t, &mut want);
                avx512::f32_tile(&t, &mut got);
                if !same_bits(&want[..rows], &got[..rows]) {
                    report.f32_mismatches += 1;
                    bad = true;
                }
            }
            if mode & 1 != 0 {
                // Every other case on tiny values.
                let tiny = report.cases % 2 == 1;
                for v in a.iter_mut().take(rows * lda) {
                    *v = bf16_pair(lcg(&mut seed) ^ *v, tiny);
                }
                for v in b.iter_mut().take(groups * COLS) {
                    *v = bf16_pair(lcg(&mut seed) ^ *v, tiny);
                }
                let mut want = [[0f32; COLS]; MAX_ROWS];
                let mut got = [[0f32; COLS]; MAX_ROWS];
                avx512::bf16_tile_portable(&t, &mut want);
                avx512::bf16_tile(&t, &mut got);
                if !same_bits(&want[..rows], &got[..rows]) {
                    report.bf16_mismatches += 1;
                    bad = true;
                }
                report.sample[0] = u64::from(got[rows - 1][0].to_bits()) << 32
                    | u64::from(want[rows - 1][0].to_bits());
            }
            if bad && report.first_bad == u64::MAX {
                report.first_bad = (rows as u64) << 32 | groups as u64;
            }
            report.cases += 1;
        }
    }
    report.bf16_mismatches + report.int8_mismatches + report.f32_mismatches
}

fn same_bits(a: &[[f32; COLS]], b: &[[f32; COLS]]) -> bool {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .all(|(x, y)| x.to_bits() == y.to_bits())
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        // SAFETY: `ud2` only raises #UD, which `run.py` reports.
        unsafe { core::arch::asm!("ud2") };
    }
}

// The memory functions the compiler may call (no libc here). Volatile accesses keep them
// from being turned back into calls to themselves. Safety, for all of them: the ranges they
// are given are valid for `n` bytes, as the C functions require.

/// # Safety
/// As for C's `memcpy`.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    for i in 0..n {
        core::ptr::write_volatile(dst.add(i), core::ptr::read_volatile(src.add(i)));
    }
    dst
}

/// # Safety
/// As for C's `memmove`.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) < (src as usize) {
        return memcpy(dst, src, n);
    }
    for i in (0..n).rev() {
        core::ptr::write_volatile(dst.add(i), core::ptr::read_volatile(src.add(i)));
    }
    dst
}

/// # Safety
/// As for C's `memset`.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, value: i32, n: usize) -> *mut u8 {
    for i in 0..n {
        core::ptr::write_volatile(dst.add(i), value as u8);
    }
    dst
}

/// # Safety
/// As for C's `memcmp`.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        let (x, y) = (
            core::ptr::read_volatile(a.add(i)),
            core::ptr::read_volatile(b.add(i)),
        );
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// # Safety
/// As for C's `bcmp`.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    memcmp(a, b, n)
}

/// `core` is built with unwinding tables that name this symbol; with `panic = "abort"` it is
/// never called.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
