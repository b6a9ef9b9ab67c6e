//! Pre-training a small Llama-architecture model from scratch: train a
//! byte-level BPE tokenizer on the corpus, initialise every weight at
//! random, pack the tokenized corpus into fixed-length windows and run the
//! same trainer on all parameters. The result is a Hugging Face directory
//! that forja and `transformers` both load (tests use such models as
//! fixtures that need no download).

use super::{data, train, Event, Run, TrainConfig, TrainReport, Trainable};
use crate::export;
use crate::models::llama::{Llama, LlamaConfig};
use crate::tokenizer::{train_byte_level_bpe, Tokenizer};
use crate::weights::Weights;
use crate::{EngineError, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A ChatML template, the chat format of models pre-trained by forja.
pub const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// The special tokens of a tokenizer trained by forja (ids 0, 1, 2).
pub const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Shape of the model and tokenizer to pre-train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PretrainConfig {
    /// Tokenizer vocabulary (special tokens included).
    pub vocab_size: usize,
    /// Residual width.
    pub hidden: usize,
    /// MLP width.
    pub intermediate: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Training window in tokens (also the model's context).
    pub seq_len: usize,
    /// Standard deviation of the initial weights.
    pub init_std: f64,
    /// Share of windows held out for validation.
    pub val_fraction: f64,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        PretrainConfig {
            vocab_size: 1024,
            hidden: 128,
            intermediate: 384,
            layers: 4,
            heads: 4,
            kv_heads: 2,
            seq_len: 128,
            init_std: 0.02,
            val_fraction: 0.1,
        }
    }
}

/// Pre-trains a model on `docs` and writes it (Hugging Face layout) into `out`.
pub fn pretrain(
    docs: &[String],
    cfg: &PretrainConfig,
    train_cfg: &TrainConfig,
    out: &Path,
    resume: bool,
    on_event: &mut dyn FnMut(&Event) -> Result<()>,
) -> Result<TrainReport> {
    if docs.iter().all(|d| d.trim().is_empty()) {
        return Err(EngineError::Data("the pre-training corpus is empty".into()));
    }
    let json = train_byte_level_bpe(docs.iter().map(String::as_str), cfg.vocab_size, &SPECIALS)?;
    let tok = Tokenizer::from_json(&json, Some(0), &[0, 2], false)?;
    let model_cfg: LlamaConfig = serde_json::from_value(serde_json::json!({
        "model_type": "llama",
        "hidden_size": cfg.hidden,
        "intermediate_size": cfg.intermediate,
        "num_hidden_layers": cfg.layers,
        "num_attention_heads": cfg.heads,
        "num_key_value_heads": cfg.kv_heads,
        "vocab_size": tok.vocab_size(),
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": cfg.seq_len.max(64),
        "tie_word_embeddings": true,
        "bos_token_id": 0,
        "eos_token_id": 0,
    }))
    .expect("valid config");
    model_cfg.validate(Path::new("pretrain config"))?;
    let mut weights = Weights::random(train_cfg.seed, cfg.init_std, &Device::Cpu);
    let model = Llama::new(&model_cfg, &mut weights)?;
    let vars = weights.take_vars();
    let windows = data::pack_texts(docs, &tok, cfg.seq_len)?;
    if windows.len() < 2 {
        return Err(EngineError::Data(format!(
            "the corpus makes only {} window(s) of {} tokens; give more text or a shorter seq_len",
            windows.len(),
            cfg.seq_len
        )));
    }
    // Every k-th window is held out, so both sets span the whole corpus.
    let k = ((1.0 / cfg.val_fraction.clamp(1e-3, 0.5)).round() as usize).max(2);
    let (mut tr, mut val) = (Vec::new(), Vec::new());
    for (i, w) in windows.into_iter().enumerate() {
        if cfg.val_fraction > 0.0 && i % k == k - 1 {
            val.push(w);
        } else {
            tr.push(w);
        }
    }
    train(
        Run {
            model: &model,
            what: Trainable::Full(&vars),
            train: &tr,
            val: &val,
            cfg: train_cfg,
            out,
            resume,
        },
        &mut |dir| export::save_hf(dir, &model, &tok, Some(CHATML)),
        on_event,
    )
}
