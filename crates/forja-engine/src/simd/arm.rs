//! aarch64 NEON level of [`super`] (`float32x4_t`, 4 lanes): the
//! [`Lanes`] implementation, the kernels of [`super::kernels`] compiled
//! for it (`neon::*`) and the sum of squares. Only reached through
//! `super`'s dispatch, after detection; tested under qemu
//! (`make check-aarch64`).

use super::cephes::LO;
use super::kernels::Lanes;
use std::arch::aarch64::*;

pub(super) mod neon {
    use std::arch::aarch64::float32x4_t;
    level!("neon", float32x4_t);
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

impl Lanes for float32x4_t {
    const N: usize = 4;
    const EXP_LO: f32 = LO;
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        vdupq_n_f32(v)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        vld1q_f32(p)
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const u16) -> Self {
        let h = vld1_u16(p);
        let out: float32x4_t;
        // `fcvtl` widens four halves (base ARMv8; Rust's f16 vector types
        // and their intrinsics are not stable yet).
        std::arch::asm!(
            "fcvtl {o:v}.4s, {h:v}.4h",
            o = lateout(vreg) out,
            h = in(vreg) h,
            options(pure, nomem, nostack, preserves_flags)
        );
        out
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        vst1q_f32(p, self)
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        vaddq_f32(self, b)
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        vsubq_f32(self, b)
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        vmulq_f32(self, b)
    }
    #[inline(always)]
    unsafe fn div(self, b: Self) -> Self {
        vdivq_f32(self, b)
    }
    #[inline(always)]
    unsafe fn fma(self, b: Self, c: Self) -> Self {
        vfmaq_f32(c, self, b)
    }
    #[inline(always)]
    unsafe fn min(self, b: Self) -> Self {
        vminq_f32(self, b)
    }
    #[inline(always)]
    unsafe fn max(self, b: Self) -> Self {
        vmaxq_f32(self, b)
    }
    #[inline(always)]
    unsafe fn round(self) -> Self {
        vrndnq_f32(self)
    }
    /// 2ⁿ built from its exponent bits (`n` ≥ −126 after the clamp).
    #[inline(always)]
    unsafe fn ldexp(self, n: Self) -> Self {
        let e = vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127));
        vmulq_f32(self, vreinterpretq_f32_s32(vshlq_n_s32::<23>(e)))
    }
    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        vaddvq_f32(self)
    }
    #[inline(always)]
    unsafe fn sum_f64(self) -> f64 {
        vaddvq_f64(vcvt_f64_f32(vget_low_f32(self))) + vaddvq_f64(vcvt_high_f64_f32(self))
    }
}
