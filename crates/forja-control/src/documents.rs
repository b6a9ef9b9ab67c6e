//! Learning from corrected documents: a final DOCX is compared with the
//! draft it corrects (the newest generated version of its session: a
//! cloned session's V2, never V1), and each paragraph's delta becomes
//! nothing, a dictionary entry (a spelling fix of a name, applied to the
//! tenant's next generations within seconds) or a training pair that goes
//! through the same curation as `/v1/feedback` (PII scrubbing, dedup,
//! quality) into the tenant's pending examples, with lineage back to the
//! document and chunk. Minutes written by hand (no chunk ids) are aligned
//! to their stored transcript instead, and every linked paragraph becomes
//! a pair the same way.

use crate::control::blocking;
use crate::feedback::Feedback;
use crate::{Control, ControlError, Result};
use forja_core::{ChatMessage, Role};
use forja_docs::align::{align, AlignParams, Alignment, Segment};
use forja_docs::diff::{diff, Delta, DiffOptions, Op};
use forja_docs::docx::{read_docx, ReadLimits};
use forja_docs::entity::EntityRule;
use forja_docs::learn::{learning, Learning};
use forja_docs::{Block, Document};
use forja_store::{
    Appended, ChunkSource, DictionaryEntry, DocKind, DocumentRow, Event, StoreError, Tenant,
};
use std::collections::HashMap;

/// The instruction a draft is generated with, and the system turn of the
/// training pairs learnt from its corrections.
pub const DRAFT_INSTRUCTION: &str = "Convierte la transcripción automática en el párrafo del acta del Pleno: puntuación, nombres bien escritos, cifras con números, sin muletillas ni datos personales.";

/// Largest document accepted, bytes (the HTTP body limit of the route is
/// set from it).
pub const MAX_DOCUMENT_BYTES: usize = 16 << 20;

/// A generated document to store.
#[derive(Debug, Clone)]
pub struct NewDraft {
    /// Its id ([`new_document_id`]), also written in the DOCX.
    pub id: String,
    /// File name.
    pub filename: String,
    /// The DOCX.
    pub bytes: bytes::Bytes,
    /// The meeting.
    pub session: Option<String>,
    /// Its transcript document, when stored.
    pub parent_id: Option<String>,
    /// What wrote it.
    pub model: Option<String>,
    /// Where each chunk came from.
    pub chunks: Vec<ChunkSource>,
}

/// A fresh document id (`doc-…`).
pub fn new_document_id() -> String {
    forja_store::new_id("doc")
}

/// A corrected document to learn from.
#[derive(Debug, Clone)]
pub struct CorrectionUpload {
    /// The generated document it corrects; `None`: the one named in the
    /// file's `forja_document` property.
    pub generated_id: Option<String>,
    /// The final file's name.
    pub filename: String,
    /// Its bytes.
    pub bytes: bytes::Bytes,
}

/// What one paragraph of the delta taught.
#[derive(Debug, Clone)]
pub struct ParagraphOutcome {
    /// The decision.
    pub learning: Learning,
    /// For a training pair: the stored example (curated, or refused and why).
    pub example: Option<forja_store::Example>,
}

/// The result of learning from a corrected document.
#[derive(Debug, Clone)]
pub struct CorrectionOutcome {
    /// The stored final version.
    pub document: DocumentRow,
    /// The generated document it was compared with.
    pub compared_with: DocumentRow,
    /// Set when the file named an older draft of its session than the one
    /// compared with (it was cloned into a V2 after the file's draft).
    pub named_draft: Option<String>,
    /// The blocks of both sides.
    pub generated: Vec<Block>,
    /// The final version's blocks.
    pub final_blocks: Vec<Block>,
    /// The paragraph delta.
    pub delta: Delta,
    /// One per delta op.
    pub paragraphs: Vec<ParagraphOutcome>,
    /// Dictionary entries written.
    pub dictionary_updated: usize,
    /// The examples' append result (a threshold job it created, …).
    pub appended: Option<Appended>,
}

fn read(file: &str, bytes: &[u8]) -> Result<Document> {
    let limits = ReadLimits { max_file_bytes: MAX_DOCUMENT_BYTES as u64, ..ReadLimits::default() };
    read_docx(bytes, &limits).map_err(|source| ControlError::Document { file: file.into(), source })
}

