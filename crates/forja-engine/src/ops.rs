//! Element-wise and normalisation ops of the decoder, each in two forms:
//! a fused CPU kernel (a candle custom op over contiguous f32, with a
//! hand-written backward for training), and a composition of differentiable
//! candle ops used on other devices and as the reference in tests.

use crate::parallel;
use crate::simd;
use candle_core::{
    backend::BackendStorage, CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape,
    Tensor, D,
};

/// Rows below this count are processed on the calling thread.
const PAR_ROWS: usize = 8;

fn use_fused(xs: &[&Tensor]) -> bool {
    xs.iter().all(|x| x.device().is_cpu() && x.dtype() == DType::F32)
}

/// Runs `f` on the data of two tensors made contiguous.
fn with2<R>(a: &Tensor, b: &Tensor, f: impl FnOnce(&[f32], &[f32]) -> R) -> Result<R> {
    let (a, b) = (a.contiguous()?, b.contiguous()?);
    with_f32s([&a, &b], |[a, b]| f(a, b))
}

/// A new tensor shaped like `like` from `data`.
pub(crate) fn like(data: Vec<f32>, like: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(data, like.shape(), like.device())
}

/// Runs `f` on the f32 data of a contiguous CPU tensor, without copying.
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    with_f32s([t], |[x]| f(x))
}

/// Runs `f` on the f32 data of several contiguous CPU tensors at once,
/// without copying (a backward pass reads its inputs and the incoming
/// gradient in place instead of copying them first).
pub(crate) fn with_f32s<R, const N: usize>(
    ts: [&Tensor; N],
    f: impl FnOnce([&[f32]; N]) -> R,
) -> Result<R> {
    let guards = ts.map(|t| t.storage_and_layout());
    let mut slices: [&[f32]; N] = [&[]; N];
    for (slice, (storage, layout)) in slices.iter_mut().zip(&guards) {
        *slice = match &**storage {
            candle_core::Storage::Cpu(s) => f32_slice(s, layout, "with_f32")?,
            _ => candle_core::bail!("with_f32: tensor is not on the CPU"),
        };
    }
    Ok(f(slices))
}

pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        (CpuStorage::F32(_), None) => candle_core::bail!("{what}: input must be contiguous"),
        _ => candle_core::bail!("{what}: expected f32, got {:?}", s.dtype()),
    }
}

/// `x / rms(x) * w` over the last dimension.
pub(crate) fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    if use_fused(&[x, w]) {
        return x.contiguous()?.apply_op2(&w.contiguous()?, RmsNorm { eps });
    }
    rms_norm_composite(x, w, eps)
}

fn rms_norm_composite(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let dim = x.dim(D::Minus1)? as f64;
    let ms = (x.sqr()?.sum_keepdim(D::Minus1)? / dim)?;
    let inv = (ms + eps)?.sqrt()?.recip()?;
    x.broadcast_mul(&inv)?.broadcast_mul(w)
}

