//! Sentence embeddings from a sentence-transformers model directory
//! (all-MiniLM-L6-v2 and other BERT models): [`Embedder`] loads the
//! directory's modules (BERT encoder, pooling, optional L2 normalisation)
//! and embeds batches of texts; [`cosine`] compares the vectors.
//!
//! Results match sentence-transformers' `SentenceTransformer.encode` to
//! about 1e-6 per component (`tests/it/minilm.rs`): texts are truncated to the
//! directory's `max_seq_length` word pieces, batches are padded to their
//! longest text, and padding is masked both in attention and in pooling, so
//! a text's vector does not depend on the batch it is in.
//!
//! ```no_run
//! use forja_engine::embed::{cosine, Embedder};
//! # fn main() -> forja_engine::Result<()> {
//! let embedder = Embedder::load("models/all-minilm-l6-v2".as_ref())?;
//! let v = embedder.embed(&["A man plays the guitar.", "Un hombre toca la guitarra."])?;
//! println!("{} dims, similarity {:.3}", embedder.dim(), cosine(&v[0], &v[1]));
//! # Ok(()) }
//! ```

use crate::error::candle_text;
use crate::models::bert::{self, Bert};
use crate::{EngineError, Result};
use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Most texts per forward pass; each batch is padded to its longest text.
const BATCH: usize = 32;

/// sentence-transformers module types, as written in `modules.json`.
const TRANSFORMER: &str = "sentence_transformers.models.Transformer";
const POOLING: &str = "sentence_transformers.models.Pooling";
const NORMALIZE: &str = "sentence_transformers.models.Normalize";

/// How token states become one sentence vector (sentence-transformers'
/// `Pooling` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean of the real (unpadded) tokens' states, `[CLS]` and `[SEP]`
    /// included (`pooling_mode_mean_tokens`).
    Mean,
    /// The state of the first token, `[CLS]` (`pooling_mode_cls_token`).
    Cls,
}

/// A sentence embedder: a BERT encoder, its tokenizer and the pooling and
/// normalisation its sentence-transformers directory asks for. CPU, f32.
pub struct Embedder {
    model: Bert,
    tokenizer: tokenizers::Tokenizer,
    pooling: Pooling,
    normalize: bool,
    lowercase: bool,
    max_seq_length: usize,
    dir: PathBuf,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("dir", &self.dir)
            .field("model", &self.model)
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .field("max_seq_length", &self.max_seq_length)
            .finish()
    }
}

/// One entry of `modules.json`.
#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

/// `sentence_bert_config.json`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
    do_lower_case: bool,
}

