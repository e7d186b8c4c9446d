//! The CPU features the kernels are chosen by, detected once per process.

use std::sync::OnceLock;

/// What this CPU can run, as the kernels need it. [`CpuFeatures::detect`] reads the CPU once;
/// a plan may also carry fewer features than the CPU has (to run the portable kernels on any
/// machine, for example). Kernels that execute the instructions check the CPU itself as well,
/// so a plan claiming more than the CPU has gets an error, never an illegal instruction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    /// AVX2 (the int8 `vpmaddubsw` kernel).
    pub avx2: bool,
    /// AVX2 and FMA (the packed f32 / bf16 GEMM, the attention tiles, the row passes).
    pub avx2_fma: bool,
    /// AVX512F (the `vfmadd231ps` linear kernel).
    pub avx512f: bool,
    /// AVX512F and AVX512-BF16 (the `vdpbf16ps` linear kernel).
    pub avx512bf16: bool,
    /// AVX512F and AVX512-VNNI (the `vpdpbusd` int8 kernel).
    pub avx512vnni: bool,
}

impl CpuFeatures {
    /// No features: every choice falls to the portable kernels or the `gemm` crate.
    pub const NONE: Self = Self {
        avx2: false,
        avx2_fma: false,
        avx512f: false,
        avx512bf16: false,
        avx512vnni: false,
    };

    /// This CPU's features (read on the first call, then cached).
    pub fn detect() -> Self {
        static FEATURES: OnceLock<CpuFeatures> = OnceLock::new();
        *FEATURES.get_or_init(Self::read)
    }

    #[cfg(target_arch = "x86_64")]
    fn read() -> Self {
        use std::arch::is_x86_feature_detected as has;
        let avx512f = has!("avx512f");
        Self {
            avx2: has!("avx2"),
            avx2_fma: has!("avx2") && has!("fma"),
            avx512f,
            avx512bf16: avx512f && has!("avx512bf16"),
            avx512vnni: avx512f && has!("avx512vnni"),
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn read() -> Self {
        Self::NONE
    }

    /// Whether the packed AVX2 GEMM ([`crate::sgemm`]) is the kernel of choice: AVX2 + FMA
    /// and no AVX-512 (where 512-bit kernels have twice its peak: the linear layers run on
    /// [`crate::avx512`]'s, the attention products on the `gemm` crate's).
    pub fn packed_avx2(&self) -> bool {
        self.avx2_fma && !self.avx512f
    }
}

/// Whether this CPU has AVX2 and FMA (what [`crate::simd_fn!`] bodies and the attention's
/// vector tiles are compiled for).
#[inline]
pub(crate) fn avx2_fma() -> bool {
    CpuFeatures::detect().avx2_fma
}
