//! Where a model's tensors come from: a GGUF file or Hugging Face
//! safetensors. Models ask for tensors by their Hugging Face names; GGUF
//! names are translated, and llama-architecture GGUF query/key rows are put
//! back in Hugging Face order (llama.cpp's converter interleaves them for its
//! rotary kernel), so one rotary implementation serves both sources.

#![allow(unsafe_code)]

use crate::error::candle_text;
use crate::gguf::{hf_to_gguf_name, GgufFile};
use crate::linear::{Embedding, Linear, Weight};
use crate::quant::{QMatrix, QType};
use crate::{EngineError, Result};
use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use half::{bf16, f16};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Load-time progress: (layers done, layers total).
pub type LayerProgress<'a> = &'a mut dyn FnMut(usize, usize);

/// A source of named tensors for building a model.
pub struct Weights<'p> {
    source: Source,
    device: Device,
    path: PathBuf,
    progress: Option<LayerProgress<'p>>,
    dequantize: bool,
    /// Float matrices are quantized to this format at load.
    quantize: Option<QType>,
    /// When set, every tensor handed out is a `Var`, recorded here.
    vars: Option<Vec<(String, Var)>>,
}

enum Source {
    Gguf {
        file: Box<GgufFile>,
        /// `(heads, kv_heads)` when q/k rows must be de-interleaved.
        unpermute: Option<(usize, usize)>,
    },
    Safetensors(VarBuilder<'static>),
    /// Fresh random weights (pre-training from scratch).
    Init {
        rng: Box<ChaCha8Rng>,
        std: f64,
    },
}

impl<'p> Weights<'p> {
    /// Tensors of an open GGUF file.
    pub fn from_gguf(
        file: GgufFile,
        heads: usize,
        kv_heads: usize,
        device: &Device,
    ) -> Result<Self> {
        let unpermute = (file.architecture()? == "llama").then_some((heads, kv_heads));
        let path = file.path().to_path_buf();
        Ok(Weights {
            source: Source::Gguf { file: Box::new(file), unpermute },
            device: device.clone(),
            path,
            progress: None,
            dequantize: false,
            quantize: None,
            vars: None,
        })
    }

    /// Tensors of safetensors files (memory-mapped), converted to f32.
    pub fn from_safetensors(dir: &Path, files: &[PathBuf], device: &Device) -> Result<Self> {
        for f in files {
            if !f.is_file() {
                return Err(EngineError::malformed(
                    f,
                    "listed in model.safetensors.index.json but missing; the download is incomplete",
                ));
            }
        }
        // SAFETY: the files are memory-mapped read-only; like every mmap
        // loader this assumes nobody truncates them while the model is loaded.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(files, DType::F32, device) }
            .map_err(|e| {
                EngineError::malformed(dir, format!("cannot read safetensors: {}", candle_text(&e)))
            })?;
        Ok(Weights {
            source: Source::Safetensors(vb),
            device: device.clone(),
            path: dir.to_path_buf(),
            progress: None,
            dequantize: false,
            quantize: None,
            vars: None,
        })
    }

    /// Random weights for a model trained from scratch: matrices and
    /// embeddings normal(0, `std`) from a ChaCha8 generator seeded with
    /// `seed`, norm weights 1, biases 0. Every tensor is trainable.
    pub fn random(seed: u64, std: f64, device: &Device) -> Self {
        Weights {
            source: Source::Init { rng: Box::new(ChaCha8Rng::seed_from_u64(seed)), std },
            device: device.clone(),
            path: PathBuf::from("<random init>"),
            progress: None,
            dequantize: true,
            quantize: None,
            vars: Some(Vec::new()),
        }
    }

    /// Hands out every tensor as a trainable `Var` (full fine-tuning);
    /// implies `dequantized`.
    pub fn trainable(mut self) -> Self {
        self.dequantize = true;
        self.vars.get_or_insert_with(Vec::new);
        self
    }

