//! The kernel choice, made once from the CPU's features and the caller's settings: which
//! GEMM multiplies the linear layers in each [`LinearFormat`], and which the attention
//! products.

use std::fmt;
use std::str::FromStr;

use crate::avx512_linear::Kind;
use crate::features::CpuFeatures;
use crate::int8::Kernel;
use crate::Error;

/// How the encoder's linear layers are stored and multiplied on the CPU (`--dtype`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LinearFormat {
    /// f32 weights and inputs (packed for the AVX2 kernel on first use).
    #[default]
    F32,
    /// Weights and each call's inputs rounded to bf16 (nearest, ties to even), products
    /// summed in f32; bias and activation in f32. On CPUs with AVX512-BF16 `vdpbf16ps`
    /// multiplies them; on AVX2 CPUs the packed copy is half the size of f32's; elsewhere the
    /// rounded weights are an extra f32 copy.
    Bf16,
    /// Dynamic int8: weights per output channel once, activations per token at each call,
    /// exact integer sums (`vpdpbusd` on CPUs with AVX512-VNNI, else AVX2 or portable, all with
    /// the same results).
    Int8,
}

impl LinearFormat {
    /// Every format, in the order of [`Self::NAMES`].
    pub const ALL: [Self; 3] = [Self::F32, Self::Bf16, Self::Int8];
    /// The names `FromStr` accepts and `Display` writes, as the CLI lists them.
    pub const NAMES: [&'static str; 3] = ["f32", "bf16", "int8"];

    /// This format's name in [`Self::NAMES`].
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl FromStr for LinearFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| Error::UnknownFormat(s.to_string()))
    }
}

impl fmt::Display for LinearFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the AVX-512 linear-layer kernels (f32 `vfmadd231ps`, bf16 `vdpbf16ps`, int8
/// `vpdpbusd`) are used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Avx512Mode {
    /// Where the CPU has them.
    #[default]
    Auto,
    /// Never (to compare against the AVX2 or portable kernels on the same machine).
    Off,
    /// Their layouts on the kernels' portable twins, which give the same results bit for bit,
    /// slowly, on any CPU (to test those paths end to end where the CPU lacks the
    /// instructions).
    Portable,
}

/// Which kernels run: the CPU features to choose by, how the AVX-512 kernels are used, and
/// whether the f32 / bf16 linear layers get packed copies at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelPlan {
    /// The features kernels are chosen by (normally [`CpuFeatures::detect`]).
    pub features: CpuFeatures,
    /// How the AVX-512 kernels are used.
    pub avx512: Avx512Mode,
    /// Whether the f32 and bf16 linear layers are packed for our kernels (AVX2 or AVX-512);
    /// `false` keeps the `gemm` crate on the (rounded) f32 weights. The attention products
    /// do not depend on it ([`Self::attention_products`]).
    pub packed: bool,
    /// Whether a model with int8 linear layers multiplies its attention products in int8 too
    /// ([`Self::int8_attention_products`]; `false`, the default: in f32, as f32 models do).
    pub int8_attention: bool,
}

impl Default for KernelPlan {
    /// [`KernelPlan::detect`].
    fn default() -> Self {
        Self::detect()
    }
}

/// Which packed copy the f32 or bf16 linear layers get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Packing {
    /// For the AVX-512 kernels ([`crate::avx512_linear`]).
    Avx512,
    /// For the AVX2 kernel ([`crate::sgemm`]).
    Avx2,
    /// None: the `gemm` crate multiplies the (rounded) f32 weights.
    None,
}

/// What multiplies the attention products (`Q·Kᵀ`, the position terms, `P·V`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionProducts {
    /// The packed AVX2 GEMM, each head's right operands packed once per (head, sequence).
    PackedAvx2,
    /// The `gemm` crate, operands read in place.
    GemmCrate,
    /// Int8 operands on an int8 kernel ([`crate::int8_products`]): what int8 models use
    /// ([`KernelPlan::int8_attention_products`]).
    Int8(Kernel),
}