/// Refuses a file over [`MAX_DOCUMENT_BYTES`] before reading it, then
/// reads it off the runtime.
async fn read_upload(bytes: &bytes::Bytes) -> Result<Document> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(ControlError::Document {
            file: "file".into(),
            source: forja_docs::DocsError::TooLarge(format!(
                "{} bytes, over the limit of {MAX_DOCUMENT_BYTES} bytes",
                bytes.len()
            )),
        });
    }
    let bytes = bytes.clone();
    blocking(move || read("file", &bytes)).await
}

/// A document row for [`Control::keep`] (which fills in its sha256 and
/// size).
fn row(tenant: &Tenant, id: String, kind: DocKind, filename: &str) -> DocumentRow {
    DocumentRow {
        id,
        tenant_id: tenant.id.clone(),
        kind,
        parent_id: None,
        session: None,
        version: 1,
        filename: crate::clip(filename, 200),
        sha256: String::new(),
        bytes: 0,
        model: None,
        created_at: 0,
    }
}

impl Control {
    /// Stores `bytes` in the artifact store, then `row` (with their sha256
    /// and size) and its chunk sources.
    async fn keep(
        &self,
        mut row: DocumentRow,
        bytes: bytes::Bytes,
        chunks: Vec<ChunkSource>,
    ) -> Result<DocumentRow> {
        row.bytes = bytes.len() as u64;
        row.sha256 = self.artifacts.put(bytes).await?;
        let store = self.store.clone();
        blocking(move || Ok(store.insert_document(&row, &chunks)?)).await
    }

    /// Curates training pairs through the feedback path (`None`: no pairs).
    async fn learn(
        self: &std::sync::Arc<Self>,
        tenant: &Tenant,
        items: Vec<Feedback>,
    ) -> Result<Option<Appended>> {
        if items.is_empty() {
            return Ok(None);
        }
        let (me, tenant) = (self.clone(), tenant.clone());
        Ok(Some(blocking(move || me.feedback(&tenant, &items)).await?))
    }
}

impl Control {
    /// Adds or replaces dictionary entries by hand (no provenance) and
    /// tells serving; the dictionary's size after.
    pub fn dictionary_add(&self, tenant: &Tenant, entries: &[(String, String)]) -> Result<usize> {
        let rows: Vec<DictionaryEntry> = entries
            .iter()
            .map(|(w, r)| DictionaryEntry {
                wrong: w.clone(),
                right: r.clone(),
                source_document: None,
                source_chunk: None,
                created_at: 0,
            })
            .collect();
        let n = self.store.upsert_dictionary(&tenant.id, &rows)?;
        self.bus.publish(Event::DictionaryUpdated { tenant: tenant.id.clone(), entries: n });
        Ok(n)
    }

    /// Removes the entry for `wrong` and tells serving.
    pub fn dictionary_remove(&self, tenant: &Tenant, wrong: &str) -> Result<DictionaryEntry> {
        let e = self.store.remove_dictionary(&tenant.id, wrong)?;
        let n = self.store.dictionary(&tenant.id)?.len();
        self.bus.publish(Event::DictionaryUpdated { tenant: tenant.id.clone(), entries: n });
        Ok(e)
    }

    /// Stores a generated document (a DOCX forja wrote, whose
    /// `forja_document` property is `draft.id`) with the sources of its
    /// chunks; under a session, its version is one more than the session's
    /// newest draft.
    pub async fn store_generated(&self, tenant: &Tenant, draft: NewDraft) -> Result<DocumentRow> {
        let version = match &draft.session {
            Some(s) => {
                let (store, tid, s) = (self.store.clone(), tenant.id.clone(), s.clone());
                blocking(move || Ok(store.latest_generated(&tid, &s)?))
                    .await?
                    .map_or(1, |d| d.version + 1)
            }
            None => 1,
        };
        let mut r = row(tenant, draft.id, DocKind::Generated, &draft.filename);
        r.parent_id = draft.parent_id;
        r.session = draft.session;
        r.version = version;
        r.model = draft.model;
        self.keep(r, draft.bytes, draft.chunks).await
    }

