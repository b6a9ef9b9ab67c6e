//! aarch64 NEON kernels: activation quantization and the dot-product tile.
//!
//! Activations stay in the natural block order. Per weight row the tile
//! takes up to four activation rows at once, so each block's unpacked
//! quants (4-bit nibbles split into two 16-byte vectors, or the 32 bytes of
//! `Q8_0`) serve all of them. A block's int8 dot product is `smull` +
//! `saddlp` (exact: |w·a| ≤ 128·127 fits 16 bits), converted to f32 and
//! accumulated with the product of the two scales by one `fmla`; the
//! offset term of `Q4_0`/`Q4_1` is added per block in scalar.
//!
//! Built and tested by cross-compiling to `aarch64-unknown-linux-gnu` and
//! running under qemu (`make check-aarch64`); no ARM machine has measured
//! its speed.
#![cfg(target_arch = "aarch64")]
#![allow(unsafe_code)]

use super::{block_offsets, f16_at, QActs, QType, BLOCK};
use std::arch::aarch64::*;

pub(super) fn quantize_acts(x: &[f32], qs: &mut [i8], d: &mut [f32], dsum: &mut [f32]) {
    assert!(x.len() == qs.len() && x.len() == d.len() * BLOCK && d.len() == dsum.len());
    // SAFETY: NEON is detected (Kernel::Neon); the lengths were checked
    // above and every load and store stays inside block `i` of its slice.
    unsafe { quantize_acts_impl(x, qs, d, dsum) }
}

#[target_feature(enable = "neon")]
unsafe fn quantize_acts_impl(x: &[f32], qs: &mut [i8], d: &mut [f32], dsum: &mut [f32]) {
    for i in 0..d.len() {
        let p = x.as_ptr().add(i * BLOCK);
        let mut v = [vdupq_n_f32(0.0); 8];
        let mut m = vdupq_n_f32(0.0);
        for (k, v) in v.iter_mut().enumerate() {
            *v = vld1q_f32(p.add(4 * k));
            m = vmaxq_f32(m, vabsq_f32(*v));
        }
        let amax = vmaxvq_f32(m);
        let scale = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        // Round to nearest, ties to even, as the scalar reference does.
        let mut q = [vdupq_n_s32(0); 8];
        let mut sum = vdupq_n_s32(0);
        for (q, v) in q.iter_mut().zip(&v) {
            *q = vcvtnq_s32_f32(vmulq_n_f32(*v, id));
            sum = vaddq_s32(sum, *q);
        }
        for h in 0..2 {
            let q = &q[4 * h..];
            let a = vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1]));
            let b = vcombine_s16(vqmovn_s32(q[2]), vqmovn_s32(q[3]));
            vst1q_s8(
                qs.as_mut_ptr().add(i * BLOCK + 16 * h),
                vcombine_s8(vqmovn_s16(a), vqmovn_s16(b)),
            );
        }
        d[i] = scale;
        dsum[i] = scale * vaddvq_s32(sum) as f32;
    }
}

pub(super) fn tile(qtype: QType, w: &[u8], acts: &QActs, out: &mut [f32]) {
    let (m, nb) = (acts.m, acts.k / BLOCK);
    let nrows = out.len() / m.max(1);
    assert!(w.len() >= nrows * nb * qtype.block_bytes());
    assert!(acts.qs.len() >= m * acts.k && acts.d.len() >= m * nb && acts.dsum.len() >= m * nb);
    assert_eq!(out.len(), nrows * m);
    let rb = nb * qtype.block_bytes();
    for (r, o) in out.chunks_mut(m.max(1)).enumerate() {
        let row = &w[r * rb..][..rb];
        let mut c = 0;
        while c < m {
            let n = (m - c).min(4);
            let o = &mut o[c..c + n];
            // SAFETY: NEON is detected (Kernel::Neon); `row` holds whole
            // blocks, activation rows c..c+n exist (asserted above), and
            // every load is inside one block of `row` or of `acts`.
            unsafe {
                match n {
                    4 => row_dot::<4>(qtype, row, acts, c, o),
                    3 => row_dot::<3>(qtype, row, acts, c, o),
                    2 => row_dot::<2>(qtype, row, acts, c, o),
                    _ => row_dot::<1>(qtype, row, acts, c, o),
                }
            }
            c += n;
        }
    }
}

/// `out[j] = row · a_{c0+j}` for `C` activation rows.
#[target_feature(enable = "neon")]
unsafe fn row_dot<const C: usize>(
    qtype: QType,
    row: &[u8],
    acts: &QActs,
    c0: usize,
    out: &mut [f32],
) {
    let nb = acts.k / BLOCK;
    let mask = vdupq_n_u8(0x0F);
    let mut acc = [vdupq_n_f32(0.0); C];
    let mut off = [0f32; C];
    for b in 0..nb {
        let (doff, moff, qoff) = block_offsets(qtype, nb, b);
        let d = f16_at(row, doff);
        let qp = row.as_ptr().add(qoff);
        let (w0, w1, o) = match qtype {
            QType::Q4_0 | QType::Q4_1 => {
                let v = vld1q_u8(qp);
                let lo = vreinterpretq_s8_u8(vandq_u8(v, mask));
                let hi = vreinterpretq_s8_u8(vshrq_n_u8::<4>(v));
                let o = if qtype == QType::Q4_0 { -8.0 * d } else { f16_at(row, moff) };
                (lo, hi, o)
            }
            QType::Q8_0 => (vld1q_s8(qp as *const i8), vld1q_s8(qp.add(16) as *const i8), 0.0),
        };
        for j in 0..C {
            let ai = (c0 + j) * nb + b;
            let ap = acts.qs.as_ptr().add((c0 + j) * acts.k + b * BLOCK);
            let p = vaddq_s32(dot16(w0, vld1q_s8(ap)), dot16(w1, vld1q_s8(ap.add(16))));
            acc[j] = vfmaq_n_f32(acc[j], vcvtq_f32_s32(p), d * acts.d[ai]);
            off[j] += o * acts.dsum[ai];
        }
    }
    for j in 0..C {
        out[j] = vaddvq_f32(acc[j]) + off[j];
    }
}

/// Sixteen int8 products summed into four i32 lanes.
#[inline(always)]
unsafe fn dot16(w: int8x16_t, a: int8x16_t) -> int32x4_t {
    let lo = vmull_s8(vget_low_s8(w), vget_low_s8(a));
    let hi = vmull_high_s8(w, a);
    vaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi))
}
