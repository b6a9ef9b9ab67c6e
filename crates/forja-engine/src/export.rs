//! Writing a model as a Hugging Face directory (`config.json`,
//! `model.safetensors`, `tokenizer.json`, `tokenizer_config.json`,
//! `generation_config.json`) that forja and `transformers` both load:
//! merged adapters (`forja merge`) and models pre-trained from scratch.

use crate::models::llama::Llama;
use crate::tokenizer::Tokenizer;
use crate::{EngineError, Result};
use serde_json::json;
use std::path::Path;

/// Saves `model` with its tokenizer and chat template into `dir`.
pub fn save_hf(
    dir: &Path,
    model: &Llama,
    tokenizer: &Tokenizer,
    chat_template: Option<&str>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| EngineError::io(&p, e))
    };
    let cfg = model.config();
    let mut config = serde_json::to_value(cfg).expect("config serializes");
    let arch = match cfg.family() {
        crate::models::llama::Family::Llama => "LlamaForCausalLM",
        crate::models::llama::Family::Mistral => "MistralForCausalLM",
        crate::models::llama::Family::Qwen2 => "Qwen2ForCausalLM",
        crate::models::llama::Family::Qwen3 => "Qwen3ForCausalLM",
    };
    let obj = config.as_object_mut().expect("config is an object");
    obj.retain(|_, v| !v.is_null());
    obj.insert("architectures".into(), json!([arch]));
    obj.insert("hidden_act".into(), json!("silu"));
    obj.insert("torch_dtype".into(), json!("float32"));
    obj.insert("head_dim".into(), json!(cfg.head_dim()));
    obj.insert("num_key_value_heads".into(), json!(cfg.kv_heads()));
    obj.insert("attention_bias".into(), json!(cfg.qkv_bias()));
    obj.insert("mlp_bias".into(), json!(false));
    obj.insert("use_cache".into(), json!(true));
    if let Some(b) = tokenizer.bos() {
        obj.insert("bos_token_id".into(), json!(b));
    }
    if let Some(e) = tokenizer.eos() {
        obj.insert("eos_token_id".into(), json!(e));
    }
    write("config.json", serde_json::to_string_pretty(&config).expect("json"))?;
    crate::safetensors_io::save(&model.hf_tensors()?, &dir.join("model.safetensors"))?;
    write("tokenizer.json", tokenizer.to_json()?)?;
    let tok = |id: Option<u32>| id.and_then(|i| tokenizer.token(i));
    let mut tok_cfg = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": tok(tokenizer.bos()),
        "eos_token": tok(tokenizer.eos()),
        "add_bos_token": tokenizer.adds_bos(),
        "clean_up_tokenization_spaces": false,
        "model_max_length": cfg.max_position_embeddings,
    });
    if let Some(t) = chat_template {
        tok_cfg["chat_template"] = json!(t);
    }
    write("tokenizer_config.json", serde_json::to_string_pretty(&tok_cfg).expect("json"))?;
    let gen = json!({
        "bos_token_id": tokenizer.bos(),
        "eos_token_id": tokenizer.eog_ids(),
    });
    write("generation_config.json", serde_json::to_string_pretty(&gen).expect("json"))
}
