//! Causal self-attention for training, forward and backward by hand.
//!
//! The composite form (scores, mask, max, exp, sum, divide, repeat_kv for
//! grouped heads) keeps about eight `[batch, heads, seq, seq]` tensors per
//! layer alive for backward, and candle adds as many gradient buffers: most
//! of a LoRA step's memory. This op keeps only the probabilities `P` and
//! never copies the shared key/value heads.
//!
//! Per (sequence, head): `S = Q Kᵀ / √d` masked, `P = softmax(S)`,
//! `O = P V`; backward: `∂V = Pᵀ ∂O`, `∂P = ∂O Vᵀ`,
//! `∂S = P ⊙ (∂P − rowsum(∂O ⊙ O))`, `∂Q = ∂S K / √d`, `∂K = ∂Sᵀ Q / √d`,
//! with `∂K`, `∂V` summed over the query heads that share a key head.

use super::{gemm_into, Mat};
use crate::attention::Heads;
use crate::ops::{f32_slice, like, with_f32s};
use crate::parallel;
use crate::simd;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use std::sync::Mutex;

/// Attention over `q` `[batch, seq, heads, hd]`, `k` and `v`
/// `[batch, seq, kv_heads, hd]`; returns `[batch, seq, heads * hd]`.
pub(crate) fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, h: Heads) -> Result<Tensor> {
    let (b, t, heads, hd) = q.dims4()?;
    if k.dims4()? != (b, t, h.kv_heads, hd) || v.dims() != k.dims() || heads != h.heads {
        candle_core::bail!("attention: q {:?}, k {:?}, v {:?}", q.dims(), k.dims(), v.dims())
    }
    let op = Attention {
        h,
        dims: (b, t),
        keep: q.track_op() || k.track_op() || v.track_op(),
        probs: Mutex::new(Vec::new()),
    };
    q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

struct Attention {
    h: Heads,
    /// `(batch, seq)`.
    dims: (usize, usize),
    /// Whether to keep `P` for backward.
    keep: bool,
    /// `P` per (sequence, head), `[seq, seq]` each.
    probs: Mutex<Vec<Vec<f32>>>,
}

/// Where one (sequence, head) reads its operands.
struct Views {
    t: usize,
    hd: usize,
    /// Row stride of q and of the output.
    q_rs: usize,
    kv_rs: usize,
}

impl Attention {
    fn views(&self) -> Views {
        let h = self.h;
        Views {
            t: self.dims.1,
            hd: h.head_dim,
            q_rs: h.heads * h.head_dim,
            kv_rs: h.kv_heads * h.head_dim,
        }
    }

    /// Offsets of task `i` = (sequence, head) in q/out and in k/v.
    fn offsets(&self, i: usize) -> (usize, usize) {
        let (h, v) = (self.h, self.views());
        let (seq, head) = (i / h.heads, i % h.heads);
        let kvh = head / (h.heads / h.kv_heads);
        (seq * v.t * v.q_rs + head * v.hd, seq * v.t * v.kv_rs + kvh * v.hd)
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "forja-causal-attention"
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
        let q = f32_slice(s1, l1, "attention q")?;
        let k = f32_slice(s2, l2, "attention k")?;
        let v = f32_slice(s3, l3, "attention v")?;
        let Views { t, hd, q_rs, kv_rs } = self.views();
        let scale = 1.0 / (hd as f32).sqrt();
        let tasks = self.dims.0 * self.h.heads;
        // Per task: P [t, t] and O [t, hd].
        let mut work: Vec<(Vec<f32>, Vec<f32>)> =
            (0..tasks).map(|_| (vec![0f32; t * t], vec![0f32; t * hd])).collect();
        parallel::for_each_mut(&mut work, |i, (p, o)| {
            let (qo, ko) = self.offsets(i);
            let qm = Mat { data: &q[qo..], rs: q_rs, cs: 1 };
            let kt = Mat { data: &k[ko..], rs: 1, cs: kv_rs };
            gemm_into((t, t, hd), p, t, qm, kt, false);
            for (row, pr) in p.chunks_mut(t).enumerate() {
                let lo = self.h.first_visible(row);
                let vis = &mut pr[lo..=row];
                let max = vis.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) * scale;
                let inv = (1.0 / simd::exp_affine(vis, scale, -max)) as f32;
                vis.iter_mut().for_each(|x| *x *= inv);
                pr[..lo].fill(0.0);
                pr[row + 1..].fill(0.0);
            }
            let vm = Mat { data: &v[ko..], rs: kv_rs, cs: 1 };
            gemm_into((t, hd, t), o, hd, Mat::rows(p, t), vm, false);
        });
        let (b, heads) = (self.dims.0, self.h.heads);
        let mut out = vec![0f32; b * t * q_rs];
        let mut probs = Vec::with_capacity(if self.keep { tasks } else { 0 });
        for (i, (p, o)) in work.into_iter().enumerate() {
            let (qo, _) = self.offsets(i);
            for (r, src) in o.chunks(hd).enumerate() {
                out[qo + r * q_rs..][..hd].copy_from_slice(src);
            }
            if self.keep {
                probs.push(p);
            }
        }
        *self.probs.lock().expect("not poisoned") = probs;
        Ok((CpuStorage::F32(out), Shape::from((b, t, heads * hd))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let probs = std::mem::take(&mut *self.probs.lock().expect("not poisoned"));
        if probs.is_empty() {
            candle_core::bail!("attention: backward without a kept forward pass")
        }
        let grad = grad.contiguous()?;
        // The inputs, output and incoming gradient are read in place.
        let (dq, dk, dv) = with_f32s([q, k, v, res, &grad], |[qs, ks, vs, o, go]| {
            self.backward(probs, [qs, ks, vs], o, go)
        })?;
        Ok((Some(like(dq, q)?), Some(like(dk, k)?), Some(like(dv, v)?)))
    }
}

impl Attention {
    /// `∂Q`, `∂K`, `∂V` from the kept probabilities, the inputs `q, k, v`,
    /// the output `o` and its gradient `go`.
    fn backward(
        &self,
        probs: Vec<Vec<f32>>,
        [qs, ks, vs]: [&[f32]; 3],
        o: &[f32],
        go: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let Views { t, hd, q_rs, kv_rs } = self.views();
        let scale = 1.0 / (hd as f32).sqrt();
        // Per task: P (becomes ∂S), then ∂Q, ∂K, ∂V [t, hd] (∂K and ∂V
        // before summing the group).
        type Task = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);
        let mut work: Vec<Task> = probs
            .into_iter()
            .map(|p| (p, vec![0f32; t * hd], vec![0f32; t * hd], vec![0f32; t * hd]))
            .collect();
        parallel::for_each_mut(&mut work, |i, (p, gq, gk, gv)| {
            let (qo, ko) = self.offsets(i);
            let g_o = Mat { data: &go[qo..], rs: q_rs, cs: 1 };
            // ∂V = Pᵀ ∂O.
            gemm_into((t, hd, t), gv, hd, Mat::t(p, t), g_o, false);
            // ∂P = ∂O Vᵀ, then ∂S in place of P.
            let mut dp = vec![0f32; t * t];
            let vt = Mat { data: &vs[ko..], rs: 1, cs: kv_rs };
            gemm_into((t, t, hd), &mut dp, t, g_o, vt, false);
            for row in 0..t {
                let go_r = &go[qo + row * q_rs..][..hd];
                let o_r = &o[qo + row * q_rs..][..hd];
                let d: f32 = go_r.iter().zip(o_r).map(|(a, b)| a * b).sum();
                let (pr, dr) = (&mut p[row * t..][..t], &dp[row * t..][..t]);
                for (pv, &dv) in pr.iter_mut().zip(dr) {
                    *pv *= (dv - d) * scale;
                }
            }
            let ds = &*p;
            // ∂Q = ∂S K, ∂K = ∂Sᵀ Q (scale already in ∂S).
            let km = Mat { data: &ks[ko..], rs: kv_rs, cs: 1 };
            gemm_into((t, hd, t), gq, hd, Mat::rows(ds, t), km, false);
            let qm = Mat { data: &qs[qo..], rs: q_rs, cs: 1 };
            gemm_into((t, hd, t), gk, hd, Mat::t(ds, t), qm, false);
        });
        let mut dq = vec![0f32; qs.len()];
        let (mut dk, mut dv) = (vec![0f32; ks.len()], vec![0f32; vs.len()]);
        for (i, (_, gq, gk, gv)) in work.iter().enumerate() {
            let (qo, ko) = self.offsets(i);
            for r in 0..t {
                dq[qo + r * q_rs..][..hd].copy_from_slice(&gq[r * hd..][..hd]);
                let (dkr, dvr) = (&mut dk[ko + r * kv_rs..][..hd], &mut dv[ko + r * kv_rs..][..hd]);
                dkr.iter_mut().zip(&gk[r * hd..][..hd]).for_each(|(a, b)| *a += b);
                dvr.iter_mut().zip(&gv[r * hd..][..hd]).for_each(|(a, b)| *a += b);
            }
        }
        (dq, dk, dv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::composite_causal;
    use crate::test_util::{max_diff, rand};
    use candle_core::Var;

    #[test]
    fn matches_the_composite_with_gradients() {
        // Grouped heads (6 query heads on 2 key heads), with and without a
        // sliding window.
        for window in [None, Some(3)] {
            let h = Heads { heads: 6, kv_heads: 2, head_dim: 8, window };
            let (b, t) = (2, 7);
            let q = Var::from_tensor(&rand(&[b, t, 6, 8], 1)).unwrap();
            let k = Var::from_tensor(&rand(&[b, t, 2, 8], 2)).unwrap();
            let v = Var::from_tensor(&rand(&[b, t, 2, 8], 3)).unwrap();
            let up = rand(&[b, t, 48], 4);
            let run = |f: &dyn Fn() -> Result<Tensor>| {
                let o = f().unwrap();
                let g = (&o * &up).unwrap().sum_all().unwrap().backward().unwrap();
                let gs: Vec<Tensor> =
                    [&q, &k, &v].iter().map(|x| g.get(x.as_tensor()).unwrap().clone()).collect();
                (o, gs)
            };
            let (o1, g1) =
                run(&|| causal_attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), h));
            let (o2, g2) =
                run(&|| composite_causal(q.as_tensor(), k.as_tensor(), v.as_tensor(), h));
            assert!(max_diff(&o1, &o2) < 1e-5, "output {window:?}");
            for (a, b) in g1.iter().zip(&g2) {
                assert!(max_diff(a, b) < 1e-5, "gradient {window:?}: {}", max_diff(a, b));
            }
        }
    }
}