    /// Stores a transcript (JSON of its segments, already scrubbed) as the
    /// root of a session's lineage.
    pub async fn store_transcript(
        &self,
        tenant: &Tenant,
        session: Option<String>,
        json: bytes::Bytes,
    ) -> Result<DocumentRow> {
        let mut r = row(tenant, new_document_id(), DocKind::Transcript, "transcript.json");
        r.session = session;
        self.keep(r, json, Vec::new()).await
    }

    /// Learns from a corrected document (see the module docs).
    pub async fn corrections(
        self: &std::sync::Arc<Self>,
        tenant: &Tenant,
        up: CorrectionUpload,
    ) -> Result<CorrectionOutcome> {
        let final_doc = read_upload(&up.bytes).await?;
        if final_doc.blocks.is_empty() {
            return Err(ControlError::invalid("file", "the document has no text"));
        }
        // Which draft: the one asked for, else the one the file names.
        let asked = up.generated_id.clone().or_else(|| final_doc.document_id.clone()).ok_or_else(|| {
            ControlError::invalid(
                "generated_id",
                "the file carries no forja document id (was it written by forja?); name the draft it corrects",
            )
        })?;
        // One trip to the store: the draft asked for, the draft the file
        // names (when another), and the newest draft of their session.
        let (store, tid) = (self.store.clone(), tenant.id.clone());
        let named =
            final_doc.document_id.clone().filter(|n| up.generated_id.is_some() && *n != asked);
        let named2 = named.clone();
        let (asked_row, named_row, latest) = blocking(move || {
            let asked_row = store.document(&tid, &asked)?;
            let named_row = match named2.map(|n| store.document(&tid, &n)) {
                Some(Ok(d)) => Some(d),
                Some(Err(StoreError::NotFound { .. })) | None => None,
                Some(Err(e)) => return Err(e.into()),
            };
            let latest = match &asked_row.session {
                Some(s) => store.latest_generated(&tid, s)?,
                None => None,
            };
            Ok((asked_row, named_row, latest))
        })
        .await?;
        if asked_row.kind != DocKind::Generated {
            return Err(ControlError::invalid(
                "generated_id",
                format!(
                    "document {} is a {}, not a generated draft",
                    asked_row.id,
                    asked_row.kind.as_str()
                ),
            ));
        }
        // A file that names a different draft than the one asked for is
        // another document's final, unless both are drafts of one session.
        if let Some(named) = &named {
            let same_session = named_row
                .as_ref()
                .and_then(|d| d.session.as_ref())
                .is_some_and(|s| Some(s) == asked_row.session.as_ref());
            if !same_session {
                return Err(ControlError::invalid(
                    "file",
                    format!(
                        "this file descends from document {}, not from {}; upload it against its own draft",
                        crate::clip(named, 60),
                        asked_row.id
                    ),
                ));
            }
        }
        // Audit v2.1: a session cloned into V2 compares with V2, never V1.
        let compared = latest.unwrap_or_else(|| asked_row.clone());
        let named_draft = (compared.id != asked_row.id).then(|| asked_row.id.clone());

        let gen_bytes = self.artifacts.get(&compared.sha256).await?;
        let gen_doc = blocking(move || read("generated", &gen_bytes)).await?;
        let chunks: HashMap<String, ChunkSource> = {
            let (store, tid, id) = (self.store.clone(), tenant.id.clone(), compared.id.clone());
            blocking(move || Ok(store.document_chunks(&tid, &id)?))
                .await?
                .into_iter()
                .map(|c| (c.chunk_id.clone(), c))
                .collect()
        };
        let (generated, final_blocks) = (gen_doc.blocks, final_doc.blocks);
        let (delta, decisions) = {
            let (g, f) = (generated.clone(), final_blocks.clone());
            blocking(move || {
                let delta = diff(&g, &f, &DiffOptions::default());
                let rule = EntityRule::default();
                let decisions: Vec<Learning> =
                    delta.ops.iter().map(|op| learning(op, &rule)).collect();
                Ok((delta, decisions))
            })
            .await?
        };

        // Store the final version first: every example and entry names it.
        let mut r = row(tenant, new_document_id(), DocKind::Final, &up.filename);
        r.parent_id = Some(compared.id.clone());
        r.session = compared.session.clone();
        let document = self.keep(r, up.bytes.clone(), Vec::new()).await?;

        // Dictionary entries, then the event serving listens to.
        let mut entries = Vec::new();
        for (op, d) in delta.ops.iter().zip(&decisions) {
            if let Learning::Dictionary(fixes) = d {
                for f in fixes {
                    entries.push(DictionaryEntry {
                        wrong: f.wrong.clone(),
                        right: f.right.clone(),
                        source_document: Some(document.id.clone()),
                        source_chunk: op.chunk_ids.first().cloned(),
                        created_at: 0,
                    });
                }
            }
        }
        let dictionary_updated = entries.len();
        if !entries.is_empty() {
            let (store, tid) = (self.store.clone(), tenant.id.clone());
            let size = blocking(move || Ok(store.upsert_dictionary(&tid, &entries)?)).await?;
            self.bus.publish(Event::DictionaryUpdated { tenant: tenant.id.clone(), entries: size });
        }

        // Training pairs through the feedback path.
        let mut items = Vec::new();
        let mut item_of = vec![None; delta.ops.len()];
        for (i, (op, d)) in delta.ops.iter().zip(&decisions).enumerate() {
            if matches!(d, Learning::Pair) {
                item_of[i] = Some(items.len());
                items.push(pair(op, &generated, &final_blocks, &chunks, &document.id));
            }
        }
        let appended = self.learn(tenant, items).await?;
        let paragraphs = decisions
            .into_iter()
            .enumerate()
            .map(|(i, learning)| ParagraphOutcome {
                learning,
                example: item_of[i].and_then(|k| appended.as_ref().map(|a| a.examples[k].clone())),
            })
            .collect();
        Ok(CorrectionOutcome {
            document,
            compared_with: compared,
            named_draft,
            generated,
            final_blocks,
            delta,
            paragraphs,
            dictionary_updated,
            appended,
        })
    }
}

