//! The engine facade: load a model from a local path (GGUF file or Hugging
//! Face directory) with its tokenizer and chat template, and generate.
//! All tensor work runs on the engine's own spinning thread pool.

use crate::attention::Slot;
use crate::chat_template::ChatTemplate;
use crate::generate::{self, Completion, OnText, Request, Timings};
use crate::gguf::GgufFile;
use crate::lora::Adapter;
use crate::models::llama::{Batch, Family, Llama, LlamaConfig, Lora};
use crate::parallel::SpinPool;
use crate::tokenizer::Tokenizer;
use crate::weights::Weights;
use crate::{device, EngineError, Result};
use forja_core::{ChatMessage, GenerationParams};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Worker threads for tensor work; `None` uses every core.
    pub threads: Option<usize>,
    /// Context window (prompt + generated tokens); `None` uses the model's maximum.
    pub ctx_size: Option<usize>,
    /// A `tokenizer.json` to use instead of the model's own.
    pub tokenizer: Option<PathBuf>,
    /// Most tokens in one prefill pass.
    pub ubatch: usize,
    /// Dequantize GGUF weights to dense f32 at load (the unquantized
    /// reference; training uses it).
    pub dequantize: bool,
    /// Quantize float weights (safetensors, F16/F32 GGUF tensors) to this
    /// block format at load: the matrices and the embedding table. Weights
    /// already quantized in the file keep their format; a matrix whose row
    /// is not a multiple of the 32-weight block stays dense. Ignored with
    /// `dequantize` and off the CPU.
    pub quantize: Option<crate::quant::QType>,
    /// What the CPU KV cache stores: f16 (the default, half the bytes) or
    /// f32 (exact).
    pub kv_type: crate::KvType,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            device: "cpu".into(),
            threads: None,
            ctx_size: None,
            tokenizer: None,
            ubatch: 512,
            dequantize: false,
            quantize: None,
            kv_type: crate::KvType::default(),
        }
    }
}

/// What is being loaded, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadProgress {
    /// Reading headers, config and tokenizer.
    Metadata,
    /// Building layer `done` of `total`.
    Layers {
        /// Layers built.
        done: usize,
        /// Layers in the model.
        total: usize,
    },
    /// Finished.
    Done,
}

/// On-disk format of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    /// A GGUF file.
    Gguf,
    /// A Hugging Face directory with safetensors weights.
    HfSafetensors,
}

/// Facts about a loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The path it was loaded from.
    pub path: PathBuf,
    /// Its format.
    pub format: ModelFormat,
    /// A display name (`general.name`, or the directory name).
    pub name: String,
    /// The architecture family.
    pub family: Family,
    /// The full config.
    pub config: LlamaConfig,
}

/// A loaded model, ready to generate.
pub struct Engine {
    pub(crate) model: Llama,
    pub(crate) tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    pool: SpinPool,
    info: ModelInfo,
    pub(crate) ctx: usize,
    pub(crate) ubatch: usize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Engine({})", self.info.path.display())
    }
}

impl Engine {
    /// Loads the model at `path`.
    pub fn load(
        path: &Path,
        opts: &LoadOptions,
        progress: &mut (dyn FnMut(LoadProgress) + Send),
    ) -> Result<Self> {
        if !path.exists() {
            return Err(EngineError::ModelNotFound { path: path.to_path_buf() });
        }
        let dev = device::open(&opts.device)?;
        crate::isa::check_env()
            .map_err(|reason| EngineError::Device { device: "cpu".into(), reason })?;
        let threads = opts
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let pool = SpinPool::new(threads)
            .map_err(|e| EngineError::Device { device: "cpu".into(), reason: e.to_string() })?;
        progress(LoadProgress::Metadata);
        let mut layer_progress = |done, total| progress(LoadProgress::Layers { done, total });
        let quantize = opts.quantize.filter(|_| !opts.dequantize);
        let (mut model, mut tokenizer, template, info) = pool.install(|| {
            if path.is_dir() {
                load_hf(path, &dev, quantize, &mut layer_progress)
            } else {
                load_gguf(path, &dev, opts.dequantize, quantize, &mut layer_progress)
            }
        })?;
        if let Some(t) = &opts.tokenizer {
            tokenizer = Tokenizer::from_file(
                t,
                tokenizer.bos(),
                tokenizer.eog_ids(),
                tokenizer.adds_bos(),
            )?;
        }
        model.set_kv_type(opts.kv_type);
        progress(LoadProgress::Done);
        let model_max = model.config().max_position_embeddings;
        let ctx = opts.ctx_size.unwrap_or(model_max);
        if ctx == 0 || ctx > model_max {
            return Err(EngineError::field(
                path,
                "ctx_size",
                format!("{ctx} is out of range: this model supports 1..={model_max} tokens"),
            ));
        }
        Ok(Engine { model, tokenizer, template, pool, info, ctx, ubatch: opts.ubatch.max(1) })
    }

