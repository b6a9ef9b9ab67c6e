//! The trainer: LoRA supervised fine-tuning on a frozen base, or full
//! training of every weight (pre-training), with one loop.
//!
//! Per optimizer step: `grad_accum` micro-batches, each a forward over
//! right-padded sequences, the loss (mean negative log-likelihood over the
//! target tokens of the whole step; logits are computed only at target
//! positions), backward, gradients summed; then global-norm clipping, AdamW,
//! the learning-rate schedule. Every `eval_every` steps the validation set
//! is scored (loss, perplexity, token accuracy), the best adapter is kept and
//! early stopping counts patience; every `save_every` steps a checkpoint
//! (weights, optimizer moments, position in the data) is written
//! atomically, so `resume` continues a killed run on the same loss curve:
//! data order and dropout masks are functions of (seed, epoch, step), not
//! of a generator's history.

mod checkpoint;
pub mod data;
pub mod optim;
mod plan;
pub mod pretrain;

use crate::lora::{Adapter, Dropout};
use crate::models::llama::{Llama, Lora};
use crate::{EngineError, Result};
use candle_core::{Device, Tensor, Var};
use data::Example;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use data::{load_jsonl, pack_texts, DataReport, OnBadLine};
pub use plan::{fine_tune, LoraData, LoraPlan};

/// How a run trains and when it stops. Field names are the config-file keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the training data (ignored when `max_steps` is set).
    pub epochs: usize,
    /// Train exactly this many optimizer steps, cycling through the data as
    /// often as needed (as `max_steps` does in Hugging Face's Trainer).
    pub max_steps: Option<usize>,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Floor of the cosine decay, as a fraction of `lr`.
    pub min_lr_ratio: f64,
    /// Linear warm-up steps (`None`: 5 % of the run, at least 1).
    pub warmup_steps: Option<usize>,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// AdamW β₁.
    pub beta1: f64,
    /// AdamW β₂.
    pub beta2: f64,
    /// Clip the global gradient norm to this (0: no clipping).
    pub max_grad_norm: f64,
    /// Examples longer than this many tokens are cut (and counted).
    pub max_len: usize,
    /// Validate every this many steps (`None`: once per epoch).
    pub eval_every: Option<usize>,
    /// Stop after this many evaluations without a better validation loss.
    pub patience: Option<usize>,
    /// Checkpoint every this many steps (0: only at the end).
    pub save_every: usize,
    /// Checkpoints kept on disk (the newest ones).
    pub keep_checkpoints: usize,
    /// Stop cleanly (keeping the best adapter) after this many seconds.
    /// The clock is read after each step, so one step always runs (`0`
    /// stops right after it); a limit too far away to represent never fires.
    pub time_limit_secs: Option<u64>,
    /// Seed of data order, adapter initialisation and dropout.
    pub seed: u64,
    /// What to do with unusable data lines.
    pub on_bad_line: OnBadLine,
    /// Arithmetic of the products over the frozen weights.
    pub precision: Precision,
}

/// Arithmetic of a training step's products over frozen weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 throughout.
    #[default]
    F32,
    /// Inputs of the frozen-weight products rounded to BF16, sums in f32,
    /// on AMX tiles (the adapter, its gradients and the optimizer stay
    /// f32), as PyTorch's CPU autocast does. Needs AMX-BF16.
    Bf16,
}

impl Precision {
    /// The name the config file and `--precision` take.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Whether this CPU runs it.
    pub fn available(self) -> bool {
        self == Precision::F32 || crate::grad::bf16_available()
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 3,
            max_steps: None,
            batch_size: 4,
            grad_accum: 1,
            lr: 2e-4,
            min_lr_ratio: 0.1,
            warmup_steps: None,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            max_grad_norm: 1.0,
            max_len: 1024,
            eval_every: None,
            patience: None,
            save_every: 50,
            keep_checkpoints: 2,
            time_limit_secs: None,
            seed: 42,
            on_bad_line: OnBadLine::Skip,
            precision: Precision::F32,
        }
    }
}