impl Embedder {
    /// Loads a sentence-transformers directory: `config.json` (a BERT
    /// config), `model.safetensors` (tensor names with or without a `bert.`
    /// prefix), `tokenizer.json`, `sentence_bert_config.json`
    /// (`max_seq_length`, `do_lower_case`), `modules.json` (a Transformer,
    /// a Pooling and optionally a Normalize module; anything else, such as a
    /// Dense layer, is refused) and the pooling module's `config.json` (mean
    /// or CLS pooling).
    ///
    /// Errors name the file at fault: missing or unreadable files
    /// ([`EngineError::Io`]), invalid JSON or safetensors
    /// ([`EngineError::Malformed`]), bad or unsupported config values
    /// ([`EngineError::Field`]), a model type other than BERT
    /// ([`EngineError::UnsupportedArchitecture`]), absent tensors
    /// ([`EngineError::MissingTensor`]) and tokenizer failures
    /// ([`EngineError::Tokenizer`]).
    pub fn load(dir: &Path) -> Result<Embedder> {
        let meta = std::fs::metadata(dir).map_err(|e| EngineError::io(dir, e))?;
        if !meta.is_dir() {
            return Err(EngineError::malformed(
                dir,
                "is not a directory: an embedding model is a sentence-transformers directory \
                 (config.json, model.safetensors, tokenizer.json, modules.json, ...)",
            ));
        }

        // The encoder's config.
        let config_path = dir.join("config.json");
        let raw: Value = read_json(&config_path)?;
        if let Some(arch) = raw.get("model_type").and_then(Value::as_str) {
            if arch != "bert" {
                return Err(EngineError::UnsupportedArchitecture {
                    path: config_path,
                    arch: arch.to_string(),
                    supported: "bert",
                });
            }
        }
        let cfg: bert::Config = serde_json::from_value(raw)
            .map_err(|e| EngineError::malformed(&config_path, format!("not a BERT config: {e}")))?;
        cfg.validate(&config_path)?;

        // The module pipeline.
        let modules_path = dir.join("modules.json");
        let modules: Vec<ModuleEntry> = read_json(&modules_path)?;
        let (pooling_dir, normalize) = pipeline(&modules, &modules_path)?;

        let st_path = dir.join("sentence_bert_config.json");
        let st: SentenceBertConfig = read_json(&st_path)?;
        let max_seq_length = match st.max_seq_length {
            Some(0) => {
                return Err(EngineError::field(
                    &st_path,
                    "max_seq_length",
                    "must be a positive integer",
                ))
            }
            Some(n) => n.min(cfg.max_position_embeddings),
            None => cfg.max_position_embeddings,
        };

        let pooling_path = dir.join(pooling_dir).join("config.json");
        let pooling = pooling_mode(&read_json(&pooling_path)?, &pooling_path, cfg.hidden_size)?;

        // The tokenizer: truncate like sentence-transformers, pad ourselves.
        let tok_path = dir.join("tokenizer.json");
        if let Err(e) = std::fs::metadata(&tok_path) {
            return Err(EngineError::io(tok_path, e));
        }
        let tok_err = |reason: String| EngineError::Tokenizer {
            source_desc: tok_path.display().to_string(),
            reason,
        };
        let mut tokenizer =
            tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| tok_err(e.to_string()))?;
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: max_seq_length,
                ..Default::default()
            }))
            .map_err(|e| tok_err(e.to_string()))?;
        tokenizer.with_padding(None);

        let model = load_bert(&cfg, &dir.join("model.safetensors"))?;
        Ok(Embedder {
            model,
            tokenizer,
            pooling,
            normalize,
            lowercase: st.do_lower_case,
            max_seq_length,
            dir: dir.to_path_buf(),
        })
    }

    /// Width of the embeddings.
    pub fn dim(&self) -> usize {
        self.model.hidden_size()
    }

    /// Word pieces kept per text (special tokens included); longer texts
    /// are truncated, as sentence-transformers does.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// The pooling the model directory asks for.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Whether vectors are L2-normalised (a Normalize module is listed).
    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// The model's name (its directory's name).
    pub fn name(&self) -> String {
        self.dir.file_name().map_or_else(|| "embedder".into(), |n| n.to_string_lossy().into_owned())
    }

    /// Tokens `text` is embedded from (special tokens included, truncated
    /// to [`Embedder::max_seq_length`] as embedding truncates).
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        let text = if self.lowercase { text.to_lowercase() } else { text.to_string() };
        let enc = self.tokenizer.encode(text, true).map_err(|e| EngineError::Tokenizer {
            source_desc: self.dir.join("tokenizer.json").display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(enc.get_ids().len().min(self.max_seq_length))
    }

    /// Embeds `texts`, one vector of [`Embedder::dim`] floats per text, in
    /// order. Texts are sorted by length and processed in batches of up to
    /// 32 (a batch holds no text shorter than half its longest), each padded
    /// to its longest text; results do not depend on the batching.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut encoded = Vec::with_capacity(texts.len());
        for text in texts {
            let text = if self.lowercase { text.to_lowercase() } else { text.to_string() };
            let enc = self.tokenizer.encode(text, true).map_err(|e| EngineError::Tokenizer {
                source_desc: self.dir.join("tokenizer.json").display().to_string(),
                reason: e.to_string(),
            })?;
            encoded.push((enc.get_ids().to_vec(), enc.get_type_ids().to_vec()));
        }
        // Longest first, so batches hold texts of similar length.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].0.len()));

        let mut out = vec![Vec::new(); texts.len()];
        let mut rest = order.as_slice();
        while !rest.is_empty() {
            // At most BATCH texts, none shorter than half the first (the
            // longest), so padding at most doubles the work.
            let longest = encoded[rest[0]].0.len();
            let n = rest
                .iter()
                .take(BATCH)
                .take_while(|&&i| 2 * encoded[i].0.len() >= longest)
                .count()
                .max(1);
            let (chunk, tail) = rest.split_at(n);
            let batch: Vec<_> = chunk.iter().map(|&i| &encoded[i]).collect();
            for (&i, v) in chunk.iter().zip(self.embed_batch(&batch)?) {
                out[i] = v;
            }
            rest = tail;
        }
        Ok(out)
    }

    /// One forward pass over texts already tokenized, padded to the longest.
    fn embed_batch(&self, batch: &[&(Vec<u32>, Vec<u32>)]) -> Result<Vec<Vec<f32>>> {
        let b = batch.len();
        let seq = batch.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![0u32; b * seq];
        let mut types = vec![0u32; b * seq];
        let mut mask = vec![0f32; b * seq];
        for (row, (tok, tt)) in batch.iter().enumerate() {
            let at = row * seq;
            ids[at..at + tok.len()].copy_from_slice(tok);
            types[at..at + tt.len()].copy_from_slice(tt);
            mask[at..at + tok.len()].fill(1.0);
        }
        let dev = Device::Cpu;
        let ids = Tensor::from_vec(ids, (b, seq), &dev)?;
        let types = Tensor::from_vec(types, (b, seq), &dev)?;
        let mask = Tensor::from_vec(mask, (b, seq), &dev)?;
        let hidden = self.model.forward(&ids, &types, &mask)?;
        let pooled = match self.pooling {
            Pooling::Cls => hidden.i((.., 0))?,
            Pooling::Mean => {
                let m = mask.unsqueeze(2)?;
                let sum = hidden.broadcast_mul(&m)?.sum(1)?;
                let count = mask.sum_keepdim(1)?.clamp(1e-9f32, f32::MAX)?;
                sum.broadcast_div(&count)?
            }
        };
        let pooled = if self.normalize {
            let norm = pooled.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
            pooled.broadcast_div(&norm)?
        } else {
            pooled
        };
        Ok(pooled.to_dtype(DType::F32)?.to_vec2::<f32>()?)
    }
}