    /// Model facts.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The model itself.
    pub fn model(&self) -> &Llama {
        &self.model
    }

    /// The model, mutably (merging adapters into its weights).
    pub fn model_mut(&mut self) -> &mut Llama {
        &mut self.model
    }

    /// The chat template's source, if the model has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.template.as_ref().map(ChatTemplate::source)
    }

    /// Runs `f` on the engine's thread pool (training and other bulk work
    /// that should use the same threads as generation).
    pub fn install<R>(&self, f: impl FnOnce() -> R) -> R {
        self.pool.install(f)
    }

    /// Saves the model (with any merged adapter) as a Hugging Face directory.
    pub fn save_hf(&self, dir: &Path) -> Result<()> {
        self.pool.install(|| {
            crate::export::save_hf(dir, &self.model, &self.tokenizer, self.chat_template())
        })
    }

    /// The context window in tokens.
    pub fn ctx_size(&self) -> usize {
        self.ctx
    }

    /// Threads in the engine's pool.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Whether the model has a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.template.is_some()
    }

    /// Renders `messages` with the model's chat template.
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.template
            .as_ref()
            .ok_or(EngineError::NoChatTemplate)?
            .render(messages, add_generation_prompt)
    }

    /// Runs several requests together (batched prefill and decode), with
    /// `adapter` applied if given.
    pub fn generate_batch(
        &self,
        reqs: &[Request],
        adapter: Option<&Adapter>,
        on_text: OnText<'_>,
    ) -> Result<(Vec<Completion>, Timings)> {
        self.pool.install(|| {
            let lora = Lora::with(adapter);
            generate::run(&self.model, &self.tokenizer, reqs, self.ctx, self.ubatch, lora, on_text)
        })
    }

    /// Continues `prompt` as raw text (no chat template; BOS added if the
    /// model wants one). `on_text` receives text as it is decided.
    pub fn generate(
        &self,
        prompt: &str,
        params: &GenerationParams,
        adapter: Option<&Adapter>,
        mut on_text: impl FnMut(&str) -> bool + Send,
    ) -> Result<(Completion, Timings)> {
        let prompt = self.tokenizer.encode(prompt, true)?;
        self.run_one(prompt, params, adapter, &mut on_text)
    }

    /// Answers a conversation with the chat template.
    pub fn chat(
        &self,
        messages: &[ChatMessage],
        params: &GenerationParams,
        adapter: Option<&Adapter>,
        mut on_text: impl FnMut(&str) -> bool + Send,
    ) -> Result<(Completion, Timings)> {
        let text = self.render_chat(messages, true)?;
        let prompt = self.tokenizer.encode(&text, false)?;
        self.run_one(prompt, params, adapter, &mut on_text)
    }

    fn run_one(
        &self,
        prompt: Vec<u32>,
        params: &GenerationParams,
        adapter: Option<&Adapter>,
        on_text: &mut (dyn FnMut(&str) -> bool + Send),
    ) -> Result<(Completion, Timings)> {
        let req = Request { prompt, params: params.clone() };
        let mut cb = |_: usize, t: &str| on_text(t);
        let (mut out, timings) =
            self.generate_batch(std::slice::from_ref(&req), adapter, &mut cb)?;
        Ok((out.pop().expect("one request, one completion"), timings))
    }

    /// Loads a PEFT LoRA adapter for this engine's model.
    pub fn load_adapter(&self, dir: &Path) -> Result<Adapter> {
        self.pool.install(|| Adapter::load(dir, &self.model))
    }

    /// Logits of the base model after the last of `tokens`, from a fresh
    /// cache (for tests and evaluation).
    pub fn logits(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        let last = tokens.len().saturating_sub(1);
        Ok(self.logits_at(tokens, &[last], None)?.pop().unwrap_or_default())
    }

    /// Logits after each of the given positions of `tokens` (one forward
    /// pass from a fresh cache): what scoring a reference continuation needs.
    pub fn logits_at(
        &self,
        tokens: &[u32],
        positions: &[usize],
        adapter: Option<&Adapter>,
    ) -> Result<Vec<Vec<f32>>> {
        if tokens.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if tokens.len() > self.ctx {
            let model_max = self.model.config().max_position_embeddings;
            return Err(EngineError::PromptTooLong {
                prompt_tokens: tokens.len(),
                context: self.ctx,
                model_max,
            });
        }
        assert!(positions.iter().all(|&p| p < tokens.len()), "logits_at: position out of range");
        self.pool.install(|| {
            let mut cache = self.model.new_cache();
            let slots: Vec<Slot> = (0..tokens.len()).map(|pos| Slot { seq: 0, pos }).collect();
            let mut rows = Vec::new();
            for chunk in (0..tokens.len()).collect::<Vec<_>>().chunks(self.ubatch) {
                let (lo, hi) = (chunk[0], chunk[chunk.len() - 1] + 1);
                let wanted: Vec<usize> =
                    positions.iter().filter(|&&p| p >= lo && p < hi).map(|&p| p - lo).collect();
                let batch =
                    Batch { tokens: &tokens[lo..hi], slots: &slots[lo..hi], logits_rows: &wanted };
                let l = self.model.forward(&batch, &mut [&mut cache], Lora::with(adapter))?;
                if !wanted.is_empty() {
                    rows.extend(l.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?);
                }
            }
            // Rows come out in chunk order; put them in the order asked for.
            let mut order: Vec<usize> = (0..positions.len()).collect();
            order.sort_by_key(|&i| positions[i]);
            let mut out = vec![Vec::new(); positions.len()];
            for (row, i) in rows.into_iter().zip(order) {
                out[i] = row;
            }
            Ok(out)
        })
    }
}

