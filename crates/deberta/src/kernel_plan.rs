//! Placeholder for `deberta_kernels::{KernelPlan, CpuFeatures, Avx512Mode}` until the kernels
//! crate lands; same shape.

use std::fmt;

use crate::model::LinearFormat;

/// CPU features the kernels dispatch on, detected once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuFeatures {
    pub avx2_fma: bool,
    pub avx512f: bool,
}

impl CpuFeatures {
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            Self {
                avx2_fma: std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma"),
                avx512f: std::arch::is_x86_feature_detected!("avx512f"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Self::default()
    }
}

/// How the AVX-512 kernels are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Avx512Mode {
    #[default]
    Auto,
    Off,
    Portable,
}

/// The kernels the fused path runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelPlan {
    pub features: CpuFeatures,
    pub avx512: Avx512Mode,
    pub packed: bool,
}

impl KernelPlan {
    pub fn new(features: CpuFeatures, avx512: Avx512Mode, packed: bool) -> Self {
        Self {
            features,
            avx512,
            packed,
        }
    }

    pub fn linear_kernel(&self, format: LinearFormat) -> &'static str {
        crate::cpu::linear_kernel(format)
    }
}

impl fmt::Display for KernelPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} avx512={:?} packed={}",
            self.features, self.avx512, self.packed
        )
    }
}
