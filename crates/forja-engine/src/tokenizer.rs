//! Tokenizers: Hugging Face `tokenizer.json` files, and tokenizers rebuilt
//! from GGUF metadata (GPT-2-style byte-level BPE and llama SentencePiece)
//! as equivalent `tokenizers` pipelines, so both sources share one
//! well-tested implementation.

use crate::gguf::GgufFile;
use crate::{EngineError, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

/// Token strings that end a turn in common chat formats (llama.cpp treats
/// them as end-of-generation too).
const EOG_TEXTS: &[&str] = &[
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|end_of_text|>",
    "</s>",
];

/// A tokenizer plus the special ids generation needs.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
    eog: Vec<u32>,
    add_bos: bool,
    source: String,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer({}, {} tokens)", self.source, self.vocab_size())
    }
}

/// A token's byte span `[start, end)` in the encoded text.
pub type Span = (usize, usize);

impl Tokenizer {
    /// Loads a Hugging Face `tokenizer.json`. BOS/EOS come from the caller
    /// (`tokenizer_config.json`, `config.json`, `generation_config.json`).
    pub fn from_file(
        path: &Path,
        bos: Option<u32>,
        eos_ids: &[u32],
        add_bos: bool,
    ) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| EngineError::Tokenizer {
            source_desc: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self::finish(
            inner,
            bos,
            eos_ids.first().copied(),
            eos_ids,
            add_bos,
            path.display().to_string(),
        ))
    }

    /// A tokenizer from `tokenizer.json` text (e.g. one just trained).
    pub fn from_json(json: &str, bos: Option<u32>, eos_ids: &[u32], add_bos: bool) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_str(json).map_err(|e| EngineError::Tokenizer {
            source_desc: "tokenizer.json text".into(),
            reason: e.to_string(),
        })?;
        Ok(Self::finish(
            inner,
            bos,
            eos_ids.first().copied(),
            eos_ids,
            add_bos,
            "trained tokenizer".into(),
        ))
    }

    fn finish(
        inner: tokenizers::Tokenizer,
        bos: Option<u32>,
        eos: Option<u32>,
        extra_eog: &[u32],
        add_bos: bool,
        source: String,
    ) -> Self {
        let mut eog: Vec<u32> = eos.into_iter().chain(extra_eog.iter().copied()).collect();
        for (id, tok) in inner.get_added_tokens_decoder() {
            if tok.special && EOG_TEXTS.contains(&tok.content.as_str()) {
                eog.push(id);
            }
        }
        eog.sort_unstable();
        eog.dedup();
        Tokenizer { inner, bos, eos, eog, add_bos, source }
    }

    /// Rebuilds the tokenizer stored in a GGUF file's metadata.
    pub fn from_gguf(f: &GgufFile) -> Result<Self> {
        let desc = format!("GGUF metadata of {}", f.path().display());
        let err = |reason: String| EngineError::Tokenizer { source_desc: desc.clone(), reason };
        let model = f.get_str("tokenizer.ggml.model")?.ok_or_else(|| {
            err("`tokenizer.ggml.model` is missing; this GGUF has no tokenizer, pass one with --tokenizer".into())
        })?;
        let tokens = f
            .get_str_array("tokenizer.ggml.tokens")?
            .ok_or_else(|| err("`tokenizer.ggml.tokens` is missing".into()))?;
        let types = f.get_int_array("tokenizer.ggml.token_type")?;
        if let Some(t) = &types {
            if t.len() != tokens.len() {
                return Err(err(format!(
                    "`tokenizer.ggml.token_type` has {} entries for {} tokens",
                    t.len(),
                    tokens.len()
                )));
            }
        }
        let id = |k: &str| -> Result<Option<u32>> {
            match f.get_usize(k)? {
                Some(i) if i >= tokens.len() => Err(err(format!(
                    "`{k}` = {i} is outside the vocabulary ({} tokens)",
                    tokens.len()
                ))),
                other => Ok(other.map(|i| i as u32)),
            }
        };
        let (bos, eos, eot, eom) = (
            id("tokenizer.ggml.bos_token_id")?,
            id("tokenizer.ggml.eos_token_id")?,
            id("tokenizer.ggml.eot_token_id")?,
            id("tokenizer.ggml.eom_token_id")?,
        );
        let json = match model {
            "gpt2" => {
                let merges = f
                    .get_str_array("tokenizer.ggml.merges")?
                    .ok_or_else(|| err("`tokenizer.ggml.merges` is missing".into()))?;
                let pre = f.get_str("tokenizer.ggml.pre")?.unwrap_or("default");
                bpe_json(&tokens, types.as_deref(), &merges, pre).map_err(err)?
            }
            "llama" => {
                let scores = f
                    .get_f32_array("tokenizer.ggml.scores")?
                    .ok_or_else(|| err("`tokenizer.ggml.scores` is missing".into()))?;
                if scores.len() != tokens.len() {
                    return Err(
                        err("`tokenizer.ggml.scores` and `tokens` differ in length".into()),
                    );
                }
                let prefix = f.get_bool("tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
                spm_json(
                    &tokens,
                    types.as_deref(),
                    &scores,
                    prefix,
                    id("tokenizer.ggml.unknown_token_id")?,
                )
            }
            other => {
                return Err(err(format!(
                    "tokenizer model `{other}` is not supported (supported: gpt2, llama)"
                )))
            }
        };
        let inner =
            tokenizers::Tokenizer::from_str(&json.to_string()).map_err(|e| err(e.to_string()))?;
        let add_bos = f.get_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(model == "llama");
        let extra: Vec<u32> = [eot, eom].into_iter().flatten().collect();
        Ok(Self::finish(inner, bos, eos, &extra, add_bos, desc))
    }

    /// Encodes `text`. Special-token strings in the text (`<|im_start|>`)
    /// become their ids. With `add_special`, BOS is prepended when the model
    /// wants it (raw prompts); chat templates spell BOS out themselves.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, add_special).map_err(|e| EngineError::Tokenizer {
            source_desc: self.source.clone(),
            reason: e.to_string(),
        })?;
        let mut ids = enc.get_ids().to_vec();
        if add_special && self.add_bos {
            if let Some(b) = self.bos {
                if ids.first() != Some(&b) {
                    ids.insert(0, b);
                }
            }
        }
        Ok(ids)
    }

    /// Encodes `text` without adding special tokens, with each token's byte
    /// span in `text` (special tokens written in the text are parsed).
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<u32>, Vec<Span>)> {
        let enc = self.inner.encode(text, false).map_err(|e| EngineError::Tokenizer {
            source_desc: self.source.clone(),
            reason: e.to_string(),
        })?;
        Ok((enc.get_ids().to_vec(), enc.get_offsets().to_vec()))
    }

    /// The text of every special added token (`<|im_start|>`, `</s>`, …):
    /// what text from outside must not contain, since [`Tokenizer::encode`]
    /// parses it into control tokens.
    pub fn special_texts(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .inner
            .get_added_tokens_decoder()
            .values()
            .filter(|t| t.special && !t.content.is_empty())
            .map(|t| t.content.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Decodes ids to text, optionally dropping special tokens.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(|e| EngineError::Tokenizer {
            source_desc: self.source.clone(),
            reason: e.to_string(),
        })
    }

    /// An incremental decoder that yields text only once it is complete
    /// UTF-8 (byte-level tokens can split a character).
    pub fn stream(&self) -> TextStream<'_> {
        TextStream { tok: self, ids: Vec::new(), prefix: 0, read: 0 }
    }

    /// Tokens in the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token string.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The string of a token id.
    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Beginning-of-sequence id.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence id.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Every id that ends generation (EOS, end-of-turn, ...).
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }

    /// Whether raw prompts get a BOS token.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// The tokenizer as Hugging Face `tokenizer.json` text.
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(false).map_err(|e| EngineError::Tokenizer {
            source_desc: self.source.clone(),
            reason: e.to_string(),
        })
    }

    /// Where the tokenizer came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The wrapped Hugging Face tokenizer (constrained decoding reads its
    /// vocabulary and pipeline).
    pub(crate) fn hf(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// Incremental detokenizer (see [`Tokenizer::stream`]).
#[derive(Debug)]
pub struct TextStream<'t> {
    tok: &'t Tokenizer,
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl TextStream<'_> {
    /// Adds a token and returns the new complete text, if any.
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let before = self.tok.decode(&self.ids[self.prefix..self.read], true)?;
        let now = self.tok.decode(&self.ids[self.prefix..], true)?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') {
            if let Some(new) = now.get(before.len()..) {
                let new = new.to_string();
                self.prefix = self.read;
                self.read = self.ids.len();
                return Ok(new);
            }
        }
        Ok(String::new())
    }
}