impl TrainConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, reason: &str| {
            Err(EngineError::Params(forja_core::CoreError::InvalidParam {
                name,
                reason: reason.into(),
            }))
        };
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1");
        }
        if self.grad_accum == 0 {
            return bad("grad_accum", "must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", "must be a positive number");
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad("min_lr_ratio", "must be in [0, 1]");
        }
        if self.max_len < 2 {
            return bad("max_len", "must be at least 2");
        }
        if !self.precision.available() {
            return bad(
                "precision",
                "bf16 needs a CPU with AMX-BF16 tiles (Intel Sapphire Rapids or later, Linux 5.16 or later); this one has none: use f32",
            );
        }
        if self.max_steps == Some(0) {
            return bad("max_steps", "must be at least 1");
        }
        if self.epochs == 0 && self.max_steps.is_none() {
            return bad("epochs", "must be at least 1 (or give max_steps)");
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad("beta1", "β₁ and β₂ must be in [0, 1)");
        }
        if self.epochs > MAX_EPOCHS {
            return bad("epochs", "must be at most 10000");
        }
        Ok(())
    }
}

/// More passes than any real run needs; bounds the step count arithmetic.
const MAX_EPOCHS: usize = 10_000;

/// One training run: what is trained, on what data, how, and where.
pub struct Run<'a> {
    /// The model (frozen base for LoRA, or the weights themselves).
    pub model: &'a Llama,
    /// What is trained.
    pub what: Trainable<'a>,
    /// Training examples.
    pub train: &'a [Example],
    /// Validation examples (may be empty).
    pub val: &'a [Example],
    /// How.
    pub cfg: &'a TrainConfig,
    /// Where checkpoints, events and the kept weights go.
    pub out: &'a Path,
    /// Continue from the newest checkpoint in `out`, if any.
    pub resume: bool,
}

/// What is trained.
pub enum Trainable<'a> {
    /// A LoRA adapter (its `vars` are trained; the base is frozen).
    Lora(&'a Adapter),
    /// Every weight of the model (named variables from `Weights::random`
    /// or `Weights::trainable`).
    Full(&'a [(String, Var)]),
}

impl Trainable<'_> {
    /// The trained variables.
    pub fn vars(&self) -> &[(String, Var)] {
        match self {
            Trainable::Lora(a) => a.vars(),
            Trainable::Full(v) => v,
        }
    }
}

/// Progress and results, also written as JSON lines to `events.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run starts (or resumes).
    Start {
        /// Optimizer steps planned.
        total_steps: usize,
        /// Steps per epoch.
        steps_per_epoch: usize,
        /// Trainable parameters.
        trainable_params: usize,
        /// Step the run resumes from (0 for a fresh run).
        resumed_from: usize,
    },
    /// One optimizer step done.
    Step {
        /// 1-based step.
        step: usize,
        /// Epoch (0-based) the step belongs to.
        epoch: usize,
        /// Mean loss over the step's target tokens.
        loss: f64,
        /// Learning rate used.
        lr: f64,
        /// Gradient norm before clipping.
        grad_norm: f64,
        /// Tokens processed (padding excluded).
        tokens: usize,
        /// Tokens per second over this step.
        tok_per_s: f64,
    },
    /// Validation scores.
    Eval {
        /// After this step.
        step: usize,
        /// Mean loss over validation target tokens.
        loss: f64,
        /// `exp(loss)`.
        perplexity: f64,
        /// Share of target tokens that are the arg-max prediction.
        token_accuracy: f64,
        /// Whether this is the best so far (and was saved as such).
        best: bool,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Its step.
        step: usize,
        /// Its directory.
        path: PathBuf,
    },
    /// Something the user should know (skipped lines, truncation, ...).
    Warning {
        /// What.
        message: String,
    },
    /// The run ended.
    Done {
        /// Steps taken.
        steps: usize,
        /// Why it stopped: `completed`, `max_steps`, `early_stopping`, `time_limit`.
        stopped_by: String,
        /// The step whose weights were kept (best validation loss, or last).
        kept_step: usize,
        /// Its validation loss, if validated.
        best_val_loss: Option<f64>,
    },
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Optimizer steps taken.
    pub steps: usize,
    /// Why it stopped.
    pub stopped_by: String,
    /// The step whose weights are in the output directory.
    pub kept_step: usize,
    /// Validation loss of the kept weights.
    pub best_val_loss: Option<f64>,
    /// Validation loss before training (step 0), if validated.
    pub initial_val_loss: Option<f64>,
    /// Training loss of the first and last step.
    pub first_loss: f64,
    /// Last step's training loss.
    pub last_loss: f64,
    /// Tokens trained on (padding excluded).
    pub tokens: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Validation scores of a model (with an optional adapter) on `examples`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    /// Mean loss over target tokens.
    pub loss: f64,
    /// Share of target tokens predicted exactly (arg-max).
    pub token_accuracy: f64,
    /// Target tokens scored.
    pub tokens: usize,
}

