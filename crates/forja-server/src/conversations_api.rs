//! Chat history over HTTP, per tenant: `/v1/conversations` (create, list
//! and search), `/v1/conversations/{id}` (read, rename, delete),
//! `/v1/conversations/{id}/messages` (append) and
//! `/v1/conversations/{id}/export` (JSON or Markdown). Message text is
//! scrubbed of personal data with the tenant's scrubber before it is
//! stored (off the async runtime), and charged to the tenant's quota.

use crate::auth::TenantAuth;
use crate::wire::conversations::{self as wire, MessageIn};
use crate::{ApiError, AppState};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use forja_store::{NewMessage, Tenant};
use serde::Deserialize;
use serde_json::{json, Value};

type Api<T = Json<Value>> = Result<T, ApiError>;

/// Scrubs `messages` with the tenant's scrubber (one document scope, so a
/// name keeps its pseudonym across them); returns them and the findings
/// rewritten per kind.
async fn scrubbed(
    s: &AppState,
    t: &Tenant,
    messages: Vec<MessageIn>,
) -> Result<(Vec<NewMessage>, Value), ApiError> {
    let (control, tenant) = (s.control.clone(), t.clone());
    tokio::task::spawn_blocking(move || {
        let scrubber = control.curator.scrubber(&tenant)?;
        let mut doc = forja_data::pii::DocScrub::default();
        let mut counts = std::collections::BTreeMap::<String, u64>::new();
        let out = messages
            .into_iter()
            .map(|m| {
                let sc = scrubber.scrub(&m.content, &mut doc);
                for (k, n) in sc.counts {
                    *counts.entry(k.as_str().to_string()).or_default() += n as u64;
                }
                NewMessage { role: m.role, content: sc.text, completion_id: m.completion_id }
            })
            .collect();
        Ok((out, json!(counts)))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("a scrubbing task failed: {e}")))?
}

/// `POST /v1/conversations`.
pub async fn create(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    body: axum::body::Bytes,
) -> Api {
    let wire::CreateConversation { title, model, mode, messages } = crate::wire::parse_opt(&body)?;
    wire::check_messages(&messages, true)?;
    let mut update = wire::UpdateConversation { title, model, mode }.checked()?;
    let (messages, pii) = scrubbed(&s, &t, messages).await?;
    if update.title.is_none() {
        // The first user message, cut at a word, scrubbed like the rest.
        let first = messages.iter().find(|m| m.role == "user").map(|m| m.content.as_str());
        update.title = Some(title_from(first.unwrap_or("")));
    }
    let c = s.run(move |c| Ok(c.store.create_conversation(&t.id, &update, &messages)?)).await?;
    let mut v = wire::conversation(&c, None);
    v["pii_scrubbed"] = pii;
    Ok(Json(v))
}

/// A title from a first message: one line, at most 60 characters.
fn title_from(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        return "New conversation".into();
    }
    if line.chars().count() <= 60 {
        return line;
    }
    let cut: String = line.chars().take(60).collect();
    let at = cut.rfind(' ').filter(|&i| i > 20).unwrap_or(cut.len());
    format!("{}…", &cut[..at])
}

/// `?search=&limit=` of the list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    search: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/conversations`: last updated first.
pub async fn list(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Query(q): Query<ListQuery>,
) -> Api {
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let search = q.search.filter(|x| !x.trim().is_empty());
    if search.as_ref().is_some_and(|x| x.chars().count() > 200) {
        return Err(ApiError::bad("search", "at most 200 characters"));
    }
    let cs =
        s.run(move |c| Ok(c.store.conversations(&t.id, search.as_deref(), limit + 1)?)).await?;
    let more = cs.len() > limit;
    let data = cs.iter().take(limit).map(|c| wire::conversation(c, None)).collect();
    Ok(Json(crate::wire::list(data, more)))
}

