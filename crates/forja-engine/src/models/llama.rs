//! The Llama-family decoder: Llama 2/3, SmolLM2, Mistral, Qwen2 (q/k/v bias),
//! Qwen3 (per-head q/k RMS norm), with tied or separate output embeddings
//! and RoPE scaling (linear, llama3, per-frequency factors from GGUF).
//!
//! Weight names follow the Hugging Face checkpoints (`model.layers.N.self_attn.q_proj`),
//! so loading a safetensors checkpoint is a walk; GGUF names are translated
//! by [`Weights`]. The same model serves inference (flat batches over
//! [`KvCache`]s) and training ([`Llama::forward_full`], differentiable).

use crate::attention::{self, Heads, Slot};
use crate::kv_cache::{KvCache, KvType};
use crate::linear::{Embedding, Linear, Weight};
use crate::lora::{Adapter, Dropout, Module};
use crate::ops;
use crate::weights::Weights;
use crate::Result;
use candle_core::{DType, Device, Tensor, D};

pub use super::config::{Family, LlamaConfig, RopeScaling, TokenIds};

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    heads: Heads,
    eps: f64,
}

struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

struct Block {
    input_norm: Tensor,
    attn: Attention,
    post_norm: Tensor,
    mlp: Mlp,
}

/// One forward pass over a flat batch of tokens.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// Token ids, grouped by sequence, positions increasing within a sequence.
    pub tokens: &'a [u32],
    /// Sequence and position of each token.
    pub slots: &'a [Slot],
    /// Indices (into `tokens`) of the rows whose logits are wanted.
    pub logits_rows: &'a [usize],
}

/// A Llama-family decoder.
pub struct Llama {
    cfg: LlamaConfig,
    embed: Embedding,
    blocks: Vec<Block>,
    norm: Tensor,
    lm_head: Linear,
    inv_freq: Vec<f32>,
    device: Device,
    kv_type: KvType,
}

impl std::fmt::Debug for Llama {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Llama({:?}, {} layers)", self.cfg.family(), self.blocks.len())
    }
}

impl Llama {
    /// Every weight matrix: attention and MLP of each layer, then the
    /// output layer.
    fn matrices(&self) -> impl Iterator<Item = &Linear> {
        self.blocks
            .iter()
            .flat_map(|b| {
                let (a, m) = (&b.attn, &b.mlp);
                [&a.q, &a.k, &a.v, &a.o, &m.gate, &m.up, &m.down]
            })
            .chain(std::iter::once(&self.lm_head))
    }

    /// The distinct storage formats of the matrices (attention, MLP and the
    /// output layer), sorted: `["Q4_1", "Q8_0"]`, `["F32"]`.
    pub fn weight_formats(&self) -> Vec<String> {
        let seen: std::collections::BTreeSet<String> =
            self.matrices().map(Linear::format).collect();
        seen.into_iter().collect()
    }

    /// Bytes of weights one decoded token reads: every matrix of every
    /// layer and the output layer (the embedding table contributes one row,
    /// norms a few KB; both left out). Decode tok/s times this, divided by
    /// the machine's read bandwidth, is how close decoding is to the
    /// memory limit.
    pub fn decode_weight_bytes(&self) -> usize {
        self.matrices().map(Linear::weight_bytes).sum()
    }

