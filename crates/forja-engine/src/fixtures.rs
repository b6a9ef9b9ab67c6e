//! Test fixtures (feature `fixtures`): tiny Llama-family models with
//! random weights, written in Hugging Face layout and as GGUF files (with
//! llama.cpp's q/k row interleaving), and a byte-level BPE tokenizer trained
//! on the spot, and LoRA adapters with random factors. Nothing is
//! downloaded; other crates' tests use these too.
//! Panics on I/O errors: this is test code.
#![allow(missing_docs, clippy::unwrap_used)]

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const CORPUS: &[&str] = &[
    "the quick brown fox jumps over the lazy dog",
    "a council meeting approved the budget with 12 votes in favour",
    "el pleno del ayuntamiento aprobó la propuesta por unanimidad",
    "minutes of the session held on 3 march 2024 at 10:00",
    "forja serves a model, captures corrections and learns from them",
    "numbers like 1234567 and 3.14159 are split into digits",
    "ñandú, café, naïve: unicode text must round-trip",
    "hello world, hello forja, hello tokenizer",
];

/// A byte-level BPE `tokenizer.json` (specials are ids 0, 1, 2).
pub fn tokenizer_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let texts = CORPUS.iter().cycle().take(CORPUS.len() * 4);
        crate::train_byte_level_bpe(texts, 384, &["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
            .expect("BPE training")
    })
}

/// Skips a test that needs something `make setup-test` installs: prints
/// `why` and returns, or panics with it when `FORJA_REQUIRE_TESTDATA` is
/// set (CI, where a missing piece is a failure, not a skip).
pub fn skip_unless_required(why: &str) {
    assert!(std::env::var_os("FORJA_REQUIRE_TESTDATA").is_none(), "{why} (run `make setup-test`)");
    eprintln!("skipping: {why} (make setup-test installs it)");
}

/// Where the built-in model `name` (`default`, `minilm`) is installed, or
/// `None` after [`skip_unless_required`] when it is not.
pub fn installed_model(name: &str) -> Option<std::path::PathBuf> {
    let m = forja_core::catalog::find(name).expect("a built-in model name");
    let path = m.entry_in(&forja_core::catalog::models_dir());
    if path.exists() {
        return Some(path);
    }
    skip_unless_required(&format!(
        "{} is missing: run `forja models install {name}`",
        path.display()
    ));
    None
}

pub fn sample_texts() -> &'static [&'static str] {
    CORPUS
}

#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub family: &'static str,
    pub hidden: usize,
    pub inter: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub tie: bool,
    pub window: Option<usize>,
    /// Context window (max positions).
    pub context: usize,
}

impl Spec {
    pub fn llama() -> Self {
        Spec {
            family: "llama",
            hidden: 64,
            inter: 128,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            head_dim: 16,
            tie: true,
            window: None,
            context: 256,
        }
    }
    pub fn qwen2() -> Self {
        Spec { family: "qwen2", tie: false, ..Self::llama() }
    }
    pub fn qwen3() -> Self {
        // Qwen3 sets head_dim independently of hidden / heads.
        Spec { family: "qwen3", head_dim: 32, ..Self::llama() }
    }
    pub fn mistral() -> Self {
        Spec { family: "mistral", tie: false, window: Some(4), ..Self::llama() }
    }
    pub fn vocab(&self) -> usize {
        let v: serde_json::Value = serde_json::from_str(tokenizer_json()).unwrap();
        v["model"]["vocab"].as_object().unwrap().len()
    }
    fn bias(&self) -> bool {
        self.family == "qwen2"
    }
    fn qk_norm(&self) -> bool {
        self.family == "qwen3"
    }
}

/// Deterministic values with mean 0 and standard deviation `std`.
fn values(n: usize, seed: u64, std: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            // Sum of 4 uniforms: roughly normal.
            let mut acc = 0f32;
            for _ in 0..4 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                acc += (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            }
            acc * std * (3.0f32).sqrt()
        })
        .collect()
}