/// A padded micro-batch: ids `[B, T]`, and for the loss the flattened row
/// of each scored position and its target token.
struct Batch {
    ids: Tensor,
    rows: Tensor,
    targets: Vec<u32>,
    tokens: usize,
}

fn make_batch(examples: &[&Example], pad: u32, dev: &Device) -> Result<Batch> {
    let t = examples.iter().map(|e| e.ids.len()).max().unwrap_or(1);
    let mut ids = Vec::with_capacity(examples.len() * t);
    let (mut rows, mut targets) = (Vec::new(), Vec::new());
    let mut tokens = 0;
    for (b, e) in examples.iter().enumerate() {
        ids.extend(&e.ids);
        ids.extend(std::iter::repeat_n(pad, t - e.ids.len()));
        tokens += e.ids.len();
        for p in 0..e.ids.len() - 1 {
            if e.target[p + 1] {
                rows.push((b * t + p) as u32);
                targets.push(e.ids[p + 1]);
            }
        }
    }
    let n_targets = rows.len();
    Ok(Batch {
        ids: Tensor::from_vec(ids, (examples.len(), t), dev)?,
        rows: Tensor::from_vec(rows, n_targets, dev)?,
        targets,
        tokens,
    })
}

/// Summed NLL over the batch's targets, and the number predicted right.
fn batch_loss(model: &Llama, lora: Lora<'_>, b: &Batch) -> Result<(Tensor, usize)> {
    let hidden = model.hidden_full(&b.ids, lora)?;
    model.nll(&hidden.index_select(&b.rows, 0)?, &b.targets, lora.bf16)
}

/// Mean negative log-likelihood over the target tokens of `examples`, as a
/// differentiable scalar (what the trainer minimises).
pub fn mean_loss(model: &Llama, lora: Lora<'_>, examples: &[&Example]) -> Result<Tensor> {
    let b = make_batch(examples, 0, model.device())?;
    if b.targets.is_empty() {
        return Err(EngineError::Training("these examples have no target tokens".into()));
    }
    let (nll, _) = batch_loss(model, lora, &b)?;
    Ok((nll / b.targets.len() as f64)?)
}

/// One optimizer step on one micro-batch, without the loop's bookkeeping
/// (benchmarks). Returns the loss before the step.
pub fn single_step(
    model: &Llama,
    what: &Trainable<'_>,
    examples: &[&Example],
    opt: &mut optim::AdamW,
    lr: f64,
    precision: Precision,
) -> Result<f64> {
    let _idle_yield = crate::parallel::IdleYield::on();
    let adapter = match what {
        Trainable::Lora(a) => Some(*a),
        Trainable::Full(_) => None,
    };
    let lora = Lora { bf16: precision == Precision::Bf16, ..Lora::with(adapter) };
    let loss = mean_loss(model, lora, examples)?;
    let store = loss.backward()?;
    let grads: Vec<Tensor> = what
        .vars()
        .iter()
        .map(|(_, v)| {
            store.get(v.as_tensor()).cloned().map_or_else(|| v.as_tensor().zeros_like(), Ok)
        })
        .collect::<candle_core::Result<_>>()?;
    opt.step(what.vars(), &grads, lr)?;
    Ok(loss.to_scalar::<f32>()? as f64)
}