impl AttentionProducts {
    /// A name for reports.
    pub fn name(self) -> &'static str {
        match self {
            AttentionProducts::PackedAvx2 => "avx2-fma packed",
            AttentionProducts::GemmCrate => "gemm crate",
            AttentionProducts::Int8(Kernel::Vnni) => "int8 on avx512-vnni vpdpbusd",
            AttentionProducts::Int8(Kernel::Avx2) => "int8 on avx2 vpmaddubsw",
            AttentionProducts::Int8(Kernel::Portable) => "int8 on portable int8",
        }
    }
}

impl KernelPlan {
    /// A plan from its parts.
    pub fn new(features: CpuFeatures, avx512: Avx512Mode, packed: bool) -> Self {
        Self {
            features,
            avx512,
            packed,
            int8_attention: false,
        }
    }

    /// The default plan for this CPU: its features, the AVX-512 kernels where it has them,
    /// packed weights.
    pub fn detect() -> Self {
        Self::new(CpuFeatures::detect(), Avx512Mode::Auto, true)
    }

    /// What the linear layers in `format` are multiplied with under this plan (a name for
    /// reports such as `deberta bench`'s `linear_kernel`).
    pub fn linear_kernel(&self, format: LinearFormat) -> &'static str {
        let kind = match format {
            LinearFormat::F32 => Kind::F32,
            LinearFormat::Bf16 => Kind::Bf16,
            LinearFormat::Int8 => return self.int8_kernel().name(),
        };
        match (self.packing(kind), kind) {
            (Packing::Avx512, _) => kind.kernel_name(self.avx512_hardware(kind)),
            (Packing::Avx2, Kind::F32) => "avx2-fma packed f32",
            (Packing::Avx2, Kind::Bf16) => "avx2-fma packed bf16",
            (Packing::None, Kind::F32) => "gemm crate f32",
            (Packing::None, Kind::Bf16) => "gemm crate on bf16-rounded f32",
        }
    }

    /// What multiplies the attention products: the packed AVX2 GEMM where the features make
    /// it the kernel of choice ([`CpuFeatures::packed_avx2`]), else the `gemm` crate.
    pub fn attention_products(&self) -> AttentionProducts {
        if self.features.packed_avx2() {
            AttentionProducts::PackedAvx2
        } else {
            AttentionProducts::GemmCrate
        }
    }

    /// What multiplies the attention products of a model whose linear layers are in int8:
    /// int8 operands on the plan's int8 kernel ([`Self::int8_kernel`]), or with
    /// `int8_attention` off the f32 kernel ([`Self::attention_products`]).
    pub fn int8_attention_products(&self) -> AttentionProducts {
        if self.int8_attention {
            AttentionProducts::Int8(self.int8_kernel())
        } else {
            self.attention_products()
        }
    }

    /// The AVX-512 kernels where [`Self::avx512_chosen`], else the AVX2 kernel where the
    /// features make it the kernel of choice, else none; none when not `packed`.
    pub(crate) fn packing(&self, kind: Kind) -> Packing {
        if !self.packed {
            Packing::None
        } else if self.avx512_chosen(kind) {
            Packing::Avx512
        } else if self.features.packed_avx2() {
            Packing::Avx2
        } else {
            Packing::None
        }
    }

    /// Whether the `kind` linear layers use the AVX-512 layout: where the features have the
    /// instructions in [`Avx512Mode::Auto`], always in [`Avx512Mode::Portable`].
    fn avx512_chosen(&self, kind: Kind) -> bool {
        match self.avx512 {
            Avx512Mode::Off => false,
            Avx512Mode::Portable => true,
            Avx512Mode::Auto => self.avx512_available(kind),
        }
    }

    /// Whether the features include the `kind` AVX-512 kernel's instructions.
    fn avx512_available(&self, kind: Kind) -> bool {
        self.features.avx512f && (kind == Kind::F32 || self.features.avx512bf16)
    }

    /// Whether the AVX-512 layout runs on the instructions (else on their portable twins).
    pub(crate) fn avx512_hardware(&self, kind: Kind) -> bool {
        self.avx512_available(kind) && self.avx512 != Avx512Mode::Portable
    }

    /// The int8 kernel: `vpdpbusd` where the features have AVX512-VNNI (not with
    /// [`Avx512Mode::Off`]), else `vpmaddubsw` where they have AVX2, else plain Rust (always
    /// with [`Avx512Mode::Portable`]).
    pub fn int8_kernel(&self) -> Kernel {
        match self.avx512 {
            Avx512Mode::Portable => Kernel::Portable,
            Avx512Mode::Auto if self.features.avx512f && self.features.avx512vnni => Kernel::Vnni,
            _ if self.features.avx2 => Kernel::Avx2,
            _ => Kernel::Portable,
        }
    }
}

