//! `forja train`, `forja pretrain` and `forja merge`: config files and
//! flags in, engine training out, progress on stderr.

use crate::args::{MergeArgs, PretrainArgs, TrainArgs, TrainFlags};
use crate::models;
use anyhow::{bail, Context, Result};
use forja_engine::lora::parse_targets;
use forja_engine::train::pretrain::PretrainConfig;
use forja_engine::train::{self, Event, LoraData, LoraPlan, OnBadLine, TrainConfig, TrainReport};
use forja_engine::{Engine, LoadOptions};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use std::path::Path;
use std::process::ExitCode;

/// `[lora]` of a config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoraFile {
    r: Option<usize>,
    alpha: Option<f64>,
    dropout: Option<f64>,
    target_modules: Option<Targets>,
    rslora: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Targets {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    train: Option<TrainConfig>,
    lora: Option<LoraFile>,
    model: Option<PretrainConfig>,
}

fn read_config(path: Option<&Path>) -> Result<ConfigFile> {
    let Some(path) = path else { return Ok(ConfigFile::default()) };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim().replace('\n', " "))
    })
}

/// `--precision`.
pub(crate) fn parse_precision(p: &str) -> Result<train::Precision> {
    match p {
        "f32" => Ok(train::Precision::F32),
        "bf16" => Ok(train::Precision::Bf16),
        other => bail!("--precision takes f32 or bf16, not `{other}`"),
    }
}

fn apply_flags(mut c: TrainConfig, f: &TrainFlags) -> Result<TrainConfig> {
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = f.$field { c.$field = v; } )* };
    }
    set!(
        epochs,
        batch_size,
        grad_accum,
        lr,
        weight_decay,
        max_grad_norm,
        max_len,
        save_every,
        keep_checkpoints,
        seed
    );
    if f.max_steps.is_some() {
        c.max_steps = f.max_steps;
    }
    if f.warmup_steps.is_some() {
        c.warmup_steps = f.warmup_steps;
    }
    if f.eval_every.is_some() {
        c.eval_every = f.eval_every;
    }
    if f.patience.is_some() {
        c.patience = f.patience;
    }
    if f.time_limit.is_some() {
        c.time_limit_secs = f.time_limit;
    }
    if let Some(b) = &f.on_bad_line {
        c.on_bad_line = match b.as_str() {
            "skip" => OnBadLine::Skip,
            "fail" => OnBadLine::Fail,
            other => bail!("--on-bad-line takes skip or fail, not `{other}`"),
        };
    }
    if let Some(p) = &f.precision {
        c.precision = parse_precision(p)?;
    }
    c.validate()?;
    Ok(c)
}

/// Prints a line above the bar (or plainly when stderr is not a terminal,
/// where the bar is hidden and `println` would drop the line).
fn say(bar: &ProgressBar, line: String) {
    bar.suspend(|| eprintln!("{line}"));
}

/// A progress bar fed by training events; evaluations and checkpoints are
/// printed above it.
fn progress() -> (ProgressBar, impl FnMut(&Event) -> forja_engine::Result<()>) {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} training [{bar:30}] {pos}/{len} steps {msg} {elapsed}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let b = bar.clone();
    let cb = move |e: &Event| {
        match e {
        Event::Start { total_steps, resumed_from, trainable_params, .. } => {
            b.set_length(*total_steps as u64);
            b.set_position(*resumed_from as u64);
            say(&b, format!("training {trainable_params} parameters for {total_steps} steps"));
        }
        Event::Step { step, loss, lr, tok_per_s, .. } => {
            b.set_position(*step as u64);
            b.set_message(format!("loss {loss:.4} lr {lr:.2e} {tok_per_s:.0} tok/s"));
        }
        Event::Eval { step, loss, perplexity, token_accuracy, best } => say(&b, format!(
            "step {step}: validation loss {loss:.4} (perplexity {perplexity:.2}, token accuracy {:.1}%){}",
            token_accuracy * 100.0,
            if *best { " best" } else { "" }
        )),
        Event::Warning { message } => say(&b, format!("warning: {message}")),
        Event::Checkpoint { .. } | Event::Done { .. } => {}
    }
        Ok(())
    };
    (bar, cb)
}

