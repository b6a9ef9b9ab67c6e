//! The knowledge base over HTTP, per tenant: `/v1/knowledge/sources` (add
//! a document as JSON text or a multipart file, list), `/{id}` (read,
//! delete), `/{id}/content` (the canonical text citation spans point
//! into), `/v1/knowledge/search`, and `/v1/knowledge/feeds` (follow, list,
//! unfollow, poll now). Extraction, scrubbing, embedding and search run on
//! blocking threads.

use crate::auth::TenantAuth;
use crate::wire::knowledge as wire;
use crate::{ApiError, AppState};
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use forja_control::knowledge::{AddSource, Knowledge, Query};
use forja_knowledge::DocFormat;
use forja_store::Tenant;
use serde_json::Value;

type Api<T = Json<Value>> = Result<T, ApiError>;

/// Runs `f` with the knowledge base on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&Knowledge) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let k = s.knowledge.clone();
    tokio::task::spawn_blocking(move || f(&k))
        .await
        .unwrap_or_else(|e| Err(ApiError::Internal(format!("a knowledge task failed: {e}"))))
}

fn format_of(v: Option<&str>) -> Result<Option<DocFormat>, ApiError> {
    v.map(|f| {
        DocFormat::parse(f)
            .ok_or_else(|| ApiError::bad("format", "use text, markdown, html or docx"))
    })
    .transpose()
}

fn clip_field(name: &str, v: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    match v {
        Some(x) if x.len() > max => Err(ApiError::bad(name, format!("at most {max} bytes"))),
        v => Ok(v),
    }
}

/// The source a multipart form describes (`file`, and optional `title`,
/// `format`, `url`, `pii`).
async fn from_multipart(mut mp: Multipart) -> Result<AddSource, ApiError> {
    let (mut file, mut fields) = (None, std::collections::HashMap::new());
    while let Some(field) =
        mp.next_field().await.map_err(|e| ApiError::bad("file", e.body_text()))?
    {
        let name = field.name().unwrap_or("").to_string();
        match name.as_str() {
            "file" => {
                let fname = forja_control::clip(field.file_name().unwrap_or("document"), 200);
                let bytes =
                    field.bytes().await.map_err(|e| ApiError::bad("file", e.body_text()))?;
                file = Some((fname, bytes.to_vec()));
            }
            "title" | "format" | "url" | "pii" => {
                let v = field.text().await.map_err(|e| ApiError::bad("form", e.body_text()))?;
                fields.insert(name, v);
            }
            other => {
                return Err(ApiError::bad(
                    "form",
                    format!(
                        "unknown field `{}` (use file, title, format, url, pii)",
                        forja_control::clip(other, 60)
                    ),
                ))
            }
        }
    }
    let (name, bytes) =
        file.ok_or_else(|| ApiError::bad("file", "a multipart field `file` is required"))?;
    Ok(AddSource {
        title: clip_field("title", fields.remove("title"), 500)?,
        name,
        url: clip_field("url", fields.remove("url"), 2048)?,
        format: format_of(fields.get("format").map(String::as_str))?,
        bytes,
        pii: wire::pii(fields.get("pii").map(String::as_str))?,
        kind: "document",
        origin: None,
        feed_id: None,
    })
}

/// `POST /v1/knowledge/sources`.
pub async fn add_source(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    req: Request,
) -> Api {
    let multipart = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let add = if multipart {
        let mp = Multipart::from_request(req, &s)
            .await
            .map_err(|e| ApiError::bad("file", e.body_text()))?;
        from_multipart(mp).await?
    } else {
        let body = axum::body::Bytes::from_request(req, &s)
            .await
            .map_err(|e| ApiError::bad("body", e.body_text()))?;
        let b: wire::AddSource = crate::wire::parse(&body)?;
        let format = format_of(b.format.as_deref())?;
        if format == Some(DocFormat::Docx) {
            return Err(ApiError::bad("format", "send a DOCX as a multipart `file`"));
        }
        let name = clip_field("name", b.name, 200)?.unwrap_or_else(|| "document.txt".into());
        AddSource {
            title: clip_field("title", b.title, 500)?,
            format: format.or_else(|| DocFormat::from_name(&name)).or(Some(DocFormat::Text)),
            name,
            url: clip_field("url", b.url, 2048)?,
            bytes: b.text.into_bytes(),
            pii: wire::pii(b.pii.as_deref())?,
            kind: "document",
            origin: None,
            feed_id: None,
        }
    };
    let added = blocking(&s, move |k| Ok(k.add(&t, add)?)).await?;
    let mut v = wire::source(&added.source);
    v["duplicate_of"] = added.duplicate_of.into();
    Ok(Json(v))
}