/// Cosine similarity of two vectors, in `[-1, 1]`. A zero vector gives 0;
/// vectors of different lengths are not comparable and give NaN.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::NAN;
    }
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    (dot / (na.sqrt() * nb.sqrt())) as f32
}

/// Reads and parses a JSON file, naming it in errors.
fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| EngineError::malformed(path, format!("invalid JSON: {e}")))?;
    serde_json::from_value(value)
        .map_err(|e| EngineError::malformed(path, format!("unexpected content: {e}")))
}

/// Checks the module list: the encoder at the root, one pooling module, an
/// optional Normalize after it. Returns the pooling module's directory and
/// whether to normalise.
fn pipeline<'a>(modules: &'a [ModuleEntry], path: &Path) -> Result<(&'a str, bool)> {
    let bad = |reason: String| EngineError::malformed(path, reason);
    if modules.first().map(|m| m.kind.as_str()) != Some(TRANSFORMER) {
        return Err(bad(format!("the first module must be `{TRANSFORMER}`")));
    }
    let mut pooling = None;
    let mut normalize = false;
    for (i, m) in modules.iter().enumerate() {
        match m.kind.as_str() {
            TRANSFORMER if i == 0 && m.path.is_empty() => {}
            TRANSFORMER => {
                return Err(bad(format!(
                "the Transformer module must come first with path \"\" (found at {i}, path {:?})",
                m.path
            )))
            }
            POOLING if pooling.is_none() && i > 0 => pooling = Some(m.path.as_str()),
            NORMALIZE if pooling.is_some() => normalize = true,
            other => {
                return Err(bad(format!(
                    "module {i} `{other}` is not supported here: forja runs a Transformer, \
                     then a Pooling, then optionally a Normalize module"
                )))
            }
        }
    }
    let pooling = pooling.ok_or_else(|| bad(format!("no `{POOLING}` module is listed")))?;
    if pooling.is_empty() {
        return Err(bad("the Pooling module has an empty path".into()));
    }
    Ok((pooling, normalize))
}