/// Scores `examples` (no gradients; the adapter is used frozen).
pub fn evaluate(
    model: &Llama,
    adapter: Option<&Adapter>,
    examples: &[Example],
    batch_size: usize,
) -> Result<Scores> {
    let frozen = adapter.map(Adapter::frozen).transpose()?;
    let lora = Lora::with(frozen.as_ref());
    let pad = 0;
    let (mut loss, mut correct, mut n) = (0f64, 0usize, 0usize);
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| examples[i].ids.len());
    for chunk in order.chunks(batch_size.max(1)) {
        let refs: Vec<&Example> = chunk.iter().map(|&i| &examples[i]).collect();
        let b = make_batch(&refs, pad, model.device())?;
        if b.targets.is_empty() {
            continue;
        }
        let (nll, c) = batch_loss(model, lora, &b)?;
        loss += nll.to_scalar::<f32>()? as f64;
        correct += c;
        n += b.targets.len();
    }
    Ok(Scores {
        loss: loss / n.max(1) as f64,
        token_accuracy: correct as f64 / n.max(1) as f64,
        tokens: n,
    })
}

/// Where a run writes (all inside `out`).
#[derive(Debug, Clone)]
pub struct RunPaths {
    /// The output directory.
    pub out: PathBuf,
}

impl RunPaths {
    fn checkpoints(&self) -> PathBuf {
        self.out.join("checkpoints")
    }
    fn best(&self) -> PathBuf {
        self.out.join("best")
    }
    fn events(&self) -> PathBuf {
        self.out.join("events.jsonl")
    }
}

