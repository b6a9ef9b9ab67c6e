//! The BERT encoder (inference only): word, position and token-type
//! embeddings, then self-attention layers with an additive padding mask and
//! a GELU MLP, as in Hugging Face's `BertModel` (without its pooler).
//!
//! It serves sentence embedders such as all-MiniLM-L6-v2 (see
//! [`crate::embed`]). Weight names follow the Hugging Face checkpoints
//! (`encoder.layer.N.attention.self.query`), so loading is a walk; whether
//! they sit under a `bert.` prefix is decided by [`Bert::new`]'s caller
//! (`VarBuilder::pp`). Being inference only, it uses candle-nn's fused
//! layers (softmax, layer norm) rather than forja's training-aware ones.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use serde::{Deserialize, Serialize};
use std::path::Path;

use crate::EngineError;

/// The fields of an HF `BertConfig` (`config.json`) that inference needs.
/// Missing fields take `BertConfig`'s defaults (BERT-base).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Token vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer; must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Width of the MLP's inner layer.
    pub intermediate_size: usize,
    /// The MLP activation: `gelu` (exact, erf), `gelu_new` /
    /// `gelu_pytorch_tanh` (tanh approximation) or `relu`.
    pub hidden_act: String,
    /// Longest sequence the position embeddings cover.
    pub max_position_embeddings: usize,
    /// Number of token types (segments).
    pub type_vocab_size: usize,
    /// Epsilon of every layer norm.
    pub layer_norm_eps: f64,
    /// Only `absolute` is supported.
    pub position_embedding_type: String,
    /// Id of the padding token.
    pub pad_token_id: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: "gelu".into(),
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            position_embedding_type: "absolute".into(),
            pad_token_id: 0,
        }
    }
}

impl Config {
    /// The activations forja implements, for error messages.
    pub const SUPPORTED_ACTIVATIONS: &'static str = "gelu, gelu_new, gelu_pytorch_tanh, relu";

    /// Checks what the model code relies on; the error names `path` (the
    /// config file) and the offending field.
    pub fn validate(&self, path: &Path) -> crate::Result<()> {
        self.check().map_err(|(field, reason)| EngineError::field(path, field, reason))
    }

    fn check(&self) -> std::result::Result<(), (&'static str, String)> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err((field, "must be a positive integer".into()));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err((
                "num_attention_heads",
                format!(
                    "({}) must divide hidden_size ({})",
                    self.num_attention_heads, self.hidden_size
                ),
            ));
        }
        if Activation::from_name(&self.hidden_act).is_none() {
            return Err((
                "hidden_act",
                format!(
                    "is `{}`, which forja does not implement (supported: {})",
                    self.hidden_act,
                    Self::SUPPORTED_ACTIVATIONS
                ),
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err((
                "position_embedding_type",
                format!("is `{}`; only `absolute` is supported", self.position_embedding_type),
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(("layer_norm_eps", "must be a positive number".into()));
        }
        Ok(())
    }
}

/// The MLP activation.
#[derive(Debug, Clone, Copy)]
enum Activation {
    GeluErf,
    GeluTanh,
    Relu,
}

impl Activation {
    fn from_name(name: &str) -> Option<Activation> {
        match name {
            "gelu" => Some(Activation::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" => Some(Activation::GeluTanh),
            "relu" => Some(Activation::Relu),
            _ => None,
        }
    }

    fn apply(self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Activation::GeluErf => xs.gelu_erf(),
            Activation::GeluTanh => xs.gelu(),
            Activation::Relu => xs.relu(),
        }
    }
}

/// Word + position + token-type embeddings, then a layer norm.
struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
}

impl Embeddings {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Embeddings {
            word: embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("word_embeddings"))?,
            position: embedding(
                cfg.max_position_embeddings,
                cfg.hidden_size,
                vb.pp("position_embeddings"),
            )?,
            token_type: embedding(
                cfg.type_vocab_size,
                cfg.hidden_size,
                vb.pp("token_type_embeddings"),
            )?,
            norm: layer_norm(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    fn forward(&self, input_ids: &Tensor, token_type_ids: &Tensor) -> Result<Tensor> {
        let seq = input_ids.dim(1)?;
        let positions = Tensor::arange(0u32, seq as u32, input_ids.device())?;
        let xs = self.word.forward(input_ids)?;
        let xs = xs.broadcast_add(&self.position.forward(&positions)?)?;
        let xs = (xs + self.token_type.forward(token_type_ids)?)?;
        self.norm.forward(&xs)
    }
}

/// Multi-head self-attention plus its output projection, residual and norm.
struct Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    norm: LayerNorm,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        let sa = vb.pp("self");
        let out = vb.pp("output");
        Ok(Attention {
            query: linear(h, h, sa.pp("query"))?,
            key: linear(h, h, sa.pp("key"))?,
            value: linear(h, h, sa.pp("value"))?,
            output: linear(h, h, out.pp("dense"))?,
            norm: layer_norm(h, cfg.layer_norm_eps, out.pp("LayerNorm"))?,
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
        })
    }

    /// `xs`: `(batch, seq, hidden)`; `mask`: additive, `(batch, 1, 1, seq)`.
    fn forward(&self, xs: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, s, h) = xs.dims3()?;
        let split = |t: Tensor| -> Result<Tensor> {
            t.reshape((b, s, self.heads, self.head_dim))?.transpose(1, 2)?.contiguous()
        };
        let q = split(self.query.forward(xs)?)?;
        let k = split(self.key.forward(xs)?)?;
        let v = split(self.value.forward(xs)?)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, s, h))?;
        self.norm.forward(&(self.output.forward(&ctx)? + xs)?)
    }
}

