//! Tenant endpoints: files, fine-tuning jobs, feedback, learning status.

use crate::auth::TenantAuth;
use crate::wire::{self, feedback, jobs, registry};
use crate::{ApiError, AppState};
use axum::extract::{Multipart, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use forja_control::ControlError;
use serde::Deserialize;
use serde_json::{json, Value};

type Api<T = Json<Value>> = Result<T, ApiError>;

/// File purposes OpenAI defines (forja trains only on `fine-tune`).
const PURPOSES: [&str; 5] = ["fine-tune", "batch", "assistants", "user_data", "evals"];

/// `POST /v1/files` (multipart: `file`, `purpose`).
pub async fn upload_file(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    mut mp: Multipart,
) -> Api {
    let (mut file, mut purpose) = (None, None);
    while let Some(field) =
        mp.next_field().await.map_err(|e| ApiError::bad("file", e.body_text()))?
    {
        match field.name() {
            Some("file") => {
                let name = field.file_name().unwrap_or("upload.jsonl");
                let name = forja_control::clip(name, 200);
                let bytes =
                    field.bytes().await.map_err(|e| ApiError::bad("file", e.body_text()))?;
                file = Some((name, bytes));
            }
            Some("purpose") => {
                purpose =
                    Some(field.text().await.map_err(|e| ApiError::bad("purpose", e.body_text()))?)
            }
            _ => {}
        }
    }
    let (name, bytes) =
        file.ok_or_else(|| ApiError::bad("file", "a multipart field `file` is required"))?;
    let purpose = purpose.ok_or_else(|| {
        ApiError::bad("purpose", "a multipart field `purpose` is required (fine-tune)")
    })?;
    if !PURPOSES.contains(&purpose.as_str()) {
        return Err(ApiError::bad(
            "purpose",
            format!("`{}` is not a file purpose; use fine-tune", forja_control::clip(&purpose, 40)),
        ));
    }
    let row = s.control.upload_file(&t, &name, &purpose, bytes).await?;
    Ok(Json(jobs::file(&row)))
}

/// `GET /v1/files`.
pub async fn list_files(State(s): State<AppState>, TenantAuth(t, _): TenantAuth) -> Api {
    let files = s.run(move |c| Ok(c.store.files(&t.id)?)).await?;
    Ok(Json(wire::list(files.iter().map(jobs::file).collect(), false)))
}

/// `GET /v1/files/{id}`.
pub async fn get_file(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Api {
    let f = s.run(move |c| Ok(c.store.file(&t.id, &id)?)).await?;
    Ok(Json(jobs::file(&f)))
}

/// `DELETE /v1/files/{id}`: the record goes (its storage is no longer
/// counted); a file a running job uses cannot be deleted.
pub async fn delete_file(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Api {
    let f = s.run(move |c| Ok(c.store.delete_file(&t.id, &id)?)).await?;
    Ok(Json(json!({"id": f.id, "object": "file", "deleted": true})))
}

/// `GET /v1/files/{id}/content`.
pub async fn file_content(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Api<Response> {
    let f = s.run(move |c| Ok(c.store.file(&t.id, &id)?)).await?;
    let bytes = s.control.artifacts.get(&f.sha256).await?;
    Ok(([("content-type", "application/octet-stream")], bytes).into_response())
}

/// `POST /v1/fine_tuning/jobs`.
pub async fn create_job(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    body: axum::body::Bytes,
) -> Api {
    let req: jobs::CreateJob = wire::parse(&body)?;
    let r = req.request().map_err(|(param, msg)| ApiError::bad(&param, msg))?;
    let job = s.run(move |c| Ok(c.create_job(&t, &r)?)).await?;
    Ok(Json(jobs::job(&job)))
}

/// `?after=&limit=`.
#[derive(Debug, Deserialize)]
pub struct Page {
    after: Option<String>,
    limit: Option<usize>,
}

impl Page {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(20).clamp(1, 100)
    }
}

/// `GET /v1/fine_tuning/jobs`.
pub async fn list_jobs(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Query(p): Query<Page>,
) -> Api {
    let limit = p.limit();
    let jobs =
        s.run(move |c| Ok(c.store.jobs(Some(&t.id), p.after.as_deref(), limit + 1)?)).await?;
    let more = jobs.len() > limit;
    Ok(Json(wire::list(jobs.iter().take(limit).map(jobs::job).collect(), more)))
}

/// `GET /v1/fine_tuning/jobs/{id}`.
pub async fn get_job(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Api {
    let j = s.run(move |c| Ok(c.store.job(Some(&t.id), &id)?)).await?;
    Ok(Json(jobs::job(&j)))
}

/// `POST /v1/fine_tuning/jobs/{id}/cancel` (the job's examples are held
/// back until released or trained deliberately).
pub async fn cancel_job(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Api {
    let j = s.run(move |c| Ok(c.cancel_job(&t, &id)?)).await?;
    Ok(Json(jobs::job(&j)))
}

/// `GET /v1/fine_tuning/jobs/{id}/events`.
pub async fn job_events(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
    Query(p): Query<Page>,
) -> Api {
    let limit = p.limit();
    let after = match p.after.as_deref() {
        None => None,
        Some(a) => Some(a.trim_start_matches("ftevent-").parse::<i64>().map_err(|_| {
            ApiError::bad("after", format!("`{}` is not an event id", forja_control::clip(a, 40)))
        })?),
    };
    let evs = s
        .run(move |c| {
            c.store.job(Some(&t.id), &id)?;
            Ok(c.store.events(&id, after, limit + 1)?)
        })
        .await?;
    let more = evs.len() > limit;
    Ok(Json(wire::list(evs.iter().take(limit).map(jobs::event).collect(), more)))
}

/// `GET /v1/fine_tuning/jobs/{id}/checkpoints`.
pub async fn job_checkpoints(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Api {
    let (job, cks) = s
        .run(move |c| {
            let j = c.store.job(Some(&t.id), &id)?;
            Ok((j, c.store.checkpoints(&id)?))
        })
        .await?;
    Ok(Json(wire::list(cks.iter().map(|c| jobs::checkpoint(c, &job)).collect(), false)))
}

/// `POST /v1/feedback`: one example, or `{"examples": [...]}` (at most
/// 1000); curation and PII scrubbing run off the async runtime.
pub async fn feedback(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    body: axum::body::Bytes,
) -> Api {
    let items = feedback::items(&body)?;
    let a = s.run(move |c| Ok(c.feedback(&t, &items)?)).await?;
    Ok(Json(feedback::appended(&a)))
}

/// `GET /v1/learning/status`.
pub async fn learning_status(State(s): State<AppState>, TenantAuth(t, _): TenantAuth) -> Api {
    let st = s.run(move |c| Ok(c.status(&t)?)).await?;
    Ok(Json(registry::status(&st)))
}

/// `GET /v1/whoami`: the caller's tenant, key and the policy a client
/// shows (threshold, forced promotion, base model, storage quota); never
/// a secret (the webhook's stays in the store). An admin key that names
/// no tenant gets `"tenant": null`.
pub async fn whoami(State(s): State<AppState>, req: axum::extract::Request) -> Api {
    let (parts, _) = req.into_parts();
    let k = crate::auth::key(&parts, &s).await?;
    if k.role == forja_store::Role::Admin && !parts.headers.contains_key(crate::auth::TENANT_HEADER)
    {
        return Ok(Json(json!({
            "object": "whoami", "tenant": null, "policy": null,
            "key": {"id": k.id, "role": "admin"},
        })));
    }
    let TenantAuth(t, a) = TenantAuth::of_key(k, &parts, &s).await?;
    let st = &t.settings;
    Ok(Json(json!({
        "object": "whoami",
        "tenant": {"id": t.id, "name": t.name, "tier": t.tier, "created_at": t.created_at},
        "key": {"id": a.key_id, "role": if a.admin { "admin" } else { "tenant" }},
        "policy": {
            "threshold": st.threshold,
            "cron": st.cron,
            "allow_forced_promotion": st.allow_forced_promotion,
            "base_model": st.base_model,
            "storage_mb": st.storage_mb,
            "max_trainings": st.max_trainings,
            "quota_window_s": st.quota_window_s,
        },
    })))
}

/// `POST /v1/learning/train`: a job now on the pending examples (held ones
/// included: training now is a deliberate choice).
pub async fn train_now(State(s): State<AppState>, TenantAuth(t, _): TenantAuth) -> Api {
    // Like a trigger: the tenant's job spec (hyperparameters, time limit).
    let job = s.run(move |c| Ok(c.train_now(&t, t.settings.triggered_spec())?)).await?;
    match job {
        Some(j) => Ok(Json(jobs::job(&j))),
        None => Err(ApiError::Control(ControlError::invalid(
            "examples",
            "no curated examples are pending",
        ))),
    }
}

/// `POST /v1/learning/release`: examples held back after a cancel go back
/// to the pool (triggers count them again).
pub async fn release_held(State(s): State<AppState>, TenantAuth(t, _): TenantAuth) -> Api {
    let n = s.run(move |c| Ok(c.release_held(&t)?)).await?;
    Ok(Json(json!({"object": "learning.release", "released": n})))
}
