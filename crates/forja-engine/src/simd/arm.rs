//! aarch64 NEON level of [`super`] (4 lanes). Only reached through
//! `super`'s dispatch, after detection; tested under qemu
//! (`make check-aarch64`).
use std::arch::aarch64::*;

#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_rows(q: &[f32], rows: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
    let d = q.len();
    let d8 = d & !7;
    for (j, o) in out.iter_mut().enumerate() {
        let r = rows.as_ptr().add(j * stride);
        let (mut a0, mut a1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
        let mut i = 0;
        while i < d8 {
            a0 = vfmaq_f32(a0, vld1q_f32(q.as_ptr().add(i)), vld1q_f32(r.add(i)));
            a1 = vfmaq_f32(a1, vld1q_f32(q.as_ptr().add(i + 4)), vld1q_f32(r.add(i + 4)));
            i += 8;
        }
        let mut s = vaddvq_f32(vaddq_f32(a0, a1));
        while i < d {
            s += q[i] * *r.add(i);
            i += 1;
        }
        *o = s * scale;
    }
}

#[target_feature(enable = "neon")]
pub(super) unsafe fn axpy_rows(p: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    let d = out.len();
    let o = out.as_mut_ptr();
    // Sixteen lanes at a time, kept in registers across all rows.
    let mut i = 0;
    while i + 16 <= d {
        let mut a = [
            vld1q_f32(o.add(i)),
            vld1q_f32(o.add(i + 4)),
            vld1q_f32(o.add(i + 8)),
            vld1q_f32(o.add(i + 12)),
        ];
        for (j, &w) in p.iter().enumerate() {
            let r = rows.as_ptr().add(j * stride + i);
            for (k, a) in a.iter_mut().enumerate() {
                *a = vfmaq_n_f32(*a, vld1q_f32(r.add(4 * k)), w);
            }
        }
        for (k, a) in a.iter().enumerate() {
            vst1q_f32(o.add(i + 4 * k), *a);
        }
        i += 16;
    }
    while i < d {
        for (j, &w) in p.iter().enumerate() {
            *o.add(i) += w * *rows.as_ptr().add(j * stride + i);
        }
        i += 1;
    }
}

#[target_feature(enable = "neon")]
pub(super) unsafe fn sum_sq(x: &[f32]) -> f64 {
    let n = x.len();
    let p = x.as_ptr();
    let mut acc = vdupq_n_f64(0.0);
    let mut i = 0;
    while i + 4 <= n {
        let v = vld1q_f32(p.add(i));
        let lo = vcvt_f64_f32(vget_low_f32(v));
        let hi = vcvt_high_f64_f32(v);
        acc = vfmaq_f64(acc, lo, lo);
        acc = vfmaq_f64(acc, hi, hi);
        i += 4;
    }
    let mut s = vaddvq_f64(acc);
    while i < n {
        let v = *p.add(i) as f64;
        s += v * v;
        i += 1;
    }
    s
}

/// Cephes `expf` on four lanes.
#[inline(always)]
unsafe fn exp4(x: float32x4_t) -> float32x4_t {
    use super::cephes::*;
    let x = vmaxq_f32(vminq_f32(x, vdupq_n_f32(HI)), vdupq_n_f32(LO));
    let n = vrndnq_f32(vmulq_n_f32(x, LOG2E));
    let r = vfmsq_f32(x, n, vdupq_n_f32(C1));
    let r = vfmsq_f32(r, n, vdupq_n_f32(C2));
    let mut p = vdupq_n_f32(P[0]);
    for c in &P[1..] {
        p = vfmaq_f32(vdupq_n_f32(*c), p, r);
    }
    let y = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0)), vmulq_f32(p, r), r);
    let pow2n =
        vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127))));
    vmulq_f32(y, pow2n)
}

#[target_feature(enable = "neon")]
pub(super) unsafe fn exp_affine(x: &mut [f32], a: f32, b: f32) -> f64 {
    let (n, p) = (x.len(), x.as_mut_ptr());
    let bv = vdupq_n_f32(b);
    let mut acc = vdupq_n_f32(0.0);
    let mut i = 0;
    while i + 4 <= n {
        let e = exp4(vfmaq_n_f32(bv, vld1q_f32(p.add(i)), a));
        vst1q_f32(p.add(i), e);
        acc = vaddq_f32(acc, e);
        i += 4;
    }
    let mut sum = vaddvq_f64(vcvt_f64_f32(vget_low_f32(acc))) + vaddvq_f64(vcvt_high_f64_f32(acc));
    while i < n {
        *p.add(i) = (a * *p.add(i) + b).exp();
        sum += *p.add(i) as f64;
        i += 1;
    }
    sum
}

#[target_feature(enable = "neon")]
pub(super) unsafe fn silu_mul(g: &[f32], u: &[f32], out: &mut [f32]) {
    let n = out.len();
    let one = vdupq_n_f32(1.0);
    let mut i = 0;
    while i + 4 <= n {
        let gv = vld1q_f32(g.as_ptr().add(i));
        let s = vdivq_f32(gv, vaddq_f32(one, exp4(vnegq_f32(gv))));
        vst1q_f32(out.as_mut_ptr().add(i), vmulq_f32(s, vld1q_f32(u.as_ptr().add(i))));
        i += 4;
    }
    for i in i..n {
        out[i] = g[i] / (1.0 + (-g[i]).exp()) * u[i];
    }
}

#[target_feature(enable = "neon")]
pub(super) unsafe fn silu_mul_bwd(
    g: &[f32],
    u: &[f32],
    gy: &[f32],
    dg: &mut [f32],
    du: &mut [f32],
) {
    let n = dg.len();
    let one = vdupq_n_f32(1.0);
    let mut i = 0;
    while i + 4 <= n {
        let gv = vld1q_f32(g.as_ptr().add(i));
        let uv = vld1q_f32(u.as_ptr().add(i));
        let yv = vld1q_f32(gy.as_ptr().add(i));
        let sig = vdivq_f32(one, vaddq_f32(one, exp4(vnegq_f32(gv))));
        let k = vfmaq_f32(one, gv, vsubq_f32(one, sig));
        vst1q_f32(dg.as_mut_ptr().add(i), vmulq_f32(vmulq_f32(vmulq_f32(yv, uv), sig), k));
        vst1q_f32(du.as_mut_ptr().add(i), vmulq_f32(vmulq_f32(yv, gv), sig));
        i += 4;
    }
    for i in i..n {
        let sig = 1.0 / (1.0 + (-g[i]).exp());
        dg[i] = gy[i] * u[i] * sig * (1.0 + g[i] * (1.0 - sig));
        du[i] = gy[i] * g[i] * sig;
    }
}
