//! AVX-512 VNNI decode kernel: one activation row (`m = 1`) against
//! several weight rows, 512 bits at a time.
//!
//! Decoding reads every weight once per token, so this kernel is what
//! stands between decode and the memory's speed. The AVX2 micro-kernel
//! (`avx2.rs`) does one 256-bit step per pair of 4-bit blocks; here one
//! step takes four 4-bit blocks (or two `Q8_0` blocks), four weight
//! rows share each activation load and each row keeps its own accumulator,
//! so the chain of multiply-adds of one row no longer limits the pass. The
//! per-group work (f16 scales, the `Q4_0`/`Q4_1` offset term) stays 256
//! bits wide, as in `avx2.rs`, and so do the trailing pair or single block
//! of a group.
//!
//! Reached only through `Kernel::Avx512Vnni` (features detected at run
//! time); `avx2::tile` checks the bounds before calling it.
#![cfg(target_arch = "x86_64")]
#![allow(unsafe_code)]
#![allow(clippy::needless_range_loop)]

use super::avx2::{
    group_scales, nibble_pair, pair_dot, pair_lanes, prefetch_ahead, Fmt, Q40, Q41, Q80,
};
use super::{QActs, QType, BLOCK, GROUP};
use crate::simd::x86::hsum;
use std::arch::x86_64::*;

/// `out[r] = w_r · a` for the `out.len()` rows at the start of `w` and the
/// single activation row of `acts`.
///
/// # Safety
/// avx512f/bw/vl/vnni detected; `acts.m == 1`; `w` holds `out.len()` whole
/// rows plus the slack `avx2::tile` asserts; `acts.d`/`acts.dsum` hold a
/// group of slack.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn gemv(qtype: QType, w: &[u8], acts: &QActs, out: &mut [f32]) {
    match qtype {
        QType::Q4_0 => rows::<Q40>(w, acts, out),
        QType::Q4_1 => rows::<Q41>(w, acts, out),
        QType::Q8_0 => rows::<Q80>(w, acts, out),
    }
}

#[inline(always)]
unsafe fn rows<F: Fmt>(w: &[u8], acts: &QActs, out: &mut [f32]) {
    let row_bytes = acts.k / BLOCK * F::TYPE.block_bytes();
    let (wp, o, nrows) = (w.as_ptr(), out.as_mut_ptr(), out.len());
    let mut r = 0;
    while r + 4 <= nrows {
        prefetch_ahead(wp, row_bytes, r);
        pass::<F, 4>(wp.add(r * row_bytes), row_bytes, acts, o.add(r));
        r += 4;
    }
    for r in r..nrows {
        pass::<F, 1>(wp.add(r * row_bytes), row_bytes, acts, o.add(r));
    }
}

