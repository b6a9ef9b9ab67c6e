//! OpenAI's files, fine-tuning jobs, events and checkpoints, and forja's
//! job request body (OpenAI's fields plus LoRA's hyperparameters,
//! resources and a wall-clock limit).

use forja_control::JobRequest;
use forja_store::{Auto, Checkpoint, FileRow, HyperRequest, Job, JobEvent, JobSpec, Resources};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A file object.
pub fn file(f: &FileRow) -> Value {
    json!({
        "id": f.id, "object": "file", "bytes": f.bytes, "created_at": f.created_at,
        "filename": f.filename, "purpose": f.purpose, "status": f.status,
        "status_details": f.status_details, "expires_at": null,
    })
}

fn auto_json<T: serde::Serialize>(a: &Auto<T>) -> Value {
    match a {
        Auto::Auto => json!("auto"),
        Auto::Value(v) => json!(v),
    }
}

/// A fine-tuning job object.
pub fn job(j: &Job) -> Value {
    let req = &j.spec.hyperparameters;
    let hp = match &j.hyperparameters {
        Some(h) => json!({
            "n_epochs": h.n_epochs, "batch_size": h.batch_size,
            "learning_rate_multiplier": h.learning_rate_multiplier,
            "lora_r": h.lora_r, "lora_alpha": h.lora_alpha, "lora_targets": h.lora_targets,
        }),
        None => json!({
            "n_epochs": auto_json(&req.n_epochs), "batch_size": auto_json(&req.batch_size),
            "learning_rate_multiplier": auto_json(&req.learning_rate_multiplier),
            "lora_r": auto_json(&req.lora_r), "lora_alpha": auto_json(&req.lora_alpha),
            "lora_targets": auto_json(&req.lora_targets),
        }),
    };
    let result_files: Vec<&String> =
        j.result.iter().flat_map(|r| r.adapter_files.values()).collect();
    json!({
        "id": j.id,
        "object": "fine_tuning.job",
        "created_at": j.created_at,
        "error": j.error.as_ref().map(|e| json!({"code": e.code, "message": e.message, "param": e.param})),
        "fine_tuned_model": j.fine_tuned_model,
        "finished_at": j.finished_at,
        "hyperparameters": hp,
        "method": { "type": "supervised", "supervised": { "hyperparameters": hp } },
        "model": j.model,
        "organization_id": j.tenant_id,
        "result_files": result_files,
        "seed": j.hyperparameters.as_ref().map(|h| h.seed).or(j.spec.seed).unwrap_or(0),
        "status": j.status.as_str(),
        "trained_tokens": j.trained_tokens,
        "training_file": j.training_file,
        "validation_file": j.validation_file,
        "integrations": [],
        "estimated_finish": null,
        "user_provided_suffix": j.spec.suffix,
        "metadata": j.spec.metadata,
        // forja's additions
        "trigger": j.trigger.as_str(),
        "started_at": j.started_at,
        "progress": { "step": j.progress_step, "total_steps": j.progress_total },
        "attempts": j.attempts,
        "adapter_sha256": j.adapter_sha256,
        "resources": { "gpus": j.spec.resources.gpus, "memory_gb": j.spec.resources.memory_gb },
        "time_limit_s": j.spec.time_limit_s,
        "training_mix": j.mix.as_ref().map(|m| json!({
            "policy": super::admin::learning(&m.policy),
            "new_examples": m.new_examples,
            "replay_examples": m.replay_example_ids.len(),
            "general_rows": m.general_rows,
            "warm_start_from": m.warm_start_from,
        })),
    })
}

/// A job spec (what `forja tenants set --job-spec` and the admin API take).
pub fn job_spec(s: &JobSpec) -> Value {
    let h = &s.hyperparameters;
    json!({
        "hyperparameters": {
            "n_epochs": auto_json(&h.n_epochs), "batch_size": auto_json(&h.batch_size),
            "learning_rate_multiplier": auto_json(&h.learning_rate_multiplier),
            "lora_r": auto_json(&h.lora_r), "lora_alpha": auto_json(&h.lora_alpha),
            "lora_targets": auto_json(&h.lora_targets),
        },
        "resources": { "gpus": s.resources.gpus, "memory_gb": s.resources.memory_gb },
        "time_limit_s": s.time_limit_s, "suffix": s.suffix, "seed": s.seed, "metadata": s.metadata,
    })
}

/// A job event object.
pub fn event(e: &JobEvent) -> Value {
    json!({
        "id": format!("ftevent-{}", e.id), "object": "fine_tuning.job.event",
        "created_at": e.created_at, "level": e.level.as_str(), "message": e.message,
        "data": e.data, "type": e.kind,
    })
}

/// A checkpoint object.
pub fn checkpoint(c: &Checkpoint, job: &Job) -> Value {
    let mut metrics = c.metrics.clone();
    if let Some(m) = metrics.as_object_mut() {
        m.insert("step".into(), json!(c.step));
    }
    let base =
        job.fine_tuned_model.clone().unwrap_or_else(|| format!("ft:{}:{}", job.model, job.id));
    json!({
        "id": c.id, "object": "fine_tuning.job.checkpoint", "created_at": c.created_at,
        "fine_tuned_model_checkpoint": format!("{base}:ckpt-step-{}", c.step),
        "fine_tuning_job_id": c.job_id, "metrics": metrics, "step_number": c.step,
    })
}

