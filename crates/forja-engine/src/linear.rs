//! Linear layers and embeddings over dense or block-quantized weights.
//!
//! A [`Linear`] holds its weight in whichever form is fastest on the device:
//! a dense tensor, a [`QMatrix`] for the GGML formats forja has CPU kernels
//! for, or candle's `QMatMul` for everything else (k-quants, CUDA). The
//! layer is frozen; trainable parameters (LoRA) live beside it.

use crate::ops::with_f32;
use crate::quant::QMatrix;
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Module, Result, Shape, Tensor};
use std::sync::{Arc, OnceLock};

/// Storage of a frozen weight matrix `[out, in]`.
#[derive(Debug, Clone)]
pub(crate) enum Weight {
    /// Dense `[out, in]` tensor.
    Dense(Tensor),
    /// GGML blocks with a forja CPU kernel.
    Quant(Arc<QMatrix>),
    /// Any other quantized format, through candle.
    Candle(Arc<QMatMul>),
}

/// `y = x · Wᵀ + b` over the last dimension of `x`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub(crate) weight: Weight,
    pub(crate) bias: Option<Tensor>,
    in_dim: usize,
    out_dim: usize,
    /// A dense weight rounded to BF16 and packed for AMX, made the first
    /// time a BF16 training step asks (shared by clones).
    bf16: Arc<OnceLock<Option<Arc<crate::grad::Bf16Weight>>>>,
}

impl Linear {
    pub(crate) fn new(weight: Weight, bias: Option<Tensor>, out_dim: usize, in_dim: usize) -> Self {
        Linear { weight, bias, in_dim, out_dim, bf16: Default::default() }
    }

    /// The weight packed for BF16 products on AMX tiles, if it is dense
    /// f32 on the CPU and AMX is available (packed once, then kept).
    pub(crate) fn bf16_weight(&self) -> Option<Arc<crate::grad::Bf16Weight>> {
        let Weight::Dense(w) = &self.weight else { return None };
        if !crate::grad::bf16_available() || !crate::grad::usable(&[w]) {
            return None;
        }
        self.bf16
            .get_or_init(|| {
                let w = w.contiguous().ok()?;
                with_f32(&w, |data| {
                    Arc::new(crate::grad::Bf16Weight::new(data, self.out_dim, self.in_dim))
                })
                .ok()
            })
            .clone()
    }

    /// Replaces the weight (a merged adapter), dropping its BF16 copy.
    pub(crate) fn set_weight(&mut self, weight: Weight) {
        self.weight = weight;
        self.bf16 = Default::default();
    }

    /// The storage format of the weight (`F32`, `Q8_0`, `Q4K`, ...).
    pub fn format(&self) -> String {
        match &self.weight {
            Weight::Dense(t) => format!("{:?}", t.dtype()).to_uppercase(),
            Weight::Quant(q) => q.qtype().name().to_string(),
            Weight::Candle(m) => match m.as_ref() {
                QMatMul::QTensor(t) => format!("{:?}", t.dtype()),
                QMatMul::Tensor(t) | QMatMul::TensorF16(t) => {
                    format!("{:?}", t.dtype()).to_uppercase()
                }
            },
        }
    }

    /// Bytes of the weight as stored (what one pass over it reads).
    pub fn weight_bytes(&self) -> usize {
        match &self.weight {
            Weight::Dense(t) => t.elem_count() * t.dtype().size_in_bytes(),
            Weight::Quant(q) => q.qtype().matrix_bytes(q.rows(), q.cols()),
            Weight::Candle(m) => match m.as_ref() {
                QMatMul::QTensor(t) => t.storage_size_in_bytes(),
                QMatMul::Tensor(t) | QMatMul::TensorF16(t) => {
                    t.elem_count() * t.dtype().size_in_bytes()
                }
            },
        }
    }

