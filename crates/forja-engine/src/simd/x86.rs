//! x86-64 levels of [`super`]: AVX2+FMA (8 lanes) and AVX-512 F (16
//! lanes). Only reached through `super`'s dispatch, after detection.
use std::arch::x86_64::*;

#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot_rows(q: &[f32], rows: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
    let d = q.len();
    let d8 = d & !7;
    for (j, o) in out.iter_mut().enumerate() {
        let r = rows.as_ptr().add(j * stride);
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i < d8 {
            acc =
                _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(i)), _mm256_loadu_ps(r.add(i)), acc);
            i += 8;
        }
        let mut s = hsum(acc);
        while i < d {
            s += q[i] * *r.add(i);
            i += 1;
        }
        *o = s * scale;
    }
}

#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn axpy_rows(p: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    let d = out.len();
    let o = out.as_mut_ptr();
    // Sixteen lanes at a time, kept in registers across all rows.
    let mut i = 0;
    while i + 16 <= d {
        let mut a0 = _mm256_loadu_ps(o.add(i));
        let mut a1 = _mm256_loadu_ps(o.add(i + 8));
        for (j, &w) in p.iter().enumerate() {
            let r = rows.as_ptr().add(j * stride + i);
            let wv = _mm256_set1_ps(w);
            a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(r), a0);
            a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(r.add(8)), a1);
        }
        _mm256_storeu_ps(o.add(i), a0);
        _mm256_storeu_ps(o.add(i + 8), a1);
        i += 16;
    }
    while i < d {
        for (j, &w) in p.iter().enumerate() {
            *o.add(i) += w * *rows.as_ptr().add(j * stride + i);
        }
        i += 1;
    }
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

#[target_feature(enable = "avx512f")]
pub(super) unsafe fn dot_rows_512(
    q: &[f32],
    rows: &[f32],
    stride: usize,
    scale: f32,
    out: &mut [f32],
) {
    let d = q.len();
    let d16 = d & !15;
    for (j, o) in out.iter_mut().enumerate() {
        let r = rows.as_ptr().add(j * stride);
        let mut acc = _mm512_setzero_ps();
        let mut i = 0;
        while i < d16 {
            acc =
                _mm512_fmadd_ps(_mm512_loadu_ps(q.as_ptr().add(i)), _mm512_loadu_ps(r.add(i)), acc);
            i += 16;
        }
        let mut s = _mm512_reduce_add_ps(acc);
        while i < d {
            s += q[i] * *r.add(i);
            i += 1;
        }
        *o = s * scale;
    }
}

#[target_feature(enable = "avx512f")]
pub(super) unsafe fn axpy_rows_512(p: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    let d = out.len();
    let o = out.as_mut_ptr();
    // Thirty-two lanes at a time, kept in registers across all rows.
    let mut i = 0;
    while i + 32 <= d {
        let mut a0 = _mm512_loadu_ps(o.add(i));
        let mut a1 = _mm512_loadu_ps(o.add(i + 16));
        for (j, &w) in p.iter().enumerate() {
            let r = rows.as_ptr().add(j * stride + i);
            let wv = _mm512_set1_ps(w);
            a0 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(r), a0);
            a1 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(r.add(16)), a1);
        }
        _mm512_storeu_ps(o.add(i), a0);
        _mm512_storeu_ps(o.add(i + 16), a1);
        i += 32;
    }
    if i < d {
        axpy_rows(p, &rows[i..], stride, &mut out[i..]);
    }
}

/// Cephes `expf` on eight lanes.
#[inline(always)]
unsafe fn exp8(x: __m256) -> __m256 {
    use super::cephes::*;
    let x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(HI)), _mm256_set1_ps(LO));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(LOG2E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(C1), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(C2), r);
    let mut p = _mm256_set1_ps(P[0]);
    for c in &P[1..] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
    }
    let y = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
    let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    )));
    _mm256_mul_ps(y, pow2n)
}

/// Cephes `expf` on sixteen lanes; `vscalefps` scales by 2ⁿ, so results
/// go smoothly to 0 below the clamp.
#[inline(always)]
unsafe fn exp16(x: __m512) -> __m512 {
    use super::cephes::*;
    let x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(HI)), _mm512_set1_ps(-104.0));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(C1), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(C2), r);
    let mut p = _mm512_set1_ps(P[0]);
    for c in &P[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(*c));
    }
    let y = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0)));
    _mm512_scalef_ps(y, n)
}

/// The lanes of `v` in f64, summed.
#[inline(always)]
unsafe fn hsum_pd(v: __m256) -> f64 {
    let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    let hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v));
    let s = _mm256_add_pd(lo, hi);
    let s = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd::<1>(s));
    _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)))
}