fn token_kind(types: Option<&[i64]>, i: usize) -> i64 {
    // GGUF token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    types.map_or(1, |t| t[i])
}

fn added_tokens(tokens: &[&str], types: Option<&[i64]>) -> Vec<Value> {
    (0..tokens.len())
        .filter(|&i| matches!(token_kind(types, i), 3 | 4))
        .map(|i| {
            json!({
                "id": i, "content": tokens[i], "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": token_kind(types, i) == 3,
            })
        })
        .collect()
}

// Pre-tokenizer regexes, applied in sequence like llama.cpp's
// `regex_exprs` (llama-vocab.cpp), each an isolated split.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const DEEPSEEK_CODER: &[&str] =
    &[r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", r"[一-龥ࠀ-一가-퟿]+", r"\p{N}"];
const FALCON: &[&str] = &[
    r"[\p{P}\$\+<=>\^~\|`]+",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
    r"[0-9][0-9][0-9]",
];

/// llama.cpp's pre-tokenizer (`tokenizer.ggml.pre`) as regex splits, and
/// whether whole words found in the vocabulary skip the merges.
fn pre_tokenizer(pre: &str) -> Option<(&'static [&'static str], bool)> {
    Some(match pre {
        "default" | "gpt2" | "gpt-2" | "phi-2" | "mpt" | "olmo" | "jais" | "trillion"
        | "granite-docling" => (&[GPT2], false),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            (&[r"\p{N}", GPT2], false)
        }
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => (&[LLAMA3], true),
        "dbrx" | "smaug-bpe" | "chatglm-bpe" => (&[LLAMA3], false),
        "qwen2" | "deepseek-r1-qwen" | "stablelm2" => (&[QWEN2], false),
        "qwen35" => (&[QWEN35], false),
        "tekken" => (&[TEKKEN], true),
        "deepseek-coder" => (DEEPSEEK_CODER, false),
        "falcon" => (FALCON, false),
        _ => return None,
    })
}