/// The training pair of one edited paragraph: the transcript segment its
/// chunk came from (else the generated paragraph) → the corrected text.
fn pair(
    op: &Op,
    generated: &[Block],
    final_: &[Block],
    chunks: &HashMap<String, ChunkSource>,
    doc: &str,
) -> Feedback {
    let text = |blocks: &[Block], idx: &[usize]| {
        idx.iter().map(|&i| blocks[i].text.as_str()).collect::<Vec<_>>().join("\n")
    };
    let sources: Vec<&str> =
        op.chunk_ids.iter().filter_map(|c| chunks.get(c)).map(|c| c.source.as_str()).collect();
    let draft = text(generated, &op.generated);
    let input = if sources.is_empty() { draft.clone() } else { sources.join("\n") };
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert("document".into(), serde_json::json!(doc));
    metadata.insert("op".into(), serde_json::json!(op.kind.name()));
    if let Some(c) = op.chunk_ids.first() {
        metadata.insert("chunk_id".into(), serde_json::json!(c));
    }
    if sources.is_empty() {
        metadata.insert("input".into(), serde_json::json!("generated_paragraph"));
    }
    Feedback {
        messages: Some(vec![
            ChatMessage { role: Role::System, content: DRAFT_INSTRUCTION.into() },
            ChatMessage { role: Role::User, content: input },
        ]),
        output: Some(draft),
        correction: Some(text(final_, &op.final_)),
        metadata,
        source: Some("document".into()),
        ..Feedback::default()
    }
}

/// Hand-written minutes (no chunk ids) to learn from, aligned to a stored
/// transcript.
#[derive(Debug, Clone)]
pub struct MinutesUpload {
    /// The tenant's transcript document (`POST /v1/documents` stores one).
    pub transcript_id: String,
    /// The file's name.
    pub filename: String,
    /// The DOCX.
    pub bytes: bytes::Bytes,
    /// The aligner's knobs.
    pub params: AlignParams,
}

