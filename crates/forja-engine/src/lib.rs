//! forja-engine: load LLMs and run them.
//!
//! The engine answers one question: given model files on local disk, how do
//! we turn prompts into tokens, fast, on CPU or GPU? It loads Llama-family
//! decoders (Llama 2/3, SmolLM2, Mistral, Qwen2, Qwen3) from GGUF files
//! (`F32`, `F16`, `BF16`, `Q4_0`, `Q4_1`, `Q8_0`, k-quants) or Hugging Face
//! safetensors directories, rebuilds their tokenizer and chat template, and
//! generates with a KV cache, batched prefill and decode, the usual
//! sampling controls, and speculative decoding with a draft model
//! ([`speculative`]). The same model code trains: LoRA adapters in PEFT's
//! format ([`lora`]), supervised fine-tuning and tiny-model pre-training
//! ([`train`]). It also embeds sentences with BERT encoders from
//! sentence-transformers directories ([`Embedder`], all-MiniLM-L6-v2), and
//! keeps generated text inside a JSON Schema, regex or Lark grammar with
//! token masks ([`constraint`]). It knows nothing of HTTP, SQL or JSON wire
//! formats.
//!
//! ```no_run
//! use forja_engine::{Engine, LoadOptions};
//! use forja_core::{ChatMessage, GenerationParams};
//! # fn main() -> forja_engine::Result<()> {
//! let engine = Engine::load("model.gguf".as_ref(), &LoadOptions::default(), &mut |_| {})?;
//! let (reply, _timings) = engine.chat(
//!     &[ChatMessage::user("What is the capital of France?")],
//!     &GenerationParams::default(),
//!     None, // no LoRA adapter
//!     |text| { print!("{text}"); true },
//! )?;
//! println!("\n{} tokens, finished by {}", reply.tokens.len(), reply.finish.as_str());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod attention;
pub mod batcher;
mod chat_template;
pub mod constraint;
pub mod device;
pub mod embed;
mod engine;
mod error;
pub mod export;
#[cfg(feature = "fixtures")]
pub mod fixtures;
mod generate;
pub mod gguf;
mod grad;
pub mod isa;
mod kv_cache;
mod linear;
pub mod lora;
pub mod models;
mod ops;
mod parallel;
pub mod quant;
mod safetensors_io;
mod sampler;
mod simd;
pub mod speculative;
#[cfg(test)]
mod test_util;
mod tokenizer;
pub mod train;
mod weights;
mod yielding;

pub use attention::Slot;
pub use batcher::{Batcher, BatcherConfig, Job, JobEvent};
pub use chat_template::ChatTemplate;
pub use constraint::{Constraint, ConstraintCompiler, Grammar};
pub use embed::Embedder;
pub use engine::{Engine, LoadOptions, LoadProgress, ModelFormat, ModelInfo};
pub use error::{EngineError, Result};
pub use generate::{Completion, FinishReason, OnText, Request, Timings, TokenFilter};
pub use kv_cache::{KvCache, KvType};
pub use linear::Linear;
pub use parallel::SpinPool;
pub use sampler::{argmax, logprob, Sampler, TokenLogprob};
pub use tokenizer::{train_byte_level_bpe, TextStream, Tokenizer};
pub use weights::Weights;
pub use yielding::{Foreground, Yield};
