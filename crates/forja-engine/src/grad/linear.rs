//! The matrix products of a LoRA step, without candle's waste:
//!
//! - [`frozen_linear`]: `x · Wᵀ` over a frozen dense weight. candle's matmul
//!   backward always computes `∂W` too (a third of the FLOPs and a large
//!   allocation per layer per step); LoRA never needs it.
//! - [`lora_linear`]: `x · Wᵀ + s · (x·m) Aᵀ Bᵀ` (frozen `W`, dropout mask
//!   `m`) as one node: one pass over `x` and `∂y` for the base and the
//!   adapter, no intermediate `[tokens, out]` tensors or gradient buffers.
//! - [`cross_entropy`]: the LM head and the token cross-entropy in one pass
//!   over row chunks. It never materialises the `[tokens, vocab]` logits
//!   (200 MB for 1024 tokens of a 49k vocabulary) and computes `∂h` (and
//!   `∂W` when the head trains) during the forward pass, since the loss is
//!   the graph's output: backward only scales them.

use super::amx::{self, Bf16Weight};
use super::{matmul, matmul_new, Mat};
use crate::ops::{f32_slice, like, with_f32, with_f32s};
use crate::parallel;
use crate::simd;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor,
};
use std::sync::{Arc, Mutex};

/// `x · Wᵀ` for `x` `[..., in]` and a frozen `w` `[out, in]`; the backward
/// pass gives `∂x` only. With `bf16` (`w` packed for AMX) both products
/// run in BF16.
pub(crate) fn frozen_linear(
    x: &Tensor,
    w: &Tensor,
    bf16: Option<Arc<Bf16Weight>>,
) -> Result<Tensor> {
    let w = w.contiguous()?;
    let (n, k) = w.dims2()?;
    x.contiguous()?.apply_op1(FrozenLinear { w, n, k, bf16 })
}

struct FrozenLinear {
    /// Contiguous f32 `[n, k]`, read in place.
    w: Tensor,
    n: usize,
    k: usize,
    bf16: Option<Arc<Bf16Weight>>,
}

/// One product over a frozen weight `w` `[n, k]` (row-major): the forward
/// `x[m, k] · wᵀ` or the backward `g[m, n] · w`, in BF16 on AMX tiles when
/// `w` was packed for them (`bf16`), in f32 otherwise. The one place that
/// pairs each direction with its f32 operand layout and its packed panels.
#[derive(Clone, Copy)]
struct Frozen<'a> {
    w: &'a [f32],
    /// `(n, k)`.
    dims: (usize, usize),
    bf16: Option<&'a Bf16Weight>,
}

/// Which product over a frozen weight.
#[derive(Clone, Copy)]
enum Side {
    /// `x · wᵀ`: `[m, k]` in, `[m, n]` out.
    Fwd,
    /// `g · w`: `[m, n]` in, `[m, k]` out.
    Bwd,
}

impl<'a> Frozen<'a> {
    /// The lhs `lhs` as a matrix, `w` as the rhs, the output's columns and
    /// the inner size, and the packed panels of that side.
    fn operands<'b>(
        &self,
        side: Side,
        lhs: &'b [f32],
    ) -> (Mat<'b>, Mat<'a>, (usize, usize), Option<&'a amx::Packed>) {
        let (n, k) = self.dims;
        match side {
            Side::Fwd => (Mat::rows(lhs, k), Mat::t(self.w, k), (n, k), self.bf16.map(|p| &p.fwd)),
            Side::Bwd => {
                (Mat::rows(lhs, n), Mat::rows(self.w, k), (k, n), self.bf16.map(|p| &p.bwd))
            }
        }
    }

    /// The product of `m` rows of `lhs`, as a new row-major vector.
    fn product(&self, side: Side, m: usize, lhs: &[f32]) -> Vec<f32> {
        match self.operands(side, lhs) {
            (a, _, _, Some(p)) => amx::matmul_new(m, a, p),
            (a, b, (cols, inner), None) => matmul_new(m, cols, inner, a, b),
        }
    }

    /// `dst (+)=` the product of `m` rows of `lhs`.
    fn product_into(&self, side: Side, m: usize, dst: &mut [f32], lhs: &[f32], acc: bool) {
        match self.operands(side, lhs) {
            (a, _, _, Some(p)) => amx::matmul_into(m, dst, a, p, acc),
            (a, b, (cols, inner), None) => matmul(m, cols, inner, dst, a, b, acc),
        }
    }
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "forja-frozen-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "frozen_linear")?;
        let (n, k) = (self.n, self.k);
        if l.dims().last() != Some(&k) {
            candle_core::bail!("frozen_linear: input {:?} does not end in {k}", l.dims())
        }
        let m = x.len() / k;
        let y = with_f32(&self.w, |w| {
            Frozen { w, dims: (n, k), bf16: self.bf16.as_deref() }.product(Side::Fwd, m, x)
        })?;
        let mut dims = l.dims().to_vec();
        *dims.last_mut().expect("rank >= 1") = n;
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (n, k) = (self.n, self.k);
        let m = grad.elem_count() / n;
        let gx = with_f32s([&grad.contiguous()?, &self.w], |[g, w]| {
            Frozen { w, dims: (n, k), bf16: self.bf16.as_deref() }.product(Side::Bwd, m, g)
        })?;
        Ok(Some(Tensor::from_vec(gx, arg.shape(), arg.device())?))
    }
}

