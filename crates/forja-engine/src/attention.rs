//! Causal self-attention over a flat batch of tokens from several sequences.
//!
//! A forward pass sees `N` tokens, each tagged with the sequence it belongs
//! to and its position there (prefill of several prompts, or one decode
//! step of several sequences, in a single pass). New keys/values are written
//! into each sequence's [`KvCache`] first, then every query attends to its
//! own sequence's positions `0..=pos` (or the last `window` of them).
//!
//! Two implementations: a CPU kernel over the cache buffers (grouped-query
//! heads share each key load), and a candle-tensor version for other
//! devices; tests check they agree. [`full_causal`] is the cache-free,
//! differentiable form used on `[batch, seq]` inputs.

use crate::kv_cache::{KvCache, KvRef, LayerKv};
use crate::ops::with_f32;
use crate::{parallel, simd};
use candle_core::{Device, Result, Tensor, D};

/// Where one token of a flat batch belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Index of its sequence in the caches passed with the batch.
    pub seq: usize,
    /// Its position within that sequence.
    pub pos: usize,
}

/// Head geometry of one attention layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Sliding-window size (Mistral); `None` attends to the whole prefix.
    pub window: Option<usize>,
}

impl Heads {
    pub(crate) fn first_visible(&self, pos: usize) -> usize {
        match self.window {
            Some(w) => (pos + 1).saturating_sub(w),
            None => 0,
        }
    }
}

/// `q`: `[N, heads, head_dim]`, `k`/`v`: `[N, kv_heads, head_dim]`, all after
/// RoPE. Returns `[N, heads * head_dim]`.
pub(crate) fn cached(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    slots: &[Slot],
    caches: &mut [&mut KvCache],
    layer: usize,
    h: Heads,
) -> Result<Tensor> {
    let cpu = caches.iter().all(|c| matches!(c.layers[layer], LayerKv::Cpu(_)));
    if cpu && q.device().is_cpu() {
        cached_cpu(q, k, v, slots, caches, layer, h)
    } else {
        cached_tensor(q, k, v, slots, caches, layer, h)
    }
}

fn cached_cpu(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    slots: &[Slot],
    caches: &mut [&mut KvCache],
    layer: usize,
    h: Heads,
) -> Result<Tensor> {
    let (n, hd) = (slots.len(), h.head_dim);
    let kw = h.kv_heads * hd;
    with_f32(k, |kf| {
        with_f32(v, |vf| {
            for (t, s) in slots.iter().enumerate() {
                caches[s.seq].write_cpu(layer, s.pos, &kf[t * kw..][..kw], &vf[t * kw..][..kw]);
            }
        })
    })??;
    let caches: Vec<&KvCache> = caches.iter().map(|c| &**c).collect();
    let mut out = vec![0f32; n * h.heads * hd];
    with_f32(q, |q| attend_cpu(q, slots, &caches, layer, h, &mut out))?;
    Tensor::from_vec(out, (n, h.heads * hd), &Device::Cpu)
}

fn attend_cpu(
    q: &[f32],
    slots: &[Slot],
    caches: &[&KvCache],
    layer: usize,
    h: Heads,
    out: &mut [f32],
) {
    let hd = h.head_dim;
    let group = h.heads / h.kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let row = h.kv_heads * hd;
    // One task per (token, kv head) lets the query heads of a group share
    // each key and value row; with few tokens (decode) that leaves threads
    // idle, so then one task per (token, query head).
    let per_group = slots.len() * h.kv_heads >= 4 * parallel::num_threads();
    let heads_per_task = if per_group { group } else { 1 };
    parallel::for_chunks_mut(out, heads_per_task * hd, |task, o| {
        let first_head = task * heads_per_task;
        let (t, head) = (first_head / h.heads, first_head % h.heads);
        let kvh = head / group;
        let s = slots[t];
        let lo = h.first_visible(s.pos);
        let mut scores = vec![0f32; s.pos + 1 - lo];
        let qs = &q[(t * h.heads + head) * hd..][..o.len()];
        let at = lo * row + kvh * hd;
        match caches[s.seq].cpu_layer(layer, s.pos + 1) {
            KvRef::F16(k, v) => {
                attend_heads(qs, hd, &k[at..], &v[at..], row, scale, &mut scores, o)
            }
            KvRef::F32(k, v) => {
                attend_heads(qs, hd, &k[at..], &v[at..], row, scale, &mut scores, o)
            }
        }
    });
}