impl fmt::Display for KernelPlan {
    /// One line naming the kernels that run: each linear format's, the attention products'
    /// and the row passes' instruction set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows = if crate::features::avx2_fma() {
            "avx2+fma"
        } else {
            "baseline"
        };
        write!(
            f,
            "linear layers: f32 on {}, bf16 on {}, int8 on {}; attention products on {} (int8 models: {}); row passes {rows}",
            self.linear_kernel(LinearFormat::F32),
            self.linear_kernel(LinearFormat::Bf16),
            self.linear_kernel(LinearFormat::Int8),
            self.attention_products().name(),
            self.int8_attention_products().name(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::pseudo_random;
    use crate::{linear_f32, LinearScratch, PreparedLinear};

    /// The kernel names each setting gives, from the features alone (whatever this CPU has).
    #[test]
    fn linear_kernels_follow_the_features_and_the_settings() {
        let none = KernelPlan::new(CpuFeatures::NONE, Avx512Mode::Auto, true);
        assert_eq!(none.linear_kernel(LinearFormat::F32), "gemm crate f32");
        assert_eq!(
            none.linear_kernel(LinearFormat::Bf16),
            "gemm crate on bf16-rounded f32"
        );
        assert_eq!(none.linear_kernel(LinearFormat::Int8), "portable int8");
        assert_eq!(none.attention_products(), AttentionProducts::GemmCrate);

        let avx2 = CpuFeatures {
            avx2: true,
            avx2_fma: true,
            ..CpuFeatures::NONE
        };
        let plan = KernelPlan::new(avx2, Avx512Mode::Auto, true);
        assert_eq!(plan.linear_kernel(LinearFormat::F32), "avx2-fma packed f32");
        assert_eq!(
            plan.linear_kernel(LinearFormat::Bf16),
            "avx2-fma packed bf16"
        );
        assert_eq!(plan.linear_kernel(LinearFormat::Int8), "avx2 vpmaddubsw");
        assert_eq!(plan.attention_products(), AttentionProducts::PackedAvx2);
        let unpacked = KernelPlan {
            packed: false,
            ..plan
        };
        assert_eq!(unpacked.linear_kernel(LinearFormat::F32), "gemm crate f32");
        assert_eq!(unpacked.attention_products(), AttentionProducts::PackedAvx2);

        let portable = KernelPlan::new(avx2, Avx512Mode::Portable, true);
        assert_eq!(
            portable.linear_kernel(LinearFormat::F32),
            "portable f32 (avx512 layout)"
        );
        assert_eq!(
            portable.linear_kernel(LinearFormat::Bf16),
            "portable bf16 (pairs)"
        );
        assert_eq!(portable.linear_kernel(LinearFormat::Int8), "portable int8");

        let sapphire = CpuFeatures {
            avx512f: true,
            avx512bf16: true,
            avx512vnni: true,
            ..avx2
        };
        let plan = KernelPlan::new(sapphire, Avx512Mode::Auto, true);
        assert_eq!(plan.linear_kernel(LinearFormat::F32), "avx512f packed f32");
        assert_eq!(
            plan.linear_kernel(LinearFormat::Bf16),
            "avx512-bf16 vdpbf16ps"
        );
        assert_eq!(
            plan.linear_kernel(LinearFormat::Int8),
            "avx512-vnni vpdpbusd"
        );
        assert_eq!(plan.attention_products(), AttentionProducts::GemmCrate);
        let off = KernelPlan::new(sapphire, Avx512Mode::Off, true);
        assert_eq!(off.linear_kernel(LinearFormat::F32), "gemm crate f32");
        assert_eq!(off.linear_kernel(LinearFormat::Int8), "avx2 vpmaddubsw");
        let line = plan.to_string();
        assert!(
            line.contains("avx512f packed f32") && line.contains("gemm crate"),
            "{line}"
        );
    }

    /// A plan claiming instructions this CPU lacks is refused when weights are prepared.
    #[test]
    fn a_plan_beyond_this_cpu_is_an_error() {
        let claims = CpuFeatures {
            avx512f: true,
            avx512bf16: true,
            avx512vnni: true,
            ..CpuFeatures::detect()
        };
        let plan = KernelPlan::new(claims, Avx512Mode::Auto, true);
        let w = pseudo_random(6, 1);
        let cpu = CpuFeatures::detect();
        assert_eq!(
            PreparedLinear::packed_f32(&plan, &w, 3, 2).is_ok(),
            cpu.avx512f
        );
        assert_eq!(
            PreparedLinear::bf16(&plan, &w, 3, 2).is_ok(),
            cpu.avx512bf16
        );
        assert_eq!(
            PreparedLinear::int8(&plan, &w, 3, 2).is_ok(),
            cpu.avx512vnni
        );
    }

    /// The portable plan runs the AVX-512 layouts on the twins, on any CPU: close to the
    /// `gemm` crate's product (f32) and to the f32 product of the rounded values (bf16).
    #[test]
    fn the_portable_plan_prepares_the_avx512_layouts() {
        let plan = KernelPlan::new(CpuFeatures::detect(), Avx512Mode::Portable, true);
        let (rows, in_dim, out_dim) = (13, 37, 21);
        let x = pseudo_random(rows * in_dim, 2);
        let w = pseudo_random(out_dim * in_dim, 3);
        let mut want = vec![0f32; rows * out_dim];
        linear_f32(&x, &w, in_dim, &mut want, None).unwrap();
        let mut scratch = LinearScratch::default();
        let f32s = PreparedLinear::packed_f32(&plan, &w, out_dim, in_dim)
            .unwrap()
            .unwrap();
        assert!(matches!(f32s, PreparedLinear::Avx512(_)));
        let mut got = vec![f32::NAN; rows * out_dim];
        f32s.forward(&x, &mut got, None, &mut scratch).unwrap();
        let diff = crate::test_util::max_diff(&got, &want);
        assert!(diff < 1e-5, "f32: {diff}");
        let bf16 = PreparedLinear::bf16(&plan, &w, out_dim, in_dim).unwrap();
        assert!(matches!(bf16, PreparedLinear::Avx512(_)));
        bf16.forward(&x, &mut got, None, &mut scratch).unwrap();
        let diff = crate::test_util::max_diff(&got, &want);
        assert!(diff > 1e-5 && diff < 0.05, "bf16: {diff}");
        let int8 = PreparedLinear::int8(&plan, &w, out_dim, in_dim).unwrap();
        int8.forward(&x, &mut got, None, &mut scratch).unwrap();
        let diff = crate::test_util::max_diff(&got, &want);
        assert!(diff < 0.01 * (in_dim as f32).sqrt(), "int8: {diff}");
    }

    #[test]
    fn format_names_round_trip() {
        for name in LinearFormat::NAMES {
            let format: LinearFormat = name.parse().unwrap();
            assert_eq!(format.to_string(), name);
        }
        let err = "fp16".parse::<LinearFormat>().unwrap_err().to_string();
        assert!(err.contains("fp16") && err.contains("bf16"), "{err}");
    }
}
