//! Hyperparameters and job specs: every field checked at the API (a job
//! that cannot train is refused when it is asked for, not when it runs),
//! "auto" resolved from the dataset size, and the resolved values turned
//! into the engine's [`LoraPlan`] (the same plan `forja train` builds).

use crate::{ControlError, Result};
use forja_engine::train::{LoraPlan, OnBadLine, TrainConfig};
use forja_store::{Auto, HyperRequest, Hyperparameters, JobSpec};

/// forja's base learning rate for LoRA (× `learning_rate_multiplier`):
/// the engine's default.
pub fn base_lr() -> f64 {
    TrainConfig::default().lr
}

/// Longest wall-clock limit a job may ask for: 7 days.
pub const MAX_TIME_LIMIT_S: u64 = 7 * 24 * 3600;

/// Checks the fixed settings of a job (hyperparameters are checked when
/// resolved): time limit, resources, suffix, metadata.
pub fn check_spec(spec: &JobSpec) -> Result<()> {
    let bad = |p: &str, why: String| Err(ControlError::invalid(p, why));
    if let Some(t) = spec.time_limit_s {
        if !(1..=MAX_TIME_LIMIT_S).contains(&t) {
            return bad(
                "time_limit_s",
                format!("must be between 1 and {MAX_TIME_LIMIT_S} seconds"),
            );
        }
    }
    let r = &spec.resources;
    if r.gpus > 64 {
        return bad("resources.gpus", "at most 64".into());
    }
    if r.memory_gb > 4096 {
        return bad("resources.memory_gb", "at most 4096".into());
    }
    if let Some(s) = &spec.suffix {
        if s.is_empty()
            || s.len() > 64
            || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad("suffix", "1 to 64 characters of a-z, A-Z, 0-9, - and _".into());
        }
    }
    if spec.metadata.len() > 16 {
        return bad("metadata", "at most 16 entries".into());
    }
    for (k, v) in &spec.metadata {
        if k.is_empty() || k.chars().count() > 64 || v.chars().count() > 512 {
            return bad("metadata", "keys of 1 to 64 characters, values of at most 512".into());
        }
    }
    Ok(())
}

/// The engine plan for resolved hyperparameters and a job's spec: the
/// engine's defaults, with what the job decided.
pub fn plan(hp: &Hyperparameters, spec: &JobSpec) -> Result<LoraPlan> {
    let mut p = LoraPlan::default();
    let t = &mut p.train;
    t.epochs = hp.n_epochs as usize;
    t.batch_size = hp.batch_size as usize;
    t.lr = hp.learning_rate;
    t.save_every = hp.save_every as usize;
    t.seed = hp.seed;
    t.time_limit_secs = spec.time_limit_s;
    t.on_bad_line = OnBadLine::Fail;
    p.lora.r = hp.lora_r as usize;
    p.lora.alpha = hp.lora_alpha;
    p.lora.targets = forja_engine::lora::parse_targets(&hp.lora_targets)
        .map_err(|e| ControlError::invalid("hyperparameters.lora_targets", e.to_string()))?;
    p.validate()?;
    Ok(p)
}

fn pick<T: Copy>(a: &Auto<T>, auto: T) -> T {
    match a {
        Auto::Auto => auto,
        Auto::Value(v) => *v,
    }
}