/// One encoder layer: attention, then the MLP with its residual and norm.
struct Layer {
    attention: Attention,
    intermediate: Linear,
    output: Linear,
    norm: LayerNorm,
    act: Activation,
}

impl Layer {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let act = Activation::from_name(&cfg.hidden_act).ok_or_else(|| {
            candle_core::Error::Msg(format!("unsupported hidden_act `{}`", cfg.hidden_act))
        })?;
        Ok(Layer {
            attention: Attention::new(cfg, vb.pp("attention"))?,
            intermediate: linear(
                cfg.hidden_size,
                cfg.intermediate_size,
                vb.pp("intermediate").pp("dense"),
            )?,
            output: linear(cfg.intermediate_size, cfg.hidden_size, vb.pp("output").pp("dense"))?,
            norm: layer_norm(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
            act,
        })
    }

    fn forward(&self, xs: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let xs = self.attention.forward(xs, mask)?;
        let inner = self.act.apply(&self.intermediate.forward(&xs)?)?;
        self.norm.forward(&(self.output.forward(&inner)? + xs)?)
    }
}

/// A BERT encoder: token ids in, one hidden state per token out.
pub struct Bert {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    hidden_size: usize,
    max_positions: usize,
}

impl std::fmt::Debug for Bert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bert({} layers, hidden {})", self.layers.len(), self.hidden_size)
    }
}

impl Bert {
    /// Builds the encoder from `vb`, rooted where `embeddings.*` and
    /// `encoder.*` live (pass `vb.pp("bert")` for checkpoints saved from
    /// `BertFor*` heads). Tensors are read as f32. `cfg` should have passed
    /// [`Config::validate`].
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let vb = vb.set_dtype(DType::F32);
        let embeddings = Embeddings::new(cfg, vb.pp("embeddings"))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::new(cfg, vb.pp("encoder").pp("layer").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Bert {
            embeddings,
            layers,
            hidden_size: cfg.hidden_size,
            max_positions: cfg.max_position_embeddings,
        })
    }

    /// Width of the hidden states.
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// Longest sequence the position embeddings cover.
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Runs the encoder. `input_ids` and `token_type_ids` are `(batch, seq)`
    /// u32; `attention_mask` is `(batch, seq)` f32, 1 for real tokens and 0
    /// for padding (padded keys get no attention weight, so real tokens'
    /// states do not depend on how much padding follows). Returns the last
    /// hidden states, `(batch, seq, hidden)`; padded positions hold
    /// meaningless values.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
    ) -> Result<Tensor> {
        let (b, s) = input_ids.dims2()?;
        if s > self.max_positions {
            candle_core::bail!(
                "sequence of {s} tokens exceeds max_position_embeddings {}",
                self.max_positions
            );
        }
        // HF's extended mask: 0 where attended, the most negative f32 where
        // not; exp() of it underflows to exactly 0 in the softmax.
        let mask = ((attention_mask.to_dtype(DType::F32)?.affine(-1.0, 1.0))? * f32::MIN as f64)?
            .reshape((b, 1, 1, s))?;
        let mut xs = self.embeddings.forward(input_ids, token_type_ids)?;
        for layer in &self.layers {
            xs = layer.forward(&xs, &mask)?;
        }
        Ok(xs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::VarMap;

    fn tiny() -> (Config, Bert) {
        let cfg = Config {
            vocab_size: 50,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 32,
            max_position_embeddings: 12,
            ..Config::default()
        };
        cfg.validate(Path::new("config.json")).unwrap();
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let model = Bert::new(&cfg, vb).unwrap();
        (cfg, model)
    }

    fn ids(rows: &[&[u32]]) -> Tensor {
        Tensor::new(rows.iter().map(|r| r.to_vec()).collect::<Vec<_>>(), &Device::Cpu).unwrap()
    }

    #[test]
    fn shapes_and_padding_invariance() {
        let (cfg, model) = tiny();
        let input = ids(&[&[1, 7, 9, 2, 0, 0], &[1, 3, 4, 5, 6, 2]]);
        let types = input.zeros_like().unwrap();
        let mask =
            Tensor::new(&[[1f32, 1., 1., 1., 0., 0.], [1., 1., 1., 1., 1., 1.]], &Device::Cpu)
                .unwrap();
        let out = model.forward(&input, &types, &mask).unwrap();
        assert_eq!(out.dims(), &[2, 6, cfg.hidden_size]);

        // The first row alone, without padding, gives the same real tokens.
        let alone = ids(&[&[1, 7, 9, 2]]);
        let single = model
            .forward(
                &alone,
                &alone.zeros_like().unwrap(),
                &Tensor::ones((1, 4), DType::F32, &Device::Cpu).unwrap(),
            )
            .unwrap();
        let padded = out.narrow(0, 0, 1).unwrap().narrow(1, 0, 4).unwrap();
        let diff = (single - padded).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
    }

    #[test]
    fn too_long_is_an_error_not_a_panic() {
        let (_, model) = tiny();
        let input = Tensor::zeros((1, 13), DType::U32, &Device::Cpu).unwrap();
        let mask = Tensor::ones((1, 13), DType::F32, &Device::Cpu).unwrap();
        let err = model.forward(&input, &input, &mask).unwrap_err();
        assert!(err.to_string().contains("max_position_embeddings"), "{err}");
    }

    #[test]
    fn validate_names_the_field() {
        let bad = Config { hidden_act: "swish".into(), ..Config::default() };
        let err = bad.validate(Path::new("m/config.json")).unwrap_err().to_string();
        assert!(err.starts_with("m/config.json: field `hidden_act` is `swish`"), "{err}");
        let bad = Config { num_attention_heads: 5, ..Config::default() };
        assert_eq!(bad.check().unwrap_err().0, "num_attention_heads");
    }
}
