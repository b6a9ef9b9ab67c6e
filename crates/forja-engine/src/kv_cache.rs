//! Per-sequence key/value cache.
//!
//! On CPU the cache is one growable buffer per layer for keys and one for
//! values, laid out `[position][kv_head][head_dim]` so appending a token is a
//! contiguous copy and truncating (rewinding a sequence) is free. Its
//! elements are IEEE halves by default ([`KvType::F16`], as llama.cpp's
//! default cache type): half the bytes for attention to read per token and
//! for each sequence to hold, at f16's 11-bit precision; [`KvType::F32`]
//! keeps them exact. On other devices it holds candle tensors
//! `[kv_heads, positions, head_dim]`.

use crate::simd::Elem;
use candle_core::Tensor;
use half::f16;

/// What a CPU cache stores keys and values as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KvType {
    /// IEEE half precision (the default).
    #[default]
    F16,
    /// f32, exactly what the layers computed.
    F32,
}

impl KvType {
    /// `f16` or `f32`.
    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::F32 => "f32",
        }
    }
}

impl std::fmt::Display for KvType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for KvType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Ok(KvType::F16),
            "f32" => Ok(KvType::F32),
            _ => Err(format!("unknown KV cache type {s:?}: use f16 or f32")),
        }
    }
}

/// Keys and values of one sequence, for every layer of one model.
#[derive(Debug)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
    len: usize,
    width: usize,
}

#[derive(Debug)]
pub(crate) enum LayerKv {
    Cpu(CpuKv),
    Tensor { k: Option<Tensor>, v: Option<Tensor> },
}

/// A CPU layer's keys and values, both of one element type.
#[derive(Debug)]
pub(crate) enum CpuKv {
    F16(Buffers<f16>),
    F32(Buffers<f32>),
}

/// Keys and values `[position][kv_head][head_dim]`.
#[derive(Debug, Default)]
pub(crate) struct Buffers<T> {
    k: Vec<T>,
    v: Vec<T>,
}

/// A CPU layer's keys and values for positions `0..n`, borrowed for
/// attention.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KvRef<'a> {
    F16(&'a [f16], &'a [f16]),
    F32(&'a [f32], &'a [f32]),
}

impl<T: Elem + Default> Buffers<T> {
    fn bytes(&self) -> usize {
        (self.k.capacity() + self.v.capacity()) * std::mem::size_of::<T>()
    }

    /// Writes one position's `k` and `v` (`w` values each) at `pos`.
    fn write(&mut self, pos: usize, w: usize, k: &[f32], v: &[f32]) {
        let need = (pos + 1) * w;
        if self.k.len() < need {
            // Grow geometrically so long generations do not copy quadratically.
            let target = need.max(self.k.len() * 2).max(64 * w);
            self.k.resize(target, T::default());
            self.v.resize(target, T::default());
        }
        T::store(&mut self.k[pos * w..need], k);
        T::store(&mut self.v[pos * w..need], v);
    }
}

impl KvCache {
    /// An empty cache; `width` is `kv_heads * head_dim`; `kind` is what a
    /// CPU cache stores.
    pub(crate) fn new(n_layers: usize, width: usize, on_cpu: bool, kind: KvType) -> Self {
        let layer = || {
            if on_cpu {
                LayerKv::Cpu(match kind {
                    KvType::F16 => CpuKv::F16(Buffers::default()),
                    KvType::F32 => CpuKv::F32(Buffers::default()),
                })
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
                LayerKv::Cpu(CpuKv::F16(b)) => b.bytes(),
                LayerKv::Cpu(CpuKv::F32(b)) => b.bytes(),
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
        let LayerKv::Cpu(kv) = &mut self.layers[layer] else {
            unreachable!("write_cpu on a device cache")
        };
        match kv {
            CpuKv::F16(b) => b.write(pos, w, k, v),
            CpuKv::F32(b) => b.write(pos, w, k, v),
        }
    }

    /// Keys and values of `layer` for positions `0..n` (CPU caches).
    pub(crate) fn cpu_layer(&self, layer: usize, n: usize) -> KvRef<'_> {
        let LayerKv::Cpu(kv) = &self.layers[layer] else {
            unreachable!("cpu_layer on a device cache")
        };
        let n = n * self.width;
        match kv {
            CpuKv::F16(b) => KvRef::F16(&b.k[..n], &b.v[..n]),
            CpuKv::F32(b) => KvRef::F32(&b.k[..n], &b.v[..n]),
        }
    }
}