/// Trains `run.what` on `run.train` (validating on `run.val`), writing
/// checkpoints, events and the kept weights into `run.out`. With
/// `run.resume`, continues from the newest checkpoint in `out` if there is
/// one. `save_kept` writes the kept weights (the best by validation loss,
/// or the last) into `out`. `on_event` sees every event as it is logged;
/// an error it returns stops the run at once with that error (a cancelled
/// job, a lost lease), the last checkpoint staying on disk for a later
/// `resume`.
pub fn train(
    run: Run<'_>,
    save_kept: &mut dyn FnMut(&Path) -> Result<()>,
    on_event: &mut dyn FnMut(&Event) -> Result<()>,
) -> Result<TrainReport> {
    let Run { model, what, train, val, cfg, out, resume } = run;
    cfg.validate()?;
    let _idle_yield = crate::parallel::IdleYield::on();
    let started = Instant::now();
    let paths = RunPaths { out: out.to_path_buf() };
    std::fs::create_dir_all(&paths.out).map_err(|e| EngineError::io(&paths.out, e))?;
    let vars = what.vars();
    if vars.is_empty() {
        return Err(EngineError::Training("nothing to train: no trainable parameters".into()));
    }
    let lens: Vec<usize> = train.iter().map(|e| e.ids.len()).collect();
    let steps_per_epoch = lens.len().div_ceil(cfg.batch_size).div_ceil(cfg.grad_accum).max(1);
    let total_steps = match cfg.max_steps {
        Some(n) => n,
        None => steps_per_epoch.checked_mul(cfg.epochs).ok_or_else(|| {
            EngineError::Training(format!(
                "{} epochs of {steps_per_epoch} steps is too many steps",
                cfg.epochs
            ))
        })?,
    };
    let warmup = cfg.warmup_steps.unwrap_or((total_steps / 20).max(1));
    let eval_every = cfg.eval_every.unwrap_or(steps_per_epoch).max(1);
    let fingerprint = checkpoint::fingerprint(cfg, train, val, vars);
    let mut opt = optim::AdamW::new(vars, cfg.beta1, cfg.beta2, 1e-8, cfg.weight_decay);
    let mut state = checkpoint::State::fresh(fingerprint.clone());
    let mut events = checkpoint::EventLog::open(&paths.events(), !resume)?;
    if resume {
        if let Some(dir) = checkpoint::latest(&paths.checkpoints())? {
            state = checkpoint::load(&dir, vars, &mut opt, fingerprint)?;
            events.truncate_after(state.step)?;
        }
    }
    let mut emit = |e: Event, events: &mut checkpoint::EventLog| -> Result<()> {
        events.append(&e)?;
        on_event(&e)
    };
    let trainable_params = vars.iter().map(|(_, v)| v.elem_count()).sum();
    emit(
        Event::Start { total_steps, steps_per_epoch, trainable_params, resumed_from: state.step },
        &mut events,
    )?;
    // A limit too far to represent (u64::MAX seconds) is no limit.
    let deadline = cfg.time_limit_secs.and_then(|s| started.checked_add(Duration::from_secs(s)));
    let dropout_p = match &what {
        Trainable::Lora(a) => a.config().dropout,
        Trainable::Full(_) => 0.0,
    };
    let adapter = match &what {
        Trainable::Lora(a) => Some(*a),
        Trainable::Full(_) => None,
    };
    if state.step == 0 && !val.is_empty() {
        let s = evaluate(model, adapter, val, cfg.batch_size)?;
        state.initial_val_loss = Some(s.loss);
    }
    let mut stopped_by = None;
    let pad = 0u32;
    'epochs: while state.step < total_steps {
        let batches = data::epoch_batches(&lens, cfg.batch_size, cfg.seed, state.epoch);
        let steps: Vec<&[Vec<usize>]> = batches.chunks(cfg.grad_accum).collect();
        while state.batch_in_epoch < steps.len() && state.step < total_steps {
            let t0 = Instant::now();
            let micro = steps[state.batch_in_epoch];
            let mut made = Vec::with_capacity(micro.len());
            for mb in micro {
                let refs: Vec<&Example> = mb.iter().map(|&i| &train[i]).collect();
                made.push(make_batch(&refs, pad, model.device())?);
            }
            let n_total: usize = made.iter().map(|b| b.targets.len()).sum::<usize>().max(1);
            let mut grads: Option<Vec<Tensor>> = None;
            let (mut loss_sum, mut tokens) = (0f64, 0usize);
            for (mi, b) in made.iter().enumerate() {
                if b.targets.is_empty() {
                    continue;
                }
                // Dropout masks depend only on (seed, step, micro-batch).
                let d = Dropout::new(
                    dropout_p,
                    cfg.seed ^ ((state.step as u64) << 16) ^ mi as u64 ^ 0xD50F,
                );
                let lora = Lora {
                    adapter,
                    dropout: (dropout_p > 0.0).then_some(&d),
                    bf16: cfg.precision == Precision::Bf16,
                };
                let (nll, _) = batch_loss(model, lora, b)?;
                let nll_value = nll.to_scalar::<f32>()? as f64;
                if !nll_value.is_finite() {
                    return Err(non_finite(&state, &paths, cfg));
                }
                loss_sum += nll_value;
                tokens += b.tokens;
                let store = (nll / n_total as f64)?.backward()?;
                let g: Vec<Tensor> = vars
                    .iter()
                    .map(|(_, v)| match store.get(v.as_tensor()) {
                        Some(g) => Ok(g.clone()),
                        None => v.as_tensor().zeros_like(),
                    })
                    .collect::<candle_core::Result<_>>()?;
                grads = Some(match grads {
                    None => g,
                    Some(acc) => acc
                        .iter()
                        .zip(&g)
                        .map(|(a, b)| a + b)
                        .collect::<candle_core::Result<_>>()?,
                });
            }
            let Some(grads) = grads else {
                state.batch_in_epoch += 1;
                continue;
            };
            let (grad_norm, grads) = optim::clip(grads, cfg.max_grad_norm)?;
            if !grad_norm.is_finite() {
                return Err(non_finite(&state, &paths, cfg));
            }
            let lr = optim::lr_at(state.step, cfg.lr, warmup, total_steps, cfg.min_lr_ratio);
            opt.step(vars, &grads, lr)?;
            state.step += 1;
            state.batch_in_epoch += 1;
            state.tokens += tokens;
            let loss = loss_sum / n_total as f64;
            state.first_loss.get_or_insert(loss);
            state.last_loss = loss;
            let secs = t0.elapsed().as_secs_f64();
            emit(
                Event::Step {
                    step: state.step,
                    epoch: state.epoch,
                    loss,
                    lr,
                    grad_norm,
                    tokens,
                    tok_per_s: tokens as f64 / secs.max(1e-9),
                },
                &mut events,
            )?;
            let last = state.step == total_steps;
            if !val.is_empty() && (state.step.is_multiple_of(eval_every) || last) {
                let s = evaluate(model, adapter, val, cfg.batch_size)?;
                let best = state.best_val.is_none_or(|(_, l)| s.loss < l);
                if best {
                    state.best_val = Some((state.step, s.loss));
                    state.evals_since_best = 0;
                    checkpoint::save_weights_atomic(&paths.best(), what_ref(&what), vars)?;
                } else {
                    state.evals_since_best += 1;
                }
                emit(
                    Event::Eval {
                        step: state.step,
                        loss: s.loss,
                        perplexity: s.loss.exp(),
                        token_accuracy: s.token_accuracy,
                        best,
                    },
                    &mut events,
                )?;
                if cfg.patience.is_some_and(|p| state.evals_since_best >= p) {
                    stopped_by = Some("early_stopping");
                    break 'epochs;
                }
            }
            if cfg.save_every > 0 && state.step.is_multiple_of(cfg.save_every) && !last {
                // The state says where to continue: a finished epoch resumes
                // at the next one (the loop below moves on).
                let dir =
                    checkpoint::save(&paths.checkpoints(), &state, what_ref(&what), vars, &opt)?;
                checkpoint::prune(&paths.checkpoints(), cfg.keep_checkpoints)?;
                emit(Event::Checkpoint { step: state.step, path: dir }, &mut events)?;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) && state.step < total_steps {
                stopped_by = Some("time_limit");
                break 'epochs;
            }
        }
        if state.batch_in_epoch >= steps.len() {
            state.epoch += 1;
            state.batch_in_epoch = 0;
        }
    }
    let stopped_by = stopped_by
        .unwrap_or(if cfg.max_steps.is_some() { "max_steps" } else { "completed" })
        .to_string();
    // The final checkpoint holds the last weights (a resumed run goes on
    // from there); the output holds the best ones by validation loss.
    if cfg.save_every > 0 {
        let dir = checkpoint::save(&paths.checkpoints(), &state, what_ref(&what), vars, &opt)?;
        checkpoint::prune(&paths.checkpoints(), cfg.keep_checkpoints)?;
        emit(Event::Checkpoint { step: state.step, path: dir }, &mut events)?;
    }
    let (kept_step, best_val_loss) = match state.best_val {
        Some((step, loss)) => {
            checkpoint::restore_weights(&paths.best(), what_ref(&what), vars)?;
            (step, Some(loss))
        }
        None => (state.step, None),
    };
    save_kept(&paths.out)?;
    emit(
        Event::Done { steps: state.step, stopped_by: stopped_by.clone(), kept_step, best_val_loss },
        &mut events,
    )?;
    let report = TrainReport {
        steps: state.step,
        stopped_by,
        kept_step,
        best_val_loss,
        initial_val_loss: state.initial_val_loss,
        first_loss: state.first_loss.unwrap_or(f64::NAN),
        last_loss: state.last_loss,
        tokens: state.tokens,
        seconds: started.elapsed().as_secs_f64(),
    };
    let rp = paths.out.join("training_report.json");
    std::fs::write(&rp, serde_json::to_string_pretty(&report).expect("json"))
        .map_err(|e| EngineError::io(&rp, e))?;
    Ok(report)
}

fn what_ref<'a>(w: &'a Trainable<'a>) -> checkpoint::Kind<'a> {
    match w {
        Trainable::Lora(a) => checkpoint::Kind::Lora(a),
        Trainable::Full(_) => checkpoint::Kind::Full,
    }
}

fn non_finite(state: &checkpoint::State, paths: &RunPaths, cfg: &TrainConfig) -> EngineError {
    let kept = match checkpoint::latest(&paths.checkpoints()) {
        Ok(Some(dir)) => format!("the last good checkpoint is {}", dir.display()),
        _ => "no checkpoint was written yet".to_string(),
    };
    EngineError::Training(format!(
        "the loss became NaN or infinite at step {} (peak learning rate {:e}); {kept}; lower the learning rate or check the data",
        state.step + 1,
        cfg.lr
    ))
}
