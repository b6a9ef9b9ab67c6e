//! AVX2 + FMA + F16C kernels for x86_64.
//!
//! `tile` computes dot products between weight rows (grouped GGML blocks,
//! see the module above) and 8-bit quantized activation rows with an
//! `R × C` register-blocked micro-kernel. Per group of eight blocks it
//! converts the eight weight scales with one `vcvtph2ps`, multiplies them
//! with the activation scales into one vector per (row, column) pair, and
//! folds the offset term (`Q4_0`'s −8, `Q4_1`'s minimum) in with one FMA.
//! Per block it then does `vpmaddubsw` + `vpmaddwd`, converts to f32 and
//! accumulates with the block's scale picked out of that vector by
//! `vpermps`: no scalar work in the inner loop.
//!
//! With `vnni` (`Kernel::Avx512Vnni`) the same micro-kernel, compiled with
//! AVX-512 VL + VNNI enabled, does each block's int8 dot product with one
//! `vpdpbusd` instead of `vpmaddubsw` + `vpmaddwd` (exact: no 16-bit
//! saturation is possible with these operands either way). At that level
//! it sees only the rows after a matrix's last whole tile (`tiled.rs`
//! takes the tiles); at the AVX2 level it takes every row. Decode (one
//! activation row) runs four weight rows per pass.
//!
//! Every function here is only reached through `Kernel::Avx2` or
//! `Kernel::Avx512Vnni`, which exist only after runtime detection of their
//! features (`crate::isa`).
#![cfg(target_arch = "x86_64")]
#![allow(unsafe_code)]
// Register tiles are indexed by (row, column); index loops read clearest.
#![allow(clippy::needless_range_loop)]

use super::{QActs, QType, BLOCK, GROUP};
use crate::simd::x86::hsum;
use std::arch::x86_64::*;

pub(super) fn quantize_acts(x: &[f32], qs: &mut [i8], d: &mut [f32], dsum: &mut [f32]) {
    assert!(x.len() == qs.len() && x.len() == d.len() * BLOCK && d.len() == dsum.len());
    // SAFETY: only called through Kernel::Avx2 (features detected); the
    // lengths were checked above and every pointer stays inside its slice.
    unsafe { quantize_acts_impl(x, qs, d, dsum) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_acts_impl(x: &[f32], qs: &mut [i8], d: &mut [f32], dsum: &mut [f32]) {
    let sign = _mm256_set1_ps(-0.0);
    let perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for i in 0..d.len() {
        let p = x.as_ptr().add(i * BLOCK);
        let v = [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ];
        let mut m = _mm256_andnot_ps(sign, v[0]);
        for vv in &v[1..] {
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, *vv));
        }
        let amax = hmax(m);
        let scale = amax / 127.0;
        let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
        let r =
            |v: __m256| {
                _mm256_cvtps_epi32(_mm256_round_ps::<
                    { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
                >(_mm256_mul_ps(v, id)))
            };
        let (i0, i1, i2, i3) = (r(v[0]), r(v[1]), r(v[2]), r(v[3]));
        let s = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
        let sum = hsum_i32(s);
        let packed = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        let packed = _mm256_permutevar8x32_epi32(packed, perm);
        _mm256_storeu_si256(qs.as_mut_ptr().add(i * BLOCK) as *mut __m256i, packed);
        d[i] = scale;
        dsum[i] = scale * sum as f32;
    }
}

pub(super) fn tile(qtype: QType, w: &[u8], acts: &QActs, out: &mut [f32], vnni: bool) {
    let (m, nb) = (acts.m, acts.k / BLOCK);
    let nrows = out.len() / m.max(1);
    // Whole rows plus 16 bytes of slack for the last group's scale loads
    // (QMatrix pads its data).
    assert!(w.len() >= nrows * nb * qtype.block_bytes() + 16);
    assert!(acts.d.len() >= m * nb + GROUP && acts.dsum.len() >= m * nb + GROUP);
    assert_eq!(out.len(), nrows * m);
    // SAFETY: features detected (Kernel::Avx2); bounds checked above: every
    // weight row r < nrows, activation row c < m, group loads of 8 scales
    // stay within the slack, and output index r * m + c is inside `out`.
    // With `vnni`, Isa::Avx512 was detected (avx512f/bw/vl/vnni).
    unsafe {
        match (qtype, vnni) {
            (QType::Q4_0, false) => tile_fmt::<Q40>(w, nrows, acts, out),
            (QType::Q4_1, false) => tile_fmt::<Q41>(w, nrows, acts, out),
            (QType::Q8_0, false) => tile_fmt::<Q80>(w, nrows, acts, out),
            (QType::Q4_0, true) => tile_fmt_vnni::<Q40>(w, nrows, acts, out),
            (QType::Q4_1, true) => tile_fmt_vnni::<Q41>(w, nrows, acts, out),
            (QType::Q8_0, true) => tile_fmt_vnni::<Q80>(w, nrows, acts, out),
        }
    }
}

/// One GGML weight format, as the micro-kernel sees it.
pub(super) trait Fmt {
    const TYPE: QType;
    /// 4-bit formats read pairs of blocks per load (activations paired).
    const PAIRED: bool;
    /// Unpacks one block's quants to 32 bytes (4-bit nibbles by default).
    #[inline(always)]
    unsafe fn unpack(p: *const u8) -> __m256i {
        nibbles(p)
    }
    /// Σ w_j * a_j over one block, as 8 i32 partial sums (unsigned weights
    /// by default).
    #[inline(always)]
    unsafe fn dot(w: __m256i, a: __m256i) -> __m256i {
        madd_u8_i8(w, a)
    }
    /// [`Fmt::dot`] with VNNI (only inlined into `tile_fmt_vnni`).
    #[inline(always)]
    unsafe fn dot_vnni(w: __m256i, a: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, a)
    }
    /// The per-block coefficient of `d_a * Σq_a` given the scale vector and
    /// the minimum vector (`Q4_1`); `None` when the format has no offset.
    unsafe fn offset(d: __m256, m: __m256) -> Option<__m256>;
}