type Loaded = (Llama, Tokenizer, Option<ChatTemplate>, ModelInfo);

fn load_gguf(
    path: &Path,
    dev: &candle_core::Device,
    dequantize: bool,
    quantize: Option<crate::quant::QType>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Loaded> {
    let mut magic = [0u8; 4];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
        f.read_exact(&mut magic)
            .map_err(|_| EngineError::malformed(path, "file is too short to be a model"))?;
    }
    if &magic != b"GGUF" {
        let hint = if path.extension().is_some_and(|e| e == "safetensors" || e == "json") {
            "; for a Hugging Face model pass the directory that holds config.json"
        } else {
            ""
        };
        return Err(EngineError::malformed(path, format!("not a GGUF file (no GGUF magic){hint}")));
    }
    let file = GgufFile::open(path)?;
    let cfg = file.llama_config()?;
    let tokenizer = Tokenizer::from_gguf(&file)?;
    let template = match file.get_str("tokenizer.chat_template")? {
        Some(src) => Some(ChatTemplate::new(
            src,
            &tokenizer.bos().and_then(|b| tokenizer.token(b)).unwrap_or_default(),
            &tokenizer.eos().and_then(|e| tokenizer.token(e)).unwrap_or_default(),
        )?),
        None => None,
    };
    let name = file.get_str("general.name")?.map(str::to_string).unwrap_or_else(|| file_stem(path));
    let mut weights = Weights::from_gguf(file, cfg.num_attention_heads, cfg.kv_heads(), dev)?
        .dequantized(dequantize)
        .quantized_to(quantize)
        .with_progress(progress);
    let model = Llama::new(&cfg, &mut weights)?;
    let info = ModelInfo {
        path: path.into(),
        format: ModelFormat::Gguf,
        name,
        family: cfg.family(),
        config: cfg,
    };
    Ok((model, tokenizer, template, info))
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    match std::fs::read_to_string(path) {
        Ok(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| EngineError::malformed(path, format!("invalid JSON: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EngineError::io(path, e)),
    }
}

fn ids(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_u64().map(|n| n as u32)).collect(),
        _ => Vec::new(),
    }
}

/// `bos_token` / `eos_token` in tokenizer_config.json: a string or `{content}`.
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

fn load_hf(
    dir: &Path,
    dev: &candle_core::Device,
    quantize: Option<crate::quant::QType>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Loaded> {
    let cfg_path = dir.join("config.json");
    let raw = read_json(&cfg_path)?.ok_or_else(|| {
        EngineError::malformed(dir, "no config.json: a Hugging Face model directory needs config.json, *.safetensors and tokenizer.json")
    })?;
    let cfg: LlamaConfig = serde_json::from_value(raw.clone()).map_err(|e| {
        EngineError::malformed(&cfg_path, format!("not a Llama-family config: {e}"))
    })?;
    cfg.validate(&cfg_path)?;
    let files = safetensors_files(dir)?;
    let tok_cfg = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
    let gen_cfg = read_json(&dir.join("generation_config.json"))?.unwrap_or(Value::Null);
    let tok_path = dir.join("tokenizer.json");
    if !tok_path.is_file() {
        return Err(EngineError::Tokenizer {
            source_desc: tok_path.display().to_string(),
            reason: "tokenizer.json is missing; copy it next to config.json or pass --tokenizer"
                .into(),
        });
    }
    let probe = Tokenizer::from_file(&tok_path, None, &[], false)?;
    let bos_text = token_text(tok_cfg.get("bos_token"));
    let eos_text = token_text(tok_cfg.get("eos_token"));
    let bos = bos_text
        .as_deref()
        .and_then(|t| probe.token_id(t))
        .or_else(|| ids(raw.get("bos_token_id")).first().copied());
    let mut eos = ids(gen_cfg.get("eos_token_id"));
    eos.extend(ids(raw.get("eos_token_id")));
    eos.extend(eos_text.as_deref().and_then(|t| probe.token_id(t)));
    let add_bos = tok_cfg.get("add_bos_token").and_then(Value::as_bool).unwrap_or(false);
    let tokenizer = Tokenizer::from_file(&tok_path, bos, &eos, add_bos)?;
    let template_src = match std::fs::read_to_string(dir.join("chat_template.jinja")) {
        Ok(s) => Some(s),
        Err(_) => match tok_cfg.get("chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
            _ => None,
        },
    };
    let template = match template_src {
        Some(src) => Some(ChatTemplate::new(
            &src,
            bos_text.as_deref().unwrap_or(""),
            eos_text.as_deref().unwrap_or(""),
        )?),
        None => None,
    };
    let mut weights =
        Weights::from_safetensors(dir, &files, dev)?.quantized_to(quantize).with_progress(progress);
    let model = Llama::new(&cfg, &mut weights)?;
    let name =
        dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let info = ModelInfo {
        path: dir.into(),
        format: ModelFormat::HfSafetensors,
        name,
        family: cfg.family(),
        config: cfg,
    };
    Ok((model, tokenizer, template, info))
}

fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if let Some(idx) = read_json(&index)? {
        let map = idx.get("weight_map").and_then(Value::as_object).ok_or_else(|| {
            EngineError::field(&index, "weight_map", "is missing or not an object")
        })?;
        let mut files: Vec<String> =
            map.values().filter_map(|v| v.as_str().map(str::to_string)).collect();
        files.sort();
        files.dedup();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| EngineError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(EngineError::malformed(
            dir,
            "no *.safetensors weights (PyTorch .bin checkpoints are not supported; convert them to safetensors)",
        ));
    }
    Ok(files)
}

fn file_stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into())
}