/// What learning from aligned minutes did.
#[derive(Debug, Clone)]
pub struct AlignedOutcome {
    /// The stored minutes.
    pub document: DocumentRow,
    /// The transcript they were aligned to.
    pub transcript: DocumentRow,
    /// The minutes' paragraphs (headings left out).
    pub paragraphs: Vec<String>,
    /// One optional span of transcript segments per paragraph.
    pub alignment: Alignment,
    /// The stored example of each linked paragraph.
    pub examples: Vec<Option<forja_store::Example>>,
    /// The examples' append result.
    pub appended: Option<Appended>,
}

impl Control {
    /// Learns from minutes written by hand: each paragraph is aligned to a
    /// span of the transcript (monotonic with lookahead, moved items found
    /// out of order) and every linked paragraph becomes a training pair
    /// (the span's text → the paragraph) through the feedback path.
    pub async fn aligned_minutes(
        self: &std::sync::Arc<Self>,
        tenant: &Tenant,
        up: MinutesUpload,
    ) -> Result<AlignedOutcome> {
        let doc = read_upload(&up.bytes).await?;
        let paragraphs: Vec<String> = doc
            .blocks
            .into_iter()
            .filter(|b| !matches!(b.kind, forja_docs::BlockKind::Heading { .. }))
            .map(|b| b.text)
            .collect();
        if paragraphs.is_empty() {
            return Err(ControlError::invalid("file", "the document has no paragraphs"));
        }
        let (store, tid, id) = (self.store.clone(), tenant.id.clone(), up.transcript_id.clone());
        let transcript = blocking(move || Ok(store.document(&tid, &id)?)).await?;
        if transcript.kind != DocKind::Transcript {
            return Err(ControlError::invalid(
                "transcript_id",
                format!(
                    "document {} is a {}, not a transcript",
                    transcript.id,
                    transcript.kind.as_str()
                ),
            ));
        }
        let json = self.artifacts.get(&transcript.sha256).await?;
        let segments: Vec<Segment> = serde_json::from_slice::<serde_json::Value>(&json)
            .ok()
            .and_then(|v| v["segments"].as_array().cloned())
            .ok_or_else(|| {
                ControlError::Internal(format!("transcript {} is not readable", transcript.id))
            })?
            .iter()
            .map(|s| Segment {
                text: s["text"].as_str().unwrap_or_default().to_string(),
                start: s["start"].as_f64(),
                end: s["end"].as_f64(),
            })
            .collect();
        let (paras, segs, params) = (paragraphs.clone(), segments.clone(), up.params);
        let alignment = blocking(move || {
            let refs: Vec<&str> = paras.iter().map(String::as_str).collect();
            Ok(align(&segs, &refs, &params))
        })
        .await?;

        let mut r = row(tenant, new_document_id(), DocKind::Final, &up.filename);
        r.parent_id = Some(transcript.id.clone());
        r.session = transcript.session.clone();
        let document = self.keep(r, up.bytes.clone(), Vec::new()).await?;
        let mut items = Vec::new();
        let mut item_of = vec![None; paragraphs.len()];
        for (p, link) in alignment.links.iter().enumerate() {
            let Some(l) = link else { continue };
            let source: Vec<&str> =
                segments[l.first..=l.last].iter().map(|s| s.text.as_str()).collect();
            let mut metadata = std::collections::BTreeMap::new();
            metadata.insert("document".into(), serde_json::json!(document.id));
            metadata.insert("paragraph".into(), serde_json::json!(p));
            metadata.insert("segments".into(), serde_json::json!([l.first, l.last]));
            metadata.insert("score".into(), serde_json::json!((l.score * 1000.0).round() / 1000.0));
            item_of[p] = Some(items.len());
            items.push(Feedback {
                messages: Some(vec![
                    ChatMessage { role: Role::System, content: DRAFT_INSTRUCTION.into() },
                    ChatMessage { role: Role::User, content: source.join(" ") },
                ]),
                correction: Some(paragraphs[p].clone()),
                metadata,
                source: Some("aligned_minutes".into()),
                ..Feedback::default()
            });
        }
        let appended = self.learn(tenant, items).await?;
        let examples = item_of
            .into_iter()
            .map(|k| k.and_then(|k| appended.as_ref().map(|a| a.examples[k].clone())))
            .collect();
        Ok(AlignedOutcome { document, transcript, paragraphs, alignment, examples, appended })
    }
}