    /// Input features.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// Output features.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// Applies the layer to `x` of shape `[..., in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.weight {
            // Training through a frozen weight: only ∂x is computed.
            Weight::Dense(w) if x.track_op() && !w.track_op() && crate::grad::usable(&[x, w]) => {
                crate::grad::frozen_linear(x, w, None)?
            }
            Weight::Dense(w) => match x.rank() {
                2 => x.matmul(&w.t()?)?,
                _ => x.broadcast_matmul(&w.t()?)?,
            },
            Weight::Quant(q) => x.contiguous()?.apply_op1(QLinear { q: q.clone() })?,
            Weight::Candle(q) => q.forward(x)?,
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    /// Applies several layers that read the same input; on the CPU with
    /// forja kernels the input is quantized once for all of them.
    pub fn forward_shared(layers: &[&Linear], x: &Tensor) -> Result<Vec<Tensor>> {
        let all_quant = layers.iter().all(|l| matches!(l.weight, Weight::Quant(_)));
        if !(all_quant && x.device().is_cpu() && !x.track_op() && layers.len() > 1) {
            return layers.iter().map(|l| l.forward(x)).collect();
        }
        let x = x.contiguous()?;
        let mats: Vec<&Arc<QMatrix>> = layers
            .iter()
            .map(|l| match &l.weight {
                Weight::Quant(q) => q,
                _ => unreachable!("checked above"),
            })
            .collect();
        let lead: Vec<usize> = x.dims()[..x.rank() - 1].to_vec();
        let m: usize = lead.iter().product();
        let mut outs: Vec<Vec<f32>> = mats.iter().map(|q| vec![0f32; m * q.rows()]).collect();
        with_f32(&x, |xs| {
            // One quantization and one parallel pass per activation layout.
            let mut done = vec![false; mats.len()];
            for i in 0..mats.len() {
                if done[i] {
                    continue;
                }
                let layout = mats[i].act_layout();
                let acts = mats[i].quantize_input(xs, m);
                let group: Vec<usize> = (i..mats.len())
                    .filter(|&j| !done[j] && mats[j].act_layout() == layout)
                    .collect();
                let ms: Vec<&QMatrix> = group.iter().map(|&j| &**mats[j]).collect();
                let mut ys: Vec<&mut [f32]> = Vec::new();
                for (j, o) in outs.iter_mut().enumerate() {
                    if group.contains(&j) {
                        ys.push(o);
                    }
                }
                QMatrix::matmul_many(&ms, &acts, &mut ys);
                group.iter().for_each(|&j| done[j] = true);
            }
        })?;
        layers
            .iter()
            .zip(outs)
            .map(|(l, y)| {
                let mut dims = lead.clone();
                dims.push(l.out_dim);
                let y = Tensor::from_vec(y, dims, x.device())?;
                match &l.bias {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            })
            .collect()
    }

    /// The weight as a dense f32 tensor `[out, in]` (dequantized if needed).
    pub fn dense_weight(&self, device: &candle_core::Device) -> Result<Tensor> {
        match &self.weight {
            Weight::Dense(w) => w.to_dtype(candle_core::DType::F32),
            Weight::Quant(q) => Tensor::from_vec(q.dequantize(), (q.rows(), q.cols()), device),
            Weight::Candle(q) => match &**q {
                QMatMul::QTensor(t) => t.dequantize(device),
                QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.to_dtype(candle_core::DType::F32),
            },
        }
    }
}

/// `x · Wᵀ` with a forja-kernel weight; backward gives `∂x` (the weight is frozen).
struct QLinear {
    q: Arc<QMatrix>,
}

impl CustomOp1 for QLinear {
    fn name(&self) -> &'static str {
        "forja-qlinear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = s else { candle_core::bail!("qlinear: expected f32 input") };
        let Some((a, b)) = l.contiguous_offsets() else {
            candle_core::bail!("qlinear: input must be contiguous")
        };
        let x = &data[a..b];
        let (k, n) = (self.q.cols(), self.q.rows());
        let dims = l.dims();
        if dims.last() != Some(&k) {
            candle_core::bail!("qlinear: input {dims:?} does not end in {k} features")
        }
        let m = x.len() / k;
        let mut y = vec![0f32; m * n];
        self.q.matmul(x, m, &mut y);
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("rank >= 1") = n;
        Ok((CpuStorage::F32(y), Shape::from(out_dims)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (n, k) = (self.q.rows(), self.q.cols());
        let w = Tensor::from_vec(self.q.dequantize(), (n, k), arg.device())?;
        let g = grad.reshape(((), n))?.matmul(&w)?;
        Ok(Some(g.reshape(arg.shape())?))
    }
}

/// Token embedding table `[vocab, hidden]`.
#[derive(Debug, Clone)]
pub(crate) enum Embedding {
    Dense(Tensor),
    Quant(Arc<QMatrix>),
    Candle(Arc<QTensor>),
}

impl Embedding {
    /// Rows of the table for `ids`, as `[ids.len(), hidden]` f32.
    pub(crate) fn lookup(&self, ids: &[u32], device: &candle_core::Device) -> Result<Tensor> {
        match self {
            Embedding::Dense(t) => {
                let idx = Tensor::new(ids, t.device())?;
                t.index_select(&idx, 0)
            }
            Embedding::Quant(q) => {
                let h = q.cols();
                let mut out = vec![0f32; ids.len() * h];
                for (&id, o) in ids.iter().zip(out.chunks_mut(h)) {
                    if id as usize >= q.rows() {
                        candle_core::bail!("token id {id} is outside the vocabulary ({})", q.rows())
                    }
                    q.dequantize_row(id as usize, o);
                }
                Tensor::from_vec(out, (ids.len(), h), device)
            }
            Embedding::Candle(q) => {
                let idx = Tensor::new(ids, device)?;
                q.embedding(&idx)
            }
        }
    }

    /// The table as a dense f32 tensor `[vocab, hidden]`.
    pub(crate) fn dense(&self, device: &candle_core::Device) -> Result<Tensor> {
        match self {
            Embedding::Dense(t) => t.to_dtype(candle_core::DType::F32),
            Embedding::Quant(q) => Tensor::from_vec(q.dequantize(), (q.rows(), q.cols()), device),
            Embedding::Candle(q) => q.dequantize(device),
        }
    }

    /// The same table used as an output projection (tied embeddings).
    pub(crate) fn as_linear(&self) -> Result<Linear> {
        let (weight, (v, h)) = match self {
            Embedding::Dense(t) => (Weight::Dense(t.clone()), t.dims2()?),
            Embedding::Quant(q) => (Weight::Quant(q.clone()), (q.rows(), q.cols())),
            Embedding::Candle(q) => {
                (Weight::Candle(Arc::new(QMatMul::from_arc(q.clone())?)), q.shape().dims2()?)
            }
        };
        Ok(Linear::new(weight, None, v, h))
    }
}