#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn exp_affine(x: &mut [f32], a: f32, b: f32) -> f64 {
    let (n, p) = (x.len(), x.as_mut_ptr());
    let (av, bv) = (_mm256_set1_ps(a), _mm256_set1_ps(b));
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        let e = exp8(_mm256_fmadd_ps(_mm256_loadu_ps(p.add(i)), av, bv));
        _mm256_storeu_ps(p.add(i), e);
        acc = _mm256_add_ps(acc, e);
        i += 8;
    }
    let mut sum = hsum_pd(acc);
    while i < n {
        *p.add(i) = (a * *p.add(i) + b).exp();
        sum += *p.add(i) as f64;
        i += 1;
    }
    sum
}

#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn exp_affine_512(x: &mut [f32], a: f32, b: f32) -> f64 {
    let (n, p) = (x.len(), x.as_mut_ptr());
    let (av, bv) = (_mm512_set1_ps(a), _mm512_set1_ps(b));
    let mut acc = _mm512_setzero_ps();
    let mut i = 0;
    while i + 16 <= n {
        let e = exp16(_mm512_fmadd_ps(_mm512_loadu_ps(p.add(i)), av, bv));
        _mm512_storeu_ps(p.add(i), e);
        acc = _mm512_add_ps(acc, e);
        i += 16;
    }
    let halves = _mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps::<1>(acc));
    hsum_pd(halves) + exp_affine(&mut x[i..], a, b)
}

#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn silu_mul(g: &[f32], u: &[f32], out: &mut [f32]) {
    let n = out.len();
    let one = _mm256_set1_ps(1.0);
    let mut i = 0;
    while i + 8 <= n {
        let gv = _mm256_loadu_ps(g.as_ptr().add(i));
        let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv));
        let s = _mm256_div_ps(gv, _mm256_add_ps(one, e));
        _mm256_storeu_ps(
            out.as_mut_ptr().add(i),
            _mm256_mul_ps(s, _mm256_loadu_ps(u.as_ptr().add(i))),
        );
        i += 8;
    }
    for i in i..n {
        out[i] = g[i] / (1.0 + (-g[i]).exp()) * u[i];
    }
}

#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn silu_mul_512(g: &[f32], u: &[f32], out: &mut [f32]) {
    let n = out.len();
    let one = _mm512_set1_ps(1.0);
    let mut i = 0;
    while i + 16 <= n {
        let gv = _mm512_loadu_ps(g.as_ptr().add(i));
        let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv));
        let s = _mm512_div_ps(gv, _mm512_add_ps(one, e));
        _mm512_storeu_ps(
            out.as_mut_ptr().add(i),
            _mm512_mul_ps(s, _mm512_loadu_ps(u.as_ptr().add(i))),
        );
        i += 16;
    }
    silu_mul(&g[i..], &u[i..], &mut out[i..]);
}

#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn silu_mul_bwd(
    g: &[f32],
    u: &[f32],
    gy: &[f32],
    dg: &mut [f32],
    du: &mut [f32],
) {
    let n = dg.len();
    let one = _mm256_set1_ps(1.0);
    let mut i = 0;
    while i + 8 <= n {
        let gv = _mm256_loadu_ps(g.as_ptr().add(i));
        let uv = _mm256_loadu_ps(u.as_ptr().add(i));
        let yv = _mm256_loadu_ps(gy.as_ptr().add(i));
        let sig =
            _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv))));
        // 1 + g·(1 − σ)
        let k = _mm256_fmadd_ps(gv, _mm256_sub_ps(one, sig), one);
        let d_g = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(yv, uv), sig), k);
        let d_u = _mm256_mul_ps(_mm256_mul_ps(yv, gv), sig);
        _mm256_storeu_ps(dg.as_mut_ptr().add(i), d_g);
        _mm256_storeu_ps(du.as_mut_ptr().add(i), d_u);
        i += 8;
    }
    for i in i..n {
        let sig = 1.0 / (1.0 + (-g[i]).exp());
        dg[i] = gy[i] * u[i] * sig * (1.0 + g[i] * (1.0 - sig));
        du[i] = gy[i] * g[i] * sig;
    }
}

#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn silu_mul_bwd_512(
    g: &[f32],
    u: &[f32],
    gy: &[f32],
    dg: &mut [f32],
    du: &mut [f32],
) {
    let n = dg.len();
    let one = _mm512_set1_ps(1.0);
    let mut i = 0;
    while i + 16 <= n {
        let gv = _mm512_loadu_ps(g.as_ptr().add(i));
        let uv = _mm512_loadu_ps(u.as_ptr().add(i));
        let yv = _mm512_loadu_ps(gy.as_ptr().add(i));
        let sig =
            _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
        let k = _mm512_fmadd_ps(gv, _mm512_sub_ps(one, sig), one);
        let d_g = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(yv, uv), sig), k);
        let d_u = _mm512_mul_ps(_mm512_mul_ps(yv, gv), sig);
        _mm512_storeu_ps(dg.as_mut_ptr().add(i), d_g);
        _mm512_storeu_ps(du.as_mut_ptr().add(i), d_u);
        i += 16;
    }
    silu_mul_bwd(&g[i..], &u[i..], &gy[i..], &mut dg[i..], &mut du[i..]);
}
