//! `forja eval`: evaluate a base model (or base + adapter) on a golden
//! set, or score a file of precomputed predictions, and print the metrics
//! (a table, or one JSON object with `--json`).

use crate::args::EvalArgs;
use crate::models;
use anyhow::{bail, Context, Result};
use forja_eval::report::parse_metrics;
use forja_eval::{EvalOptions, EvalReport, Normalization};
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;

fn read(p: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
}

pub fn run(a: EvalArgs) -> Result<ExitCode> {
    let normalization = match a.normalization.as_str() {
        "standard" => Normalization::Standard,
        "none" => Normalization::None,
        other => bail!("--normalization must be `standard` or `none`, not `{other}`"),
    };
    if a.probe {
        return probe(&a);
    }
    let wanted = a.metrics.as_deref().map(parse_metrics).transpose()?;
    let embedder = models::embedder(&a.embedding_model)?;
    let report = if let Some(p) = &a.predictions {
        let preds = forja_eval::parse_predictions(&p.display().to_string(), &read(p)?)?;
        forja_eval::score_predictions(&preds, normalization, embedder.as_deref())?
    } else {
        let p = a.golden.as_ref().expect("clap requires --golden or --predictions");
        let golden = forja_eval::parse_golden(&p.display().to_string(), &read(p)?)?;
        // Adapters are trained on the dequantized base: evaluate them on it too.
        let (engine, adapter) = load(&a, a.adapter.is_some())?;
        let eo = EvalOptions {
            batch_size: a.batch_size.max(1),
            max_tokens: a.max_tokens,
            normalization,
            loss: true,
        };
        let bar = ProgressBar::new(golden.examples.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("evaluating [{bar:30}] {pos}/{len} {elapsed}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        let mut progress = |done: usize, _: usize| bar.set_position(done as u64);
        let mut r = engine.install(|| {
            forja_eval::evaluate(
                &engine,
                adapter.as_ref(),
                &golden,
                &eo,
                embedder.as_deref(),
                &mut progress,
            )
        })?;
        bar.finish_and_clear();
        r.subject = Some(match &a.adapter {
            Some(d) => format!("{} + {}", a.model, d.display()),
            None => a.model.clone(),
        });
        r
    };
    if let Some(path) = &a.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    print(&report, wanted.as_deref(), a.json)?;
    Ok(ExitCode::SUCCESS)
}

/// The model of `a` (dequantized to f32 with `dequantize`, unless
/// `--quantize` asks for a format) and its `--adapter`, if any.
fn load(
    a: &EvalArgs,
    dequantize: bool,
) -> Result<(forja_engine::Engine, Option<forja_engine::lora::Adapter>)> {
    let opts = forja_engine::LoadOptions {
        threads: a.threads,
        dequantize: dequantize && a.quantize.is_none(),
        quantize: a.quantize,
        ..Default::default()
    };
    let engine = crate::run::load_with(&models::resolve(&a.model)?, &opts)?;
    let adapter = a.adapter.as_ref().map(|d| engine.load_adapter(d)).transpose()?;
    Ok((engine, adapter))
}

/// `forja eval --probe`: the general probe on the model (and adapter).
fn probe(a: &EvalArgs) -> Result<ExitCode> {
    // The gate's probe runs on the weights adapters train on (f32), unless
    // `--quantize` asks what quantization changes.
    let (engine, adapter) = load(a, true)?;
    let p = forja_eval::probe::general();
    let r = engine.install(|| forja_eval::probe::run(&engine, adapter.as_ref(), p))?;
    if let Some(path) = &a.report {
        std::fs::write(path, serde_json::to_vec_pretty(&r)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if a.json {
        println!("{}", r.summary());
    } else {
        println!("{}: {} questions", r.probe, r.items.len());
        println!("{:<12} {:.6}", "accuracy", r.accuracy);
        println!("{:<12} {:.6}", "mean_logprob", r.mean_logprob);
    }
    Ok(ExitCode::SUCCESS)
}

fn print(r: &EvalReport, wanted: Option<&[forja_eval::Metric]>, json: bool) -> Result<()> {
    let mut shown = serde_json::Map::new();
    match wanted {
        Some(ms) => {
            for m in ms {
                let v = r.get(*m).with_context(|| {
                    format!("metric `{m}` was not computed here (similarity needs an embedding model; loss and perplexity need --golden)")
                })?;
                shown.insert(m.name().into(), v.into());
            }
        }
        None => {
            for (k, v) in &r.metrics {
                shown.insert(k.clone(), (*v).into());
            }
        }
    }
    if json {
        println!("{}", serde_json::Value::Object(shown));
    } else {
        println!("{} examples", r.examples.len());
        for (k, v) in &shown {
            println!("{k:<12} {}", v.as_f64().map_or("-".into(), |x| format!("{x:.6}")));
        }
    }
    Ok(())
}
