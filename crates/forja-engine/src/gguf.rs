//! Reading GGUF files: metadata, raw tensor bytes, and the Llama-family
//! config they imply. The container format itself is parsed by candle's
//! hardened reader; this module turns it into forja's types and errors.

use crate::error::candle_text;
use crate::models::config::{Family, LlamaConfig, RopeScaling, TokenIds};
use crate::{EngineError, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::GgmlDType;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// An open GGUF file.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    reader: BufReader<File>,
    file_len: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GgufFile({})", self.path.display())
    }
}

impl GgufFile {
    /// Opens and parses the header, metadata and tensor directory.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| EngineError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| EngineError::io(path, e))?.len();
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| {
            if let Some(id) = unknown_dtype(&e) {
                return EngineError::malformed(
                    path,
                    format!(
                        "a tensor is stored as GGML type {id} ({}), which forja cannot compute with (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K); re-quantize with llama-quantize to Q4_K_M or Q8_0",
                        ggml_type_name(id)
                    ),
                );
            }
            EngineError::malformed(path, format!("not a valid GGUF file: {}", candle_text(&e)))
        })?;
        Ok(GgufFile { path: path.to_path_buf(), content, reader, file_len })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn missing(&self, key: &str) -> EngineError {
        EngineError::field(&self.path, key, "is missing from the GGUF metadata")
    }

    fn wrong(&self, key: &str, want: &str) -> EngineError {
        EngineError::field(&self.path, key, format!("must be {want}"))
    }

    /// An unsigned integer value (any integer width).
    pub fn get_usize(&self, key: &str) -> Result<Option<usize>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let n = match v {
            Value::U8(x) => *x as i128,
            Value::I8(x) => *x as i128,
            Value::U16(x) => *x as i128,
            Value::I16(x) => *x as i128,
            Value::U32(x) => *x as i128,
            Value::I32(x) => *x as i128,
            Value::U64(x) => *x as i128,
            Value::I64(x) => *x as i128,
            _ => return Err(self.wrong(key, "an integer")),
        };
        usize::try_from(n).map(Some).map_err(|_| self.wrong(key, "a non-negative integer"))
    }

    /// A required unsigned integer.
    pub fn req_usize(&self, key: &str) -> Result<usize> {
        self.get_usize(key)?.ok_or_else(|| self.missing(key))
    }

    /// A floating-point value (f32 or f64).
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::F32(x)) => Ok(Some(*x as f64)),
            Some(Value::F64(x)) => Ok(Some(*x)),
            Some(_) => Err(self.wrong(key, "a floating-point number")),
        }
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.wrong(key, "a string")),
        }
    }

    /// A boolean value.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.wrong(key, "a boolean")),
        }
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(self.wrong(key, "an array of strings"));
        };
        items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.as_str()),
                _ => Err(self.wrong(key, "an array of strings")),
            })
            .collect::<Result<_>>()
            .map(Some)
    }

    /// An array of numbers, as f32.
    pub fn get_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(self.wrong(key, "an array of numbers"));
        };
        items
            .iter()
            .map(|i| match i {
                Value::F32(x) => Ok(*x),
                Value::F64(x) => Ok(*x as f32),
                Value::I32(x) => Ok(*x as f32),
                Value::U32(x) => Ok(*x as f32),
                _ => Err(self.wrong(key, "an array of numbers")),
            })
            .collect::<Result<_>>()
            .map(Some)
    }

    /// An array of integers, as i64.
    pub fn get_int_array(&self, key: &str) -> Result<Option<Vec<i64>>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(self.wrong(key, "an array of integers"));
        };
        items
            .iter()
            .map(|i| match i {
                Value::I8(x) => Ok(*x as i64),
                Value::U8(x) => Ok(*x as i64),
                Value::I16(x) => Ok(*x as i64),
                Value::U16(x) => Ok(*x as i64),
                Value::I32(x) => Ok(*x as i64),
                Value::U32(x) => Ok(*x as i64),
                Value::I64(x) => Ok(*x),
                Value::U64(x) => Ok(*x as i64),
                _ => Err(self.wrong(key, "an array of integers")),
            })
            .collect::<Result<_>>()
            .map(Some)
    }

    /// Whether a tensor is present.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// The GGML type and shape (rows first, as in Hugging Face) of a tensor.
    pub fn tensor_info(&self, name: &str) -> Option<(GgmlDType, Vec<usize>)> {
        self.content.tensor_infos.get(name).map(|i| (i.ggml_dtype, i.shape.dims().to_vec()))
    }

    /// Reads a tensor's raw bytes, checking that they lie inside the file.
    pub fn read_raw(&mut self, name: &str) -> Result<(GgmlDType, Vec<usize>, Vec<u8>)> {
        let info = self.content.tensor_infos.get(name).ok_or_else(|| {
            EngineError::MissingTensor { path: self.path.clone(), tensor: name.to_string() }
        })?;
        let dims = info.shape.dims().to_vec();
        let elems: usize = dims.iter().product();
        let (bs, ts) = (info.ggml_dtype.block_size(), info.ggml_dtype.type_size());
        if !elems.is_multiple_of(bs) {
            return Err(EngineError::malformed(
                &self.path,
                format!(
                    "tensor `{name}` has {elems} elements, not a multiple of its block size {bs}"
                ),
            ));
        }
        let size = (elems / bs * ts) as u64;
        let start = self.content.tensor_data_offset.saturating_add(info.offset);
        if start.saturating_add(size) > self.file_len {
            return Err(EngineError::malformed(
                &self.path,
                format!(
                    "tensor `{name}` needs bytes {start}..{} but the file has {} bytes; the file is truncated, download it again",
                    start + size,
                    self.file_len
                ),
            ));
        }
        let dtype = info.ggml_dtype;
        let mut buf = vec![0u8; size as usize];
        self.reader.seek(SeekFrom::Start(start)).map_err(|e| EngineError::io(&self.path, e))?;
        self.reader.read_exact(&mut buf).map_err(|e| EngineError::io(&self.path, e))?;
        Ok((dtype, dims, buf))
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")?.ok_or_else(|| self.missing("general.architecture"))
    }

    /// The Llama-family config the metadata describes.
    pub fn llama_config(&self) -> Result<LlamaConfig> {
        let arch = self.architecture()?.to_string();
        if Family::from_name(&arch).is_none() {
            return Err(EngineError::UnsupportedArchitecture {
                path: self.path.clone(),
                arch,
                supported: Family::SUPPORTED,
            });
        }
        let k = |s: &str| format!("{arch}.{s}");
        let heads = self.req_usize(&k("attention.head_count"))?;
        let hidden = self.req_usize(&k("embedding_length"))?;
        let head_dim = self.get_usize(&k("attention.key_length"))?;
        let rope_dim = self.get_usize(&k("rope.dimension_count"))?;
        let hd = head_dim.unwrap_or(hidden / heads.max(1));
        if let Some(rd) = rope_dim {
            if rd != hd {
                return Err(EngineError::field(
                    &self.path,
                    k("rope.dimension_count"),
                    format!("is {rd} but heads are {hd} wide; partial rotary embeddings are not supported"),
                ));
            }
        }
        let vocab = match self.get_usize(&k("vocab_size"))? {
            Some(v) => v,
            None => match self.tensor_info("token_embd.weight") {
                Some((_, dims)) if dims.len() == 2 => dims[0],
                _ => self
                    .get_str_array("tokenizer.ggml.tokens")?
                    .map(|t| t.len())
                    .ok_or_else(|| self.missing(&k("vocab_size")))?,
            },
        };
        let rope_scaling = match self.get_str(&k("rope.scaling.type"))? {
            None | Some("none") => None,
            Some("linear") => Some(RopeScaling {
                rope_type: "linear".into(),
                factor: self.get_f64(&k("rope.scaling.factor"))?.unwrap_or(1.0),
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: None,
            }),
            Some(other) => {
                return Err(EngineError::field(
                    &self.path,
                    k("rope.scaling.type"),
                    format!("`{other}` is not supported (supported: none, linear)"),
                ))
            }
        };
        let cfg = LlamaConfig {
            model_type: arch.clone(),
            hidden_size: hidden,
            intermediate_size: self.req_usize(&k("feed_forward_length"))?,
            num_hidden_layers: self.req_usize(&k("block_count"))?,
            num_attention_heads: heads,
            num_key_value_heads: self.get_usize(&k("attention.head_count_kv"))?,
            head_dim,
            vocab_size: vocab,
            rms_norm_eps: self.get_f64(&k("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5),
            rope_theta: self.get_f64(&k("rope.freq_base"))?.unwrap_or(10_000.0),
            rope_scaling,
            max_position_embeddings: self.get_usize(&k("context_length"))?.unwrap_or(2048),
            tie_word_embeddings: !self.has_tensor("output.weight"),
            attention_bias: Some(self.has_tensor("blk.0.attn_q.bias")),
            sliding_window: self.get_usize(&k("attention.sliding_window"))?,
            use_sliding_window: None,
            bos_token_id: self
                .get_usize("tokenizer.ggml.bos_token_id")?
                .map(|i| TokenIds::One(i as u32)),
            eos_token_id: self
                .get_usize("tokenizer.ggml.eos_token_id")?
                .map(|i| TokenIds::One(i as u32)),
        };
        cfg.validate(&self.path)?;
        Ok(cfg)
    }
}

/// The GGML type id in candle's "unknown dtype" error, if that is the error.
fn unknown_dtype(e: &candle_core::Error) -> Option<u32> {
    candle_text(e).strip_prefix("unknown dtype for tensor ")?.trim().parse().ok()
}

/// GGML's names for its type ids (ggml.h), for error messages.
fn ggml_type_name(id: u32) -> &'static str {
    const NAMES: &[&str] = &[
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
        "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL",
        "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16",
    ];
    NAMES.get(id as usize).copied().unwrap_or("unknown")
}

