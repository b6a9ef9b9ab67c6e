//! `forja pretrain --emit megatron|deepspeed`: pre-training at a scale the
//! native engine does not attempt, handed to the engines made for it. From
//! one TOML (model shape, parallelism, cluster, batch, optimizer, data) it
//! checks the parallelism arithmetic Megatron-LM and DeepSpeed would
//! reject at start (or silently get wrong), and writes `plan.json` (every
//! derived size), `launch.sh` and, for DeepSpeed, `ds_config.json`.
//!
//! The arithmetic, as Megatron-LM's `initialize_model_parallel` does it:
//! world = nodes × GPUs per node; model parallel = tensor × pipeline ×
//! context; data parallel = world ÷ model parallel. Experts are cut out of
//! the same GPUs: expert parallel × expert tensor parallel × pipeline must
//! divide the world, giving the expert data-parallel size, and the experts
//! must split evenly over expert parallel. Global batch = micro batch ×
//! data parallel × gradient accumulation, so the global batch must divide
//! by micro batch × data parallel.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::json;

/// What `--config` holds for `--emit`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub model: ModelShape,
    #[serde(default)]
    pub moe: Option<Moe>,
    pub parallel: Parallel,
    pub cluster: Cluster,
    pub train: Train,
    #[serde(default)]
    pub zero: Zero,
    pub data: Data,
    #[serde(default)]
    pub checkpoint: Checkpoint,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelShape {
    pub num_layers: u64,
    pub hidden_size: u64,
    pub num_attention_heads: u64,
    /// Grouped-query attention: key/value heads (default: the heads).
    pub num_query_groups: Option<u64>,
    pub ffn_hidden_size: u64,
    pub seq_length: u64,
    pub max_position_embeddings: Option<u64>,
    /// SwiGLU, RMSNorm and RoPE (Llama-style) unless false.
    #[serde(default = "yes")]
    pub llama_style: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Moe {
    pub num_experts: u64,
    pub top_k: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parallel {
    #[serde(default = "one")]
    pub tensor: u64,
    #[serde(default = "one")]
    pub pipeline: u64,
    #[serde(default = "one")]
    pub context: u64,
    #[serde(default = "one")]
    pub expert: u64,
    /// Tensor parallelism of the experts (default 1; always passed to
    /// Megatron, whose own default is the tensor size).
    #[serde(default = "one")]
    pub expert_tensor: u64,
    /// Megatron's sequence parallelism (needs tensor > 1).
    #[serde(default)]
    pub sequence_parallel: bool,
    /// Layers per virtual pipeline stage (interleaved schedule).
    pub virtual_stage_layers: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub nodes: u64,
    pub gpus_per_node: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Train {
    pub micro_batch_size: u64,
    pub global_batch_size: u64,
    pub train_iters: u64,
    pub lr: f64,
    pub min_lr: f64,
    pub lr_warmup_iters: u64,
    #[serde(default = "cosine")]
    pub lr_decay_style: String,
    #[serde(default = "weight_decay")]
    pub weight_decay: f64,
    #[serde(default = "clip")]
    pub clip_grad: f64,
    /// bf16 (default) or fp16.
    #[serde(default = "bf16")]
    pub precision: String,
    /// Activation recomputation: none, selective (default) or full.
    #[serde(default = "selective")]
    pub recompute: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zero {
    /// 0 (none), 1 (optimizer states: Megatron's distributed optimizer), 2 or 3
    /// (DeepSpeed only).
    #[serde(default = "one")]
    pub stage: u64,
}

impl Default for Zero {
    fn default() -> Self {
        Zero { stage: 1 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Data {
    /// Megatron's indexed dataset prefix(es) (`preprocess_data.py` output).
    pub path: String,
    #[serde(default = "split")]
    pub split: String,
    /// A Hugging Face tokenizer name or directory.
    pub tokenizer: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    #[serde(default = "ckpt_dir")]
    pub dir: String,
    #[serde(default = "save_interval")]
    pub save_interval: u64,
    #[serde(default = "eval_interval")]
    pub eval_interval: u64,
}

impl Default for Checkpoint {
    fn default() -> Self {
        Checkpoint {
            dir: ckpt_dir(),
            save_interval: save_interval(),
            eval_interval: eval_interval(),
        }
    }
}

fn one() -> u64 {
    1
}
fn yes() -> bool {
    true
}
fn cosine() -> String {
    "cosine".into()
}
fn weight_decay() -> f64 {
    0.1
}
fn clip() -> f64 {
    1.0
}
fn bf16() -> String {
    "bf16".into()
}
fn selective() -> String {
    "selective".into()
}
fn split() -> String {
    "99,1,0".into()
}
fn ckpt_dir() -> String {
    "checkpoints".into()
}
fn save_interval() -> u64 {
    1000
}
fn eval_interval() -> u64 {
    1000
}

/// Every size the launch derives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sizes {
    pub world: u64,
    pub model_parallel: u64,
    pub data_parallel: u64,
    pub expert_data_parallel: Option<u64>,
    pub grad_accumulation: u64,
    pub layers_per_stage: u64,
    pub tokens_per_iteration: u64,
}

/// The engines `--emit` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// Megatron-LM (`pretrain_gpt.py` under torchrun; ZeRO-1 as its distributed optimizer).
    Megatron,
    /// Megatron-DeepSpeed (`pretrain_gpt.py` under the `deepspeed` launcher, ZeRO 0–3).
    Deepspeed,
}

impl Plan {
    /// Parses `--config`; errors name the key.
    pub fn from_toml(text: &str) -> Result<Plan> {
        toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim().replace('\n', " ")))
    }

    /// Checks every size against every other one; the first problem, with
    /// the numbers, is the error.
    pub fn sizes(&self, engine: Engine) -> Result<Sizes> {
        let (m, p, c, t) = (&self.model, &self.parallel, &self.cluster, &self.train);
        for (name, v) in [
            ("cluster.nodes", c.nodes),
            ("cluster.gpus_per_node", c.gpus_per_node),
            ("parallel.tensor", p.tensor),
            ("parallel.pipeline", p.pipeline),
            ("parallel.context", p.context),
            ("parallel.expert", p.expert),
            ("parallel.expert_tensor", p.expert_tensor),
            ("train.micro_batch_size", t.micro_batch_size),
            ("train.global_batch_size", t.global_batch_size),
            ("model.num_layers", m.num_layers),
            ("model.num_attention_heads", m.num_attention_heads),
            ("model.hidden_size", m.hidden_size),
            ("model.seq_length", m.seq_length),
        ] {
            if v == 0 {
                bail!("{name} = 0: every size must be at least 1");
            }
        }
        let world = c.nodes * c.gpus_per_node;
        let model_parallel = p.tensor * p.pipeline * p.context;
        if world % model_parallel != 0 {
            bail!(
                "tensor ({}) × pipeline ({}) × context ({}) = {model_parallel} does not divide the world of {world} GPUs ({} nodes × {} per node)",
                p.tensor, p.pipeline, p.context, c.nodes, c.gpus_per_node
            );
        }
        let data_parallel = world / model_parallel;
        if m.hidden_size % m.num_attention_heads != 0 {
            bail!(
                "model.hidden_size ({}) is not a multiple of model.num_attention_heads ({})",
                m.hidden_size,
                m.num_attention_heads
            );
        }
        if m.num_attention_heads % p.tensor != 0 {
            bail!(
                "model.num_attention_heads ({}) does not split over tensor parallel ({})",
                m.num_attention_heads,
                p.tensor
            );
        }
        let groups = m.num_query_groups.unwrap_or(m.num_attention_heads);
        if groups == 0 || m.num_attention_heads % groups != 0 || groups % p.tensor != 0 {
            bail!(
                "model.num_query_groups ({groups}) must divide the heads ({}) and split over tensor parallel ({})",
                m.num_attention_heads, p.tensor
            );
        }
        if m.ffn_hidden_size % p.tensor != 0 {
            bail!(
                "model.ffn_hidden_size ({}) does not split over tensor parallel ({})",
                m.ffn_hidden_size,
                p.tensor
            );
        }
        if m.num_layers % p.pipeline != 0 {
            bail!(
                "model.num_layers ({}) does not split into {} pipeline stages",
                m.num_layers,
                p.pipeline
            );
        }
        let layers_per_stage = m.num_layers / p.pipeline;
        if let Some(v) = p.virtual_stage_layers {
            if v == 0 || layers_per_stage % v != 0 || p.pipeline < 2 {
                bail!(
                    "parallel.virtual_stage_layers ({v}) must divide the {layers_per_stage} layers of each of the (at least 2) pipeline stages ({})",
                    p.pipeline
                );
            }
        }
        if m.seq_length % (2 * p.context) != 0 && p.context > 1 {
            bail!(
                "model.seq_length ({}) must divide by 2 × context parallel ({})",
                m.seq_length,
                p.context
            );
        }
        if p.sequence_parallel && p.tensor == 1 {
            bail!("parallel.sequence_parallel needs tensor parallel > 1 (it is 1)");
        }
        let expert_data_parallel = match &self.moe {
            None => {
                if p.expert != 1 {
                    bail!(
                        "parallel.expert = {} without a [moe] table: there are no experts to split",
                        p.expert
                    );
                }
                None
            }
            Some(moe) => {
                if moe.num_experts % p.expert != 0 {
                    bail!(
                        "moe.num_experts ({}) does not split over expert parallel ({})",
                        moe.num_experts,
                        p.expert
                    );
                }
                if moe.top_k == 0 || moe.top_k > moe.num_experts {
                    bail!("moe.top_k ({}) must be in 1..={}", moe.top_k, moe.num_experts);
                }
                let cut = p.expert * p.expert_tensor * p.pipeline;
                if world % cut != 0 {
                    bail!(
                        "expert ({}) × expert_tensor ({}) × pipeline ({}) = {cut} does not divide the world of {world} GPUs",
                        p.expert, p.expert_tensor, p.pipeline
                    );
                }
                Some(world / cut)
            }
        };
        let per_step = t.micro_batch_size * data_parallel;
        if t.global_batch_size % per_step != 0 {
            bail!(
                "train.global_batch_size ({}) is not a multiple of micro batch ({}) × data parallel ({data_parallel}) = {per_step}",
                t.global_batch_size, t.micro_batch_size
            );
        }
        if !["bf16", "fp16"].contains(&t.precision.as_str()) {
            bail!("train.precision = {:?}: bf16 or fp16", t.precision);
        }
        if !["none", "selective", "full"].contains(&t.recompute.as_str()) {
            bail!("train.recompute = {:?}: none, selective or full", t.recompute);
        }
        match (engine, self.zero.stage) {
            (_, s) if s > 3 => bail!("zero.stage = {s}: 0 to 3"),
            (Engine::Megatron, s) if s > 1 => bail!(
                "zero.stage = {s} is DeepSpeed's; Megatron-LM shards optimizer states only (its distributed optimizer, stage 1): use --emit deepspeed or zero.stage = 1"
            ),
            (Engine::Deepspeed, s) if s >= 2 && p.pipeline > 1 => bail!(
                "DeepSpeed's ZeRO stage {s} cannot be combined with pipeline parallelism (pipeline = {}): use zero.stage = 1, or pipeline = 1",
                p.pipeline
            ),
            _ => {}
        }
        Ok(Sizes {
            world,
            model_parallel,
            data_parallel,
            expert_data_parallel,
            grad_accumulation: t.global_batch_size / per_step,
            layers_per_stage,
            tokens_per_iteration: t.global_batch_size * m.seq_length,
        })
    }

    /// Megatron-LM's arguments for `pretrain_gpt.py`.
    fn megatron_args(&self, engine: Engine) -> Vec<String> {
        let (m, p, t, d, k) =
            (&self.model, &self.parallel, &self.train, &self.data, &self.checkpoint);
        let mut a: Vec<String> = vec![
            format!("--num-layers {}", m.num_layers),
            format!("--hidden-size {}", m.hidden_size),
            format!("--num-attention-heads {}", m.num_attention_heads),
            format!("--ffn-hidden-size {}", m.ffn_hidden_size),
            format!("--seq-length {}", m.seq_length),
            format!(
                "--max-position-embeddings {}",
                m.max_position_embeddings.unwrap_or(m.seq_length)
            ),
            format!("--micro-batch-size {}", t.micro_batch_size),
            format!("--global-batch-size {}", t.global_batch_size),
            format!("--train-iters {}", t.train_iters),
            format!("--lr {}", t.lr),
            format!("--min-lr {}", t.min_lr),
            format!("--lr-warmup-iters {}", t.lr_warmup_iters),
            format!("--lr-decay-style {}", t.lr_decay_style),
            format!("--weight-decay {}", t.weight_decay),
            format!("--clip-grad {}", t.clip_grad),
            format!("--{}", t.precision),
            format!("--tensor-model-parallel-size {}", p.tensor),
            format!("--pipeline-model-parallel-size {}", p.pipeline),
        ];
        if let Some(g) = m.num_query_groups.filter(|&g| g != m.num_attention_heads) {
            a.push("--group-query-attention".into());
            a.push(format!("--num-query-groups {g}"));
        }
        if m.llama_style {
            for f in [
                "--swiglu",
                "--normalization RMSNorm",
                "--position-embedding-type rope",
                "--disable-bias-linear",
                "--untie-embeddings-and-output-weights",
            ] {
                a.push(f.into());
            }
        }
        if p.context > 1 {
            a.push(format!("--context-parallel-size {}", p.context));
        }
        if p.sequence_parallel {
            a.push("--sequence-parallel".into());
        }
        if let Some(v) = p.virtual_stage_layers {
            a.push(format!("--num-layers-per-virtual-pipeline-stage {v}"));
        }
        if let Some(moe) = &self.moe {
            a.push(format!("--num-experts {}", moe.num_experts));
            a.push(format!("--moe-router-topk {}", moe.top_k));
            a.push(format!("--expert-model-parallel-size {}", p.expert));
            // Always given: Megatron's own default is the tensor size, not
            // the 1 this plan's arithmetic assumed (found by
            // scripts/megatron-check.py against megatron-core).
            a.push(format!("--expert-tensor-parallel-size {}", p.expert_tensor));
        }
        match t.recompute.as_str() {
            "selective" => a.push("--recompute-activations".into()),
            "full" => a.push(
                "--recompute-granularity full --recompute-method uniform --recompute-num-layers 1"
                    .into(),
            ),
            _ => {}
        }
        if engine == Engine::Megatron && self.zero.stage == 1 {
            a.push("--use-distributed-optimizer".into());
        }
        a.extend([
            format!("--data-path {}", d.path),
            format!("--split {}", d.split),
            "--tokenizer-type HuggingFaceTokenizer".into(),
            format!("--tokenizer-model {}", d.tokenizer),
            format!("--save {}", k.dir),
            format!("--load {}", k.dir),
            format!("--save-interval {}", k.save_interval),
            format!("--eval-interval {}", k.eval_interval),
            "--log-interval 10".into(),
        ]);
        a
    }

    /// DeepSpeed's configuration (every size explicit: no "auto").
    fn ds_config(&self, s: &Sizes) -> serde_json::Value {
        let t = &self.train;
        json!({
            "train_batch_size": t.global_batch_size,
            "train_micro_batch_size_per_gpu": t.micro_batch_size,
            "gradient_accumulation_steps": s.grad_accumulation,
            "gradient_clipping": t.clip_grad,
            "bf16": {"enabled": t.precision == "bf16"},
            "fp16": {"enabled": t.precision == "fp16"},
            "zero_optimization": {
                "stage": self.zero.stage,
                "overlap_comm": true,
                "contiguous_gradients": true,
                "reduce_bucket_size": 500_000_000u64,
                "allgather_bucket_size": 500_000_000u64,
            },
            "wall_clock_breakdown": false,
        })
    }

    /// The launch script: one per node (NODE_RANK and MASTER_ADDR from the
    /// environment, as Slurm or a Kubernetes indexed job sets them).
    fn launch(&self, engine: Engine) -> String {
        let c = &self.cluster;
        let args = self.megatron_args(engine).join(" \\\n    ");
        let head = "#!/usr/bin/env bash\n# Written by `forja pretrain --emit`; plan.json has every derived size.\n# Run on every node with NODE_RANK (0..) and MASTER_ADDR set; MEGATRON is\n# the Megatron-LM (or Megatron-DeepSpeed) checkout.\nset -euo pipefail\n: \"${NODE_RANK:?set NODE_RANK}\" \"${MASTER_ADDR:?set MASTER_ADDR}\" \"${MEGATRON:?set MEGATRON}\"\nexport CUDA_DEVICE_MAX_CONNECTIONS=1\ncd \"$(dirname \"$0\")\"\n";
        match engine {
            Engine::Megatron => format!(
                "{head}torchrun --nnodes {} --nproc-per-node {} --node-rank \"$NODE_RANK\" \\\n  --master-addr \"$MASTER_ADDR\" --master-port \"${{MASTER_PORT:-6000}}\" \\\n  \"$MEGATRON/pretrain_gpt.py\" \\\n    {args}\n",
                c.nodes, c.gpus_per_node
            ),
            Engine::Deepspeed => format!(
                "{head}deepspeed --num_nodes {} --num_gpus {} --node_rank \"$NODE_RANK\" \\\n  --master_addr \"$MASTER_ADDR\" --master_port \"${{MASTER_PORT:-6000}}\" \\\n  \"$MEGATRON/pretrain_gpt.py\" \\\n    {args} \\\n    --deepspeed --deepspeed_config ds_config.json --zero-stage {}\n",
                c.nodes, c.gpus_per_node, self.zero.stage
            ),
        }
    }
}

/// Writes `plan.json`, `launch.sh` (and `ds_config.json`) into `out`.
pub fn emit(plan: &Plan, engine: Engine, out: &Path) -> Result<Sizes> {
    let s = plan.sizes(engine)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let summary = json!({
        "engine": match engine { Engine::Megatron => "megatron", Engine::Deepspeed => "deepspeed" },
        "world": s.world,
        "model_parallel": s.model_parallel,
        "data_parallel": s.data_parallel,
        "expert_data_parallel": s.expert_data_parallel,
        "gradient_accumulation_steps": s.grad_accumulation,
        "layers_per_pipeline_stage": s.layers_per_stage,
        "tokens_per_iteration": s.tokens_per_iteration,
        "tokens_total": s.tokens_per_iteration.saturating_mul(plan.train.train_iters),
    });
    let write = |name: &str, text: String| -> Result<()> {
        let p = out.join(name);
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))
    };
    write("plan.json", serde_json::to_string_pretty(&summary)? + "\n")?;
    if engine == Engine::Deepspeed {
        write("ds_config.json", serde_json::to_string_pretty(&plan.ds_config(&s))? + "\n")?;
    }
    let launch = out.join("launch.sh");
    write("launch.sh", plan.launch(engine))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&launch, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The design's example (seed 000's `MegatronConfig`), on 32 nodes of 8 GPUs.
    const SEED: &str = r#"
[model]
num_layers = 48
hidden_size = 5120
num_attention_heads = 40
ffn_hidden_size = 13824
seq_length = 4096
[moe]
num_experts = 8
top_k = 2
[parallel]
tensor = 8
pipeline = 4
expert = 8
[cluster]
nodes = 32
gpus_per_node = 8
[train]
micro_batch_size = 1
global_batch_size = 2048
train_iters = 500000
lr = 1.2e-4
min_lr = 1.2e-5
lr_warmup_iters = 2000
[zero]
stage = 1
[data]
path = "data/processed_text_document"
tokenizer = "meta-llama/Llama-2-7b-hf"
"#;

    fn plan(edit: &str) -> Plan {
        let mut text = SEED.to_string();
        for line in edit.lines().filter(|l| !l.is_empty()) {
            let (k, v) = line.split_once('=').unwrap();
            let k = k.trim();
            let mut found = false;
            text = text
                .lines()
                .map(|l| {
                    if l.split('=').next().unwrap().trim() == k {
                        found = true;
                        format!("{k} = {}", v.trim())
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            assert!(found, "{k}");
        }
        Plan::from_toml(&text).unwrap()
    }

    #[test]
    fn the_seed_example_is_consistent_on_256_gpus() {
        let s = plan("").sizes(Engine::Megatron).unwrap();
        assert_eq!(
            s,
            Sizes {
                world: 256,
                model_parallel: 32,
                data_parallel: 8,
                expert_data_parallel: Some(8),
                grad_accumulation: 256,
                layers_per_stage: 12,
                tokens_per_iteration: 2048 * 4096,
            }
        );
        // The seed computes data parallel as tensor × pipeline × expert (256):
        // with that the global batch of 2048 would accumulate 8 steps, not 256.
        let ds = plan("").sizes(Engine::Deepspeed).unwrap();
        assert_eq!(ds.grad_accumulation, 256);
    }

    #[test]
    fn sizes_that_do_not_divide_are_refused_with_the_numbers() {
        let err = |edit: &str, engine| plan(edit).sizes(engine).unwrap_err().to_string();
        let e = err("nodes = 3", Engine::Megatron);
        assert!(
            e.contains("= 32 does not divide the world of 24 GPUs (3 nodes × 8 per node)"),
            "{e}"
        );
        let e = err("global_batch_size = 2044", Engine::Megatron);
        assert!(
            e.contains("(2044) is not a multiple of micro batch (1) × data parallel (8) = 8"),
            "{e}"
        );
        let e = err("num_experts = 6", Engine::Megatron);
        assert!(e.contains("moe.num_experts (6) does not split over expert parallel (8)"), "{e}");
        let e = err("num_layers = 50", Engine::Megatron);
        assert!(e.contains("(50) does not split into 4 pipeline stages"), "{e}");
        let e = err("num_attention_heads = 36", Engine::Megatron);
        assert!(e.contains("hidden_size (5120) is not a multiple"), "{e}");
        let e = err("stage = 3", Engine::Deepspeed);
        assert!(
            e.contains("ZeRO stage 3 cannot be combined with pipeline parallelism (pipeline = 4)"),
            "{e}"
        );
        let e = err("stage = 2", Engine::Megatron);
        assert!(e.contains("use --emit deepspeed"), "{e}");
        let e = err("expert = 16", Engine::Megatron);
        assert!(e.contains("(8) does not split over expert parallel (16)"), "{e}");
        let e = err("tensor = 0", Engine::Megatron);
        assert!(e.contains("parallel.tensor = 0"), "{e}");
        let e = Plan::from_toml("[model]\nlayers = 4").unwrap_err().to_string();
        assert!(e.contains("unknown field `layers`"), "{e}");
    }

    #[test]
    fn files_carry_the_derived_sizes() {
        let dir = tempfile::tempdir().unwrap();
        emit(
            &plan("stage = 1\npipeline = 1\ntensor = 8\nnodes = 4"),
            Engine::Deepspeed,
            dir.path(),
        )
        .unwrap();
        let ds: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("ds_config.json")).unwrap(),
        )
        .unwrap();
        // 32 GPUs, tensor 8: data parallel 4, 2048 / (1 × 4) = 512 steps.
        assert_eq!(ds["gradient_accumulation_steps"], 512);
        assert_eq!(ds["train_batch_size"], 2048);
        let launch = std::fs::read_to_string(dir.path().join("launch.sh")).unwrap();
        assert!(launch.contains("deepspeed --num_nodes 4 --num_gpus 8"), "{launch}");
        assert!(
            launch.contains("--expert-model-parallel-size 8") && launch.contains("--zero-stage 1")
        );
        let plan_json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("plan.json")).unwrap())
                .unwrap();
        assert_eq!(plan_json["data_parallel"], 4);
        assert_eq!(plan_json["expert_data_parallel"], 4);
    }
}
