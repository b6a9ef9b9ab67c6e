//! Which vector instruction set forja's own CPU kernels use: the best this
//! CPU runs, or a lower one forced with `FORJA_ISA=scalar|avx2|avx512`
//! (`scalar|neon` on aarch64), so tests compare every level against the
//! scalar reference and benchmarks show what each level gains. `FORJA_NO_SIMD` (any value) still means
//! `scalar`. The `gemm` crate behind dense matmuls detects its own level
//! and ignores this.

/// A level of forja's kernels, lowest first. Levels of the two
/// architectures never meet: an x86-64 CPU runs scalar, avx2, avx512; an
/// aarch64 one scalar and neon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable loops, the reference every other level is tested against.
    Scalar,
    /// aarch64 Advanced SIMD (NEON).
    Neon,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX2's set plus AVX-512 F/BW/VL and VNNI (int8 dot products).
    Avx512,
}

impl Isa {
    /// Every level of every architecture.
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Neon, Isa::Avx2, Isa::Avx512];

    /// The name `FORJA_ISA` takes.
    pub const fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Neon => "neon",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// The best level this CPU runs.
    pub fn detected() -> Isa {
        static BEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *BEST.get_or_init(detect)
    }

    /// The level the kernels use: [`Isa::detected`], lowered by
    /// `FORJA_ISA` (a level above the CPU's, or an unknown name, is
    /// ignored here; [`check_env`] reports it).
    pub fn active() -> Isa {
        static ACTIVE: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *ACTIVE.get_or_init(|| match forced() {
            Ok(Some(isa)) if isa.native() => isa.min(Isa::detected()),
            _ => Isa::detected(),
        })
    }

    /// f32 lanes of one vector register at this level.
    pub const fn f32_lanes(self) -> usize {
        match self {
            Isa::Scalar => 1,
            Isa::Neon => 4,
            Isa::Avx2 => 8,
            Isa::Avx512 => 16,
        }
    }

    /// Whether this level belongs to the architecture forja was built for.
    pub fn native(self) -> bool {
        match self {
            Isa::Scalar => true,
            Isa::Neon => cfg!(target_arch = "aarch64"),
            Isa::Avx2 | Isa::Avx512 => cfg!(target_arch = "x86_64"),
        }
    }

    /// The levels this CPU runs, lowest first (what tests iterate over).
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|&i| i.native() && i <= Isa::detected()).collect()
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Isa {
    type Err = String;

    fn from_str(s: &str) -> Result<Isa, String> {
        Isa::ALL
            .into_iter()
            .find(|i| i.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown level `{s}`: use scalar, avx2, avx512 or neon"))
    }
}

/// What `FORJA_ISA` (or `FORJA_NO_SIMD`) asks for.
fn forced() -> Result<Option<Isa>, String> {
    if std::env::var_os("FORJA_NO_SIMD").is_some() {
        return Ok(Some(Isa::Scalar));
    }
    match std::env::var("FORJA_ISA") {
        Ok(v) if !v.trim().is_empty() => v.parse().map(Some),
        _ => Ok(None),
    }
}

/// A one-line error for a `FORJA_ISA` that is unknown or above what this
/// CPU runs (the engine refuses to load rather than silently measure
/// another level).
pub fn check_env() -> Result<(), String> {
    match forced() {
        Err(e) => Err(format!("FORJA_ISA: {e}")),
        Ok(Some(isa)) if !isa.native() || isa > Isa::detected() => {
            let levels: Vec<&str> = Isa::available().into_iter().map(Isa::name).collect();
            Err(format!("FORJA_ISA={isa}: this CPU runs {}", levels.join(", ")))
        }
        _ => Ok(()),
    }
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Isa {
    let avx2 = is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c");
    let avx512 = is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni");
    match (avx2, avx512) {
        (true, true) => Isa::Avx512,
        (true, false) => Isa::Avx2,
        _ => Isa::Scalar,
    }
}

#[cfg(target_arch = "aarch64")]
fn detect() -> Isa {
    if std::arch::is_aarch64_feature_detected!("neon") {
        Isa::Neon
    } else {
        Isa::Scalar
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn detect() -> Isa {
    Isa::Scalar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_order() {
        assert_eq!("AVX512".parse::<Isa>(), Ok(Isa::Avx512));
        assert_eq!("neon".parse::<Isa>(), Ok(Isa::Neon));
        assert!("sse2".parse::<Isa>().unwrap_err().contains("use scalar, avx2, avx512 or neon"));
        assert!(Isa::Scalar < Isa::Avx2 && Isa::Avx2 < Isa::Avx512);
        assert_eq!(Isa::available()[0], Isa::Scalar);
        assert!(Isa::available().iter().all(|i| i.native()));
        // One architecture's levels are never another's.
        assert!(Isa::Neon.native() != Isa::Avx2.native());
        assert!(Isa::active() <= Isa::detected());
    }
}
