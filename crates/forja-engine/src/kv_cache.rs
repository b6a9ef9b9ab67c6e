//! Per-sequence key/value cache.
//!
//! On CPU the cache is one growable f32 buffer per layer for keys and one for
//! values, laid out `[position][kv_head][head_dim]` so appending a token is a
//! contiguous copy and truncating (rewinding a sequence) is free. On other
//! devices it holds candle tensors `[kv_heads, positions, head_dim]`.

use candle_core::Tensor;

/// Keys and values of one sequence, for every layer of one model.
#[derive(Debug)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
    len: usize,
    width: usize,
}

#[derive(Debug)]
pub(crate) enum LayerKv {
    Cpu { k: Vec<f32>, v: Vec<f32> },
    Tensor { k: Option<Tensor>, v: Option<Tensor> },
}

impl KvCache {
    /// An empty cache; `width` is `kv_heads * head_dim`.
    pub(crate) fn new(n_layers: usize, width: usize, on_cpu: bool) -> Self {
        let layer = || {
            if on_cpu {
                LayerKv::Cpu { k: Vec::new(), v: Vec::new() }
            } else {
                LayerKv::Tensor { k: None, v: None }
            }
        };
        KvCache { layers: (0..n_layers).map(|_| layer()).collect(), len: 0, width }
    }

    /// Positions filled so far; the next token goes at this position.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first token.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets everything from position `len` on (rewind for re-generation
    /// or rejected speculative tokens).
    pub fn truncate(&mut self, len: usize) -> candle_core::Result<()> {
        if len >= self.len {
            return Ok(());
        }
        for layer in &mut self.layers {
            if let LayerKv::Tensor { k, v } = layer {
                for t in [k, v] {
                    if let Some(x) = t.as_ref() {
                        *t = if len == 0 { None } else { Some(x.narrow(1, 0, len)?) };
                    }
                }
            }
        }
        self.len = len;
        Ok(())
    }

    /// Marks positions below `len` as filled (after a forward pass wrote them).
    pub(crate) fn set_len(&mut self, len: usize) {
        self.len = len;
    }

    /// Bytes held by this cache.
    pub fn memory_bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| match l {
                LayerKv::Cpu { k, v } => (k.capacity() + v.capacity()) * 4,
                LayerKv::Tensor { k, v } => [k, v]
                    .iter()
                    .filter_map(|t| t.as_ref())
                    .map(|t| t.elem_count() * t.dtype().size_in_bytes())
                    .sum(),
            })
            .sum()
    }

    /// Writes one token's keys and values at `pos` of `layer` (CPU caches).
    pub(crate) fn write_cpu(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let w = self.width;
        debug_assert!(k.len() == w && v.len() == w);
        let LayerKv::Cpu { k: kc, v: vc } = &mut self.layers[layer] else {
            unreachable!("write_cpu on a device cache")
        };
        let need = (pos + 1) * w;
        if kc.len() < need {
            // Grow geometrically so long generations do not copy quadratically.
            let target = need.max(kc.len() * 2).max(64 * w);
            kc.resize(target, 0.0);
            vc.resize(target, 0.0);
        }
        kc[pos * w..need].copy_from_slice(k);
        vc[pos * w..need].copy_from_slice(v);
    }

    /// Keys and values of `layer` for positions `0..n` (CPU caches).
    pub(crate) fn cpu_layer(&self, layer: usize, n: usize) -> (&[f32], &[f32]) {
        let LayerKv::Cpu { k, v } = &self.layers[layer] else {
            unreachable!("cpu_layer on a device cache")
        };
        (&k[..n * self.width], &v[..n * self.width])
    }
}