/// `x · Wᵀ + scale · (x ⊙ mask) · Aᵀ · Bᵀ` for `x` `[..., in]`, a frozen
/// `w` `[out, in]`, `a` `[r, in]`, `b` `[out, r]` and an optional dropout
/// `mask` (as many values as `x`, already scaled by `1 / keep`).
/// Differentiable in `x`, `a` and `b`. With `bf16` (`w` packed for AMX)
/// the two products over `w` run in BF16; the adapter's stay f32.
pub(crate) fn lora_linear(
    x: &Tensor,
    w: &Tensor,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
    mask: Option<Vec<f32>>,
    bf16: Option<Arc<Bf16Weight>>,
) -> Result<Tensor> {
    let (n, k) = w.dims2()?;
    let (r, ka) = a.dims2()?;
    if ka != k || b.dims2()? != (n, r) || mask.as_ref().is_some_and(|m| m.len() != x.elem_count()) {
        candle_core::bail!("lora_linear: w {:?}, a {:?}, b {:?}", w.dims(), a.dims(), b.dims())
    }
    let op = LoraLinear {
        w: w.contiguous()?,
        dims: (n, k, r),
        scale: scale as f32,
        mask,
        hidden: Mutex::new(Vec::new()),
        bf16,
    };
    x.contiguous()?.apply_op3(&a.contiguous()?, &b.contiguous()?, op)
}

struct LoraLinear {
    w: Tensor,
    /// `(out, in, r)`.
    dims: (usize, usize, usize),
    scale: f32,
    mask: Option<Vec<f32>>,
    /// `scale · (x ⊙ mask) Aᵀ` `[m, r]`, kept for `∂B`.
    hidden: Mutex<Vec<f32>>,
    bf16: Option<Arc<Bf16Weight>>,
}

impl LoraLinear {
    /// `x ⊙ mask` (or `x` itself).
    fn masked<'a>(&self, x: &'a [f32]) -> std::borrow::Cow<'a, [f32]> {
        match &self.mask {
            Some(m) => x.iter().zip(m).map(|(x, m)| x * m).collect::<Vec<_>>().into(),
            None => x.into(),
        }
    }
}