/// `R` rows starting at `wp` against the activation row.
#[inline(always)]
unsafe fn pass<F: Fmt, const R: usize>(
    wp: *const u8,
    row_bytes: usize,
    acts: &QActs,
    out: *mut f32,
) {
    let t = F::TYPE;
    let nb = acts.k / BLOCK;
    let (bb, qb, halves) = (t.block_bytes(), t.quant_bytes(), t.header_halves());
    let (aq, ad, ads) = (acts.qs.as_ptr(), acts.d.as_ptr(), acts.dsum.as_ptr());
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let m4 = _mm512_set1_epi8(0x0F);
    let zero = _mm512_setzero_si512();
    let mut acc = [_mm512_setzero_ps(); R];
    // The offset terms and the 256-bit tail steps.
    let mut acc_y = [_mm256_setzero_ps(); R];
    let mut scale = [_mm256_setzero_ps(); R];
    let mut g0 = 0;
    while g0 < nb {
        let n = GROUP.min(nb - g0);
        let base = g0 * bb;
        let mask = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lanes));
        let da = _mm256_loadu_ps(ad.add(g0));
        let dsa = _mm256_loadu_ps(ads.add(g0));
        for i in 0..R {
            let (d, off) = group_scales::<F>(wp.add(i * row_bytes + base), n);
            scale[i] = _mm256_mul_ps(d, da);
            if let Some(off) = off {
                acc_y[i] = _mm256_add_ps(acc_y[i], _mm256_and_ps(_mm256_mul_ps(off, dsa), mask));
            }
        }
        let qbase = base + 2 * halves * n;
        let ap = aq.add(g0 * BLOCK);
        let mut b = 0;
        if F::PAIRED {
            // Four 4-bit blocks per step: two pairs of the paired
            // activation layout side by side.
            while b + 4 <= n {
                let a = ap.add(b * BLOCK);
                let alo = two_halves(a, a.add(64));
                let ahi = two_halves(a.add(32), a.add(96));
                let idx = lanes_of::<4>(b);
                for i in 0..R {
                    let v = _mm512_loadu_si512(wp.add(i * row_bytes + qbase + b * qb) as *const _);
                    let lo = _mm512_and_si512(v, m4);
                    let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4);
                    let p = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, lo, alo), hi, ahi);
                    let s = _mm512_permutexvar_ps(idx, _mm512_castps256_ps512(scale[i]));
                    acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), s, acc[i]);
                }
                b += 4;
            }
            if b + 2 <= n {
                let a = ap.add(b * BLOCK);
                let alo = _mm256_loadu_si256(a as *const __m256i);
                let ahi = _mm256_loadu_si256(a.add(32) as *const __m256i);
                let idx = pair_lanes(b);
                for i in 0..R {
                    let (lo, hi) = nibble_pair(wp.add(i * row_bytes + qbase + b * qb));
                    let p = _mm256_cvtepi32_ps(pair_dot::<true>(lo, hi, alo, ahi));
                    let s = _mm256_permutevar8x32_ps(scale[i], idx);
                    acc_y[i] = _mm256_fmadd_ps(p, s, acc_y[i]);
                }
                b += 2;
            }
        } else {
            // Two 8-bit blocks per step. vpdpbusd multiplies unsigned by
            // signed bytes: |w| against a with w's sign moved onto it.
            while b + 2 <= n {
                let a = _mm512_loadu_si512(ap.add(b * BLOCK) as *const _);
                let idx = lanes_of::<2>(b);
                for i in 0..R {
                    let v = _mm512_loadu_si512(wp.add(i * row_bytes + qbase + b * qb) as *const _);
                    let neg = _mm512_movepi8_mask(v);
                    let sa = _mm512_mask_sub_epi8(a, neg, zero, a);
                    let p = _mm512_dpbusd_epi32(zero, _mm512_abs_epi8(v), sa);
                    let s = _mm512_permutexvar_ps(idx, _mm512_castps256_ps512(scale[i]));
                    acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), s, acc[i]);
                }
                b += 2;
            }
        }
        // A trailing single block (odd groups; stored unpaired).
        if b < n {
            let a = _mm256_loadu_si256(ap.add(b * BLOCK) as *const __m256i);
            let idx = _mm256_set1_epi32(b as i32);
            for i in 0..R {
                let p = F::dot_vnni(F::unpack(wp.add(i * row_bytes + qbase + b * qb)), a);
                let s = _mm256_permutevar8x32_ps(scale[i], idx);
                acc_y[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s, acc_y[i]);
            }
        }
        g0 += n;
    }
    // Each row's 512-bit and 256-bit accumulators folded to 256 bits, then
    // four rows reduced together (one horizontal-add tree for all four
    // instead of a shuffle chain each).
    let mut y = [_mm256_setzero_ps(); R];
    for i in 0..R {
        let v = _mm512_castps_pd(acc[i]);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(v));
        y[i] = _mm256_add_ps(_mm256_add_ps(_mm512_castps512_ps256(acc[i]), hi), acc_y[i]);
    }
    if R == 4 {
        let h = _mm256_hadd_ps(_mm256_hadd_ps(y[0], y[1]), _mm256_hadd_ps(y[2], y[3]));
        let sums = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
        _mm_storeu_ps(out, sums);
    } else {
        for i in 0..R {
            *out.add(i) = hsum(y[i]);
        }
    }
}

/// The lane → block map of a 512-bit step over `PER` blocks starting at
/// block `b` of a group: which of the group's eight scales each lane takes.
#[inline(always)]
unsafe fn lanes_of<const PER: usize>(b: usize) -> __m512i {
    let mut idx = [0i32; 16];
    for (l, x) in idx.iter_mut().enumerate() {
        *x = (b + l * PER / 16) as i32;
    }
    _mm512_loadu_si512(idx.as_ptr() as *const _)
}

/// 32 bytes at `lo` and 32 at `hi` as one register.
#[inline(always)]
unsafe fn two_halves(lo: *const i8, hi: *const i8) -> __m512i {
    let lo = _mm256_loadu_si256(lo as *const __m256i);
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), _mm256_loadu_si256(hi as *const __m256i))
}
