//! x86-64 levels of [`super`]: AVX2+FMA (`__m256`, 8 lanes) and AVX-512 F
//! (`__m512`, 16 lanes), both with F16C for f16 cache rows, as [`Lanes`] implementations and the kernels of
//! [`super::kernels`] compiled for each (`avx2::*`, `avx512::*`); plus the
//! AVX2 sum of squares. Only reached through `super`'s dispatch, after
//! detection.

use super::cephes::LO;
use super::kernels::Lanes;
use std::arch::x86_64::*;

pub(super) mod avx2 {
    use std::arch::x86_64::__m256;
    level!("avx2,fma,f16c", __m256);
}

pub(super) mod avx512 {
    use std::arch::x86_64::__m512;
    level!("avx512f,avx2,fma,f16c", __m512);
}

#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn sum_sq(x: &[f32]) -> f64 {
    let n = x.len();
    let p = x.as_ptr();
    let mut acc = _mm256_setzero_pd();
    let mut i = 0;
    while i + 4 <= n {
        let v = _mm256_cvtps_pd(_mm_loadu_ps(p.add(i)));
        acc = _mm256_fmadd_pd(v, v, acc);
        i += 4;
    }
    let mut lanes = [0f64; 4];
    _mm256_storeu_pd(lanes.as_mut_ptr(), acc);
    let mut s = lanes.iter().sum::<f64>();
    while i < n {
        let v = *p.add(i) as f64;
        s += v * v;
        i += 1;
    }
    s
}

/// Sum of the eight lanes.
#[inline(always)]
pub(crate) unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

impl Lanes for __m256 {
    const N: usize = 8;
    const EXP_LO: f32 = LO;
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        _mm256_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u16) -> Self {
        _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        _mm256_storeu_ps(p, self)
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        _mm256_add_ps(self, b)
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        _mm256_sub_ps(self, b)
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        _mm256_mul_ps(self, b)
    }
    #[inline(always)]
    unsafe fn div(self, b: Self) -> Self {
        _mm256_div_ps(self, b)
    }
    #[inline(always)]
    unsafe fn fma(self, b: Self, c: Self) -> Self {
        _mm256_fmadd_ps(self, b, c)
    }
    #[inline(always)]
    unsafe fn min(self, b: Self) -> Self {
        _mm256_min_ps(self, b)
    }
    #[inline(always)]
    unsafe fn max(self, b: Self) -> Self {
        _mm256_max_ps(self, b)
    }
    #[inline(always)]
    unsafe fn round(self) -> Self {
        _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(self)
    }
    /// 2ⁿ built from its exponent bits (`n` ≥ −126 after the clamp).
    #[inline(always)]
    unsafe fn ldexp(self, n: Self) -> Self {
        let e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
        _mm256_mul_ps(self, _mm256_castsi256_ps(_mm256_slli_epi32::<23>(e)))
    }
    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        hsum(self)
    }
    #[inline(always)]
    unsafe fn sum_f64(self) -> f64 {
        let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(self));
        let hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(self));
        let s = _mm256_add_pd(lo, hi);
        let s = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd::<1>(s));
        _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)))
    }
}

impl Lanes for __m512 {
    const N: usize = 16;
    /// `vscalefps` takes 2ⁿ down through the denormals to 0.
    const EXP_LO: f32 = -104.0;
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        _mm512_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u16) -> Self {
        _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        _mm512_storeu_ps(p, self)
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        _mm512_add_ps(self, b)
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        _mm512_sub_ps(self, b)
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        _mm512_mul_ps(self, b)
    }
    #[inline(always)]
    unsafe fn div(self, b: Self) -> Self {
        _mm512_div_ps(self, b)
    }
    #[inline(always)]
    unsafe fn fma(self, b: Self, c: Self) -> Self {
        _mm512_fmadd_ps(self, b, c)
    }
    #[inline(always)]
    unsafe fn min(self, b: Self) -> Self {
        _mm512_min_ps(self, b)
    }
    #[inline(always)]
    unsafe fn max(self, b: Self) -> Self {
        _mm512_max_ps(self, b)
    }
    #[inline(always)]
    unsafe fn round(self) -> Self {
        _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(self)
    }
    #[inline(always)]
    unsafe fn ldexp(self, n: Self) -> Self {
        _mm512_scalef_ps(self, n)
    }
    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        _mm512_reduce_add_ps(self)
    }
    #[inline(always)]
    unsafe fn sum_f64(self) -> f64 {
        let halves = _mm256_add_ps(_mm512_castps512_ps256(self), _mm512_extractf32x8_ps::<1>(self));
        halves.sum_f64()
    }
}
