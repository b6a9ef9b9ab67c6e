//! Portable reference kernels: GGML's reference (de)quantization and a plain
//! dot-product tile. The SIMD kernels are tested against these.

use super::{block_offsets, f16_at, QActs, QType, BLOCK};
use half::f16;

pub(super) fn quantize_block(qtype: QType, x: &[f32], out: &mut [u8]) {
    debug_assert_eq!(x.len(), BLOCK);
    match qtype {
        QType::Q4_0 => {
            // The value of largest magnitude maps to -8.
            let max = x.iter().copied().fold(0f32, |a, v| if v.abs() > a.abs() { v } else { a });
            let d = max / -8.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            out[..2].copy_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
            for j in 0..BLOCK / 2 {
                let q0 = ((x[j] * id + 8.5) as i32).clamp(0, 15) as u8;
                let q1 = ((x[j + 16] * id + 8.5) as i32).clamp(0, 15) as u8;
                out[2 + j] = q0 | (q1 << 4);
            }
        }
        QType::Q4_1 => {
            let min = x.iter().copied().fold(f32::INFINITY, f32::min);
            let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let d = (max - min) / 15.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            out[..2].copy_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
            out[2..4].copy_from_slice(&f16::from_f32(min).to_bits().to_le_bytes());
            for j in 0..BLOCK / 2 {
                let q0 = (((x[j] - min) * id + 0.5) as i32).clamp(0, 15) as u8;
                let q1 = (((x[j + 16] - min) * id + 0.5) as i32).clamp(0, 15) as u8;
                out[4 + j] = q0 | (q1 << 4);
            }
        }
        QType::Q8_0 => {
            let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            out[..2].copy_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
            for j in 0..BLOCK {
                out[2 + j] = ((x[j] * id).round() as i8) as u8;
            }
        }
    }
}

pub(super) fn dequantize_block(qtype: QType, b: &[u8], out: &mut [f32]) {
    match qtype {
        QType::Q4_0 => {
            let d = f16_at(b, 0);
            for j in 0..BLOCK / 2 {
                out[j] = ((b[2 + j] & 0x0F) as i32 - 8) as f32 * d;
                out[j + 16] = ((b[2 + j] >> 4) as i32 - 8) as f32 * d;
            }
        }
        QType::Q4_1 => {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            for j in 0..BLOCK / 2 {
                out[j] = (b[4 + j] & 0x0F) as f32 * d + m;
                out[j + 16] = (b[4 + j] >> 4) as f32 * d + m;
            }
        }
        QType::Q8_0 => {
            let d = f16_at(b, 0);
            for j in 0..BLOCK {
                out[j] = (b[2 + j] as i8) as f32 * d;
            }
        }
    }
}

pub(super) fn quantize_acts(x: &[f32], qs: &mut [i8], d: &mut [f32], dsum: &mut [f32]) {
    for (((x, q), d), ds) in x.chunks_exact(BLOCK).zip(qs.chunks_exact_mut(BLOCK)).zip(d).zip(dsum)
    {
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        let scale = amax / 127.0;
        let id = if scale != 0.0 { 1.0 / scale } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in q.iter_mut().zip(x) {
            *q = (v * id).round_ties_even() as i8;
            sum += *q as i32;
        }
        *d = scale;
        *ds = scale * sum as f32;
    }
}

/// Dot product of one weight row (grouped layout) with activation row `c`.
fn dot_row(qtype: QType, row: &[u8], acts: &QActs, c: usize) -> f32 {
    let nb = acts.k / BLOCK;
    let mut sum = 0f32;
    for b in 0..nb {
        let (doff, moff, qoff) = block_offsets(qtype, nb, b);
        let qs = &row[qoff..qoff + qtype.quant_bytes()];
        let d = f16_at(row, doff);
        let ai = c * nb + b;
        let aq = acts.block(c, b);
        let (ad, adsum) = (acts.d[ai], acts.dsum[ai]);
        match qtype {
            QType::Q4_0 | QType::Q4_1 => {
                let mut isum = 0i32;
                for j in 0..16 {
                    isum += (qs[j] & 0x0F) as i32 * aq[j] as i32;
                    isum += (qs[j] >> 4) as i32 * aq[j + 16] as i32;
                }
                let offset = if qtype == QType::Q4_0 { -8.0 * d } else { f16_at(row, moff) };
                sum += d * ad * isum as f32 + offset * adsum;
            }
            QType::Q8_0 => {
                let isum: i32 = qs.iter().zip(aq).map(|(&w, a)| (w as i8) as i32 * a as i32).sum();
                sum += d * ad * isum as f32;
            }
        }
    }
    sum
}

pub(super) fn tile(qtype: QType, w: &[u8], acts: &QActs, out: &mut [f32]) {
    let (m, rb) = (acts.m, acts.k / BLOCK * qtype.block_bytes());
    for (r, o) in out.chunks_mut(m).enumerate() {
        let row = &w[r * rb..(r + 1) * rb];
        for (c, o) in o.iter_mut().enumerate() {
            *o = dot_row(qtype, row, acts, c);
        }
    }
}