fn summarize(report: &TrainReport, out: &Path) {
    eprintln!(
        "done: {} steps ({}), {:.0}s, {} tokens; training loss {:.4} -> {:.4}",
        report.steps,
        report.stopped_by,
        report.seconds,
        report.tokens,
        report.first_loss,
        report.last_loss
    );
    if let (Some(v0), Some(v1)) = (report.initial_val_loss, report.best_val_loss) {
        eprintln!("validation loss {v0:.4} -> {v1:.4} (kept step {})", report.kept_step);
    } else {
        eprintln!("kept step {} (no validation set)", report.kept_step);
    }
    eprintln!("output: {}", out.display());
}

fn data_report(r: &train::DataReport) {
    eprintln!(
        "{}: {} examples from {} lines, {} tokens ({} trained on){}",
        r.path.display(),
        r.examples,
        r.lines,
        r.tokens,
        r.target_tokens,
        if r.truncated > 0 {
            format!(", {} truncated to max_len", r.truncated)
        } else {
            String::new()
        }
    );
    for (line, why) in r.skipped.iter().take(5) {
        eprintln!("warning: {}:{line}: {why} (skipped)", r.path.display());
    }
    if r.skipped.len() > 5 {
        eprintln!("warning: {} more lines skipped", r.skipped.len() - 5);
    }
}

/// The plan of `forja train`: the engine's defaults (the same the
/// control plane's worker starts from), then the config file, then flags.
fn plan(a: &TrainArgs) -> Result<LoraPlan> {
    let file = read_config(a.config.as_deref())?;
    let mut p = LoraPlan {
        train: apply_flags(file.train.unwrap_or_default(), &a.flags)?,
        ..Default::default()
    };
    let lf = file.lora.unwrap_or_default();
    let l = &mut p.lora;
    l.r = a.lora_r.or(lf.r).unwrap_or(l.r);
    l.alpha = a.lora_alpha.or(lf.alpha).unwrap_or(LoraPlan::default_alpha(l.r));
    l.dropout = a.lora_dropout.or(lf.dropout).unwrap_or(l.dropout);
    l.rslora = a.rslora || lf.rslora.unwrap_or(false);
    let targets = match (&a.target_modules, lf.target_modules) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(Targets::One(t))) => Some(t),
        (None, Some(Targets::Many(v))) => Some(v.join(",")),
        (None, None) => None,
    };
    if let Some(t) = targets {
        l.targets = parse_targets(&t)?;
    }
    p.validate()?;
    Ok(p)
}

pub fn train(a: TrainArgs) -> Result<ExitCode> {
    let plan = plan(&a)?;
    let path = models::resolve(&a.base)?;
    let opts = LoadOptions {
        threads: a.flags.threads,
        dequantize: true,
        device: a.flags.device.clone(),
        ..Default::default()
    };
    let engine = crate::run::load_with(&path, &opts)?;
    let data = LoraData::load(&engine, &plan, &a.data, a.val.as_deref())?;
    data.reports.iter().for_each(data_report);
    let l = &plan.lora;
    let (bar, mut cb) = progress();
    bar.suspend(|| {
        eprintln!(
            "LoRA r={} alpha={} dropout={} on {}",
            l.r,
            l.alpha,
            l.dropout,
            l.targets.iter().map(|m| m.name()).collect::<Vec<_>>().join(",")
        )
    });
    let out =
        train::fine_tune(&engine, &plan, &data, &a.base, &a.out, a.flags.resume, None, &mut cb);
    bar.finish_and_clear();
    let (adapter, report) = out?;
    eprintln!("{} trainable parameters", adapter.num_params());
    summarize(&report, &a.out);
    Ok(ExitCode::SUCCESS)
}