pub(super) struct Q40;
pub(super) struct Q41;
pub(super) struct Q80;

#[inline(always)]
unsafe fn nibbles(p: *const u8) -> __m256i {
    let q = _mm_loadu_si128(p as *const __m128i);
    let m4 = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(q, m4);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(q), m4);
    _mm256_set_m128i(hi, lo)
}

#[inline(always)]
unsafe fn madd_u8_i8(w: __m256i, a: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1))
}

impl Fmt for Q40 {
    const TYPE: QType = QType::Q4_0;
    const PAIRED: bool = true;
    #[inline(always)]
    unsafe fn offset(d: __m256, _m: __m256) -> Option<__m256> {
        Some(_mm256_mul_ps(d, _mm256_set1_ps(-8.0)))
    }
}

impl Fmt for Q41 {
    const TYPE: QType = QType::Q4_1;
    const PAIRED: bool = true;
    #[inline(always)]
    unsafe fn offset(_d: __m256, m: __m256) -> Option<__m256> {
        Some(m)
    }
}

impl Fmt for Q80 {
    const TYPE: QType = QType::Q8_0;
    const PAIRED: bool = false;
    #[inline(always)]
    unsafe fn unpack(p: *const u8) -> __m256i {
        _mm256_loadu_si256(p as *const __m256i)
    }
    #[inline(always)]
    unsafe fn dot(w: __m256i, a: __m256i) -> __m256i {
        // vpmaddubsw wants an unsigned left operand: move w's sign onto a.
        madd_u8_i8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
    }
    #[inline(always)]
    unsafe fn dot_vnni(w: __m256i, a: __m256i) -> __m256i {
        // vpdpbusd also wants unsigned bytes on the left.
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
    }
    #[inline(always)]
    unsafe fn offset(_d: __m256, _m: __m256) -> Option<__m256> {
        None
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_fmt<F: Fmt>(w: &[u8], nrows: usize, acts: &QActs, out: &mut [f32]) {
    tile_body::<F, false>(w, nrows, acts, out)
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_fmt_vnni<F: Fmt>(w: &[u8], nrows: usize, acts: &QActs, out: &mut [f32]) {
    tile_body::<F, true>(w, nrows, acts, out)
}

#[inline(always)]
unsafe fn tile_body<F: Fmt, const VNNI: bool>(
    w: &[u8],
    nrows: usize,
    acts: &QActs,
    out: &mut [f32],
) {
    let nc = acts.m;
    let o = out.as_mut_ptr();
    if nc == 1 {
        // Decode: four weight rows per pass share each activation load and
        // keep four independent accumulators; the rows a few passes ahead
        // are prefetched (rows are contiguous, so this is one stream).
        let row_bytes = acts.k / BLOCK * F::TYPE.block_bytes();
        let mut r = 0;
        while r + 4 <= nrows {
            prefetch_ahead(w.as_ptr(), row_bytes, r);
            micro::<F, VNNI, 4, 1>(w, r, acts, 0, o.add(r), 1);
            r += 4;
        }
        for r in r..nrows {
            micro::<F, VNNI, 1, 1>(w, r, acts, 0, o.add(r), 1);
        }
        return;
    }
    let mut r = 0;
    while r < nrows {
        let full = nrows - r >= 4;
        let mut c = 0;
        while c < nc {
            let two = nc - c >= 2;
            let o = o.add(r * nc + c);
            match (full, two) {
                (true, true) => micro::<F, VNNI, 4, 2>(w, r, acts, c, o, nc),
                (true, false) => micro::<F, VNNI, 4, 1>(w, r, acts, c, o, nc),
                (false, true) => micro::<F, VNNI, 1, 2>(w, r, acts, c, o, nc),
                (false, false) => micro::<F, VNNI, 1, 1>(w, r, acts, c, o, nc),
            }
            c += if two { 2 } else { 1 };
        }
        r += if full { 4 } else { 1 };
    }
}

#[inline(always)]
unsafe fn micro<F: Fmt, const VNNI: bool, const R: usize, const C: usize>(
    w: &[u8],
    r0: usize,
    acts: &QActs,
    c0: usize,
    out: *mut f32,
    out_stride: usize,
) {
    let t = F::TYPE;
    let nb = acts.k / BLOCK;
    let (bb, qb, halves) = (t.block_bytes(), t.quant_bytes(), t.header_halves());
    let row_bytes = nb * bb;
    let wp = w.as_ptr().add(r0 * row_bytes);
    let aq = acts.qs.as_ptr().add(c0 * acts.k);
    let ad = acts.d.as_ptr().add(c0 * nb);
    let ads = acts.dsum.as_ptr().add(c0 * nb);
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let mut acc = [[_mm256_setzero_ps(); C]; R];
    let mut scale = [[_mm256_setzero_ps(); C]; R];
    let mut g0 = 0;
    while g0 < nb {
        let n = GROUP.min(nb - g0);
        let base = g0 * bb;
        let mask = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lanes));
        for i in 0..R {
            let (d, off) = group_scales::<F>(wp.add(i * row_bytes + base), n);
            for j in 0..C {
                let da = _mm256_loadu_ps(ad.add(j * nb + g0));
                scale[i][j] = _mm256_mul_ps(d, da);
                if let Some(off) = off {
                    let dsa = _mm256_loadu_ps(ads.add(j * nb + g0));
                    let o = _mm256_and_ps(_mm256_mul_ps(off, dsa), mask);
                    acc[i][j] = _mm256_add_ps(acc[i][j], o);
                }
            }
        }
        let qbase = base + 2 * halves * n;
        let mut b = 0;
        if F::PAIRED {
            // Two 4-bit blocks per 32-byte load: low nibbles of both, then high
            // nibbles of both, against paired activations.
            while b + 2 <= n {
                let idx = pair_lanes(b);
                let mut alo = [_mm256_setzero_si256(); C];
                let mut ahi = [_mm256_setzero_si256(); C];
                for j in 0..C {
                    let ap = aq.add(j * acts.k + (g0 + b) * BLOCK);
                    alo[j] = _mm256_loadu_si256(ap as *const __m256i);
                    ahi[j] = _mm256_loadu_si256(ap.add(32) as *const __m256i);
                }
                for i in 0..R {
                    let (lo, hi) = nibble_pair(wp.add(i * row_bytes + qbase + b * qb));
                    for j in 0..C {
                        let p = _mm256_cvtepi32_ps(pair_dot::<VNNI>(lo, hi, alo[j], ahi[j]));
                        let s = _mm256_permutevar8x32_ps(scale[i][j], idx);
                        acc[i][j] = _mm256_fmadd_ps(p, s, acc[i][j]);
                    }
                }
                b += 2;
            }
        }
        // Remaining blocks one at a time (all of them for 8-bit weights; a
        // trailing odd 4-bit block, stored unpaired).
        while b < n {
            let mut wq = [_mm256_setzero_si256(); R];
            for (i, q) in wq.iter_mut().enumerate() {
                *q = F::unpack(wp.add(i * row_bytes + qbase + b * qb));
            }
            let idx = _mm256_set1_epi32(b as i32);
            for j in 0..C {
                let a = _mm256_loadu_si256(aq.add(j * acts.k + (g0 + b) * BLOCK) as *const __m256i);
                for i in 0..R {
                    let d = if VNNI { F::dot_vnni(wq[i], a) } else { F::dot(wq[i], a) };
                    let p = _mm256_cvtepi32_ps(d);
                    let s = _mm256_permutevar8x32_ps(scale[i][j], idx);
                    acc[i][j] = _mm256_fmadd_ps(p, s, acc[i][j]);
                }
            }
            b += 1;
        }
        g0 += n;
    }
    for i in 0..R {
        for j in 0..C {
            *out.add(i * out_stride + j) = hsum(acc[i][j]);
        }
    }
}

/// The weight scales of the group of `n` blocks at `rp` (eight lanes, the
/// first `n` valid) and the coefficient of its offset term
/// ([`Fmt::offset`]).
#[inline(always)]
unsafe fn group_scales<F: Fmt>(rp: *const u8, n: usize) -> (__m256, Option<__m256>) {
    let d = _mm256_cvtph_ps(_mm_loadu_si128(rp as *const __m128i));
    let m = if F::TYPE.header_halves() == 2 {
        _mm256_cvtph_ps(_mm_loadu_si128(rp.add(2 * n) as *const __m128i))
    } else {
        d
    };
    (d, F::offset(d, m))
}

/// The scale lanes of a pair of blocks starting at block `b` of a group:
/// lanes 0–3 take scale `b`, lanes 4–7 scale `b + 1`.
#[inline(always)]
unsafe fn pair_lanes(b: usize) -> __m256i {
    let (x, y) = (b as i32, b as i32 + 1);
    _mm256_setr_epi32(x, x, x, x, y, y, y, y)
}

/// The 32 bytes of a pair of 4-bit blocks at `p`, as their low and their
/// high nibbles.
#[inline(always)]
unsafe fn nibble_pair(p: *const u8) -> (__m256i, __m256i) {
    let v = _mm256_loadu_si256(p as *const __m256i);
    let m4 = _mm256_set1_epi8(0x0F);
    (_mm256_and_si256(v, m4), _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4))
}

