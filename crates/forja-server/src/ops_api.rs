//! The operations API (admin keys only): the configuration's reload state
//! and a reload on request, the scheduled tasks with their next fire and
//! newest run, a task's run history, and running a task now.

use crate::auth::AdminAuth;
use crate::{ApiError, AppState};
use axum::extract::{Path, Query, State};
use axum::Json;
use forja_control::tasks::{self, TaskKind};
use serde::Deserialize;
use serde_json::{json, Value};

type Api = Result<Json<Value>, ApiError>;

fn config_json(s: &AppState, st: crate::live_config::ReloadStatus) -> Value {
    json!({
        "object": "node.config",
        "reload": st,
        "hot": {
            "max_tokens_cap": s.live.max_tokens_cap(),
            "request_timeout_s": s.live.request_timeout().as_secs(),
            "completion_retention_days": s.live.completion_retention_s() as f64 / 86_400.0,
        },
    })
}

/// `GET /v1/admin/config`: the hot settings in force and what the last
/// reloads did.
pub async fn config(State(s): State<AppState>, _: AdminAuth) -> Api {
    Ok(Json(config_json(&s, s.live.status())))
}

/// `POST /v1/admin/config/reload`: reads the configuration file again now
/// (as SIGHUP does); 400 with the reason when it is refused.
pub async fn reload(State(s): State<AppState>, _: AdminAuth) -> Api {
    if !s.live.reloadable() {
        return Err(ApiError::bad(
            "config",
            "this node was started without a configuration file; there is nothing to reload",
        ));
    }
    let (live, now) = (s.live.clone(), s.scheduler.now());
    let st = tokio::task::spawn_blocking(move || live.reload("the API", now))
        .await
        .map_err(|e| ApiError::Internal(format!("the reload task failed: {e}")))?;
    if let Some(e) = &st.last_error {
        return Err(ApiError::bad(
            "config",
            format!("refused; the last good configuration stays: {e}"),
        ));
    }
    Ok(Json(config_json(&s, st)))
}

/// `GET /v1/admin/tasks`: every task with its schedule, next fire, who runs
/// it now, and its newest run.
pub async fn tasks(State(s): State<AppState>, _: AdminAuth) -> Api {
    let (set, sched) = (s.live.tasks(), s.scheduler.clone());
    let views = s.run(move |_| Ok(tasks::overview(&**sched.store(), &set, sched.now())?)).await?;
    Ok(Json(json!({"object": "list", "data": views})))
}

fn kind(name: &str) -> Result<TaskKind, ApiError> {
    TaskKind::parse(name).ok_or_else(|| {
        let all: Vec<&str> = TaskKind::ALL.iter().map(|k| k.as_str()).collect();
        ApiError::bad(
            "name",
            format!(
                "there is no task `{}` (tasks: {})",
                forja_control::clip(name, 40),
                all.join(", ")
            ),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    limit: Option<usize>,
}

/// `GET /v1/admin/tasks/{name}/runs[?limit=N]`: newest first (at most 1,000).
pub async fn runs(
    State(s): State<AppState>,
    _: AdminAuth,
    Path(name): Path<String>,
    Query(q): Query<RunsQuery>,
) -> Api {
    let k = kind(&name)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let runs = s.run(move |c| Ok(c.store.task_runs(Some(k.as_str()), limit)?)).await?;
    Ok(Json(json!({"object": "list", "data": runs})))
}

/// `POST /v1/admin/tasks/{name}/run`: runs the task now (enabled or not)
/// and answers its run when it ends; 409 while another runner holds it.
pub async fn run_task(State(s): State<AppState>, _: AdminAuth, Path(name): Path<String>) -> Api {
    let k = kind(&name)?;
    let (task, sched) = (s.live.tasks().get(k).clone(), s.scheduler.clone());
    let run = tokio::task::spawn_blocking(move || sched.run_now(&task))
        .await
        .map_err(|e| ApiError::Internal(format!("the task failed to run: {e}")))??;
    Ok(Json(json!(run)))
}