    /// Builds the model from `weights`, checking every tensor's shape.
    pub fn new(cfg: &LlamaConfig, w: &mut Weights) -> Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim());
        let (nh, nkv) = (cfg.num_attention_heads, cfg.kv_heads());
        let bias = cfg.qkv_bias();
        let qk_norm = cfg.family() == Family::Qwen3;
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            w.progress(i, cfg.num_hidden_layers);
            let p = format!("model.layers.{i}");
            let attn = Attention {
                q: w.linear(&format!("{p}.self_attn.q_proj"), nh * hd, h, bias)?,
                k: w.linear(&format!("{p}.self_attn.k_proj"), nkv * hd, h, bias)?,
                v: w.linear(&format!("{p}.self_attn.v_proj"), nkv * hd, h, bias)?,
                o: w.linear(&format!("{p}.self_attn.o_proj"), h, nh * hd, false)?,
                q_norm: if qk_norm {
                    Some(w.vector(&format!("{p}.self_attn.q_norm.weight"), hd)?)
                } else {
                    None
                },
                k_norm: if qk_norm {
                    Some(w.vector(&format!("{p}.self_attn.k_norm.weight"), hd)?)
                } else {
                    None
                },
                heads: Heads { heads: nh, kv_heads: nkv, head_dim: hd, window: cfg.window() },
                eps: cfg.rms_norm_eps,
            };
            let mlp = Mlp {
                gate: w.linear(&format!("{p}.mlp.gate_proj"), cfg.intermediate_size, h, false)?,
                up: w.linear(&format!("{p}.mlp.up_proj"), cfg.intermediate_size, h, false)?,
                down: w.linear(&format!("{p}.mlp.down_proj"), h, cfg.intermediate_size, false)?,
            };
            blocks.push(Block {
                input_norm: w.vector(&format!("{p}.input_layernorm.weight"), h)?,
                attn,
                post_norm: w.vector(&format!("{p}.post_attention_layernorm.weight"), h)?,
                mlp,
            });
        }
        let embed = w.embedding("model.embed_tokens.weight", cfg.vocab_size, h)?;
        let lm_head = if !cfg.tie_word_embeddings && w.has("lm_head.weight") {
            w.linear("lm_head", cfg.vocab_size, h, false)?
        } else {
            embed.as_linear()?
        };
        let norm = w.vector("model.norm.weight", h)?;
        let inv_freq = cfg.inv_freq(w.rope_freq_factors()?.as_deref());
        Ok(Llama {
            cfg: cfg.clone(),
            embed,
            blocks,
            norm,
            lm_head,
            inv_freq,
            device: w.device().clone(),
            kv_type: KvType::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A fresh, empty cache for one sequence.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(
            self.cfg.num_hidden_layers,
            self.cfg.kv_heads() * self.cfg.head_dim(),
            self.device.is_cpu(),
            self.kv_type,
        )
    }

    /// What CPU caches made from now on store keys and values as.
    pub fn set_kv_type(&mut self, kind: KvType) {
        self.kv_type = kind;
    }

    /// What CPU caches store keys and values as.
    pub fn kv_type(&self) -> KvType {
        self.kv_type
    }

    fn rope_tables(&self, positions: impl Iterator<Item = usize>) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        let mut n = 0;
        for p in positions {
            for &f in &self.inv_freq {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
            n += 1;
        }
        Ok((
            Tensor::from_vec(cos, (n, half), &self.device)?,
            Tensor::from_vec(sin, (n, half), &self.device)?,
        ))
    }

    /// Runs a flat batch through the model, appending to `caches`, and
    /// returns the logits of `batch.logits_rows` as `[rows, vocab]`.
    pub fn forward(
        &self,
        batch: &Batch<'_>,
        caches: &mut [&mut KvCache],
        lora: Lora<'_>,
    ) -> Result<Tensor> {
        let n = batch.tokens.len();
        assert_eq!(n, batch.slots.len(), "forward: one slot per token");
        let (cos, sin) = self.rope_tables(batch.slots.iter().map(|s| s.pos))?;
        let mut x = self.embed.lookup(batch.tokens, &self.device)?;
        for (li, b) in self.blocks.iter().enumerate() {
            let a = &b.attn;
            let hn = ops::rms_norm(&x, &b.input_norm, a.eps)?;
            let (q, k, v) = self.qkv(li, a, &hn, lora)?;
            let (q, k, v) = self.qk_rope(a, q, k, v, n, &cos, &sin)?;
            let att = attention::cached(&q, &k, &v, batch.slots, caches, li, a.heads)?;
            x = (x + lora.linear(&a.o, li, Module::OProj, &att)?)?;
            x = (&x + self.mlp(li, b, &x, lora)?)?;
        }
        for s in batch.slots {
            let c = &mut caches[s.seq];
            if c.len() < s.pos + 1 {
                c.set_len(s.pos + 1);
            }
        }
        if batch.logits_rows.is_empty() {
            // A prompt chunk nobody wants logits of: skip the LM head (the
            // quantized kernels refuse a zero-row product).
            return Ok(Tensor::zeros((0, self.cfg.vocab_size), DType::F32, &self.device)?);
        }
        let rows = Tensor::new(
            batch.logits_rows.iter().map(|&r| r as u32).collect::<Vec<_>>().as_slice(),
            &self.device,
        )?;
        let x = x.index_select(&rows, 0)?;
        let x = ops::rms_norm(&x, &self.norm, self.cfg.rms_norm_eps)?;
        Ok(self.lm_head.forward(&x)?)
    }

    fn qkv(
        &self,
        li: usize,
        a: &Attention,
        hn: &Tensor,
        lora: Lora<'_>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        if lora.trains() {
            return Ok((
                lora.linear(&a.q, li, Module::QProj, hn)?,
                lora.linear(&a.k, li, Module::KProj, hn)?,
                lora.linear(&a.v, li, Module::VProj, hn)?,
            ));
        }
        let [q, k, v]: [Tensor; 3] =
            Linear::forward_shared(&[&a.q, &a.k, &a.v], hn)?.try_into().expect("three outputs");
        Ok((
            lora.apply(q, li, Module::QProj, hn)?,
            lora.apply(k, li, Module::KProj, hn)?,
            lora.apply(v, li, Module::VProj, hn)?,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn qk_rope(
        &self,
        a: &Attention,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        n: usize,
        cos: &Tensor,
        sin: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let hd = a.heads.head_dim;
        let mut q = q.reshape((n, a.heads.heads, hd))?;
        let mut k = k.reshape((n, a.heads.kv_heads, hd))?;
        let v = v.reshape((n, a.heads.kv_heads, hd))?;
        if let (Some(qn), Some(kn)) = (&a.q_norm, &a.k_norm) {
            q = ops::rms_norm(&q, qn, a.eps)?;
            k = ops::rms_norm(&k, kn, a.eps)?;
        }
        Ok((ops::rope(&q, cos, sin)?, ops::rope(&k, cos, sin)?, v))
    }

    fn mlp(&self, li: usize, b: &Block, x: &Tensor, lora: Lora<'_>) -> Result<Tensor> {
        let h = ops::rms_norm(x, &b.post_norm, b.attn.eps)?;
        let m = &b.mlp;
        let (g, u) = if lora.trains() {
            (
                lora.linear(&m.gate, li, Module::GateProj, &h)?,
                lora.linear(&m.up, li, Module::UpProj, &h)?,
            )
        } else {
            let [g, u]: [Tensor; 2] =
                Linear::forward_shared(&[&m.gate, &m.up], &h)?.try_into().expect("two outputs");
            (lora.apply(g, li, Module::GateProj, &h)?, lora.apply(u, li, Module::UpProj, &h)?)
        };
        let act = ops::silu_mul(&g, &u)?;
        lora.linear(&m.down, li, Module::DownProj, &act)
    }

    /// Cache-free forward over `ids` `[batch, seq]` (every sequence starts at
    /// position 0) up to the final norm: `[batch * seq, hidden]`.
    /// Differentiable; the trainer feeds only the rows it scores to
    /// [`Llama::logits`].
    pub fn hidden_full(&self, ids: &Tensor, lora: Lora<'_>) -> Result<Tensor> {
        let (bsz, t) = ids.dims2()?;
        let flat: Vec<u32> = ids.flatten_all()?.to_vec1()?;
        let (cos, sin) = self.rope_tables((0..bsz).flat_map(|_| 0..t))?;
        let mut x = self.embed.lookup(&flat, &self.device)?; // [b*t, h]
        for (li, b) in self.blocks.iter().enumerate() {
            let a = &b.attn;
            let hn = ops::rms_norm(&x, &b.input_norm, a.eps)?;
            let (q, k, v) = self.qkv(li, a, &hn, lora)?;
            let (q, k, v) = self.qk_rope(a, q, k, v, bsz * t, &cos, &sin)?;
            let hd = a.heads.head_dim;
            let att = attention::full_causal(
                &q.reshape((bsz, t, a.heads.heads, hd))?,
                &k.reshape((bsz, t, a.heads.kv_heads, hd))?,
                &v.reshape((bsz, t, a.heads.kv_heads, hd))?,
                a.heads,
            )?
            .reshape((bsz * t, a.heads.heads * hd))?;
            x = (x + lora.linear(&a.o, li, Module::OProj, &att)?)?;
            x = (&x + self.mlp(li, b, &x, lora)?)?;
        }
        Ok(ops::rms_norm(&x, &self.norm, self.cfg.rms_norm_eps)?)
    }

    /// Output projection of final hidden states `[rows, hidden]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.lm_head.forward(hidden)?)
    }

    /// Summed negative log-likelihood of `targets` given final hidden states
    /// `[targets, hidden]`, and how many targets are the argmax.
    /// Differentiable; on the CPU the logits are never materialised. With
    /// `bf16` a frozen head's products run in BF16 on AMX tiles (where
    /// available).
    pub fn nll(&self, hidden: &Tensor, targets: &[u32], bf16: bool) -> Result<(Tensor, usize)> {
        if let (Weight::Dense(w), None) = (&self.lm_head.weight, &self.lm_head.bias) {
            if crate::grad::usable(&[hidden, w]) {
                let packed = (bf16 && !w.track_op()).then(|| self.lm_head.bf16_weight()).flatten();
                return Ok(crate::grad::cross_entropy(hidden, w, targets, packed)?);
            }
        }
        let logits = self.logits(hidden)?;
        let tg = Tensor::new(targets, hidden.device())?;
        let correct = logits
            .detach()
            .argmax(D::Minus1)?
            .eq(&tg)?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()? as usize;
        let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let nll = lp.gather(&tg.unsqueeze(1)?, 1)?.neg()?.sum_all()?;
        Ok((nll, correct))
    }

    /// Cache-free forward returning logits `[batch, seq, vocab]`. Differentiable.
    pub fn forward_full(&self, ids: &Tensor, lora: Lora<'_>) -> Result<Tensor> {
        let (bsz, t) = ids.dims2()?;
        let h = self.hidden_full(ids, lora)?;
        Ok(self.logits(&h)?.reshape((bsz, t, ()))?)
    }

    /// The linear layer `module` of decoder layer `layer`.
    pub fn linear(&self, layer: usize, module: Module) -> &Linear {
        let b = &self.blocks[layer];
        match module {
            Module::QProj => &b.attn.q,
            Module::KProj => &b.attn.k,
            Module::VProj => &b.attn.v,
            Module::OProj => &b.attn.o,
            Module::GateProj => &b.mlp.gate,
            Module::UpProj => &b.mlp.up,
            Module::DownProj => &b.mlp.down,
        }
    }

    fn linear_mut(&mut self, layer: usize, module: Module) -> &mut Linear {
        let b = &mut self.blocks[layer];
        match module {
            Module::QProj => &mut b.attn.q,
            Module::KProj => &mut b.attn.k,
            Module::VProj => &mut b.attn.v,
            Module::OProj => &mut b.attn.o,
            Module::GateProj => &mut b.mlp.gate,
            Module::UpProj => &mut b.mlp.up,
            Module::DownProj => &mut b.mlp.down,
        }
    }

    /// Adds `sign · scale · B A` of every pair of `adapter` into the base
    /// weights (`sign` 1 merges, -1 unmerges). Needs dense weights: load
    /// GGUF models with `dequantize`.
    pub fn merge_adapter(&mut self, adapter: &Adapter, sign: f64) -> Result<()> {
        for layer in 0..self.blocks.len() {
            for m in Module::ALL {
                let Some(p) = adapter.pair(layer, m) else { continue };
                let lin = self.linear_mut(layer, m);
                let Weight::Dense(w) = &lin.weight else {
                    return Err(crate::EngineError::field(
                        m.path(layer),
                        "weight",
                        "is quantized; merging needs dense weights (load the base with dequantize)",
                    ));
                };
                let delta = (p.b.matmul(&p.a)? * (sign * p.scale))?.to_dtype(w.dtype())?;
                lin.set_weight(Weight::Dense((w + delta)?));
            }
        }
        Ok(())
    }

    /// Every weight under its Hugging Face name, dense f32 (quantized ones
    /// dequantized), ready to save as `model.safetensors`.
    pub fn hf_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let dev = &self.device;
        let mut out = vec![("model.embed_tokens.weight".to_string(), self.embed.dense(dev)?)];
        for (li, b) in self.blocks.iter().enumerate() {
            for m in Module::ALL {
                let lin = self.linear(li, m);
                out.push((format!("{}.weight", m.path(li)), lin.dense_weight(dev)?));
                if let Some(bias) = &lin.bias {
                    out.push((format!("{}.bias", m.path(li)), bias.clone()));
                }
            }
            let p = format!("model.layers.{li}");
            out.push((format!("{p}.input_layernorm.weight"), b.input_norm.clone()));
            out.push((format!("{p}.post_attention_layernorm.weight"), b.post_norm.clone()));
            if let (Some(qn), Some(kn)) = (&b.attn.q_norm, &b.attn.k_norm) {
                out.push((format!("{p}.self_attn.q_norm.weight"), qn.clone()));
                out.push((format!("{p}.self_attn.k_norm.weight"), kn.clone()));
            }
        }
        out.push(("model.norm.weight".to_string(), self.norm.clone()));
        if !self.cfg.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), self.lm_head.dense_weight(dev)?));
        }
        Ok(out)
    }
}

