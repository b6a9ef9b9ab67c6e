//! OpenAI's JSON objects (files, fine-tuning jobs, events, checkpoints,
//! lists) and forja's own request bodies. Only this crate knows them.

use forja_control::JobRequest;
use forja_store::{Auto, Checkpoint, FileRow, HyperRequest, Job, JobEvent, JobSpec, Resources};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// `{"object": "list", "data": [...], "has_more": …}`.
pub fn list(data: Vec<Value>, has_more: bool) -> Value {
    let first = data.first().and_then(|v| v.get("id")).cloned();
    let last = data.last().and_then(|v| v.get("id")).cloned();
    json!({ "object": "list", "data": data, "has_more": has_more, "first_id": first, "last_id": last })
}

/// A file object.
pub fn file(f: &FileRow) -> Value {
    json!({
        "id": f.id, "object": "file", "bytes": f.bytes, "created_at": f.created_at,
        "filename": f.filename, "purpose": f.purpose, "status": f.status,
        "status_details": f.status_details, "expires_at": null,
    })
}

fn auto_json<T: Serialize>(a: &Auto<T>) -> Value {
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
        "resources": j.spec.resources,
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
    json!({
        "id": c.id, "object": "fine_tuning.job.checkpoint", "created_at": c.created_at,
        "fine_tuned_model_checkpoint": format!("{}:ckpt-step-{}", job.fine_tuned_model.clone().unwrap_or_else(|| format!("ft:{}:{}", job.model, job.id)), c.step),
        "fine_tuning_job_id": c.job_id, "metrics": metrics, "step_number": c.step,
    })
}

/// `POST /v1/fine_tuning/jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    pub model: String,
    pub training_file: String,
    #[serde(default)]
    pub validation_file: Option<String>,
    #[serde(default)]
    pub hyperparameters: Option<HyperRequest>,
    #[serde(default)]
    pub method: Option<Method>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub integrations: Option<Value>,
    /// forja: what the worker must have.
    #[serde(default)]
    pub resources: Option<Resources>,
    /// forja: stop training after this many seconds, keeping the best adapter.
    #[serde(default)]
    pub time_limit_s: Option<u64>,
}

/// OpenAI's `method` (only `supervised` is offered).
#[derive(Debug, Deserialize)]
pub struct Method {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub supervised: Option<Supervised>,
}

/// `method.supervised`.
#[derive(Debug, Deserialize)]
pub struct Supervised {
    #[serde(default)]
    pub hyperparameters: Option<HyperRequest>,
}

impl CreateJob {
    /// The control plane's request, or which field is wrong and why.
    pub fn request(self) -> Result<JobRequest, (String, String)> {
        let mut hp = self.hyperparameters;
        if let Some(m) = self.method {
            if m.kind != "supervised" {
                return Err((
                    "method.type".into(),
                    format!("`{}` is not offered; use `supervised`", m.kind),
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
        if let Some(s) = &self.suffix {
            if s.len() > 64 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(("suffix".into(), "up to 64 characters of a-z, 0-9, - and _".into()));
            }
        }
        let spec = JobSpec {
            hyperparameters: hp.unwrap_or_default(),
            resources: self.resources.unwrap_or_default(),
            time_limit_s: self.time_limit_s,
            suffix: self.suffix,
            seed: self.seed,
            metadata: self.metadata.unwrap_or_default(),
        };
        Ok(JobRequest {
            model: self.model,
            training_file: self.training_file,
            validation_file: self.validation_file,
            spec,
        })
    }
}
