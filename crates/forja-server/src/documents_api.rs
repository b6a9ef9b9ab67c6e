//! Documents, corrections and the entity dictionary over HTTP:
//! `POST /v1/corrections` (a corrected DOCX → delta, dictionary entries,
//! training pairs), `/v1/documents` (list, get, content, delete) and
//! `/v1/dictionary` (list, add, remove). Tenant-scoped like every route;
//! documents are read and diffed off the async runtime, within the reader's
//! limits.

use crate::auth::TenantAuth;
use crate::wire::documents as wire;
use crate::{ApiError, AppState};
use axum::extract::{Multipart, Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use forja_control::documents::CorrectionUpload;
use serde_json::{json, Value};

type Api<T = Json<Value>> = Result<T, ApiError>;

/// `POST /v1/corrections` (multipart: `file` = the corrected DOCX,
/// optional `generated_id` = the draft it corrects; without it, the draft
/// the file names).
pub async fn corrections(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    mut mp: Multipart,
) -> Api {
    let (mut file, mut generated_id) = (None, None);
    while let Some(field) =
        mp.next_field().await.map_err(|e| ApiError::bad("file", e.body_text()))?
    {
        match field.name() {
            Some("file") => {
                let name = forja_control::clip(field.file_name().unwrap_or("final.docx"), 200);
                let bytes =
                    field.bytes().await.map_err(|e| ApiError::bad("file", e.body_text()))?;
                file = Some((name, bytes));
            }
            Some("generated_id") => {
                let id =
                    field.text().await.map_err(|e| ApiError::bad("generated_id", e.body_text()))?;
                let id = id.trim().to_string();
                if id.is_empty() || id.len() > 100 {
                    return Err(ApiError::bad("generated_id", "a document id (doc-…)"));
                }
                generated_id = Some(id);
            }
            Some(other) => {
                return Err(ApiError::bad(
                    "multipart",
                    format!(
                        "unknown field `{}` (use file, generated_id)",
                        forja_control::clip(other, 40)
                    ),
                ))
            }
            None => {}
        }
    }
    let (filename, bytes) = file.ok_or_else(|| {
        ApiError::bad("file", "a multipart field `file` (the corrected .docx) is required")
    })?;
    let up = CorrectionUpload { generated_id, filename, bytes };
    let outcome = s.control.corrections(&t, up).await?;
    Ok(Json(wire::outcome(&outcome)))
}

/// `GET /v1/documents`.
pub async fn list(State(s): State<AppState>, TenantAuth(t, _): TenantAuth) -> Api {
    let docs = s.run(move |c| Ok(c.store.documents(&t.id)?)).await?;
    Ok(Json(crate::wire::list(docs.iter().map(wire::document).collect(), false)))
}

/// `GET /v1/documents/{id}`.
pub async fn get(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Api {
    let d = s.run(move |c| Ok(c.store.document(&t.id, &id)?)).await?;
    Ok(Json(wire::document(&d)))
}

/// `GET /v1/documents/{id}/content`: the DOCX.
pub async fn content(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Api<Response> {
    let d = s.run(move |c| Ok(c.store.document(&t.id, &id)?)).await?;
    let bytes = s.control.artifacts.get(&d.sha256).await?;
    let disposition = format!(
        "attachment; filename=\"{}\"",
        d.filename
            .chars()
            .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\' || *c == ' ')
            .collect::<String>()
    );
    Ok((
        [
            (
                "content-type",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
                    .to_string(),
            ),
            ("content-disposition", disposition),
        ],
        bytes,
    )
        .into_response())
}

/// `DELETE /v1/documents/{id}`.
pub async fn delete(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(id): Path<String>,
) -> Api {
    let d = s.run(move |c| Ok(c.store.delete_document(&t.id, &id)?)).await?;
    Ok(Json(json!({"id": d.id, "object": "document", "deleted": true})))
}

/// `GET /v1/dictionary`.
pub async fn dictionary(State(s): State<AppState>, TenantAuth(t, _): TenantAuth) -> Api {
    let entries = s.run(move |c| Ok(c.store.dictionary(&t.id)?)).await?;
    Ok(Json(crate::wire::list(entries.iter().map(wire::entry).collect(), false)))
}

/// `POST /v1/dictionary` (`{"entries": [{"wrong", "right"}]}`): add or
/// replace; serving applies them to the tenant's next generations.
pub async fn add(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    body: axum::body::Bytes,
) -> Api {
    let req: wire::AddEntries = crate::wire::parse(&body)?;
    let entries = req.checked()?;
    let n = s.run(move |c| Ok(c.dictionary_add(&t, &entries)?)).await?;
    Ok(Json(json!({"object": "dictionary", "entries": n})))
}

/// `DELETE /v1/dictionary/{wrong}` (the misspelling, URL-encoded).
pub async fn remove(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    Path(wrong): Path<String>,
) -> Api {
    let e = s.run(move |c| Ok(c.dictionary_remove(&t, &wrong)?)).await?;
    Ok(Json(json!({"wrong": e.wrong, "object": "dictionary.entry", "deleted": true})))
}
