//! AVX2 + FMA + F16C kernels for x86_64.
//!
//! `tile` computes a block of dot products between weight rows (GGML blocks)
//! and 8-bit quantized activation rows with an `R × C` register-blocked
//! micro-kernel: per 32-weight block, `R` weight blocks are unpacked once and
//! each is multiplied with `C` activation blocks (`vpmaddubsw` + `vpmaddwd`),
//! accumulating in f32 with the product of the two block scales.
//!
//! Every function here is only reached through `Kernel::Avx2`, which exists
//! only after runtime detection of avx2, fma and f16c.
#![cfg(target_arch = "x86_64")]
#![allow(unsafe_code)]

use super::{QActs, QType, BLOCK};
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
        let r = |v: __m256| {
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

#[allow(clippy::too_many_arguments)]
pub(super) fn tile(
    qtype: QType,
    w: &[u8],
    nrows: usize,
    acts: &QActs,
    c0: usize,
    nc: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    let nb = acts.k / BLOCK;
    assert!(w.len() >= nrows * nb * qtype.block_bytes());
    assert!(c0 + nc <= acts.m);
    assert!(nrows == 0 || nc == 0 || out.len() >= (nrows - 1) * out_stride + nc);
    // SAFETY: features detected (Kernel::Avx2); bounds checked above: every
    // weight row r < nrows, activation row c < c0 + nc <= m, and output index
    // r * out_stride + c is inside `out`.
    unsafe {
        match qtype {
            QType::Q4_0 => tile_fmt::<Q40>(w, nrows, acts, c0, nc, out, out_stride),
            QType::Q4_1 => tile_fmt::<Q41>(w, nrows, acts, c0, nc, out, out_stride),
            QType::Q8_0 => tile_fmt::<Q80>(w, nrows, acts, c0, nc, out, out_stride),
        }
    }
}

/// One GGML weight format, as the micro-kernel sees it.
trait Fmt {
    const BYTES: usize;
    /// Unpacks one block: the 32 weights as bytes, its scale, and the
    /// coefficient of the activation block's `d * Σq` (offset term).
    unsafe fn load(p: *const u8) -> (__m256i, f32, f32);
    /// Σ w_j * a_j over one block, as 8 i32 partial sums.
    unsafe fn dot(w: __m256i, a: __m256i) -> __m256i;
}

struct Q40;
struct Q41;
struct Q80;

#[inline(always)]
unsafe fn nibbles(p: *const u8) -> __m256i {
    let q = _mm_loadu_si128(p as *const __m128i);
    let m4 = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(q, m4);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(q), m4);
    _mm256_set_m128i(hi, lo)
}

#[inline(always)]
unsafe fn f16_to_f32(p: *const u8) -> f32 {
    let bits = (p as *const u16).read_unaligned();
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

#[inline(always)]
unsafe fn madd_u8_i8(w: __m256i, a: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1))
}

impl Fmt for Q40 {
    const BYTES: usize = 18;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> (__m256i, f32, f32) {
        let d = f16_to_f32(p);
        (nibbles(p.add(2)), d, -8.0 * d)
    }
    #[inline(always)]
    unsafe fn dot(w: __m256i, a: __m256i) -> __m256i {
        madd_u8_i8(w, a)
    }
}

impl Fmt for Q41 {
    const BYTES: usize = 20;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> (__m256i, f32, f32) {
        (nibbles(p.add(4)), f16_to_f32(p), f16_to_f32(p.add(2)))
    }
    #[inline(always)]
    unsafe fn dot(w: __m256i, a: __m256i) -> __m256i {
        madd_u8_i8(w, a)
    }
}

impl Fmt for Q80 {
    const BYTES: usize = 34;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> (__m256i, f32, f32) {
        (
            _mm256_loadu_si256(p.add(2) as *const __m256i),
            f16_to_f32(p),
            0.0,
        )
    }
    #[inline(always)]
    unsafe fn dot(w: __m256i, a: __m256i) -> __m256i {
        // vpmaddubsw wants an unsigned left operand: move w's sign onto a.
        madd_u8_i8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_fmt<F: Fmt>(
    w: &[u8],
    nrows: usize,
    acts: &QActs,
    c0: usize,
    nc: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    const R: usize = 4;
    let mut r = 0;
    while r < nrows {
        let rr = (nrows - r).min(R);
        let mut c = 0;
        while c < nc {
            let cc = nc - c;
            // Prefill: 4 weight rows x 2 activation rows; decode: 4 x 1.
            let o = out.as_mut_ptr().add(r * out_stride + c);
            match (rr, cc) {
                (4, 2..) => {
                    micro::<F, 4, 2>(w, r, acts, c0 + c, o, out_stride);
                    c += 2;
                }
                (4, 1) => {
                    micro::<F, 4, 1>(w, r, acts, c0 + c, o, out_stride);
                    c += 1;
                }
                (_, 2..) => {
                    micro::<F, 1, 2>(w, r, acts, c0 + c, o, out_stride);
                    c += 2;
                }
                _ => {
                    micro::<F, 1, 1>(w, r, acts, c0 + c, o, out_stride);
                    c += 1;
                }
            }
        }
        // Tail rows (fewer than 4 left) go one at a time.
        r += if rr == 4 { 4 } else { 1 };
    }
}

#[inline(always)]
unsafe fn micro<F: Fmt, const R: usize, const C: usize>(
    w: &[u8],
    r0: usize,
    acts: &QActs,
    c0: usize,
    out: *mut f32,
    out_stride: usize,
) {
    let nb = acts.k / BLOCK;
    let row_bytes = nb * F::BYTES;
    let wp = w.as_ptr().add(r0 * row_bytes);
    let aq = acts.qs.as_ptr().add(c0 * acts.k);
    let ad = acts.d.as_ptr().add(c0 * nb);
    let ads = acts.dsum.as_ptr().add(c0 * nb);
    let mut acc = [[_mm256_setzero_ps(); C]; R];
    let mut off = [[0f32; C]; R];
    for b in 0..nb {
        let mut wq = [_mm256_setzero_si256(); R];
        let mut wd = [0f32; R];
        let mut wm = [0f32; R];
        for i in 0..R {
            let (q, d, m) = F::load(wp.add(i * row_bytes + b * F::BYTES));
            wq[i] = q;
            wd[i] = d;
            wm[i] = m;
        }
        for j in 0..C {
            let a = _mm256_loadu_si256(aq.add(j * acts.k + b * BLOCK) as *const __m256i);
            let da = *ad.add(j * nb + b);
            let dsa = *ads.add(j * nb + b);
            for i in 0..R {
                let p = _mm256_cvtepi32_ps(F::dot(wq[i], a));
                acc[i][j] = _mm256_fmadd_ps(p, _mm256_set1_ps(wd[i] * da), acc[i][j]);
                off[i][j] += wm[i] * dsa;
            }
        }
    }
    for i in 0..R {
        for j in 0..C {
            *out.add(i * out_stride + j) = hsum(acc[i][j]) + off[i][j];
        }
    }
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
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