/// Reads the pooling mode of a `1_Pooling/config.json`: exactly one
/// `pooling_mode_*` flag may be set, and it must be mean or CLS.
fn pooling_mode(cfg: &Value, path: &Path, hidden: usize) -> Result<Pooling> {
    let Some(obj) = cfg.as_object() else {
        return Err(EngineError::malformed(path, "expected a JSON object"));
    };
    if let Some(dim) = obj.get("word_embedding_dimension") {
        if dim.as_u64() != Some(hidden as u64) {
            return Err(EngineError::field(
                path,
                "word_embedding_dimension",
                format!("is {dim} but the encoder's hidden_size is {hidden}"),
            ));
        }
    }
    let on: Vec<&str> = obj
        .iter()
        .filter(|(k, v)| k.starts_with("pooling_mode_") && v.as_bool() == Some(true))
        .map(|(k, _)| k.as_str())
        .collect();
    match on.as_slice() {
        ["pooling_mode_mean_tokens"] => Ok(Pooling::Mean),
        ["pooling_mode_cls_token"] => Ok(Pooling::Cls),
        [] => Err(EngineError::field(path, "pooling_mode_*", "none is enabled: enable mean_tokens or cls_token")),
        [one] => Err(EngineError::field(
            path,
            *one,
            "is not supported: forja pools with mean_tokens or cls_token",
        )),
        many => Err(EngineError::field(
            path,
            many.join(", "),
            "several pooling modes are enabled; forja supports exactly one (mean_tokens or cls_token)",
        )),
    }
}

/// Reads `model.safetensors` into a [`Bert`], with or without the `bert.`
/// prefix that `BertFor*` checkpoints carry.
fn load_bert(cfg: &bert::Config, path: &Path) -> Result<Bert> {
    let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| {
        EngineError::malformed(path, format!("invalid safetensors: {}", candle_text(&e)))
    })?;
    drop(bytes);
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    const PROBE: &str = "embeddings.word_embeddings.weight";
    let vb = if vb.contains_tensor(PROBE) {
        vb
    } else if vb.contains_tensor(&format!("bert.{PROBE}")) {
        vb.pp("bert")
    } else {
        return Err(EngineError::MissingTensor { path: path.to_path_buf(), tensor: PROBE.into() });
    };
    Bert::new(cfg, vb).map_err(|e| EngineError::malformed(path, candle_text(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cosine_basics() {
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-7);
        assert!(cosine(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-7);
        assert!((cosine(&[1.0, 1.0], &[-1.0, -1.0]) + 1.0).abs() < 1e-7);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 2.0]), 0.0);
        assert!(cosine(&[1.0], &[1.0, 2.0]).is_nan());
    }

    fn mode(cfg: Value) -> Result<Pooling> {
        pooling_mode(&cfg, Path::new("p/config.json"), 4)
    }

    #[test]
    fn pooling_modes() {
        let mean = json!({"word_embedding_dimension": 4, "pooling_mode_mean_tokens": true,
                          "pooling_mode_cls_token": false});
        assert_eq!(mode(mean).unwrap(), Pooling::Mean);
        assert_eq!(mode(json!({"pooling_mode_cls_token": true})).unwrap(), Pooling::Cls);
        let err = mode(json!({"pooling_mode_max_tokens": true})).unwrap_err().to_string();
        assert!(err.contains("p/config.json") && err.contains("pooling_mode_max_tokens"), "{err}");
        let both = json!({"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": true});
        assert!(mode(both).unwrap_err().to_string().contains("several pooling modes"));
        assert!(mode(json!({})).unwrap_err().to_string().contains("none is enabled"));
        let dim = json!({"word_embedding_dimension": 8, "pooling_mode_mean_tokens": true});
        assert!(mode(dim).unwrap_err().to_string().contains("hidden_size is 4"));
    }

    fn modules(kinds: &[(&str, &str)]) -> Vec<ModuleEntry> {
        kinds
            .iter()
            .map(|(k, p)| ModuleEntry { kind: k.to_string(), path: p.to_string() })
            .collect()
    }

    #[test]
    fn module_pipelines() {
        let p = Path::new("modules.json");
        let full =
            modules(&[(TRANSFORMER, ""), (POOLING, "1_Pooling"), (NORMALIZE, "2_Normalize")]);
        assert_eq!(pipeline(&full, p).unwrap(), ("1_Pooling", true));
        let plain = modules(&[(TRANSFORMER, ""), (POOLING, "1_Pooling")]);
        assert_eq!(pipeline(&plain, p).unwrap(), ("1_Pooling", false));
        let dense = modules(&[
            (TRANSFORMER, ""),
            (POOLING, "1_Pooling"),
            ("sentence_transformers.models.Dense", "2_Dense"),
        ]);
        let err = pipeline(&dense, p).unwrap_err().to_string();
        assert!(
            err.starts_with("modules.json: module 2 `sentence_transformers.models.Dense`"),
            "{err}"
        );
        assert!(pipeline(&modules(&[(TRANSFORMER, "")]), p).is_err());
        assert!(pipeline(&modules(&[(POOLING, "1_Pooling")]), p).is_err());
    }
}