/// Resolves `req` for a dataset of `n` examples. Auto: batch size grows
/// with the data (1 to 8), epochs aim at ~200 example passes (1 to 10),
/// LoRA r=16 α=32 on every linear layer, a checkpoint every tenth of the
/// run.
pub fn resolve(req: &HyperRequest, n: u64, seed: u64) -> Result<Hyperparameters> {
    let batch_size = pick(
        &req.batch_size,
        match n {
            0..16 => 1,
            16..64 => 2,
            64..512 => 4,
            _ => 8,
        },
    );
    let n_epochs = pick(&req.n_epochs, (200u64.div_ceil(n.max(1))).clamp(1, 10) as u32);
    let mult = pick(&req.learning_rate_multiplier, 1.0);
    let lora_r = pick(&req.lora_r, 16);
    let lora_alpha = pick(&req.lora_alpha, LoraPlan::default_alpha(lora_r as usize));
    let lora_targets = match &req.lora_targets {
        Auto::Auto => "all-linear".to_string(),
        Auto::Value(t) => t.clone(),
    };
    if !(1..=50).contains(&n_epochs) {
        return Err(ControlError::invalid("hyperparameters.n_epochs", "must be in 1..=50"));
    }
    if !(1..=256).contains(&batch_size) {
        return Err(ControlError::invalid("hyperparameters.batch_size", "must be in 1..=256"));
    }
    if !(mult.is_finite() && mult > 0.0 && mult <= 100.0) {
        return Err(ControlError::invalid(
            "hyperparameters.learning_rate_multiplier",
            "must be a number in (0, 100]",
        ));
    }
    if !(1..=256).contains(&lora_r) {
        return Err(ControlError::invalid("hyperparameters.lora_r", "must be in 1..=256"));
    }
    if !(lora_alpha.is_finite() && lora_alpha > 0.0) {
        return Err(ControlError::invalid("hyperparameters.lora_alpha", "must be positive"));
    }
    forja_engine::lora::parse_targets(&lora_targets)
        .map_err(|e| ControlError::invalid("hyperparameters.lora_targets", e.to_string()))?;
    let steps = (n.div_ceil(batch_size as u64) * n_epochs as u64).max(1);
    Ok(Hyperparameters {
        n_epochs,
        batch_size,
        learning_rate_multiplier: mult,
        learning_rate: base_lr() * mult,
        lora_r,
        lora_alpha,
        lora_targets,
        save_every: (steps / 10).clamp(1, 50) as u32,
        seed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_follows_dataset_size_and_values_are_checked() {
        let auto = HyperRequest::default();
        for (n, epochs, batch) in [(5, 10, 1), (30, 7, 2), (100, 2, 4), (500, 1, 4), (5000, 1, 8)] {
            let h = resolve(&auto, n, 1).unwrap();
            assert_eq!((h.n_epochs, h.batch_size), (epochs, batch), "n={n}");
        }
        let req: HyperRequest = serde_json::from_str(
            r#"{"n_epochs": 3, "batch_size": "auto", "learning_rate_multiplier": 0.5, "lora_targets": "q_proj,v_proj"}"#,
        )
        .unwrap();
        let h = resolve(&req, 100, 1).unwrap();
        assert_eq!((h.n_epochs, h.batch_size, h.learning_rate), (3, 4, 1e-4));
        for (json, param) in [
            (r#"{"n_epochs": 0}"#, "n_epochs"),
            (r#"{"learning_rate_multiplier": -1}"#, "learning_rate_multiplier"),
            (r#"{"lora_targets": "attn"}"#, "lora_targets"),
            (r#"{"lora_r": 0}"#, "lora_r"),
        ] {
            let req: HyperRequest = serde_json::from_str(json).unwrap();
            let e = resolve(&req, 10, 1).unwrap_err().to_string();
            assert!(e.contains(param), "{json}: {e}");
        }
        assert!(serde_json::from_str::<HyperRequest>(r#"{"n_epochs": "many"}"#).is_err());
    }

    /// Regression (hardening #2): `time_limit_s = 18446744073709551615`
    /// was accepted and made the trainer panic (`Instant + Duration`).
    #[test]
    fn job_specs_are_checked_field_by_field() {
        let ok = JobSpec::default();
        check_spec(&ok).unwrap();
        let cases: Vec<(JobSpec, &str)> = vec![
            (JobSpec { time_limit_s: Some(u64::MAX), ..JobSpec::default() }, "time_limit_s"),
            (JobSpec { time_limit_s: Some(0), ..JobSpec::default() }, "time_limit_s"),
            (
                JobSpec {
                    resources: forja_store::Resources { gpus: 1000, memory_gb: 4 },
                    ..JobSpec::default()
                },
                "resources.gpus",
            ),
            (JobSpec { suffix: Some("a b".into()), ..JobSpec::default() }, "suffix"),
            (
                JobSpec {
                    metadata: (0..17).map(|i| (i.to_string(), "v".into())).collect(),
                    ..JobSpec::default()
                },
                "metadata",
            ),
        ];
        for (spec, param) in cases {
            let e = check_spec(&spec).unwrap_err();
            assert!(
                matches!(&e, ControlError::InvalidRequest { param: p, .. } if p == param),
                "{param}: {e}"
            );
        }
        // The plan is the engine's default plan with the job's values.
        let hp = resolve(&HyperRequest::default(), 100, 7).unwrap();
        let p = plan(&hp, &JobSpec { time_limit_s: Some(60), ..JobSpec::default() }).unwrap();
        let d = LoraPlan::default();
        assert_eq!((p.lora.dropout, p.lora.rslora), (d.lora.dropout, d.lora.rslora));
        assert_eq!((p.train.time_limit_secs, p.train.seed, p.lora.alpha), (Some(60), 7, 32.0));
        assert_eq!(p.train.warmup_steps, d.train.warmup_steps);
    }
}