    /// The trainable variables created so far, with their Hugging Face names.
    pub fn take_vars(&mut self) -> Vec<(String, Var)> {
        self.vars.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Loads every quantized tensor as dense f32 (training needs plain
    /// tensors; evaluation can use it as the unquantized reference).
    pub fn dequantized(mut self, yes: bool) -> Self {
        self.dequantize = yes;
        self
    }

    /// Quantizes float matrices and the embedding table to `q` at load
    /// (`None`: keep them as stored). Has no effect on dequantized or
    /// trainable weights, or off the CPU.
    pub fn quantized_to(mut self, q: Option<QType>) -> Self {
        self.quantize = q;
        self
    }

    /// The block format a float `[rows, cols]` matrix is quantized to at
    /// load, if any.
    fn quantize_as(&self, cols: usize) -> Option<QType> {
        let q = self.quantize?;
        let frozen = !self.dequantize && self.vars.is_none() && self.device.is_cpu();
        (frozen && cols.is_multiple_of(crate::quant::BLOCK)).then_some(q)
    }

    /// `t` `[rows, cols]` as a block-quantized matrix.
    fn quantize_dense(&self, hf: &str, qt: QType, t: &Tensor) -> Result<Arc<QMatrix>> {
        let (rows, cols) = t.dims2()?;
        let data = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        QMatrix::quantize(qt, rows, cols, &data)
            .map(Arc::new)
            .map_err(|e| EngineError::malformed(&self.path, format!("{hf}: {e}")))
    }

    /// Reports per-layer progress to `f` while the model is built.
    pub fn with_progress(mut self, f: LayerProgress<'p>) -> Self {
        self.progress = Some(f);
        self
    }

    pub(crate) fn progress(&mut self, done: usize, total: usize) {
        if let Some(p) = self.progress.as_mut() {
            p(done, total);
        }
    }

    /// The device tensors are loaded onto.
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn file_name(&self, hf: &str) -> String {
        match &self.source {
            Source::Gguf { .. } => hf_to_gguf_name(hf).unwrap_or_else(|| hf.to_string()),
            Source::Safetensors(_) | Source::Init { .. } => hf.to_string(),
        }
    }

    /// Whether a tensor exists.
    pub(crate) fn has(&self, hf: &str) -> bool {
        match &self.source {
            Source::Gguf { file, .. } => hf_to_gguf_name(hf).is_some_and(|g| file.has_tensor(&g)),
            Source::Safetensors(vb) => vb.contains_tensor(hf),
            // A fresh model has whatever its config asks for.
            Source::Init { .. } => true,
        }
    }

    /// A dense f32 tensor of `shape` (checked), from any source; a `Var`
    /// when the weights are trainable.
    fn dense(&mut self, hf: &str, shape: &[usize]) -> Result<Tensor> {
        let t = match &mut self.source {
            Source::Safetensors(vb) => {
                if !vb.contains_tensor(hf) {
                    return Err(self.missing(hf));
                }
                let t = vb.get_unchecked(hf)?;
                self.check_shape(hf, t.dims(), shape)?;
                t
            }
            Source::Gguf { .. } => {
                let (dtype, bytes) = self.gguf_raw(hf, shape)?;
                self.dense_from_gguf(hf, dtype, &bytes, shape)?
            }
            Source::Init { rng, std } => {
                let n: usize = shape.iter().product();
                let values: Vec<f32> = if hf.ends_with("norm.weight") {
                    vec![1.0; n]
                } else if hf.ends_with(".bias") {
                    vec![0.0; n]
                } else {
                    normal(rng, n, *std)
                };
                Tensor::from_vec(values, shape, &self.device)?
            }
        };
        match &mut self.vars {
            Some(vars) => {
                let v = Var::from_tensor(&t.to_dtype(candle_core::DType::F32)?)?;
                vars.push((hf.to_string(), v.clone()));
                Ok(v.as_tensor().clone())
            }
            None => Ok(t),
        }
    }

    fn missing(&self, hf: &str) -> EngineError {
        EngineError::MissingTensor { path: self.path.clone(), tensor: self.file_name(hf) }
    }

    fn check_shape(&self, hf: &str, got: &[usize], expected: &[usize]) -> Result<()> {
        if got == expected {
            return Ok(());
        }
        Err(EngineError::ShapeMismatch {
            path: self.path.clone(),
            tensor: self.file_name(hf),
            expected: expected.to_vec(),
            got: got.to_vec(),
        })
    }

    /// Row order that undoes llama.cpp's q/k interleaving, if `hf` needs it.
    fn unpermute_order(&self, hf: &str, rows: usize) -> Option<Vec<usize>> {
        let Source::Gguf { unpermute: Some((heads, kv_heads)), .. } = &self.source else {
            return None;
        };
        let n = if hf.contains(".self_attn.q_proj.") {
            *heads
        } else if hf.contains(".self_attn.k_proj.") {
            *kv_heads
        } else {
            return None;
        };
        let hd = rows / n;
        let mut order = Vec::with_capacity(rows);
        for h in 0..n {
            for j in 0..2 {
                for i in 0..hd / 2 {
                    order.push(h * hd + 2 * i + j);
                }
            }
        }
        Some(order)
    }

    /// Raw GGUF tensor, shape-checked, rows de-interleaved where needed.
    fn gguf_raw(&mut self, hf: &str, expected: &[usize]) -> Result<(GgmlDType, Vec<u8>)> {
        let name = hf_to_gguf_name(hf).ok_or_else(|| self.missing(hf))?;
        let Source::Gguf { file, .. } = &mut self.source else { unreachable!() };
        if !file.has_tensor(&name) {
            return Err(self.missing(hf));
        }
        let (dtype, dims, bytes) = file.read_raw(&name)?;
        self.check_shape(hf, &dims, expected)?;
        let bytes = match self.unpermute_order(hf, expected[0]) {
            Some(order) => permute_rows(&bytes, order.len(), &order),
            None => bytes,
        };
        Ok((dtype, bytes))
    }

    fn dense_from_gguf(
        &self,
        hf: &str,
        dtype: GgmlDType,
        bytes: &[u8],
        shape: &[usize],
    ) -> Result<Tensor> {
        let values: Vec<f32> = match dtype {
            GgmlDType::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            GgmlDType::F16 => {
                bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            GgmlDType::BF16 => {
                bytes.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            other => {
                let qt = self.qtensor(hf, other, bytes, shape)?;
                return Ok(qt.dequantize(&self.device)?);
            }
        };
        Ok(Tensor::from_vec(values, shape, &self.device)?)
    }

    fn qtensor(
        &self,
        hf: &str,
        dtype: GgmlDType,
        bytes: &[u8],
        shape: &[usize],
    ) -> Result<QTensor> {
        let storage =
            QStorage::from_data(Cow::Borrowed(bytes), &self.device, dtype).map_err(|e| {
                EngineError::UnsupportedDType {
                    path: self.path.clone(),
                    tensor: format!("{} ({})", self.file_name(hf), candle_text(&e)),
                    dtype: format!("{dtype:?}"),
                }
            })?;
        Ok(QTensor::new(storage, shape)?)
    }

    /// A frozen linear layer `prefix.weight` `[out, in]` (+ `prefix.bias`).
    pub(crate) fn linear(
        &mut self,
        prefix: &str,
        out: usize,
        inp: usize,
        bias: bool,
    ) -> Result<Linear> {
        let wname = format!("{prefix}.weight");
        let weight = match &self.source {
            Source::Gguf { .. } if !self.dequantize => {
                let (dtype, bytes) = self.gguf_raw(&wname, &[out, inp])?;
                match (forja_qtype(dtype), self.device.is_cpu()) {
                    _ if is_float(dtype) => {
                        let t = self.dense_from_gguf(&wname, dtype, &bytes, &[out, inp])?;
                        self.frozen_weight(&wname, t)?
                    }
                    (Some(qt), true) => {
                        Weight::Quant(Arc::new(QMatrix::from_bytes(qt, out, inp, bytes).map_err(
                            |e| EngineError::malformed(&self.path, format!("{wname}: {e}")),
                        )?))
                    }
                    _ => Weight::Candle(Arc::new(QMatMul::from_qtensor(self.qtensor(
                        &wname,
                        dtype,
                        &bytes,
                        &[out, inp],
                    )?)?)),
                }
            }
            _ => {
                let t = self.dense(&wname, &[out, inp])?;
                self.frozen_weight(&wname, t)?
            }
        };
        let bias = if bias { Some(self.vector(&format!("{prefix}.bias"), out)?) } else { None };
        Ok(Linear::new(weight, bias, out, inp))
    }

    /// A 1-D f32 tensor (norm weights, biases).
    pub(crate) fn vector(&mut self, hf: &str, len: usize) -> Result<Tensor> {
        self.dense(hf, &[len])
    }

    /// The token embedding table `[vocab, hidden]`.
    pub(crate) fn embedding(&mut self, hf: &str, vocab: usize, hidden: usize) -> Result<Embedding> {
        match &self.source {
            Source::Gguf { .. } if !self.dequantize => {
                let (dtype, bytes) = self.gguf_raw(hf, &[vocab, hidden])?;
                match (forja_qtype(dtype), self.device.is_cpu()) {
                    _ if is_float(dtype) => {
                        let t = self.dense_from_gguf(hf, dtype, &bytes, &[vocab, hidden])?;
                        self.frozen_embedding(hf, t)
                    }
                    (Some(qt), true) => Ok(Embedding::Quant(Arc::new(
                        QMatrix::from_bytes(qt, vocab, hidden, bytes).map_err(|e| {
                            EngineError::malformed(&self.path, format!("{hf}: {e}"))
                        })?,
                    ))),
                    _ => Ok(Embedding::Candle(Arc::new(self.qtensor(
                        hf,
                        dtype,
                        &bytes,
                        &[vocab, hidden],
                    )?))),
                }
            }
            _ => {
                let t = self.dense(hf, &[vocab, hidden])?;
                self.frozen_embedding(hf, t)
            }
        }
    }

    /// A dense matrix as a layer weight, quantized if asked.
    fn frozen_weight(&self, hf: &str, t: Tensor) -> Result<Weight> {
        Ok(match self.quantize_as(t.dims2()?.1) {
            Some(qt) => Weight::Quant(self.quantize_dense(hf, qt, &t)?),
            None => Weight::Dense(t),
        })
    }

    /// A dense embedding table, quantized if asked.
    fn frozen_embedding(&self, hf: &str, t: Tensor) -> Result<Embedding> {
        Ok(match self.quantize_as(t.dims2()?.1) {
            Some(qt) => Embedding::Quant(self.quantize_dense(hf, qt, &t)?),
            None => Embedding::Dense(t),
        })
    }

    /// llama.cpp's per-frequency RoPE factors (`rope_freqs.weight`, Llama 3.1+).
    pub(crate) fn rope_freq_factors(&mut self) -> Result<Option<Vec<f32>>> {
        let Source::Gguf { file, .. } = &mut self.source else {
            return Ok(None);
        };
        if !file.has_tensor("rope_freqs.weight") {
            return Ok(None);
        }
        let (dtype, dims, bytes) = file.read_raw("rope_freqs.weight")?;
        let t = self.dense_from_gguf("rope_freqs.weight", dtype, &bytes, &dims)?;
        Ok(Some(t.flatten_all()?.to_vec1()?))
    }
}

/// `n` samples of normal(0, `std`) (Box-Muller).
fn normal(rng: &mut ChaCha8Rng, n: usize, std: f64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
            let u2: f64 = rng.random();
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * std) as f32
        })
        .collect()
}

fn forja_qtype(d: GgmlDType) -> Option<QType> {
    match d {
        GgmlDType::Q4_0 => Some(QType::Q4_0),
        GgmlDType::Q4_1 => Some(QType::Q4_1),
        GgmlDType::Q8_0 => Some(QType::Q8_0),
        _ => None,
    }
}

fn is_float(d: GgmlDType) -> bool {
    matches!(d, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
}

/// Reorders the rows of a row-major byte matrix: row `i` of the result is
/// row `order[i]` of `bytes`.
fn permute_rows(bytes: &[u8], rows: usize, order: &[usize]) -> Vec<u8> {
    let rb = bytes.len() / rows;
    let mut out = Vec::with_capacity(bytes.len());
    for &src in order {
        out.extend_from_slice(&bytes[src * rb..(src + 1) * rb]);
    }
    out
}