/// Random weights under Hugging Face names.
pub fn weights(spec: &Spec, seed: u64) -> HashMap<String, Tensor> {
    let dev = Device::Cpu;
    let mut w = HashMap::new();
    let mut k = seed;
    let mut put = |name: String, shape: &[usize], std: f32, mean: f32| {
        k += 1;
        let n = shape.iter().product();
        let v: Vec<f32> = values(n, k, std).into_iter().map(|x| x + mean).collect();
        w.insert(name, Tensor::from_vec(v, shape, &dev).unwrap());
    };
    let (h, hd, v) = (spec.hidden, spec.head_dim, spec.vocab());
    put("model.embed_tokens.weight".into(), &[v, h], 1.0, 0.0);
    put("model.norm.weight".into(), &[h], 0.1, 1.0);
    if !spec.tie {
        put("lm_head.weight".into(), &[v, h], 1.0 / (h as f32).sqrt(), 0.0);
    }
    for l in 0..spec.layers {
        let p = format!("model.layers.{l}");
        let lin = |i: usize| 1.0 / (i as f32).sqrt();
        put(format!("{p}.input_layernorm.weight"), &[h], 0.1, 1.0);
        put(format!("{p}.post_attention_layernorm.weight"), &[h], 0.1, 1.0);
        put(format!("{p}.self_attn.q_proj.weight"), &[spec.heads * hd, h], lin(h), 0.0);
        put(format!("{p}.self_attn.k_proj.weight"), &[spec.kv_heads * hd, h], lin(h), 0.0);
        put(format!("{p}.self_attn.v_proj.weight"), &[spec.kv_heads * hd, h], lin(h), 0.0);
        put(
            format!("{p}.self_attn.o_proj.weight"),
            &[h, spec.heads * hd],
            lin(spec.heads * hd),
            0.0,
        );
        put(format!("{p}.mlp.gate_proj.weight"), &[spec.inter, h], lin(h), 0.0);
        put(format!("{p}.mlp.up_proj.weight"), &[spec.inter, h], lin(h), 0.0);
        put(format!("{p}.mlp.down_proj.weight"), &[h, spec.inter], lin(spec.inter), 0.0);
        if spec.bias() {
            put(format!("{p}.self_attn.q_proj.bias"), &[spec.heads * hd], 0.1, 0.0);
            put(format!("{p}.self_attn.k_proj.bias"), &[spec.kv_heads * hd], 0.1, 0.0);
            put(format!("{p}.self_attn.v_proj.bias"), &[spec.kv_heads * hd], 0.1, 0.0);
        }
        if spec.qk_norm() {
            put(format!("{p}.self_attn.q_norm.weight"), &[hd], 0.1, 1.0);
            put(format!("{p}.self_attn.k_norm.weight"), &[hd], 0.1, 1.0);
        }
    }
    w
}

/// Writes a Hugging Face model directory.
pub fn write_hf(dir: &Path, spec: &Spec, w: &HashMap<String, Tensor>) {
    std::fs::create_dir_all(dir).unwrap();
    let mut cfg = serde_json::json!({
        "model_type": spec.family,
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": spec.hidden,
        "intermediate_size": spec.inter,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "head_dim": spec.head_dim,
        "vocab_size": spec.vocab(),
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": spec.context,
        "tie_word_embeddings": spec.tie,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    });
    if let Some(win) = spec.window {
        cfg["sliding_window"] = win.into();
    }
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    candle_core::safetensors::save(w, dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json()).unwrap();
    let tok_cfg = serde_json::json!({
        "chat_template": CHATML, "bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "add_bos_token": false,
    });
    std::fs::write(dir.join("tokenizer_config.json"), tok_cfg.to_string()).unwrap();
}

/// llama.cpp's converter interleaves the rows of q/k for its rotary kernel.
fn interleave_rows(t: &Tensor, heads: usize) -> Tensor {
    let (rows, cols) = t.dims2().unwrap();
    let hd = rows / heads;
    let v: Vec<Vec<f32>> = t.to_vec2().unwrap();
    let mut out = vec![0f32; rows * cols];
    for h in 0..heads {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let dst = h * hd + 2 * i + j;
                let src = h * hd + j * hd / 2 + i;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&v[src]);
            }
        }
    }
    Tensor::from_vec(out, (rows, cols), &Device::Cpu).unwrap()
}

