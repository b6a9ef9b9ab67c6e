//! Live job progress over server-sent events:
//! `GET /v1/fine_tuning/jobs/{id}/events/stream`. A follower gets the
//! job's events oldest first, from the one after `Last-Event-ID` (or
//! `?after=ftevent-N`) on, then each new one as the worker reports it, a
//! `job` event with the job object whenever its status or progress moves,
//! keep-alive comments, and a last `done` event once the job has ended.
//!
//! Workers may be other processes, so the store is polled (every
//! [`POLL`]) rather than an in-process channel followed; each poll is one
//! indexed query. A tenant may hold [`MAX_PER_TENANT`] streams at once
//! (429 beyond), and a stream ends after [`MAX_STREAM`] (clients resume
//! with `Last-Event-ID`), so followers cannot pin the node's threads.

use crate::auth::TenantAuth;
use crate::wire::jobs;
use crate::{ApiError, AppState};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a follower polls the store.
const POLL: Duration = Duration::from_millis(500);
/// Streams one tenant may hold open.
pub const MAX_PER_TENANT: usize = 8;
/// Longest life of one stream.
const MAX_STREAM: Duration = Duration::from_secs(30 * 60);
/// Events read per poll.
const BATCH: usize = 100;

/// Open streams per tenant.
#[derive(Debug, Clone, Default)]
pub struct Followers(Arc<Mutex<HashMap<String, usize>>>);

/// One admitted stream; dropping it frees the tenant's slot.
struct Ticket {
    set: Followers,
    tenant: String,
}

impl Followers {
    fn admit(&self, tenant: &str) -> Option<Ticket> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(tenant.to_string()).or_default();
        if *n >= MAX_PER_TENANT {
            return None;
        }
        *n += 1;
        Some(Ticket { set: self.clone(), tenant: tenant.to_string() })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut m = self.set.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.tenant);
            }
        }
    }
}

/// `?after=` of the stream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowQuery {
    /// Start after this event (`ftevent-N` or `N`).
    after: Option<String>,
}

fn event_id(param: &str, text: &str) -> Result<i64, ApiError> {
    text.trim().trim_start_matches("ftevent-").parse::<i64>().map_err(|_| {
        ApiError::bad(param, format!("`{}` is not an event id", forja_control::clip(text, 40)))
    })
}

/// `GET /v1/fine_tuning/jobs/{id}/events/stream`.
pub async fn job_events(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
    Query(q): Query<FollowQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let header = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let since = match header.or(q.after.as_deref()) {
        Some(text) => Some(event_id("Last-Event-ID", text)?),
        None => None,
    };
    let (tenant, job_id) = (t.id.clone(), id.clone());
    // The job must be the tenant's: 404 otherwise, before anything streams.
    s.run(move |c| Ok(c.store.job(Some(&tenant), &job_id)?)).await?;
    let ticket = s.followers.admit(&t.id).ok_or(ApiError::TooManyStreams(MAX_PER_TENANT))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(BATCH);
    tokio::spawn(async move {
        let _ticket = ticket;
        let started = tokio::time::Instant::now();
        let (mut since, mut last_job) = (since, Value::Null);
        loop {
            let (tenant, job_id) = (t.id.clone(), id.clone());
            let read = s
                .run(move |c| {
                    let job = c.store.job(Some(&tenant), &job_id)?;
                    let evs = c.store.events_since(&job_id, since, BATCH)?;
                    Ok((job, evs))
                })
                .await;
            let (job, evs) = match read {
                Ok(x) => x,
                Err(e) => {
                    let (_, body) = e.body();
                    let _ =
                        tx.send(SseEvent::default().event("error").data(body.to_string())).await;
                    return;
                }
            };
            let full = evs.len() == BATCH;
            for e in &evs {
                let ev = SseEvent::default()
                    .id(format!("ftevent-{}", e.id))
                    .data(jobs::event(e).to_string());
                if tx.send(ev).await.is_err() {
                    return; // the client left
                }
                since = Some(e.id);
            }
            let now = jobs::job(&job);
            if now != last_job {
                if tx.send(SseEvent::default().event("job").data(now.to_string())).await.is_err() {
                    return;
                }
                last_job = now;
            }
            if job.status.is_terminal() && !full {
                let _ = tx.send(SseEvent::default().event("done").data(last_job.to_string())).await;
                return;
            }
            if started.elapsed() > MAX_STREAM {
                return;
            }
            if !full {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = tx.closed() => return,
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, std::convert::Infallible>(e), rx))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