/// `GET /v1/knowledge/sources`.
pub async fn list_sources(State(s): State<AppState>, TenantAuth(t, _): TenantAuth) -> Api {
    let list = s.run(move |c| Ok(c.store.knowledge_sources(&t.id, 1000)?)).await?;
    let more = list.len() == 1000;
    Ok(Json(crate::wire::list(list.iter().map(wire::source).collect(), more)))
}

/// `GET /v1/knowledge/sources/{id}`.
pub async fn get_source(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Api {
    let src = s.run(move |c| Ok(c.store.knowledge_source(&t.id, &id)?)).await?;
    Ok(Json(wire::source(&src)))
}

/// `GET /v1/knowledge/sources/{id}/content`: the canonical text.
pub async fn source_content(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let text = s.run(move |c| Ok(c.store.knowledge_source_text(&t.id, &id)?)).await?;
    Ok(([("content-type", "text/plain; charset=utf-8")], text).into_response())
}

/// `DELETE /v1/knowledge/sources/{id}`.
pub async fn delete_source(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Api {
    let src = blocking(&s, move |k| Ok(k.remove(&t, &id)?)).await?;
    let mut v = wire::source(&src);
    v["deleted"] = true.into();
    Ok(Json(v))
}

/// Searches for the chat handler and the search route.
pub(crate) async fn search_hits(
    s: &AppState,
    t: &Tenant,
    q: Query,
) -> Result<Vec<forja_control::knowledge::Hit>, ApiError> {
    let t = t.clone();
    blocking(s, move |k| Ok(k.search(&t, &q)?)).await
}

/// `POST /v1/knowledge/search`.
pub async fn search(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    body: axum::body::Bytes,
) -> Api {
    let b: wire::Search = crate::wire::parse(&body)?;
    let q = Query {
        text: b.query,
        k: wire::k(b.k)?,
        sources: wire::sources(b.sources)?,
        mode: wire::mode(b.mode.as_deref())?,
    };
    let used = s.knowledge.mode(q.mode)?;
    let hits = search_hits(&s, &t, q).await?;
    let mut v = crate::wire::list(hits.iter().map(wire::hit).collect(), false);
    v["mode"] = used.name().into();
    Ok(Json(v))
}

/// `POST /v1/knowledge/feeds`.
pub async fn add_feed(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    body: axum::body::Bytes,
) -> Api {
    let b: wire::AddFeed = crate::wire::parse(&body)?;
    forja_control::knowledge::check_url(&b.url)?;
    let interval = b.interval_s.unwrap_or(3600);
    if !(forja_control::knowledge::MIN_INTERVAL_S..=30 * 86_400).contains(&interval) {
        return Err(ApiError::bad(
            "interval_s",
            format!("must be {} to 2592000 seconds", forja_control::knowledge::MIN_INTERVAL_S),
        ));
    }
    let pii = wire::pii(b.pii.as_deref())?;
    let f = s
        .run(move |c| {
            if c.store.knowledge_feeds(&t.id)?.len() >= 100 {
                return Err(ApiError::bad("url", "a tenant follows at most 100 feeds"));
            }
            Ok(c.store.add_knowledge_feed(&t.id, &b.url, interval, pii.name())?)
        })
        .await?;
    Ok(Json(wire::feed(&f)))
}

/// `GET /v1/knowledge/feeds`.
pub async fn list_feeds(State(s): State<AppState>, TenantAuth(t, _): TenantAuth) -> Api {
    let list = s.run(move |c| Ok(c.store.knowledge_feeds(&t.id)?)).await?;
    Ok(Json(crate::wire::list(list.iter().map(wire::feed).collect(), false)))
}

/// `DELETE /v1/knowledge/feeds/{id}`: unfollows and removes its entries.
pub async fn delete_feed(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Api {
    let f = blocking(&s, move |k| Ok(k.remove_feed(&t, &id)?)).await?;
    let mut v = wire::feed(&f);
    v["deleted"] = true.into();
    Ok(Json(v))
}

/// `POST /v1/knowledge/feeds/{id}/poll`: polls now.
pub async fn poll_feed(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Api {
    let f = blocking(&s, move |k| {
        let feed = k.feed(&t, &id)?;
        k.poll_feed(&feed)?;
        Ok(k.feed(&t, &id)?)
    })
    .await?;
    Ok(Json(wire::feed(&f)))
}