struct RmsNorm {
    eps: f64,
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "forja-rms-norm"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "rms_norm")?;
        let w = f32_slice(s2, l2, "rms_norm weight")?;
        let d = w.len();
        if l1.dims().last() != Some(&d) {
            candle_core::bail!("rms_norm: weight has {d} elements, input {:?}", l1.dims())
        }
        let mut out = vec![0f32; x.len()];
        let row = |r: usize, o: &mut [f32]| {
            let x = &x[r * d..][..d];
            let scale = (1.0 / (simd::sum_sq(x) / d as f64 + self.eps).sqrt()) as f32;
            for ((o, &x), &w) in o.iter_mut().zip(x).zip(w) {
                *o = x * scale * w;
            }
        };
        if x.len() / d >= PAR_ROWS {
            parallel::for_chunks_mut(&mut out, d, row);
        } else {
            out.chunks_mut(d).enumerate().for_each(|(r, o)| row(r, o));
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    /// With `r = 1/rms(x)` per row and `g = ∂y ⊙ w`:
    /// `∂x = r·g − x·r³·(g·x)/d` and `∂w = Σ_rows ∂y ⊙ x·r`.
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d = w.elem_count();
        let wv = w.flatten_all()?.to_vec1::<f32>()?;
        let want_w = w.track_op();
        let (dx, dw) = with2(x, grad, |xs, gy| {
            let mut dx = vec![0f32; xs.len()];
            let mut rows: Vec<(&mut [f32], Vec<f32>)> = dx
                .chunks_mut(d)
                .map(|c| (c, if want_w { vec![0f32; d] } else { Vec::new() }))
                .collect();
            parallel::for_each_mut(&mut rows, |r, (dxr, dwr)| {
                let (x, gy) = (&xs[r * d..][..d], &gy[r * d..][..d]);
                let inv = (1.0 / (simd::sum_sq(x) / d as f64 + self.eps).sqrt()) as f32;
                let gx: f32 = x.iter().zip(gy).zip(&wv).map(|((x, g), w)| x * g * w).sum();
                let c = inv * inv * inv * gx / d as f32;
                for i in 0..d {
                    dxr[i] = inv * gy[i] * wv[i] - x[i] * c;
                }
                if want_w {
                    for i in 0..d {
                        dwr[i] = gy[i] * x[i] * inv;
                    }
                }
            });
            let dw = want_w.then(|| {
                let mut dw = vec![0f32; d];
                for (_, r) in &rows {
                    dw.iter_mut().zip(r).for_each(|(a, b)| *a += b);
                }
                dw
            });
            (dx, dw)
        })?;
        Ok((Some(like(dx, x)?), dw.map(|g| like(g, w)).transpose()?))
    }
}

/// `silu(gate) * up`, the SwiGLU gate.
pub(crate) fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if use_fused(&[gate, up]) {
        return gate.contiguous()?.apply_op2(&up.contiguous()?, SiluMul);
    }
    silu_mul_composite(gate, up)
}

fn silu_mul_composite(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.silu()? * up
}

struct SiluMul;

impl CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "forja-silu-mul"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = f32_slice(s1, l1, "silu_mul")?;
        let u = f32_slice(s2, l2, "silu_mul")?;
        if l1.dims() != l2.dims() {
            candle_core::bail!("silu_mul: shapes differ {:?} {:?}", l1.dims(), l2.dims())
        }
        const CHUNK: usize = 1 << 14;
        let f = |c: usize, o: &mut [f32]| {
            simd::silu_mul(&g[c * CHUNK..][..o.len()], &u[c * CHUNK..][..o.len()], o);
        };
        let mut out = vec![0f32; g.len()];
        parallel::for_chunks_mut(&mut out, CHUNK, f);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    /// `∂g = ∂y·u·σ(g)·(1 + g·(1 − σ(g)))`, `∂u = ∂y·silu(g)`.
    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        const CHUNK: usize = 1 << 14;
        let grad = grad.contiguous()?;
        let (dg, du) = with2(gate, up, |g, u| {
            with_f32(&grad, |gy| {
                let mut dg = vec![0f32; g.len()];
                let mut du = vec![0f32; g.len()];
                let mut pieces: Vec<(&mut [f32], &mut [f32])> =
                    dg.chunks_mut(CHUNK).zip(du.chunks_mut(CHUNK)).collect();
                parallel::for_each_mut(&mut pieces, |c, (dgc, duc)| {
                    let (o, n) = (c * CHUNK, dgc.len());
                    simd::silu_mul_bwd(&g[o..][..n], &u[o..][..n], &gy[o..][..n], dgc, duc);
                });
                (dg, du)
            })
        })??;
        Ok((Some(like(dg, gate)?), Some(like(du, up)?)))
    }
}

/// Rotary position embedding, "rotate half" (NeoX / Hugging Face) layout.
///
/// `x` is `[tokens, heads, head_dim]`; `cos` and `sin` are `[tokens, head_dim / 2]`.
pub(crate) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if use_fused(&[x, cos, sin]) {
        return x.contiguous()?.apply_op3(&cos.contiguous()?, &sin.contiguous()?, Rope);
    }
    rope_composite(x, cos, sin)
}