/// Documents of a pre-training corpus: each `.txt` file is one, each
/// JSONL line's `text` is one.
fn read_corpus(paths: &[std::path::PathBuf]) -> Result<Vec<String>> {
    let mut docs = Vec::new();
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<_> = std::fs::read_dir(p)
                .with_context(|| format!("cannot read {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "txt"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    for f in files {
        let text = std::fs::read_to_string(&f)
            .with_context(|| format!("cannot read {} as UTF-8 text", f.display()))?;
        if f.extension().is_some_and(|x| x == "jsonl") {
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let v: serde_json::Value = serde_json::from_str(line)
                    .with_context(|| format!("{}:{}: not JSON", f.display(), i + 1))?;
                let t = v.get("text").and_then(|t| t.as_str()).with_context(|| {
                    format!("{}:{}: no string field `text`", f.display(), i + 1)
                })?;
                docs.push(t.to_string());
            }
        } else {
            docs.push(text);
        }
    }
    Ok(docs)
}

pub fn pretrain(a: PretrainArgs) -> Result<ExitCode> {
    if a.flags.device != "cpu" {
        anyhow::bail!(
            "--device {}: forja pretrain runs on the CPU; pre-train on GPUs with --emit megatron|deepspeed",
            a.flags.device
        );
    }
    if let Some(engine) = a.emit {
        let path = a.config.as_deref().context("--emit needs --config with the cluster plan")?;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let plan = crate::pretrain_emit::Plan::from_toml(&text)
            .with_context(|| path.display().to_string())?;
        let s = crate::pretrain_emit::emit(&plan, engine, &a.out)
            .with_context(|| path.display().to_string())?;
        println!(
            "world {} GPUs: data parallel {}, model parallel {} (tensor {} × pipeline {} × context {}){}, \
             {} accumulation steps, {} tokens per iteration\nwrote {}",
            s.world,
            s.data_parallel,
            s.model_parallel,
            plan.parallel.tensor,
            plan.parallel.pipeline,
            plan.parallel.context,
            s.expert_data_parallel
                .map(|e| format!(", expert parallel {} (expert data parallel {e})", plan.parallel.expert))
                .unwrap_or_default(),
            s.grad_accumulation,
            s.tokens_per_iteration,
            a.out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let file = read_config(a.config.as_deref())?;
    let cfg = apply_flags(file.train.unwrap_or_default(), &a.flags)?;
    let mut m = file.model.unwrap_or_default();
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = a.$field { m.$field = v; } )* };
    }
    set!(vocab_size, hidden, intermediate, layers, heads, kv_heads, seq_len);
    let docs = read_corpus(&a.corpus)?;
    eprintln!(
        "corpus: {} documents, {} bytes",
        docs.len(),
        docs.iter().map(String::len).sum::<usize>()
    );
    let threads = a
        .flags
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = forja_engine::SpinPool::new(threads)?;
    let (bar, mut cb) = progress();
    let report = pool
        .install(|| train::pretrain::pretrain(&docs, &m, &cfg, &a.out, a.flags.resume, &mut cb));
    bar.finish_and_clear();
    summarize(&report?, &a.out);
    Ok(ExitCode::SUCCESS)
}

pub fn merge(a: MergeArgs) -> Result<ExitCode> {
    let path = models::resolve(&a.base)?;
    let opts = LoadOptions { dequantize: true, ..Default::default() };
    let mut engine: Engine = crate::run::load_with(&path, &opts)?;
    let adapter = engine.load_adapter(&a.adapter)?;
    engine.model_mut().merge_adapter(&adapter, 1.0)?;
    engine.save_hf(&a.out)?;
    eprintln!("merged {} into {}: {}", a.adapter.display(), a.base, a.out.display());
    Ok(ExitCode::SUCCESS)
}
