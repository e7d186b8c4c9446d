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
}

impl AttentionProducts {
    /// A name for reports.
    pub fn name(self) -> &'static str {
        match self {
            AttentionProducts::PackedAvx2 => "avx2-fma packed",
            AttentionProducts::GemmCrate => "gemm crate",
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
            "linear layers: f32 on {}, bf16 on {}, int8 on {}; attention products on {}; row passes {rows}",
            self.linear_kernel(LinearFormat::F32),
            self.linear_kernel(LinearFormat::Bf16),
            self.linear_kernel(LinearFormat::Int8),
            self.attention_products().name(),
        )
    }
}