/// A tenant's conversation and its messages, in one trip off the runtime.
async fn with_messages(
    s: &AppState,
    t: Tenant,
    id: String,
) -> Result<(forja_store::Conversation, Vec<forja_store::ConversationMessage>), ApiError> {
    s.run(move |c| {
        let conv = c.store.conversation(&t.id, &id)?;
        Ok((conv, c.store.conversation_messages(&t.id, &id)?))
    })
    .await
}

/// `GET /v1/conversations/{id}`: with its messages.
pub async fn get(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Api {
    let (c, ms) = with_messages(&s, t, id).await?;
    Ok(Json(wire::conversation(&c, Some(&ms))))
}

/// `PATCH /v1/conversations/{id}`: rename, or change its model or mode.
pub async fn update(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Api {
    let req: wire::UpdateConversation = crate::wire::parse(&body)?;
    let u = req.checked()?;
    let c = s.run(move |c| Ok(c.store.update_conversation(&t.id, &id, &u)?)).await?;
    Ok(Json(wire::conversation(&c, None)))
}

/// `DELETE /v1/conversations/{id}`.
pub async fn delete(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Api {
    let c = s.run(move |c| Ok(c.store.delete_conversation(&t.id, &id)?)).await?;
    Ok(Json(json!({"id": c.id, "object": "conversation.deleted", "deleted": true})))
}

/// `POST /v1/conversations/{id}/messages`.
pub async fn append(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Api {
    let req: wire::AppendMessages = crate::wire::parse(&body)?;
    wire::check_messages(&req.messages, false)?;
    let (messages, pii) = scrubbed(&s, &t, req.messages).await?;
    let c = s
        .run(move |c| Ok(c.store.append_messages(&t.id, &id, &messages, wire::MAX_MESSAGES)?))
        .await?;
    let mut v = wire::conversation(&c, None);
    v["pii_scrubbed"] = pii;
    Ok(Json(v))
}

/// `?format=` of the export.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    format: Option<String>,
}

/// `GET /v1/conversations/{id}/export?format=json|markdown`: a download.
pub async fn export(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Api<Response> {
    let format = q.format.unwrap_or_else(|| "json".into());
    if !matches!(format.as_str(), "json" | "markdown") {
        return Err(ApiError::bad("format", "use json or markdown"));
    }
    let (c, ms) = with_messages(&s, t, id).await?;
    let (body, mime, ext) = if format == "json" {
        let text = serde_json::to_string_pretty(&wire::conversation(&c, Some(&ms)))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        (text, "application/json", "json")
    } else {
        (wire::markdown(&c, &ms), "text/markdown; charset=utf-8", "md")
    };
    let disposition = format!("attachment; filename=\"{}.{ext}\"", c.id);
    Ok(([("content-type", mime.to_string()), ("content-disposition", disposition)], body)
        .into_response())
}

/// `GET /v1/modes`: the tenant's chat modes (the built-in ones until it
/// saves its own).
pub async fn modes(State(s): State<AppState>, TenantAuth(t, _): TenantAuth) -> Api {
    let t = s.run(move |c| Ok(c.store.tenant(&t.id)?)).await?;
    let list = forja_control::modes::effective(&t.settings);
    Ok(Json(wire::modes(&list, !t.settings.modes.is_empty())))
}

/// `PUT /v1/modes`: replaces the tenant's modes (1 to 20).
pub async fn save_modes(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    body: axum::body::Bytes,
) -> Api {
    let req: wire::SaveModes = crate::wire::parse(&body)?;
    let list = req.into_modes();
    forja_control::modes::check(&list)?;
    let saved = list.clone();
    s.run(move |c| Ok(c.store.edit_settings(&t.id, &mut |st| st.modes = saved.clone())?)).await?;
    Ok(Json(wire::modes(&list, true)))
}

/// `DELETE /v1/modes`: back to the built-in modes.
pub async fn reset_modes(State(s): State<AppState>, TenantAuth(t, _): TenantAuth) -> Api {
    s.run(move |c| Ok(c.store.edit_settings(&t.id, &mut |st| st.modes.clear())?)).await?;
    Ok(Json(wire::modes(&forja_control::modes::defaults(), false)))
}