impl CustomOp3 for LoraLinear {
    fn name(&self) -> &'static str {
        "forja-lora-linear"
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
        let x = f32_slice(s1, l1, "lora_linear x")?;
        let a = f32_slice(s2, l2, "lora_linear a")?;
        let b = f32_slice(s3, l3, "lora_linear b")?;
        let (n, k, r) = self.dims;
        if l1.dims().last() != Some(&k) {
            candle_core::bail!("lora_linear: input {:?} does not end in {k}", l1.dims())
        }
        let m = x.len() / k;
        let mut y = with_f32(&self.w, |w| {
            Frozen { w, dims: (n, k), bf16: self.bf16.as_deref() }.product(Side::Fwd, m, x)
        })?;
        let xd = self.masked(x);
        let mut h = matmul_new(m, r, k, Mat::rows(&xd, k), Mat::t(a, k));
        h.iter_mut().for_each(|v| *v *= self.scale);
        matmul(m, n, r, &mut y, Mat::rows(&h, r), Mat::t(b, r), true);
        *self.hidden.lock().expect("not poisoned") = h;
        let mut dims = l1.dims().to_vec();
        *dims.last_mut().expect("rank >= 1") = n;
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    /// `g = ∂y B`: `∂x = ∂y W + s (g A) ⊙ mask`, `∂A = s gᵀ (x ⊙ mask)`,
    /// `∂B = ∂yᵀ h` with `h = s (x ⊙ mask) Aᵀ`.
    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, k, r) = self.dims;
        let h = std::mem::take(&mut *self.hidden.lock().expect("not poisoned"));
        let grad = grad.contiguous()?;
        // The inputs and the incoming gradient are read in place.
        let (dx, ga, gb) = with_f32s([x, a, b, &grad, &self.w], |[xs, av, bv, dy, w]| {
            let m = xs.len() / k;
            if h.len() != m * r {
                candle_core::bail!("lora_linear: backward without a forward pass")
            }
            let mut g = matmul_new(m, r, n, Mat::rows(dy, n), Mat::rows(bv, r));
            g.iter_mut().for_each(|v| *v *= self.scale);
            // ∂x: the adapter part first (masked), then the base product on top.
            let mut dx = matmul_new(m, k, r, Mat::rows(&g, r), Mat::rows(av, k));
            if let Some(mask) = &self.mask {
                dx.iter_mut().zip(mask).for_each(|(d, m)| *d *= m);
            }
            Frozen { w, dims: (n, k), bf16: self.bf16.as_deref() }.product_into(
                Side::Bwd,
                m,
                &mut dx,
                dy,
                true,
            );
            let ga = a.track_op().then(|| {
                let xd = self.masked(xs);
                matmul_new(r, k, m, Mat::t(&g, r), Mat::rows(&xd, k))
            });
            let gb = b.track_op().then(|| matmul_new(n, r, m, Mat::t(dy, n), Mat::rows(&h, r)));
            Ok((dx, ga, gb))
        })??;
        let mk = |g: Vec<f32>, like: &Tensor| Tensor::from_vec(g, like.shape(), like.device());
        Ok((Some(mk(dx, x)?), ga.map(|g| mk(g, a)).transpose()?, gb.map(|g| mk(g, b)).transpose()?))
    }
}

/// Rows of logits computed at once (bounds the scratch memory to
/// `CHUNK × vocab` floats).
const CHUNK: usize = 256;

/// Summed negative log-likelihood of `targets` under `softmax(h · Wᵀ)`, for
/// `h` `[tokens, hidden]` and the LM head `w` `[vocab, hidden]`, plus how
/// many targets are the argmax. Differentiable in `h`, and in `w` when `w`
/// is tracked (full training of a tied or untied head).
/// With `bf16` (a frozen `w` packed for AMX) the two products over `w` run
/// in BF16; the softmax and the loss stay f32.
pub(crate) fn cross_entropy(
    h: &Tensor,
    w: &Tensor,
    targets: &[u32],
    bf16: Option<Arc<Bf16Weight>>,
) -> Result<(Tensor, usize)> {
    let (v, d) = w.dims2()?;
    let (t, dh) = h.dims2()?;
    if dh != d || t != targets.len() {
        candle_core::bail!(
            "cross_entropy: h {:?}, w {:?}, {} targets",
            h.dims(),
            w.dims(),
            targets.len()
        )
    }
    if let Some(bad) = targets.iter().find(|&&x| x as usize >= v) {
        candle_core::bail!("cross_entropy: target {bad} is outside the vocabulary ({v})")
    }
    let saved = Arc::new(Mutex::new(None));
    let op = CrossEntropy {
        targets: targets.to_vec(),
        want_h: h.track_op(),
        want_w: w.track_op(),
        saved: saved.clone(),
        bf16: bf16.filter(|_| !w.track_op()),
    };
    let loss = h.contiguous()?.apply_op2(&w.contiguous()?, op)?;
    let correct = saved.lock().expect("not poisoned").as_ref().map_or(0, |s: &Saved| s.correct);
    Ok((loss, correct))
}

struct Saved {
    grad_h: Vec<f32>,
    grad_w: Option<Vec<f32>>,
    correct: usize,
}

