//! The vector kernels written once over [`Lanes`], a register of f32 lanes
//! at some level (`__m256`, `__m512`, `float32x4_t`). Every function here
//! is `#[inline(always)]`: the [`level!`](super::level) wrappers compile
//! it into a `#[target_feature]` function per level. Tails shorter than a
//! register run the portable loops of [`super`].

use super::cephes::{C1, C2, HI, LOG2E, P};
use super::Elem;
use crate::isa::Isa;

/// One register of f32 lanes and the operations the kernels need. Every
/// method is `#[inline(always)]` in its implementations and only called
/// from functions compiled with the level's features.
pub(super) trait Lanes: Copy {
    /// Lanes per register.
    const N: usize;
    /// Inputs of [`Lanes::exp`] are clamped below to this.
    const EXP_LO: f32;
    unsafe fn splat(v: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    /// Loads `N` IEEE halves and widens them to f32.
    unsafe fn load_f16(p: *const u16) -> Self;
    unsafe fn store(self, p: *mut f32);
    unsafe fn add(self, b: Self) -> Self;
    unsafe fn sub(self, b: Self) -> Self;
    unsafe fn mul(self, b: Self) -> Self;
    unsafe fn div(self, b: Self) -> Self;
    /// `self · b + c`, fused.
    unsafe fn fma(self, b: Self, c: Self) -> Self;
    unsafe fn min(self, b: Self) -> Self;
    unsafe fn max(self, b: Self) -> Self;
    /// Round to nearest, ties to even.
    unsafe fn round(self) -> Self;
    /// `self · 2ⁿ` for integral `n` (within the clamp of [`Lanes::exp`]).
    unsafe fn ldexp(self, n: Self) -> Self;
    /// The sum of the lanes.
    unsafe fn sum(self) -> f32;
    /// The sum of the lanes, added up in f64.
    unsafe fn sum_f64(self) -> f64;

    /// Cephes `expf`: `x = n·ln2 + r`, `e^r` by a degree-6 polynomial.
    #[inline(always)]
    unsafe fn exp(self) -> Self {
        let x = self.min(Self::splat(HI)).max(Self::splat(Self::EXP_LO));
        let n = x.mul(Self::splat(LOG2E)).round();
        let r = n.fma(Self::splat(-C1), x);
        let r = n.fma(Self::splat(-C2), r);
        let mut p = Self::splat(P[0]);
        for &c in &P[1..] {
            p = p.fma(r, Self::splat(c));
        }
        let y = p.mul(r).fma(r, r.add(Self::splat(1.0)));
        y.ldexp(n)
    }
}

/// `N` elements of a row, as f32 lanes.
#[inline(always)]
unsafe fn load_elem<V: Lanes, E: Elem>(p: *const E) -> V {
    if E::F16 {
        V::load_f16(p.cast())
    } else {
        V::load(p.cast())
    }
}

#[inline(always)]
pub(super) unsafe fn dot_rows<V: Lanes, E: Elem>(
    q: &[f32],
    rows: &[E],
    stride: usize,
    scale: f32,
    out: &mut [f32],
) {
    let d = q.len();
    let dv = d - d % V::N;
    for (j, o) in out.iter_mut().enumerate() {
        let r = rows.as_ptr().add(j * stride);
        let mut acc = V::splat(0.0);
        let mut i = 0;
        while i < dv {
            acc = V::load(q.as_ptr().add(i)).fma(load_elem(r.add(i)), acc);
            i += V::N;
        }
        let tail = std::slice::from_raw_parts(r.add(dv), d - dv);
        let s = acc.sum() + q[dv..].iter().zip(tail).map(|(a, b)| a * b.to_f32()).sum::<f32>();
        *o = s * scale;
    }
}

#[inline(always)]
pub(super) unsafe fn axpy_rows<V: Lanes, E: Elem>(
    p: &[f32],
    rows: &[E],
    stride: usize,
    out: &mut [f32],
) {
    let d = out.len();
    let o = out.as_mut_ptr();
    // Two registers at a time, kept across all rows.
    let mut i = 0;
    while i + 2 * V::N <= d {
        let mut a0 = V::load(o.add(i));
        let mut a1 = V::load(o.add(i + V::N));
        for (j, &w) in p.iter().enumerate() {
            let r = rows.as_ptr().add(j * stride + i);
            let wv = V::splat(w);
            a0 = wv.fma(load_elem(r), a0);
            a1 = wv.fma(load_elem(r.add(V::N)), a1);
        }
        a0.store(o.add(i));
        a1.store(o.add(i + V::N));
        i += 2 * V::N;
    }
    if i < d {
        super::axpy_rows_at(Isa::Scalar, p, &rows[i..], stride, &mut out[i..]);
    }
}

#[inline(always)]
pub(super) unsafe fn exp_affine<V: Lanes>(x: &mut [f32], a: f32, b: f32) -> f64 {
    let (n, p) = (x.len(), x.as_mut_ptr());
    let (av, bv) = (V::splat(a), V::splat(b));
    let mut acc = V::splat(0.0);
    let mut i = 0;
    while i + V::N <= n {
        let e = V::load(p.add(i)).fma(av, bv).exp();
        e.store(p.add(i));
        acc = acc.add(e);
        i += V::N;
    }
    acc.sum_f64() + super::exp_affine_at(Isa::Scalar, &mut x[i..], a, b)
}

#[inline(always)]
pub(super) unsafe fn silu_mul<V: Lanes>(g: &[f32], u: &[f32], out: &mut [f32]) {
    let n = out.len();
    let one = V::splat(1.0);
    let mut i = 0;
    while i + V::N <= n {
        let gv = V::load(g.as_ptr().add(i));
        let s = gv.div(one.add(V::splat(0.0).sub(gv).exp()));
        s.mul(V::load(u.as_ptr().add(i))).store(out.as_mut_ptr().add(i));
        i += V::N;
    }
    super::silu_mul_at(Isa::Scalar, &g[i..], &u[i..], &mut out[i..]);
}

#[inline(always)]
pub(super) unsafe fn silu_mul_bwd<V: Lanes>(
    g: &[f32],
    u: &[f32],
    gy: &[f32],
    dg: &mut [f32],
    du: &mut [f32],
) {
    let n = dg.len();
    let one = V::splat(1.0);
    let mut i = 0;
    while i + V::N <= n {
        let gv = V::load(g.as_ptr().add(i));
        let uv = V::load(u.as_ptr().add(i));
        let yv = V::load(gy.as_ptr().add(i));
        let sig = one.div(one.add(V::splat(0.0).sub(gv).exp()));
        // ∂g = ∂y·u·σ·(1 + g·(1 − σ)), ∂u = ∂y·g·σ
        let k = gv.fma(one.sub(sig), one);
        yv.mul(uv).mul(sig).mul(k).store(dg.as_mut_ptr().add(i));
        yv.mul(gv).mul(sig).store(du.as_mut_ptr().add(i));
        i += V::N;
    }
    super::silu_mul_bwd_at(Isa::Scalar, &g[i..], &u[i..], &gy[i..], &mut dg[i..], &mut du[i..]);
}
