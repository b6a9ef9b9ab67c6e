//! PNG charts of learning, drawn from the store on request (forja-eval's
//! `plot`, on a blocking thread): a job's training and validation loss by
//! step (`/v1/fine_tuning/jobs/{id}/loss.png`, and the same for the job of
//! a version, `/v1/registry/models/{id}/loss.png`), and an evaluation
//! metric of the candidate across the tenant's versions
//! (`/v1/registry/metrics.png?metric=wer`). The store's events and
//! summaries are the truth; a chart is never stale and needs no storage.

use crate::auth::TenantAuth;
use crate::{ApiError, AppState};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use forja_eval::plot::{self, Chart, Series};
use forja_store::{Job, JobEvent, Store};
use serde::Deserialize;

/// Most events read for one loss chart.
const MAX_EVENTS: usize = 20_000;

/// Draws `c` off the async runtime and answers it as a PNG.
async fn png(c: Chart) -> Result<Response, ApiError> {
    let p = tokio::task::spawn_blocking(move || plot::render(&c))
        .await
        .map_err(|e| ApiError::Internal(format!("a chart task failed: {e}")))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([("content-type", "image/png"), ("cache-control", "no-store")], p.bytes).into_response())
}

/// The training and validation loss of `job` by step.
fn loss_chart(store: &dyn Store, job: &Job) -> Result<Chart, ApiError> {
    let mut events: Vec<JobEvent> = Vec::new();
    let (mut since, mut read) = (None, 0);
    // At most MAX_EVENTS metrics events, and 5× as many events read.
    while events.len() < MAX_EVENTS && read < 5 * MAX_EVENTS {
        let page = store.events_since(&job.id, since, 1000)?;
        let Some(last) = page.last() else { break };
        since = Some(last.id);
        read += page.len();
        events.extend(page.into_iter().filter(|e| e.kind == "metrics"));
    }
    let series = |key: &str| -> Vec<(f64, f64)> {
        events
            .iter()
            .filter_map(|e| {
                let d = e.data.as_ref()?;
                Some((d.get("step")?.as_f64()?, d.get(key)?.as_f64()?))
            })
            .collect()
    };
    Ok(Chart {
        title: format!("{}: loss", job.id),
        x_desc: "step".into(),
        y_desc: "loss".into(),
        series: vec![
            Series { name: "training".into(), points: series("train_loss") },
            Series { name: "validation".into(), points: series("valid_loss") },
        ],
        integer_x: true,
        size: (900, 480),
    })
}

/// `GET /v1/fine_tuning/jobs/{id}/loss.png`.
pub async fn job_loss(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let c = s
        .run(move |c| {
            let job = c.store.job(Some(&t.id), &id)?;
            loss_chart(&*c.store, &job)
        })
        .await?;
    png(c).await
}

/// `GET /v1/registry/models/{id}/loss.png`: the loss of the job that made
/// the version (or alias).
pub async fn version_loss(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let c = s
        .run(move |c| {
            let v = c.store.version_or_alias(&t.id, &id)?;
            let Some(job) = v.lineage.job_id.as_deref() else {
                return Err(ApiError::bad(
                    "id",
                    "this version was imported, not trained here: it has no loss",
                ));
            };
            let job = c.store.job(Some(&t.id), job)?;
            loss_chart(&*c.store, &job)
        })
        .await?;
    png(c).await
}

/// `GET /v1/registry/metrics.png` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsQuery {
    /// Metric names (comma-separated; default `wer`).
    metric: Option<String>,
}

/// `GET /v1/registry/metrics.png?metric=wer,cer`: the candidate's and the
/// baseline's golden-set metrics of every version, in registration order.
pub async fn version_metrics(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Query(q): Query<MetricsQuery>,
) -> Result<Response, ApiError> {
    let names: Vec<String> = q
        .metric
        .as_deref()
        .unwrap_or("wer")
        .split(',')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    if names.is_empty() || names.len() > 6 || names.iter().any(|n| n.len() > 40) {
        return Err(ApiError::bad("metric", "name 1 to 6 metrics, comma-separated (wer, cer, …)"));
    }
    let c = s
        .run(move |c| {
            let mut versions = c.store.model_versions(&t.id)?;
            versions.sort_by_key(|v| v.created_at);
            let mut series = Vec::new();
            for name in &names {
                for side in ["candidate", "baseline"] {
                    let points: Vec<(f64, f64)> = versions
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| {
                            let e = v.lineage.eval.as_ref()?;
                            Some(((i + 1) as f64, e["summary"][side]["metrics"][name].as_f64()?))
                        })
                        .collect();
                    if !points.is_empty() {
                        series.push(Series { name: format!("{name} ({side})"), points });
                    }
                }
            }
            Ok(Chart {
                title: format!("{}: golden-set metrics by version", t.name),
                x_desc: "version (in registration order)".into(),
                y_desc: "value".into(),
                series,
                integer_x: true,
                size: (900, 480),
            })
        })
        .await?;
    png(c).await
}
