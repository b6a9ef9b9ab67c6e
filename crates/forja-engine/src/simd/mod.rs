//! Small f32 vector kernels for the CPU hot paths: attention's row
//! products (over f32 or f16 cache rows), RMS norms, softmax exponentials, the SwiGLU gate. Each runs
//! at the active [`Isa`] level: AVX-512 (16 lanes) and AVX2+FMA (8 lanes)
//! on x86-64 (`x86`), NEON (4 lanes) on aarch64 (`arm`), portable loops
//! otherwise. The kernels are written once (`kernels`) over a register
//! type per level; the `*_at` forms take the level, so tests compare every
//! level the CPU runs against the portable one.
//!
//! The vector `exp` is Cephes' single-precision one (range reduction by
//! ln 2 in two parts, a degree-6 polynomial, scaling by 2ⁿ), within 2 ulp
//! of libm's over the range these kernels use; inputs below about −87 give
//! a result below 2⁻¹²⁶ (0 at AVX-512), not libm's denormals.

#![allow(unsafe_code)]

/// A level's entry points: each kernel of [`kernels`] compiled with the
/// level's target features over its register type `$v`. The callers in
/// this module check the level was detected before calling.
macro_rules! level {
    ($features:literal, $v:ty) => {
        #[target_feature(enable = $features)]
        pub(in crate::simd) unsafe fn dot_rows<E: crate::simd::Elem>(
            q: &[f32],
            rows: &[E],
            stride: usize,
            scale: f32,
            out: &mut [f32],
        ) {
            crate::simd::kernels::dot_rows::<$v, E>(q, rows, stride, scale, out)
        }
        #[target_feature(enable = $features)]
        pub(in crate::simd) unsafe fn axpy_rows<E: crate::simd::Elem>(
            p: &[f32],
            rows: &[E],
            stride: usize,
            out: &mut [f32],
        ) {
            crate::simd::kernels::axpy_rows::<$v, E>(p, rows, stride, out)
        }
        #[target_feature(enable = $features)]
        pub(in crate::simd) unsafe fn exp_affine(x: &mut [f32], a: f32, b: f32) -> f64 {
            crate::simd::kernels::exp_affine::<$v>(x, a, b)
        }
        #[target_feature(enable = $features)]
        pub(in crate::simd) unsafe fn silu_mul(g: &[f32], u: &[f32], out: &mut [f32]) {
            crate::simd::kernels::silu_mul::<$v>(g, u, out)
        }
        #[target_feature(enable = $features)]
        pub(in crate::simd) unsafe fn silu_mul_bwd(
            g: &[f32],
            u: &[f32],
            gy: &[f32],
            dg: &mut [f32],
            du: &mut [f32],
        ) {
            crate::simd::kernels::silu_mul_bwd::<$v>(g, u, gy, dg, du)
        }
    };
}

/// Returns from the calling `*_at` function with kernel `$f` of level
/// `$isa` when that level has one (the portable loops after the macro run
/// otherwise). The caller states why the call is sound: the level was
/// detected (`Isa::active` or `Isa::available`) and the slices' bounds
/// were checked.
macro_rules! dispatch {
    ($isa:expr, $f:ident($($arg:expr),*)) => {
        match $isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => return unsafe { x86::avx512::$f($($arg),*) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => return unsafe { x86::avx2::$f($($arg),*) },
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => return unsafe { arm::neon::$f($($arg),*) },
            _ => {}
        }
    };
}

#[cfg(target_arch = "aarch64")]
mod arm;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod kernels;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

use crate::isa::Isa;
use half::f16;

/// An element type rows of the KV cache are stored in: f32, or f16
/// (converted to f32 as it is loaded, by `vcvtph2ps` / `fcvtl`).
pub(crate) trait Elem: Copy + Send + Sync + 'static {
    /// Whether the element is an IEEE half (else f32).
    const F16: bool;
    fn to_f32(self) -> f32;
    /// `dst[i] = src[i]`, rounded to the element type (the cache's writes).
    fn store(dst: &mut [Self], src: &[f32]);
}

impl Elem for f32 {
    const F16: bool = false;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    fn store(dst: &mut [f32], src: &[f32]) {
        dst.copy_from_slice(src)
    }
}

impl Elem for f16 {
    const F16: bool = true;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn store(dst: &mut [f16], src: &[f32]) {
        use half::slice::HalfFloatSliceExt;
        dst.convert_from_f32_slice(src)
    }
}

/// `out[j] = scale · (q · rows[j])` for `out.len()` rows of `q.len()`
/// values, `stride` apart in `rows` (attention scores over a KV cache).
pub(crate) fn dot_rows<E: Elem>(q: &[f32], rows: &[E], stride: usize, scale: f32, out: &mut [f32]) {
    dot_rows_at(Isa::active(), q, rows, stride, scale, out)
}

fn dot_rows_at<E: Elem>(
    isa: Isa,
    q: &[f32],
    rows: &[E],
    stride: usize,
    scale: f32,
    out: &mut [f32],
) {
    let (d, n) = (q.len(), out.len());
    assert!(n == 0 || (n - 1) * stride + d <= rows.len());
    // SAFETY: the level was detected, and the assert above bounds every
    // row read.
    dispatch!(isa, dot_rows(q, rows, stride, scale, out));
    for (j, o) in out.iter_mut().enumerate() {
        let r = &rows[j * stride..][..d];
        *o = scale * q.iter().zip(r).map(|(a, b)| a * b.to_f32()).sum::<f32>();
    }
}