/// Query heads `qs` (`hd` values each, one per `hd` chunk of `out`)
/// attending to the key and value rows `stride` apart: scores, softmax,
/// weighted sum.
#[allow(clippy::too_many_arguments)]
fn attend_heads<E: simd::Elem>(
    qs: &[f32],
    hd: usize,
    krows: &[E],
    vrows: &[E],
    stride: usize,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    for (qh, oh) in qs.chunks(hd).zip(out.chunks_mut(hd)) {
        simd::dot_rows(qh, krows, stride, scale, scores);
        softmax_in_place(scores);
        simd::axpy_rows(scores, vrows, stride, oh);
    }
}

fn softmax_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let inv = (1.0 / simd::exp_affine(x, 1.0, -max)) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Device-generic version: tokens of one sequence must be contiguous in the
/// batch and at consecutive positions continuing the cache.
fn cached_tensor(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    slots: &[Slot],
    caches: &mut [&mut KvCache],
    layer: usize,
    h: Heads,
) -> Result<Tensor> {
    let mut outs = Vec::new();
    let mut start = 0;
    while start < slots.len() {
        let seq = slots[start].seq;
        let mut end = start + 1;
        while end < slots.len() && slots[end].seq == seq {
            end += 1;
        }
        let n = end - start;
        let p0 = slots[start].pos;
        // [n, heads, hd] -> [heads, n, hd]
        let qs = q.narrow(0, start, n)?.transpose(0, 1)?.contiguous()?;
        let ks = k.narrow(0, start, n)?.transpose(0, 1)?.contiguous()?;
        let vs = v.narrow(0, start, n)?.transpose(0, 1)?.contiguous()?;
        let LayerKv::Tensor { k: kc, v: vc } = &mut caches[seq].layers[layer] else {
            candle_core::bail!("attention: CPU cache used with a device tensor")
        };
        let append = |c: &mut Option<Tensor>, new: Tensor| -> Result<Tensor> {
            let full = match c.take() {
                Some(old) => {
                    if old.dim(1)? != p0 {
                        candle_core::bail!("attention: sequence {seq} is not contiguous at {p0}")
                    }
                    Tensor::cat(&[old, new], 1)?
                }
                None => new,
            };
            *c = Some(full.clone());
            Ok(full)
        };
        let kall = append(kc, ks)?;
        let vall = append(vc, vs)?;
        outs.push(attend(&qs, &kall, &vall, p0, h)?);
        start = end;
    }
    let refs: Vec<&Tensor> = outs.iter().collect();
    Tensor::cat(&refs, 0)
}

/// `q`: `[heads, n, hd]` at positions `p0..p0+n`; `k`, `v`: `[kv_heads, T, hd]`
/// with `T = p0 + n`. Returns `[n, heads * hd]`.
fn attend(q: &Tensor, k: &Tensor, v: &Tensor, p0: usize, h: Heads) -> Result<Tensor> {
    let (heads, n, hd) = q.dims3()?;
    let t = k.dim(1)?;
    let group = heads / h.kv_heads;
    // Fold each group's query heads into rows so keys are not repeated.
    let qg = q.reshape((h.kv_heads, group * n, hd))?;
    let scores = (qg.matmul(&k.t()?)? / (hd as f64).sqrt())?; // [kvh, group*n, T]
    let mask: Vec<f32> = (0..group * n)
        .flat_map(|row| {
            let pos = p0 + row % n;
            let lo = h.first_visible(pos);
            (0..t).map(move |j| if j >= lo && j <= pos { 0.0 } else { f32::NEG_INFINITY })
        })
        .collect();
    let mask = Tensor::from_vec(mask, (group * n, t), q.device())?.to_dtype(scores.dtype())?;
    let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&mask)?)?;
    let o = probs.matmul(v)?; // [kvh, group*n, hd]
    o.reshape((heads, n, hd))?.transpose(0, 1)?.reshape((n, heads * hd))
}

/// Cache-free causal attention on `[batch, seq, heads, hd]` inputs, made of
/// differentiable ops. Returns `[batch, seq, heads * hd]`.
pub(crate) fn full_causal(q: &Tensor, k: &Tensor, v: &Tensor, h: Heads) -> Result<Tensor> {
    if crate::grad::usable(&[q, k, v]) {
        return crate::grad::causal_attention(q, k, v, h);
    }
    composite_causal(q, k, v, h)
}