struct CrossEntropy {
    targets: Vec<u32>,
    /// Whether to compute `∂h` (not when scoring without gradients).
    want_h: bool,
    want_w: bool,
    saved: Arc<Mutex<Option<Saved>>>,
    bf16: Option<Arc<Bf16Weight>>,
}

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "forja-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let h = f32_slice(s1, l1, "cross_entropy hidden")?;
        let w = f32_slice(s2, l2, "cross_entropy weight")?;
        let (v, d) = (l2.dims()[0], l2.dims()[1]);
        let t = self.targets.len();
        let mut grad_h = vec![0f32; if self.want_h { t * d } else { 0 }];
        let mut grad_w = self.want_w.then(|| vec![0f32; v * d]);
        let mut logits = vec![0f32; CHUNK.min(t) * v];
        let head = Frozen { w, dims: (v, d), bf16: self.bf16.as_deref() };
        let mut nll = 0f64;
        let mut correct = 0usize;
        for c0 in (0..t).step_by(CHUNK) {
            let rows = CHUNK.min(t - c0);
            let hc = &h[c0 * d..(c0 + rows) * d];
            let lg = &mut logits[..rows * v];
            head.product_into(Side::Fwd, rows, lg, hc, false);
            // Each row becomes softmax − one-hot: ∂nll/∂logits.
            let targets = &self.targets[c0..c0 + rows];
            let mut work: Vec<(&mut [f32], f64, bool)> =
                lg.chunks_mut(v).map(|row| (row, 0.0, false)).collect();
            parallel::for_each_mut(&mut work, |r, (row, nll, ok)| {
                let tgt = targets[r] as usize;
                let (mut max, mut arg) = (f32::NEG_INFINITY, 0);
                for (j, &x) in row.iter().enumerate() {
                    if x > max {
                        (max, arg) = (x, j);
                    }
                }
                let logit_t = row[tgt] - max;
                let sum = simd::exp_affine(row, 1.0, -max);
                *nll = sum.ln() - logit_t as f64;
                *ok = arg == tgt;
                let inv = (1.0 / sum) as f32;
                row.iter_mut().for_each(|x| *x *= inv);
                row[tgt] -= 1.0;
            });
            let stats: Vec<(f64, bool)> = work.into_iter().map(|(_, l, ok)| (l, ok)).collect();
            for &(l, ok) in &stats {
                nll += l;
                correct += ok as usize;
            }
            let lg = &logits[..rows * v];
            if self.want_h {
                let gh = &mut grad_h[c0 * d..(c0 + rows) * d];
                head.product_into(Side::Bwd, rows, gh, lg, false);
            }
            if let Some(gw) = grad_w.as_mut() {
                matmul(v, d, rows, gw, Mat::t(lg, v), Mat::rows(hc, d), true);
            }
        }
        *self.saved.lock().expect("not poisoned") = Some(Saved { grad_h, grad_w, correct });
        Ok((CpuStorage::F32(vec![nll as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        h: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let scale = grad.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        let mut saved = self.saved.lock().expect("not poisoned");
        let Some(s) = saved.take() else {
            candle_core::bail!("cross_entropy: backward called twice")
        };
        let mk = |mut g: Vec<f32>, shape_of: &Tensor| {
            g.iter_mut().for_each(|x| *x *= scale);
            like(g, shape_of)
        };
        let gh = mk(s.grad_h, h)?;
        let gw = s.grad_w.map(|g| mk(g, w)).transpose()?;
        Ok((Some(gh), gw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{max_diff, rand};
    use candle_core::{Device, Var, D};

    /// `w` packed for BF16 products, where the CPU has AMX (else `None`,
    /// and the BF16 cases of these tests only run in f32).
    fn packed(w: &Tensor) -> Option<Arc<Bf16Weight>> {
        let (n, k) = w.dims2().unwrap();
        amx::available().then(|| Arc::new(with_f32(w, |d| Bf16Weight::new(d, n, k)).unwrap()))
    }

    /// Tolerance of a product and of its `∂x`: f32, or inputs rounded to
    /// BF16 (8 bits of mantissa) over `k` terms of these magnitudes. The
    /// BF16 result must also differ from f32, or the path did not run.
    fn check(got: &Tensor, want: &Tensor, bf16: bool, tol: f32) {
        let d = max_diff(got, want);
        if bf16 {
            assert!(d < 0.05 && d > 0.0, "bf16: {d}");
        } else {
            assert!(d < tol, "f32: {d}");
        }
    }

    #[test]
    fn frozen_linear_matches_matmul_with_gradients() {
        let x = Var::from_tensor(&rand(&[2, 37, 24], 1)).unwrap();
        let w = rand(&[19, 24], 2);
        for bf16 in [None, packed(&w)] {
            let on = bf16.is_some();
            let y = frozen_linear(x.as_tensor(), &w, bf16).unwrap();
            let want = x.as_tensor().broadcast_matmul(&w.t().unwrap()).unwrap();
            check(&y, &want, on, 1e-5);
            let up = rand(&[2, 37, 19], 3);
            let g1 = (&y * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (&want * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let (g1, g2) = (g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
            check(g1, g2, on, 1e-5);
        }
    }

    #[test]
    fn lora_linear_matches_the_composite_with_gradients() {
        let x = Var::from_tensor(&rand(&[3, 11, 24], 6)).unwrap();
        let w = rand(&[19, 24], 7);
        let a = Var::from_tensor(&rand(&[4, 24], 8)).unwrap();
        let b = Var::from_tensor(&rand(&[19, 4], 9)).unwrap();
        let mask: Vec<f32> =
            (0..3 * 11 * 24).map(|i| if i % 7 == 0 { 0.0 } else { 1.25 }).collect();
        let mt = Tensor::from_vec(mask.clone(), (3, 11, 24), &Device::Cpu).unwrap();
        for (mask, bf16) in
            [None, Some(mask)].into_iter().flat_map(|m| [(m.clone(), None), (m, packed(&w))])
        {
            let on = bf16.is_some();
            let (xt, at, bt) = (x.as_tensor(), a.as_tensor(), b.as_tensor());
            let y = lora_linear(xt, &w, at, bt, 0.5, mask.clone(), bf16).unwrap();
            let xd = if mask.is_some() { (xt * &mt).unwrap() } else { xt.clone() };
            let delta = xd.broadcast_matmul(&at.t().unwrap()).unwrap();
            let delta = (delta.broadcast_matmul(&bt.t().unwrap()).unwrap() * 0.5).unwrap();
            let want = (xt.broadcast_matmul(&w.t().unwrap()).unwrap() + delta).unwrap();
            check(&y, &want, on, 1e-5);
            let up = rand(&[3, 11, 19], 10);
            let g1 = (&y * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (&want * &up).unwrap().sum_all().unwrap().backward().unwrap();
            // The adapter's gradients are f32 products either way.
            let (p, q) = (g1.get(xt).unwrap(), g2.get(xt).unwrap());
            check(p, q, on, 1e-4);
            for v in [&a, &b] {
                let (p, q) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
                assert!(max_diff(p, q) < 1e-4, "{}", max_diff(p, q));
            }
        }
    }

    #[test]
    fn cross_entropy_matches_log_softmax_with_gradients() {
        // More rows than CHUNK, so chunk boundaries are crossed.
        let (t, v, d) = (CHUNK + 37, 53, 16);
        let h = Var::from_tensor(&rand(&[t, d], 4)).unwrap();
        let w = Var::from_tensor(&(rand(&[v, d], 5) * 3.0).unwrap()).unwrap();
        let targets: Vec<u32> = (0..t as u32).map(|i| (i * 31 + 3) % v as u32).collect();
        let (loss, correct) = cross_entropy(h.as_tensor(), w.as_tensor(), &targets, None).unwrap();
        let logits = h.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap();
        let tg = Tensor::new(targets.as_slice(), &Device::Cpu).unwrap();
        let lp = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
        let want =
            lp.gather(&tg.unsqueeze(1).unwrap(), 1).unwrap().neg().unwrap().sum_all().unwrap();
        let want_correct: u32 = logits
            .argmax(D::Minus1)
            .unwrap()
            .eq(&tg)
            .unwrap()
            .to_dtype(DType::U32)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(correct, want_correct as usize);
        let (a, b) = (loss.to_scalar::<f32>().unwrap(), want.to_scalar::<f32>().unwrap());
        assert!((a - b).abs() < 1e-3 * b.abs(), "{a} vs {b}");
        let g1 = (loss * 0.5).unwrap().backward().unwrap();
        let g2 = (want * 0.5).unwrap().backward().unwrap();
        for var in [&h, &w] {
            let (a, b) = (g1.get(var.as_tensor()).unwrap(), g2.get(var.as_tensor()).unwrap());
            assert!(max_diff(a, b) < 1e-5, "{}", max_diff(a, b));
        }
        // A frozen head gets no gradient, the hidden states still do; in
        // BF16 the loss and ∂h stay within its rounding of the f32 ones.
        let frozen = w.as_tensor().detach();
        let g_f32 = g2.get(h.as_tensor()).unwrap();
        for bf16 in [None, packed(&frozen)] {
            let on = bf16.is_some();
            let (loss, _) = cross_entropy(h.as_tensor(), &frozen, &targets, bf16).unwrap();
            let l = loss.to_scalar::<f32>().unwrap();
            let tol = if on { 1e-2 } else { 1e-3 };
            assert!((l - b).abs() < tol * b.abs() && (on == (l != a)), "{l} vs {b}");
            let g = (loss * 0.5).unwrap().backward().unwrap();
            check(g.get(h.as_tensor()).unwrap(), g_f32, on, 1e-5);
        }
    }
}