/// The `tokenizers` pipeline of a GGUF byte-level BPE tokenizer, chosen by
/// llama.cpp's pre-tokenizer name.
fn bpe_json(
    tokens: &[&str],
    types: Option<&[i64]>,
    merges: &[&str],
    pre: &str,
) -> Result<Value, String> {
    let (regexes, ignore_merges) = pre_tokenizer(pre).ok_or_else(|| {
        format!("pre-tokenizer `{pre}` (tokenizer.ggml.pre) is not supported (forja knows llama.cpp's gpt2, smollm, starcoder, llama3, qwen2, qwen35, tekken, deepseek-coder, falcon families)")
    })?;
    let mut steps: Vec<Value> = regexes
        .iter()
        .map(|re| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false}))
        .collect();
    steps.push(json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}));
    let pre_tokenizer = json!({"type": "Sequence", "pretokenizers": steps});
    let vocab: serde_json::Map<String, Value> =
        tokens.iter().enumerate().map(|(i, t)| (t.to_string(), json!(i))).collect();
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(tokens, types),
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": ignore_merges, "vocab": vocab, "merges": merges,
        },
    }))
}

/// The `tokenizers` pipeline of a llama SentencePiece (BPE) tokenizer. GGUF
/// stores scores, not merges; the merges are derived as Hugging Face's
/// SentencePiece converter does: every split of a piece into two pieces of
/// the vocabulary, ranked by the merged piece's score.
fn spm_json(
    tokens: &[&str],
    types: Option<&[i64]>,
    scores: &[f32],
    add_prefix: bool,
    unk: Option<u32>,
) -> Value {
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let mut merges: Vec<(f32, usize, usize, String)> = Vec::new();
    for (i, piece) in tokens.iter().enumerate() {
        if token_kind(types, i) != 1 {
            continue;
        }
        let mut local = Vec::new();
        for (split, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(split);
            if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                local.push((scores[i], li, ri, format!("{l} {r}")));
            }
        }
        local.sort_by_key(|m| (m.1, m.2));
        merges.extend(local);
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0));
    let merges: Vec<String> = merges.into_iter().map(|m| m.3).collect();
    let vocab: serde_json::Map<String, Value> =
        tokens.iter().enumerate().map(|(i, t)| (t.to_string(), json!(i))).collect();
    let mut normalizers = Vec::new();
    let mut decoders =
        vec![json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "})];
    decoders.push(json!({"type": "ByteFallback"}));
    decoders.push(json!({"type": "Fuse"}));
    if add_prefix {
        normalizers.push(json!({"type": "Prepend", "prepend": "\u{2581}"}));
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    normalizers.push(json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}));
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens(tokens, types),
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": unk.map(|u| tokens[u as usize]),
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true,
            "byte_fallback": true, "ignore_merges": false, "vocab": vocab, "merges": merges,
        },
    })
}

/// Trains a byte-level BPE tokenizer (GPT-2 style, the `tokenizers`
/// crate's trainer) on `texts` and returns it as `tokenizer.json` text.
/// `specials` become special added tokens with the first ids.
pub fn train_byte_level_bpe<S: AsRef<str> + Send>(
    texts: impl Iterator<Item = S> + Send,
    vocab_size: usize,
    specials: &[&str],
) -> Result<String> {
    use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
    use tokenizers::models::TrainerWrapper;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    let err = |e: tokenizers::Error| EngineError::Tokenizer {
        source_desc: "BPE training".into(),
        reason: e.to_string(),
    };
    let mut tok = tokenizers::Tokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(ByteLevel::new(true, true, true)));
    let special: Vec<tokenizers::AddedToken> =
        specials.iter().map(|s| tokenizers::AddedToken::from(s.to_string(), true)).collect();
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(1)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(special)
        .build()
        .into();
    tok.train(&mut trainer, texts).map_err(err)?;
    tok.to_string(false).map_err(err)
}