fn rope_composite(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let (x1, x2) = (x.narrow(D::Minus1, 0, half)?, x.narrow(D::Minus1, half, half)?);
    let (c, s) = (cos.unsqueeze(1)?, sin.unsqueeze(1)?);
    let a = (x1.broadcast_mul(&c)? - x2.broadcast_mul(&s)?)?;
    let b = (x1.broadcast_mul(&s)? + x2.broadcast_mul(&c)?)?;
    Tensor::cat(&[a, b], D::Minus1)
}

struct Rope;

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "forja-rope"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "rope")?;
        let cos = f32_slice(s2, l2, "rope cos")?;
        let sin = f32_slice(s3, l3, "rope sin")?;
        let &[n, h, hd] = l1.dims() else {
            candle_core::bail!("rope: expected [tokens, heads, head_dim], got {:?}", l1.dims())
        };
        let half = hd / 2;
        if cos.len() != n * half || sin.len() != n * half {
            candle_core::bail!("rope: cos/sin must be [{n}, {half}]")
        }
        let mut out = vec![0f32; x.len()];
        let token = |t: usize, o: &mut [f32]| {
            let x = &x[t * h * hd..][..h * hd];
            let (c, s) = (&cos[t * half..][..half], &sin[t * half..][..half]);
            for (o, x) in o.chunks_exact_mut(hd).zip(x.chunks_exact(hd)) {
                let (o1, o2) = o.split_at_mut(half);
                let (x1, x2) = x.split_at(half);
                for i in 0..half {
                    o1[i] = x1[i] * c[i] - x2[i] * s[i];
                    o2[i] = x1[i] * s[i] + x2[i] * c[i];
                }
            }
        };
        if n >= PAR_ROWS {
            parallel::for_chunks_mut(&mut out, h * hd, token);
        } else {
            out.chunks_mut(h * hd).enumerate().for_each(|(t, o)| token(t, o));
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    /// The rotation is orthogonal: backward rotates `∂y` by the opposite
    /// angle. The tables are constants.
    fn bwd(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let neg_sin = sin.neg()?;
        let dx = grad.contiguous()?.apply_op3_no_bwd(cos, &neg_sin, &Rope)?;
        Ok((Some(dx.reshape(x.shape())?), None, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{max_diff, rand};
    use candle_core::Var;

    /// Runs the fused op and its composite on variables and compares the
    /// outputs and the gradients of every input that has one.
    fn check(
        fused: impl Fn(&[Tensor]) -> Result<Tensor>,
        composite: impl Fn(&[Tensor]) -> Result<Tensor>,
        inputs: &[Tensor],
        differentiable: usize,
    ) {
        let vars: Vec<Var> = inputs.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let (a, b) = (fused(&ts).unwrap(), composite(&ts).unwrap());
        assert!(max_diff(&a, &b) < 1e-5);
        let up = rand(a.dims(), 99);
        let ga = (&a * &up).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (&b * &up).unwrap().sum_all().unwrap().backward().unwrap();
        for (i, t) in ts.iter().enumerate().take(differentiable) {
            let (x, y) = (ga.get(t).unwrap(), gb.get(t).unwrap());
            assert!(max_diff(x, y) < 1e-4, "input {i}: {}", max_diff(x, y));
        }
    }

    #[test]
    fn fused_kernels_match_differentiable_compositions() {
        check(
            |t| rms_norm(&t[0], &t[1], 1e-5),
            |t| rms_norm_composite(&t[0], &t[1], 1e-5),
            &[rand(&[9, 64], 1), rand(&[64], 2)],
            2,
        );
        check(
            |t| silu_mul(&t[0], &t[1]),
            |t| silu_mul_composite(&t[0], &t[1]),
            &[rand(&[3, 40], 3), rand(&[3, 40], 4)],
            2,
        );
        check(
            |t| rope(&t[0], &t[1], &t[2]),
            |t| rope_composite(&t[0], &t[1], &t[2]),
            &[rand(&[10, 3, 8], 5), rand(&[10, 4], 6), rand(&[10, 4], 7)],
            1,
        );
    }

    #[test]
    fn a_frozen_norm_weight_gets_no_gradient() {
        let x = Var::from_tensor(&rand(&[4, 16], 8)).unwrap();
        let w = rand(&[16], 9);
        let y = rms_norm(x.as_tensor(), &w, 1e-6).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(x.as_tensor()).is_some() && grads.get(&w).is_none());
    }
}