/// The GGUF name of a Hugging Face Llama-family tensor name.
pub fn hf_to_gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (module, suffix) = rest.rsplit_once('.')?;
    let g = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{g}.{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::hf_to_gguf_name;

    #[test]
    fn hf_names_translate_to_gguf_names() {
        let check =
            |hf: &str, want: Option<&str>| assert_eq!(hf_to_gguf_name(hf).as_deref(), want, "{hf}");
        check("model.embed_tokens.weight", Some("token_embd.weight"));
        check("model.norm.weight", Some("output_norm.weight"));
        check("lm_head.weight", Some("output.weight"));
        check("model.layers.0.input_layernorm.weight", Some("blk.0.attn_norm.weight"));
        check("model.layers.12.self_attn.q_proj.weight", Some("blk.12.attn_q.weight"));
        check("model.layers.3.self_attn.k_proj.bias", Some("blk.3.attn_k.bias"));
        check("model.layers.3.self_attn.o_proj.weight", Some("blk.3.attn_output.weight"));
        check("model.layers.3.self_attn.k_norm.weight", Some("blk.3.attn_k_norm.weight"));
        check("model.layers.29.mlp.down_proj.weight", Some("blk.29.ffn_down.weight"));
        check("model.layers.1.post_attention_layernorm.weight", Some("blk.1.ffn_norm.weight"));
        check("model.layers.1.mlp.experts.weight", None);
        check("vision_tower.weight", None);
    }
}
