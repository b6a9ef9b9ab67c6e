//! Entity memory over HTTP, per tenant: `/v1/memory/facts` (list, add),
//! `/{id}` (read, edit, forget), `/v1/memory/forget` (every fact and
//! refusal naming a person or thing), `/v1/memory/extract` (facts of a
//! text, by the served model), `/v1/memory/rejections`. Store work runs on
//! blocking threads; extraction through the batcher.

use crate::auth::TenantAuth;
use crate::wire::memory as wire;
use crate::{ApiError, AppState};
use axum::extract::{Path, Query, State};
use axum::Json;
use forja_control::memory::{RawFact, Source, MAX_TEXT};
use forja_control::ControlError;
use serde::Deserialize;
use serde_json::{json, Value};

type Api<T = Json<Value>> = Result<T, ApiError>;

/// `GET /v1/memory/facts` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    entity: Option<String>,
    history: Option<bool>,
    limit: Option<usize>,
}

/// `GET /v1/memory/facts`: newest first; `entity` filters by a name's
/// words, `history=true` adds superseded facts.
pub async fn list(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Query(q): Query<ListQuery>,
) -> Api {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    if q.entity.as_ref().is_some_and(|e| e.chars().count() > 200) {
        return Err(ApiError::bad("entity", "at most 200 characters"));
    }
    let history = q.history.unwrap_or(false);
    let facts = s.run(move |c| Ok(c.facts(&t, q.entity.as_deref(), history, limit + 1)?)).await?;
    let more = facts.len() > limit;
    Ok(Json(crate::wire::list(facts.iter().take(limit).map(wire::fact).collect(), more)))
}

/// `POST /v1/memory/facts`: one fact or `{"facts": [...]}`, remembered
/// like extracted ones (merged, superseding), checked without grounding.
pub async fn add(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    body: axum::body::Bytes,
) -> Api {
    let facts = crate::wire::parse::<wire::AddFacts>(&body)?.into_facts()?;
    let done = s
        .run(move |c| {
            facts
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    c.add_fact(&t, f).map_err(|e| match e {
                        ControlError::InvalidRequest { reason, .. } => {
                            ControlError::invalid(format!("facts[{i}]"), reason).into()
                        }
                        e => ApiError::from(e),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    Ok(Json(
        json!({"object": "list", "data": done.iter().map(wire::remembered).collect::<Vec<_>>()}),
    ))
}

/// `GET /v1/memory/facts/{id}`.
pub async fn get(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Api {
    let f = s.run(move |c| Ok(c.store.memory_fact(&t.id, &id)?)).await?;
    Ok(Json(wire::fact(&f)))
}

/// `PATCH /v1/memory/facts/{id}`: new subject, verb, object, since.
pub async fn edit(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Api {
    let raw: RawFact = crate::wire::parse::<wire::FactIn>(&body)?.into();
    let f = s.run(move |c| Ok(c.edit_fact(&t, &id, &raw)?)).await?;
    Ok(Json(wire::fact(&f)))
}

/// `DELETE /v1/memory/facts/{id}`: the facts it had superseded are
/// current again.
pub async fn delete(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Api {
    let f = s.run(move |c| Ok(c.store.forget_memory_fact(&t.id, &id)?)).await?;
    Ok(Json(json!({"id": f.id, "deleted": true})))
}

/// `POST /v1/memory/forget`: `{"entity": "Ana Ruiz"}`.
pub async fn forget(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    body: axum::body::Bytes,
) -> Api {
    let f: wire::Forget = crate::wire::parse(&body)?;
    if f.entity.chars().count() > 200 {
        return Err(ApiError::bad("entity", "at most 200 characters"));
    }
    let done = s.run(move |c| Ok(c.forget_entity(&t, &f.entity)?)).await?;
    Ok(Json(wire::forgotten(&done)))
}

/// `POST /v1/memory/extract`: the facts of a text (a document), by the
/// served model, paragraph by paragraph (at most 32 paragraphs of 1,500
/// characters).
pub async fn extract(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    body: axum::body::Bytes,
) -> Api {
    let e: wire::Extract = crate::wire::parse(&body)?;
    let paragraphs: Vec<&str> =
        e.text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()).collect();
    if paragraphs.is_empty() {
        return Err(ApiError::bad("text", "the text is empty"));
    }
    if paragraphs.len() > wire::MAX_PARAGRAPHS {
        return Err(ApiError::bad(
            "text",
            format!(
                "at most {} paragraphs per request; send the rest in another",
                wire::MAX_PARAGRAPHS
            ),
        ));
    }
    if let Some(p) = paragraphs.iter().position(|p| p.chars().count() > MAX_TEXT) {
        return Err(ApiError::bad(
            "text",
            format!("paragraph {} is longer than {MAX_TEXT} characters", p + 1),
        ));
    }
    let source = e.source.as_deref().map_or("document", str::trim);
    if source.chars().count() > 200 {
        return Err(ApiError::bad("source", "at most 200 characters"));
    }
    let sv = crate::inference::serving(&s)?;
    let mut all = forja_control::memory::Outcome::default();
    for p in paragraphs {
        let o =
            crate::memory::extract(&s, &sv, &t, p, Source::Document(source.to_string())).await?;
        all.stored.extend(o.stored);
        all.rejected.extend(o.rejected);
    }
    Ok(Json(wire::outcome(&all)))
}

/// `GET /v1/memory/rejections` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectionsQuery {
    limit: Option<usize>,
}

/// `GET /v1/memory/rejections`: facts refused, newest first, with why.
pub async fn rejections(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Query(q): Query<RejectionsQuery>,
) -> Api {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let list = s.run(move |c| Ok(c.store.memory_rejections(&t.id, limit)?)).await?;
    Ok(Json(crate::wire::list(list.iter().map(wire::rejection).collect(), false)))
}
