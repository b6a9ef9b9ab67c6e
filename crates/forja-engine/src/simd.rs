//! Small f32 vector kernels for the CPU hot paths (attention, norms),
//! AVX2+FMA when the active [`crate::isa::Isa`] has it (AVX-512 machines
//! run these AVX2 paths too), portable loops otherwise.

#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    crate::isa::Isa::active() >= crate::isa::Isa::Avx2
}

/// `out[j] = scale · (q · rows[j])` for `out.len()` rows of `q.len()`
/// values, `stride` apart in `rows` (attention scores over a KV cache).
pub(crate) fn dot_rows(q: &[f32], rows: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
    let (d, n) = (q.len(), out.len());
    assert!(n == 0 || (n - 1) * stride + d <= rows.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: avx2+fma detected; the assert above bounds every row read.
        return unsafe { x86::dot_rows(q, rows, stride, scale, out) };
    }
    for (j, o) in out.iter_mut().enumerate() {
        *o = scale * q.iter().zip(&rows[j * stride..][..d]).map(|(a, b)| a * b).sum::<f32>();
    }
}

/// `out += Σ_j p[j] · rows[j]` for `p.len()` rows of `out.len()` values,
/// `stride` apart in `rows` (attention's weighted sum of values).
pub(crate) fn axpy_rows(p: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    let (d, n) = (out.len(), p.len());
    assert!(n == 0 || (n - 1) * stride + d <= rows.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: avx2+fma detected; the assert above bounds every row read.
        return unsafe { x86::axpy_rows(p, rows, stride, out) };
    }
    for (j, &w) in p.iter().enumerate() {
        for (o, &v) in out.iter_mut().zip(&rows[j * stride..][..d]) {
            *o += w * v;
        }
    }
}

/// `Σ x_i²`, accumulated in f64 like GGML's reference RMS norm.
#[inline]
pub(crate) fn sum_sq(x: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: as in `dot`.
        return unsafe { x86::sum_sq(x) };
    }
    x.iter().map(|&v| (v as f64) * (v as f64)).sum()
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_rows(
        q: &[f32],
        rows: &[f32],
        stride: usize,
        scale: f32,
        out: &mut [f32],
    ) {
        let d = q.len();
        let d8 = d & !7;
        for (j, o) in out.iter_mut().enumerate() {
            let r = rows.as_ptr().add(j * stride);
            let mut acc = _mm256_setzero_ps();
            let mut i = 0;
            while i < d8 {
                acc = _mm256_fmadd_ps(
                    _mm256_loadu_ps(q.as_ptr().add(i)),
                    _mm256_loadu_ps(r.add(i)),
                    acc,
                );
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_kernels_match_plain_loops() {
        for d in [1, 8, 15, 16, 24, 64, 67] {
            let (n, stride) = (5, d + 3);
            let q: Vec<f32> = (0..d).map(|i| (i as f32 * 0.3).sin()).collect();
            let rows: Vec<f32> = (0..n * stride).map(|i| (i as f32 * 0.17).cos()).collect();
            let mut got = vec![0f32; n];
            dot_rows(&q, &rows, stride, 0.5, &mut got);
            for j in 0..n {
                let want: f32 =
                    0.5 * q.iter().zip(&rows[j * stride..]).map(|(a, b)| a * b).sum::<f32>();
                assert!((got[j] - want).abs() < 1e-5, "dot_rows d={d} j={j}");
            }
            let p: Vec<f32> = (0..n).map(|j| j as f32 * 0.1).collect();
            let mut out: Vec<f32> = (0..d).map(|i| i as f32).collect();
            let mut want = out.clone();
            axpy_rows(&p, &rows, stride, &mut out);
            for (j, &w) in p.iter().enumerate() {
                for i in 0..d {
                    want[i] += w * rows[j * stride + i];
                }
            }
            for i in 0..d {
                assert!((out[i] - want[i]).abs() < 1e-4, "axpy_rows d={d} i={i}");
            }
        }
    }

    #[test]
    fn sum_sq_matches_a_plain_loop_at_every_tail_length() {
        for n in [0, 1, 3, 4, 5, 8, 67] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let want: f64 = a.iter().map(|&v| v as f64 * v as f64).sum();
            assert!((sum_sq(&a) - want).abs() < 1e-9, "sum_sq n={n}");
        }
    }
}