/// Writes the same model as a GGUF file, matrices stored as `dtype`.
pub fn write_gguf(path: &Path, spec: &Spec, w: &HashMap<String, Tensor>, dtype: GgmlDType) {
    let arch = match spec.family {
        "mistral" => "llama",
        f => f,
    };
    let tok: serde_json::Value = serde_json::from_str(tokenizer_json()).unwrap();
    let vocab = tok["model"]["vocab"].as_object().unwrap();
    let mut tokens = vec![String::new(); vocab.len()];
    for (t, id) in vocab {
        tokens[id.as_u64().unwrap() as usize] = t.clone();
    }
    let merges: Vec<Value> = tok["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(p) => {
                Value::String(format!("{} {}", p[0].as_str().unwrap(), p[1].as_str().unwrap()))
            }
            _ => panic!("merge"),
        })
        .collect();
    let types: Vec<Value> =
        (0..tokens.len()).map(|i| Value::I32(if i < 3 { 3 } else { 1 })).collect();
    let k = |s: &str| format!("{arch}.{s}");
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("general.name".into(), Value::String(format!("tiny-{}", spec.family))),
        (k("block_count"), Value::U32(spec.layers as u32)),
        (k("context_length"), Value::U32(spec.context as u32)),
        (k("embedding_length"), Value::U32(spec.hidden as u32)),
        (k("feed_forward_length"), Value::U32(spec.inter as u32)),
        (k("attention.head_count"), Value::U32(spec.heads as u32)),
        (k("attention.head_count_kv"), Value::U32(spec.kv_heads as u32)),
        (k("attention.key_length"), Value::U32(spec.head_dim as u32)),
        (k("rope.dimension_count"), Value::U32(spec.head_dim as u32)),
        (k("rope.freq_base"), Value::F32(10000.0)),
        (k("attention.layer_norm_rms_epsilon"), Value::F32(1e-5)),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("default".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        ("tokenizer.ggml.token_type".into(), Value::Array(types)),
        ("tokenizer.ggml.merges".into(), Value::Array(merges)),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(0)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
        ("tokenizer.chat_template".into(), Value::String(CHATML.into())),
    ];
    if let Some(win) = spec.window {
        meta.push((k("attention.sliding_window"), Value::U32(win as u32)));
    }
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (name, t) in w {
        let g = crate::gguf::hf_to_gguf_name(name).unwrap();
        let mut t = t.clone();
        if arch == "llama" && name.contains("q_proj.weight") {
            t = interleave_rows(&t, spec.heads);
        }
        if arch == "llama" && name.contains("k_proj.weight") {
            t = interleave_rows(&t, spec.kv_heads);
        }
        let qt = if t.rank() == 2 {
            QTensor::quantize(&t, dtype)
        } else {
            QTensor::quantize(&t, GgmlDType::F32)
        };
        tensors.push((g, qt.unwrap()));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut f = std::fs::File::create(path).unwrap();
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut f, &meta_refs, &t_refs).unwrap();
}

/// `s · B A` of one module of `adapter` as a flat row-major vector (zeros
/// when the module is not adapted): the dense update tests compare with.
pub fn dense_update(
    model: &crate::models::llama::Llama,
    adapter: &crate::lora::Adapter,
    layer: usize,
    module: crate::lora::Module,
) -> Vec<f32> {
    match adapter.pair(layer, module) {
        Some(p) => {
            (p.b.matmul(&p.a).unwrap() * p.scale).unwrap().flatten_all().unwrap().to_vec1().unwrap()
        }
        None => {
            let lin = model.linear(layer, module);
            vec![0.0; lin.in_dim() * lin.out_dim()]
        }
    }
}

/// A frozen LoRA adapter of rank `r` over `modules`, shaped for `model`,
/// with `A` and `B` uniform in ±0.25 from an LCG seeded with `seed` (unlike
/// [`crate::lora::Adapter::new`], whose `B` starts at zero).
pub fn random_adapter(
    model: &crate::models::llama::Llama,
    r: usize,
    alpha: f64,
    modules: &[crate::lora::Module],
    seed: u64,
) -> crate::lora::Adapter {
    use crate::lora::{Adapter, LoraConfig, LoraPair, Module};
    let mut state = seed;
    let mut tensor = |rows: usize, cols: usize| {
        let v: Vec<f32> = (0..rows * cols)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5) * 0.5
            })
            .collect();
        Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
    };
    let cfg = LoraConfig { r, alpha, dropout: 0.0, targets: vec![], rslora: false };
    let scale = cfg.scale_for(r, alpha);
    let pairs = (0..model.config().num_hidden_layers)
        .map(|layer| {
            Module::ALL.map(|m| {
                let lin = model.linear(layer, m);
                modules.contains(&m).then(|| LoraPair {
                    a: tensor(r, lin.in_dim()),
                    b: tensor(lin.out_dim(), r),
                    scale,
                })
            })
        })
        .collect();
    Adapter::from_pairs(cfg, "tiny", pairs).unwrap()
}