/// Which adapter (if any) a forward pass applies, and its training dropout.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lora<'a> {
    /// The adapter; `None` runs the base model.
    pub adapter: Option<&'a Adapter>,
    /// Dropout on adapter inputs (training only).
    pub dropout: Option<&'a Dropout>,
    /// Training's products over frozen dense weights in BF16 on AMX tiles
    /// (where available; f32 otherwise).
    pub bf16: bool,
}

impl<'a> Lora<'a> {
    /// The base model alone.
    pub const NONE: Lora<'static> = Lora { adapter: None, dropout: None, bf16: false };

    /// Inference with `adapter`.
    pub fn with(adapter: Option<&'a Adapter>) -> Self {
        Lora { adapter, dropout: None, bf16: false }
    }

    /// Whether the adapter is being trained (its weights are variables).
    fn trains(&self) -> bool {
        self.adapter.is_some_and(|a| !a.vars().is_empty())
    }

    /// `lin(x)` plus the adapter's delta for `(layer, m)`: one fused node
    /// when training on the CPU over a dense frozen weight.
    fn linear(self, lin: &Linear, layer: usize, m: Module, x: &Tensor) -> Result<Tensor> {
        if let (Some(a), Weight::Dense(w)) = (self.adapter, &lin.weight) {
            let fuse = self.trains() && !w.track_op();
            let bf16 = || if self.bf16 { lin.bf16_weight() } else { None };
            let y = match a.pair(layer, m) {
                Some(p) if fuse && crate::grad::usable(&[x, w, &p.a, &p.b]) => {
                    let mask = self.dropout.and_then(|d| d.mask(x.elem_count()));
                    Some(crate::grad::lora_linear(x, w, &p.a, &p.b, p.scale, mask, bf16())?)
                }
                // A module the adapter leaves alone, in a BF16 step.
                None if fuse && self.bf16 && x.track_op() && crate::grad::usable(&[x, w]) => {
                    Some(crate::grad::frozen_linear(x, w, bf16())?)
                }
                _ => None,
            };
            if let Some(y) = y {
                return Ok(match &lin.bias {
                    Some(b) => y.broadcast_add(b)?,
                    None => y,
                });
            }
        }
        self.apply(lin.forward(x)?, layer, m, x)
    }

    fn apply(self, y: Tensor, layer: usize, m: Module, x: &Tensor) -> Result<Tensor> {
        let Some(a) = self.adapter else { return Ok(y) };
        match a.delta(layer, m, x, self.dropout)? {
            Some(d) => Ok((y + d)?),
            None => Ok(y),
        }
    }
}
