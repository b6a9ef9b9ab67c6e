//! [`LoraPlan`]: a LoRA fine-tune as one value, and [`fine_tune`], the one
//! path that runs it. `forja train` (config file and flags) and the
//! control plane's worker (a job's resolved hyperparameters) both start
//! from [`LoraPlan::default`] and override what they were given, so a
//! default (LoRA α, dropout, rsLoRA, warm-up, checkpoints kept) has one
//! source, and both load data, initialise the adapter and train the same
//! way.

use super::data::{load_jsonl, DataReport, Example};
use super::{train, Event, Run, TrainConfig, TrainReport, Trainable};
use crate::lora::{Adapter, LoraConfig};
use crate::{ChatTemplate, Engine, Result};
use std::path::Path;

/// A LoRA fine-tune: the training loop's settings and the adapter's.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoraPlan {
    /// Steps, batches, optimiser, evaluation, checkpoints, limits.
    pub train: TrainConfig,
    /// Rank, α, dropout, targets, rsLoRA.
    pub lora: LoraConfig,
}

impl LoraPlan {
    /// LoRA α when only the rank is given: `2 r` (α/r = 2, the scale of
    /// the default r=16, α=32).
    pub fn default_alpha(r: usize) -> f64 {
        2.0 * r as f64
    }

    /// Checks both halves.
    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        self.lora.validate()
    }
}

/// A plan's data, tokenised with the model's chat template.
#[derive(Debug, Default)]
pub struct LoraData {
    /// Training examples.
    pub train: Vec<Example>,
    /// Validation examples.
    pub val: Vec<Example>,
    /// What loading each file found (skipped lines, truncation).
    pub reports: Vec<DataReport>,
}

impl LoraData {
    /// Loads `train` (and `val`) JSONL for `engine` under `plan`'s
    /// `max_len` and bad-line policy.
    pub fn load(
        engine: &Engine,
        plan: &LoraPlan,
        train: &Path,
        val: Option<&Path>,
    ) -> Result<Self> {
        let template =
            engine.chat_template().map(|src| ChatTemplate::new(src, "", "")).transpose()?;
        let cfg = &plan.train;
        let load = |p: &Path| {
            load_jsonl(p, engine.tokenizer(), template.as_ref(), cfg.max_len, cfg.on_bad_line)
        };
        let (tr, rep) = load(train)?;
        let mut out = LoraData { train: tr, val: Vec::new(), reports: vec![rep] };
        if let Some(v) = val {
            let (val, rep) = load(v)?;
            out.val = val;
            out.reports.push(rep);
        }
        Ok(out)
    }
}

/// Fine-tunes an adapter of `engine`'s model (named after `base` in its
/// PEFT config) on `data` under `plan`, writing into `out` (resuming from
/// its newest checkpoint with `resume`): a new one, or `init` trained
/// further (a warm start: its rank, α and targets replace the plan's).
/// Returns the adapter as trained (the kept weights are in `out`) and the
/// report.
#[allow(clippy::too_many_arguments)]
pub fn fine_tune(
    engine: &Engine,
    plan: &LoraPlan,
    data: &LoraData,
    base: &str,
    out: &Path,
    resume: bool,
    init: Option<Adapter>,
    on_event: &mut dyn FnMut(&Event) -> Result<()>,
) -> Result<(Adapter, TrainReport)> {
    plan.validate()?;
    let adapter = match init {
        Some(mut a) => {
            a.make_trainable()?;
            a
        }
        None => {
            engine.install(|| Adapter::new(engine.model(), &plan.lora, base, plan.train.seed))?
        }
    };
    let report = engine.install(|| {
        train(
            Run {
                model: engine.model(),
                what: Trainable::Lora(&adapter),
                train: &data.train,
                val: &data.val,
                cfg: &plan.train,
                out,
                resume,
            },
            &mut |dir| adapter.save(dir),
            on_event,
        )
    })?;
    Ok((adapter, report))
}