/// `out += Σ_j p[j] · rows[j]` for `p.len()` rows of `out.len()` values,
/// `stride` apart in `rows` (attention's weighted sum of values).
pub(crate) fn axpy_rows<E: Elem>(p: &[f32], rows: &[E], stride: usize, out: &mut [f32]) {
    axpy_rows_at(Isa::active(), p, rows, stride, out)
}

fn axpy_rows_at<E: Elem>(isa: Isa, p: &[f32], rows: &[E], stride: usize, out: &mut [f32]) {
    let (d, n) = (out.len(), p.len());
    assert!(n == 0 || (n - 1) * stride + d <= rows.len());
    // SAFETY: as in `dot_rows_at`.
    dispatch!(isa, axpy_rows(p, rows, stride, out));
    for (j, &w) in p.iter().enumerate() {
        for (o, &v) in out.iter_mut().zip(&rows[j * stride..][..d]) {
            *o += w * v.to_f32();
        }
    }
}

/// `Σ x_i²`, accumulated in f64 like GGML's reference RMS norm.
#[inline]
pub(crate) fn sum_sq(x: &[f32]) -> f64 {
    sum_sq_at(Isa::active(), x)
}

fn sum_sq_at(isa: Isa, x: &[f32]) -> f64 {
    // SAFETY (every arm): the level was detected; reads stay inside `x`.
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 => return unsafe { x86::sum_sq(x) },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => return unsafe { arm::sum_sq(x) },
        _ => {}
    }
    x.iter().map(|&v| (v as f64) * (v as f64)).sum()
}

/// `x_i = exp(a·x_i + b)` in place; returns `Σ x_i` (accumulated in f32
/// lanes, added up in f64). Softmax rows: `a` the score scale, `b` minus
/// the (scaled) maximum.
pub(crate) fn exp_affine(x: &mut [f32], a: f32, b: f32) -> f64 {
    exp_affine_at(Isa::active(), x, a, b)
}

fn exp_affine_at(isa: Isa, x: &mut [f32], a: f32, b: f32) -> f64 {
    // SAFETY: the level was detected; reads and writes stay inside `x`.
    dispatch!(isa, exp_affine(x, a, b));
    let mut sum = 0f64;
    for v in x.iter_mut() {
        *v = (a * *v + b).exp();
        sum += *v as f64;
    }
    sum
}

/// `out_i = silu(g_i) · u_i` (the SwiGLU gate).
pub(crate) fn silu_mul(g: &[f32], u: &[f32], out: &mut [f32]) {
    silu_mul_at(Isa::active(), g, u, out)
}

fn silu_mul_at(isa: Isa, g: &[f32], u: &[f32], out: &mut [f32]) {
    assert!(g.len() == out.len() && u.len() == out.len());
    // SAFETY: the level was detected; the slices have one length
    // (asserted above).
    dispatch!(isa, silu_mul(g, u, out));
    for ((o, &g), &u) in out.iter_mut().zip(g).zip(u) {
        *o = g / (1.0 + (-g).exp()) * u;
    }
}

/// The gradients of [`silu_mul`]: with `σ = sigmoid(g)`,
/// `∂g = ∂y·u·σ·(1 + g·(1 − σ))` and `∂u = ∂y·g·σ`.
pub(crate) fn silu_mul_bwd(g: &[f32], u: &[f32], gy: &[f32], dg: &mut [f32], du: &mut [f32]) {
    silu_mul_bwd_at(Isa::active(), g, u, gy, dg, du)
}

fn silu_mul_bwd_at(isa: Isa, g: &[f32], u: &[f32], gy: &[f32], dg: &mut [f32], du: &mut [f32]) {
    let n = dg.len();
    assert!(g.len() == n && u.len() == n && gy.len() == n && du.len() == n);
    // SAFETY: the level was detected; the slices have one length
    // (asserted above).
    dispatch!(isa, silu_mul_bwd(g, u, gy, dg, du));
    for i in 0..n {
        let sig = 1.0 / (1.0 + (-g[i]).exp());
        dg[i] = gy[i] * u[i] * sig * (1.0 + g[i] * (1.0 - sig));
        du[i] = gy[i] * g[i] * sig;
    }
}

/// Cephes' `expf` constants, shared by every vector level.
#[allow(dead_code)]
mod cephes {
    pub const LOG2E: f32 = std::f32::consts::LOG2_E;
    /// ln 2 in two parts: `C1` exact in few bits, `C2` the rest.
    pub const C1: f32 = 0.693_359_4;
    pub const C2: f32 = -2.121_944_4e-4;
    /// The polynomial for `e^r`, `r ∈ [−ln2/2, ln2/2]`, highest degree first.
    pub const P: [f32; 6] =
        [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5];
    /// Inputs are clamped to this range (2ⁿ stays a normal f32 for the
    /// levels that build it from exponent bits).
    pub const LO: f32 = -87.336_55;
    pub const HI: f32 = 88.0;
}

#[cfg(test)]
mod tests;