/// The int8 dot products of a pair of 4-bit blocks (`lo`, `hi` from
/// [`nibble_pair`]) with paired activations, as 8 i32 sums: lanes 0–3 the
/// first block, 4–7 the second. One `vpdpbusd` per half with `VNNI`.
#[inline(always)]
unsafe fn pair_dot<const VNNI: bool>(
    lo: __m256i,
    hi: __m256i,
    alo: __m256i,
    ahi: __m256i,
) -> __m256i {
    if VNNI {
        _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, alo), hi, ahi)
    } else {
        let s16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, alo), _mm256_maddubs_epi16(hi, ahi));
        _mm256_madd_epi16(s16, _mm256_set1_epi16(1))
    }
}

/// Decode reads four rows of `row_bytes` at `w` per pass; before the pass
/// over rows `r..r + 4` this asks for the rows two passes ahead, so they
/// are on their way from memory while this pass computes (rows are
/// contiguous: one stream, which the hardware prefetcher follows too, but
/// not far enough ahead).
#[inline(always)]
unsafe fn prefetch_ahead(w: *const u8, row_bytes: usize, r: usize) {
    // A prefetch is a hint that never faults: past the end is harmless.
    let ahead = w.wrapping_add((r + 8) * row_bytes);
    let mut at = 0;
    while at < 4 * row_bytes {
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(at) as *const i8);
        at += 64;
    }
}

#[inline(always)]
unsafe fn hmax(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_max_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[inline(always)]
unsafe fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01>(s));
    _mm_cvtsi128_si32(s)
}
