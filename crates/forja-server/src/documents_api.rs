//! Documents, corrections and the entity dictionary over HTTP:
//! `POST /v1/documents` (a transcript → minutes drafted by the tenant's
//! served model, as DOCX with a chunk id per paragraph),
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
use forja_control::documents::{CorrectionUpload, MinutesUpload};
use serde_json::{json, Value};

type Api<T = Json<Value>> = Result<T, ApiError>;

/// `POST /v1/corrections` (multipart: `file` = the corrected DOCX,
/// optional `generated_id` = the draft it corrects; without it, the draft
/// the file names). With `transcript_id` instead, `file` is minutes written
/// by hand, aligned to that stored transcript (optional `max_lookahead`,
/// `word_count_threshold`, `length_penalty_factor`).
pub async fn corrections(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    mut mp: Multipart,
) -> Api {
    let (mut file, mut generated_id, mut transcript_id) = (None, None, None);
    let mut params = forja_docs::align::AlignParams::default();
    while let Some(field) =
        mp.next_field().await.map_err(|e| ApiError::bad("file", e.body_text()))?
    {
        let name = field.name().map(str::to_string);
        match name.as_deref() {
            Some("file") => {
                let name = forja_control::clip(field.file_name().unwrap_or("final.docx"), 200);
                let bytes =
                    field.bytes().await.map_err(|e| ApiError::bad("file", e.body_text()))?;
                file = Some((name, bytes));
            }
            Some(key @ ("generated_id" | "transcript_id")) => {
                let id = field.text().await.map_err(|e| ApiError::bad(key, e.body_text()))?;
                let id = id.trim().to_string();
                if id.is_empty() || id.len() > 100 {
                    return Err(ApiError::bad(key, "a document id (doc-…)"));
                }
                if key == "generated_id" {
                    generated_id = Some(id);
                } else {
                    transcript_id = Some(id);
                }
            }
            Some(key @ ("max_lookahead" | "word_count_threshold" | "length_penalty_factor")) => {
                let v = field.text().await.map_err(|e| ApiError::bad(key, e.body_text()))?;
                let x: f64 = v.trim().parse().map_err(|_| ApiError::bad(key, "a number"))?;
                match key {
                    "max_lookahead" if (1.0..=1000.0).contains(&x) && x.fract() == 0.0 => {
                        params.max_lookahead = x as usize
                    }
                    "word_count_threshold" if (1.0..=50.0).contains(&x) => {
                        params.word_count_threshold = x as f32
                    }
                    "length_penalty_factor" if (0.0..=10.0).contains(&x) => {
                        params.length_penalty_factor = x as f32
                    }
                    _ => return Err(ApiError::bad(key, "out of range")),
                }
            }
            Some(other) => {
                return Err(ApiError::bad(
                    "multipart",
                    format!(
                        "unknown field `{}` (use file, generated_id or transcript_id)",
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
    if let Some(transcript_id) = transcript_id {
        if generated_id.is_some() {
            return Err(ApiError::bad(
                "transcript_id",
                "give `generated_id` or `transcript_id`, not both",
            ));
        }
        let kept = (filename.clone(), bytes.to_vec());
        let up = MinutesUpload { transcript_id, filename, bytes, params };
        let outcome = s.control.aligned_minutes(&t, up).await?;
        let mut v = wire::aligned(&outcome);
        v["knowledge_source"] = to_knowledge(&s, &t, kept).await;
        return Ok(Json(v));
    }
    let kept = (filename.clone(), bytes.to_vec());
    let up = CorrectionUpload { generated_id, filename, bytes };
    let outcome = s.control.corrections(&t, up).await?;
    let mut v = wire::outcome(&outcome);
    v["knowledge_source"] = to_knowledge(&s, &t, kept).await;
    Ok(Json(v))
}

/// The final minutes join the tenant's knowledge base (scrubbed; a later
/// question about the session finds them). A failure there is logged and
/// does not fail the correction, which is already stored: the id, or null.
async fn to_knowledge(
    s: &AppState,
    t: &forja_store::Tenant,
    (name, bytes): (String, Vec<u8>),
) -> serde_json::Value {
    let t = t.clone();
    let add = forja_control::knowledge::AddSource {
        title: None,
        name,
        url: None,
        format: Some(forja_knowledge::DocFormat::Docx),
        bytes,
        pii: forja_control::knowledge::Pii::Scrub,
        kind: "minutes",
        origin: None,
        feed_id: None,
    };
    match crate::knowledge_api::blocking(s, move |k| Ok(k.add(&t, add)?)).await {
        Ok(a) => a.source.id.into(),
        Err(e) => {
            tracing::warn!("final minutes not added to the knowledge base: {e}");
            serde_json::Value::Null
        }
    }
}

/// Segments drafted per batch (well under a tenant's in-flight cap).
const DRAFT_BATCH: usize = 8;

/// `POST /v1/documents`: drafts minutes from a transcript. Consecutive
/// segments of one speaker make one paragraph (one chunk); spoken numbers
/// are written as digits (unless `normalize_numbers` is false), then the
/// transcript is PII-scrubbed with the tenant's scrubber before anything
/// sees or stores it; each paragraph is generated greedily from its chunk with the
/// drafting instruction and the tenant's dictionary applied. The
/// transcript and the draft are stored (transcript → generated, the next
/// version of its session).
pub async fn create(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    body: axum::body::Bytes,
) -> Api {
    use forja_core::{ChatMessage, GenerationParams, Role, SamplingParams};
    use forja_serve::{GenEvent, GenRequest};
    let req: wire::CreateDraft = crate::wire::parse(&body)?;
    let segments = req.segments()?;
    // Chunks: runs of one speaker (a segment without one stands alone).
    let mut chunks: Vec<Vec<wire::Segment>> = Vec::new();
    for seg in segments {
        match chunks.last_mut() {
            Some(run) if seg.speaker.is_some() && run[0].speaker == seg.speaker => run.push(seg),
            _ => chunks.push(vec![seg]),
        }
    }
    if chunks.len() > wire::MAX_CHUNKS {
        return Err(ApiError::bad(
            "transcript",
            format!(
                "{} paragraphs to draft; at most {} per request",
                chunks.len(),
                wire::MAX_CHUNKS
            ),
        ));
    }
    // Scrub off the runtime, one document scope so a name keeps its tag.
    let control = s.control.clone();
    let tenant = t.clone();
    let itn = req.normalize_numbers.unwrap_or(true);
    let (sources, transcript_json) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let scrubber = control.curator.scrubber(&tenant)?;
        let mut doc = forja_data::pii::DocScrub::default();
        let mut out = Vec::with_capacity(chunks.len());
        let mut clean_segments = Vec::new();
        for run in chunks {
            let mut texts = Vec::with_capacity(run.len());
            for seg in &run {
                // Numbers first: a number spoken as words is scrubbed as
                // digits (a phone number, an ID) like any other.
                let spoken = seg.text.trim();
                let written =
                    if itn { forja_docs::itn::spanish(spoken) } else { spoken.to_string() };
                let text = scrubber.scrub(&written, &mut doc).text;
                clean_segments.push(wire::Segment { text: text.clone(), ..seg.clone() });
                texts.push(text);
            }
            let start = run.iter().filter_map(|s| s.start).reduce(f64::min);
            let end = run.iter().filter_map(|s| s.end).reduce(f64::max);
            out.push((texts.join(" "), start, end));
        }
        let json = serde_json::to_vec(&serde_json::json!({"segments": clean_segments}))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok((out, json))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("a scrubbing task failed: {e}")))??;

    let sv = crate::inference::serving(&s)?;
    let model = req.model.clone().unwrap_or_else(|| "base@champion".into());
    let target = sv.resolve(&t, &model).await?;
    let dict = sv.dictionary(&t).await?;
    let params = GenerationParams {
        max_tokens: req.max_tokens.unwrap_or(256).min(s.live.max_tokens_cap()),
        sampling: SamplingParams { temperature: 0.0, ..SamplingParams::default() },
        ..GenerationParams::default()
    };
    let deadline = tokio::time::Instant::now() + s.live.request_timeout();
    let mut texts = vec![String::new(); sources.len()];
    for first in (0..sources.len()).step_by(DRAFT_BATCH) {
        let last = (first + DRAFT_BATCH).min(sources.len());
        let mut prompts = Vec::with_capacity(last - first);
        for (text, _, _) in &sources[first..last] {
            let messages = vec![
                ChatMessage {
                    role: Role::System,
                    content: forja_control::documents::DRAFT_INSTRUCTION.into(),
                },
                ChatMessage { role: Role::User, content: text.clone() },
            ];
            prompts.push(sv.chat_prompt(messages).await?);
        }
        let request = GenRequest { prompts, params: params.clone(), n: 1, grammar: None };
        let mut stream = sv.generate(&t, &target, request).await?;
        let mut left = stream.choices;
        while left > 0 {
            match tokio::time::timeout_at(deadline, stream.recv()).await {
                Ok(Some((i, GenEvent::Done(r)))) => {
                    let c = r.map_err(crate::inference::engine_err)?;
                    texts[first + i] = dict.apply(c.text.trim()).into_owned();
                    left -= 1;
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err(ApiError::Internal("the generation thread stopped".into())),
                Err(_) => return Err(ApiError::Timeout(s.live.request_timeout().as_secs())),
            }
        }
    }

    // The DOCX, with the document's id inside; then the lineage.
    let id = forja_control::documents::new_document_id();
    let title = req.title.clone();
    let blocks: Vec<forja_docs::Block> = title
        .iter()
        .map(|t| {
            forja_docs::Block::paragraph(t.clone())
                .with_kind(forja_docs::BlockKind::Heading { level: 1 })
        })
        .chain(texts.iter().enumerate().map(|(i, text)| {
            let text = if text.is_empty() { "…".to_string() } else { text.clone() };
            forja_docs::Block::paragraph(text).with_chunk(format!("c{:04}", i + 1))
        }))
        .collect();
    let (id2, title2) = (id.clone(), title.clone());
    let bytes = tokio::task::spawn_blocking(move || {
        forja_docs::docx::write_docx(
            &blocks,
            &forja_docs::docx::DraftMeta { title: title2.as_deref(), document_id: Some(&id2) },
        )
    })
    .await
    .map_err(|e| ApiError::Internal(format!("a writing task failed: {e}")))?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let transcript =
        s.control.store_transcript(&t, req.session.clone(), transcript_json.into()).await?;
    let chunk_rows = sources
        .into_iter()
        .enumerate()
        .map(|(i, (source, start_s, end_s))| forja_store::ChunkSource {
            chunk_id: format!("c{:04}", i + 1),
            source,
            start_s,
            end_s,
        })
        .collect();
    let filename = format!(
        "{}.docx",
        req.session
            .as_deref()
            .unwrap_or("acta")
            .replace(|c: char| !c.is_alphanumeric() && c != '-', "_")
    );
    let draft = forja_control::documents::NewDraft {
        id,
        filename,
        bytes: bytes.into(),
        session: req.session.clone(),
        parent_id: Some(transcript.id.clone()),
        model: Some(target.model.clone()),
        chunks: chunk_rows,
    };
    let row = s.control.store_generated(&t, draft).await?;
    let mut v = wire::document(&row);
    v["content_url"] = json!(format!("/v1/documents/{}/content", row.id));
    v["paragraphs"] = texts
        .iter()
        .enumerate()
        .map(|(i, text)| json!({"chunk_id": format!("c{:04}", i + 1), "text": text}))
        .collect();
    Ok(Json(v))
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