/// [`full_causal`] from candle ops (other devices; the reference in tests).
pub(crate) fn composite_causal(q: &Tensor, k: &Tensor, v: &Tensor, h: Heads) -> Result<Tensor> {
    let (b, t, heads, hd) = q.dims4()?;
    let group = heads / h.kv_heads;
    let q = q.transpose(1, 2)?.contiguous()?; // [b, heads, t, hd]
    let k = repeat_kv(&k.transpose(1, 2)?.contiguous()?, group)?;
    let v = repeat_kv(&v.transpose(1, 2)?.contiguous()?, group)?;
    let scores = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| {
            let lo = h.first_visible(i);
            (0..t).map(move |j| if j >= lo && j <= i { 0.0 } else { f32::NEG_INFINITY })
        })
        .collect();
    let mask = Tensor::from_vec(mask, (t, t), q.device())?.to_dtype(scores.dtype())?;
    let scores = scores.broadcast_add(&mask)?;
    // exp/sum form keeps the graph differentiable (no fused softmax).
    let max = scores.max_keepdim(D::Minus1)?.detach();
    let e = scores.broadcast_sub(&max)?.exp()?;
    let probs = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
    let o = probs.matmul(&v)?; // [b, heads, t, hd]
    o.transpose(1, 2)?.reshape((b, t, heads * hd))
}

fn repeat_kv(x: &Tensor, group: usize) -> Result<Tensor> {
    if group == 1 {
        return Ok(x.clone());
    }
    let (b, kvh, t, hd) = x.dims4()?;
    x.unsqueeze(2)?.expand((b, kvh, group, t, hd))?.reshape((b, kvh * group, t, hd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_cache::KvType;
    use crate::test_util::{max_diff, rand};

    /// Prefills two sequences in one batch, then decodes one token each, with
    /// both cache kinds; also compares with the cache-free form. An f32 CPU
    /// cache agrees to rounding, an f16 one to f16's precision.
    fn check(window: Option<usize>) {
        for (kind, tol) in [(KvType::F32, 1e-5), (KvType::F16, 2e-3)] {
            check_kind(window, kind, tol);
        }
    }

    fn check_kind(window: Option<usize>, kind: KvType, tol: f32) {
        let h = Heads { heads: 6, kv_heads: 2, head_dim: 8, window };
        let (la, lb) = (5, 3);
        let n = la + lb;
        let slots: Vec<Slot> = (0..la)
            .map(|p| Slot { seq: 0, pos: p })
            .chain((0..lb).map(|p| Slot { seq: 1, pos: p }))
            .collect();
        let (q, k, v) = (rand(&[n, 6, 8], 1), rand(&[n, 2, 8], 2), rand(&[n, 2, 8], 3));
        let mut outs = Vec::new();
        for on_cpu in [true, false] {
            let mut c0 = KvCache::new(1, 16, on_cpu, kind);
            let mut c1 = KvCache::new(1, 16, on_cpu, kind);
            let a = if on_cpu {
                cached_cpu(&q, &k, &v, &slots, &mut [&mut c0, &mut c1], 0, h).unwrap()
            } else {
                cached_tensor(&q, &k, &v, &slots, &mut [&mut c0, &mut c1], 0, h).unwrap()
            };
            // Decode one more token for each sequence.
            let s2 = [Slot { seq: 0, pos: la }, Slot { seq: 1, pos: lb }];
            let (q2, k2, v2) = (rand(&[2, 6, 8], 4), rand(&[2, 2, 8], 5), rand(&[2, 2, 8], 6));
            let b = cached(&q2, &k2, &v2, &s2, &mut [&mut c0, &mut c1], 0, h).unwrap();
            outs.push((a, b));
        }
        let (d0, d1) = (max_diff(&outs[0].0, &outs[1].0), max_diff(&outs[0].1, &outs[1].1));
        assert!(d0 < tol && d1 < tol, "{kind}: prefill {d0}, decode {d1}");
        // Sequence 0's prefill equals the cache-free causal form.
        let full = full_causal(
            &q.narrow(0, 0, la).unwrap().unsqueeze(0).unwrap(),
            &k.narrow(0, 0, la).unwrap().unsqueeze(0).unwrap(),
            &v.narrow(0, 0, la).unwrap().unsqueeze(0).unwrap(),
            h,
        )
        .unwrap()
        .squeeze(0)
        .unwrap();
        assert!(max_diff(&full, &outs[0].0.narrow(0, 0, la).unwrap()) < tol);
    }

    #[test]
    fn cpu_kernel_tensor_path_and_full_form_agree() {
        check(None);
    }

    #[test]
    fn sliding_window_is_respected_everywhere() {
        check(Some(2));
    }
}