/// A number, or `"auto"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AutoWire<T> {
    /// Given.
    Value(T),
    /// `"auto"` (any other string is refused when converted).
    Text(String),
}

impl<T> AutoWire<T> {
    fn into_auto(self, field: &str) -> Result<Auto<T>, (String, String)> {
        match self {
            AutoWire::Value(v) => Ok(Auto::Value(v)),
            AutoWire::Text(s) if s == "auto" => Ok(Auto::Auto),
            AutoWire::Text(s) => Err((
                format!("hyperparameters.{field}"),
                format!("expected a number or \"auto\", got \"{}\"", forja_control::clip(&s, 40)),
            )),
        }
    }
}

fn auto<T>(v: Option<AutoWire<T>>, field: &str) -> Result<Auto<T>, (String, String)> {
    v.map_or(Ok(Auto::Auto), |v| v.into_auto(field))
}

/// `hyperparameters` (OpenAI's names plus LoRA's).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HyperWire {
    n_epochs: Option<AutoWire<u32>>,
    batch_size: Option<AutoWire<u32>>,
    learning_rate_multiplier: Option<AutoWire<f64>>,
    lora_r: Option<AutoWire<u32>>,
    lora_alpha: Option<AutoWire<f64>>,
    lora_targets: Option<String>,
}

impl HyperWire {
    /// The store's request form.
    pub fn request(self) -> Result<HyperRequest, (String, String)> {
        Ok(HyperRequest {
            n_epochs: auto(self.n_epochs, "n_epochs")?,
            batch_size: auto(self.batch_size, "batch_size")?,
            learning_rate_multiplier: auto(
                self.learning_rate_multiplier,
                "learning_rate_multiplier",
            )?,
            lora_r: auto(self.lora_r, "lora_r")?,
            lora_alpha: auto(self.lora_alpha, "lora_alpha")?,
            lora_targets: match self.lora_targets {
                None => Auto::Auto,
                Some(t) if t == "auto" => Auto::Auto,
                Some(t) => Auto::Value(t),
            },
        })
    }
}

/// `resources` (forja).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesWire {
    #[serde(default)]
    gpus: u32,
    #[serde(default = "four")]
    memory_gb: u32,
}

fn four() -> u32 {
    4
}

/// `POST /v1/fine_tuning/jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    model: String,
    training_file: String,
    #[serde(default)]
    validation_file: Option<String>,
    #[serde(default)]
    hyperparameters: Option<HyperWire>,
    #[serde(default)]
    method: Option<Method>,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    integrations: Option<Value>,
    /// forja: what the worker must have.
    #[serde(default)]
    resources: Option<ResourcesWire>,
    /// forja: stop training after this many seconds, keeping the best adapter.
    #[serde(default)]
    time_limit_s: Option<u64>,
}

/// OpenAI's `method` (only `supervised` is offered).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Method {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    supervised: Option<Supervised>,
}

/// `method.supervised`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Supervised {
    #[serde(default)]
    hyperparameters: Option<HyperWire>,
}

/// A job spec as `forja tenants set --job-spec` and the admin API take it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecWire {
    #[serde(default)]
    hyperparameters: Option<HyperWire>,
    #[serde(default)]
    resources: Option<ResourcesWire>,
    #[serde(default)]
    time_limit_s: Option<u64>,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

impl SpecWire {
    /// The store's spec.
    pub fn spec(self) -> Result<JobSpec, (String, String)> {
        Ok(JobSpec {
            hyperparameters: self
                .hyperparameters
                .map(HyperWire::request)
                .transpose()?
                .unwrap_or_default(),
            resources: self
                .resources
                .map(|r| Resources { gpus: r.gpus, memory_gb: r.memory_gb })
                .unwrap_or_default(),
            time_limit_s: self.time_limit_s,
            suffix: self.suffix,
            seed: self.seed,
            metadata: self.metadata.unwrap_or_default(),
            // Only `forja federation pull` imports adapters; the API trains.
            import: None,
        })
    }
}

impl CreateJob {
    /// The control plane's request, or which field is wrong and why.
    pub fn request(self) -> Result<JobRequest, (String, String)> {
        let mut hp = self.hyperparameters;
        if let Some(m) = self.method {
            if m.kind != "supervised" {
                return Err((
                    "method.type".into(),
                    format!(
                        "`{}` is not offered; use `supervised`",
                        forja_control::clip(&m.kind, 40)
                    ),
                ));
            }
            if let Some(h) = m.supervised.and_then(|s| s.hyperparameters) {
                hp = Some(h);
            }
        }
        if self
            .integrations
            .as_ref()
            .is_some_and(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()))
        {
            return Err((
                "integrations".into(),
                "forja sends no integrations (use job events and webhooks)".into(),
            ));
        }
        let spec = SpecWire {
            hyperparameters: hp,
            resources: self.resources,
            time_limit_s: self.time_limit_s,
            suffix: self.suffix,
            seed: self.seed,
            metadata: self.metadata,
        }
        .spec()?;
        Ok(JobRequest {
            model: self.model,
            training_file: self.training_file,
            validation_file: self.validation_file,
            spec,
        })
    }
}
