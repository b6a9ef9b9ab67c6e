//! The JSON of a corrections delta (`forja corrections diff --json` and the
//! documents API): one object per paragraph operation with both texts, the
//! word edits and what forja learns from it.

use crate::ApiError;
use forja_control::documents::{AlignedOutcome, CorrectionOutcome};
use forja_docs::diff::{Delta, OpKind};
use forja_docs::learn::Learning;
use forja_docs::Block;
use forja_store::{DictionaryEntry, DocumentRow};
use serde::Deserialize;
use serde_json::{json, Value};

/// A stored document.
pub fn document(d: &DocumentRow) -> Value {
    json!({
        "id": d.id, "object": "document", "kind": d.kind.as_str(), "parent_id": d.parent_id,
        "session": d.session, "version": d.version, "filename": d.filename, "bytes": d.bytes,
        "sha256": d.sha256, "model": d.model, "created_at": d.created_at,
    })
}

/// A dictionary entry with its provenance.
pub fn entry(e: &DictionaryEntry) -> Value {
    json!({
        "wrong": e.wrong, "right": e.right, "source_document": e.source_document,
        "source_chunk": e.source_chunk, "created_at": e.created_at,
    })
}

/// `POST /v1/corrections`' answer: the delta, and what became of each
/// paragraph (the stored example for a training pair).
pub fn outcome(o: &CorrectionOutcome) -> Value {
    let learned: Vec<&Learning> = o.paragraphs.iter().map(|p| &p.learning).collect();
    let mut v = delta(&o.delta, &learned, &o.generated, &o.final_blocks);
    if let Some(paras) = v["paragraphs"].as_array_mut() {
        for (p, out) in paras.iter_mut().zip(&o.paragraphs) {
            if let Some(e) = &out.example {
                p["example"] = super::feedback::example(e);
            }
        }
    }
    v["document"] = document(&o.document);
    v["compared_with"] = document(&o.compared_with);
    v["named_draft"] = json!(o.named_draft);
    v["dictionary_updated"] = json!(o.dictionary_updated);
    v["job"] = o.appended.as_ref().and_then(|a| a.job.as_ref()).map(super::jobs::job).into();
    v["held"] = o.appended.as_ref().and_then(|a| a.held.clone()).into();
    v
}

/// `POST /v1/corrections` with `transcript_id`: each paragraph's span of
/// transcript segments, its score and its example.
pub fn aligned(o: &AlignedOutcome) -> Value {
    let paragraphs: Vec<Value> = o
        .paragraphs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let link = o.alignment.links[i].as_ref();
            json!({
                "final": i,
                "text": text,
                "segments": link.map(|l| json!([l.first, l.last])),
                "score": link.map(|l| (l.score * 1000.0).round() / 1000.0),
                "out_of_order": link.map(|l| l.out_of_order),
                "learning": if link.is_some() { "training_pair" } else { "none" },
                "reason": if link.is_some() { Value::Null } else { json!("no transcript span scores high enough") },
                "example": o.examples[i].as_ref().map(super::feedback::example),
            })
        })
        .collect();
    json!({
        "object": "corrections.aligned",
        "document": document(&o.document),
        "transcript": document(&o.transcript),
        "score": (o.alignment.score * 1000.0).round() / 1000.0,
        "coverage": (o.alignment.coverage * 1000.0).round() / 1000.0,
        "paragraphs": paragraphs,
        "job": o.appended.as_ref().and_then(|a| a.job.as_ref()).map(super::jobs::job),
        "held": o.appended.as_ref().and_then(|a| a.held.clone()),
    })
}

/// `POST /v1/dictionary` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddEntries {
    /// The entries to add or replace.
    pub entries: Vec<AddEntry>,
}

/// One entry of [`AddEntries`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddEntry {
    /// As the model writes it.
    pub wrong: String,
    /// As it should be written.
    pub right: String,
}

impl AddEntries {
    /// The entries as `(wrong, right)`, checked: 1 to 1,000 per call, each
    /// side 1 to 200 characters on one line, `wrong` ≠ `right`.
    pub fn checked(self) -> Result<Vec<(String, String)>, ApiError> {
        if self.entries.is_empty() || self.entries.len() > 1000 {
            return Err(ApiError::bad("entries", "give 1 to 1000 entries per call"));
        }
        self.entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let (w, r) = (e.wrong.trim().to_string(), e.right.trim().to_string());
                for (name, s) in [("wrong", &w), ("right", &r)] {
                    if s.is_empty() || s.chars().count() > 200 || s.chars().any(char::is_control) {
                        return Err(ApiError::bad(
                            &format!("entries[{i}].{name}"),
                            "must be 1 to 200 characters on one line",
                        ));
                    }
                }
                if w == r {
                    return Err(ApiError::bad(&format!("entries[{i}].right"), "equals `wrong`"));
                }
                Ok((w, r))
            })
            .collect()
    }
}

/// `{"object": "corrections.delta", "summary": {...}, "paragraphs": [...]}`;
/// `learned[i]` is what `delta.ops[i]` teaches.
pub fn delta(delta: &Delta, learned: &[&Learning], generated: &[Block], final_: &[Block]) -> Value {
    let text = |blocks: &[Block], idx: &[usize]| -> Value {
        if idx.is_empty() {
            Value::Null
        } else {
            Value::String(
                idx.iter().map(|&i| blocks[i].text.as_str()).collect::<Vec<_>>().join("\n"),
            )
        }
    };
    let summary: serde_json::Map<String, Value> =
        OpKind::ALL.iter().map(|&k| (k.name().to_string(), json!(delta.count(k)))).collect();
    let mut learning = serde_json::Map::new();
    for l in learned {
        let n = learning.entry(l.name()).or_insert(json!(0));
        *n = json!(n.as_u64().unwrap_or(0) + 1);
    }
    let paragraphs: Vec<Value> = delta
        .ops
        .iter()
        .zip(learned)
        .map(|(op, decision)| {
            let mut v = json!({
                "op": op.kind.name(),
                "generated": op.generated,
                "final": op.final_,
                "matched_by": op.matched_by,
                "chunk_ids": op.chunk_ids,
                "edit_ratio": (op.edit_ratio * 1000.0).round() / 1000.0,
                "edits": op.edits.iter().map(|e| json!({"old": e.old, "new": e.new})).collect::<Vec<_>>(),
                "generated_text": text(generated, if op.matched_by == "copy" { &[] } else { &op.generated }),
                "final_text": text(final_, &op.final_),
                "learning": decision.name(),
            });
            match *decision {
                Learning::Nothing(why) => v["reason"] = json!(why),
                Learning::Dictionary(fixes) => {
                    v["entities"] = fixes
                        .iter()
                        .map(|f| json!({"wrong": f.wrong, "right": f.right, "similarity": (f.similarity * 1000.0).round() / 1000.0}))
                        .collect();
                }
                Learning::Pair => {}
            }
            v
        })
        .collect();
    json!({
        "object": "corrections.delta",
        "summary": summary,
        "learning": learning,
        "paragraphs": paragraphs,
    })
}

/// `POST /v1/documents` body: a transcript to draft minutes from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDraft {
    /// Segments, or one text with a segment per line.
    pub transcript: Transcript,
    /// What writes the draft (default `base@champion`: the tenant's
    /// champion of the served base model, `default@champion` on the default
    /// node, and the base model itself until there is a champion).
    #[serde(default)]
    pub model: Option<String>,
    /// The document's title (a heading, and its core title).
    #[serde(default)]
    pub title: Option<String>,
    /// The meeting: drafts of one session are its versions V1, V2…
    #[serde(default)]
    pub session: Option<String>,
    /// Most tokens per paragraph (default 256, at most 1024).
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// Write spoken numbers, amounts, dates and times as digits before the
    /// model sees the transcript (Spanish inverse text normalisation;
    /// default true).
    #[serde(default)]
    pub normalize_numbers: Option<bool>,
}

/// A transcript as posted.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Transcript {
    /// One segment per non-empty line.
    Text(String),
    /// Timed segments.
    Segments(Vec<Segment>),
}

/// One transcript segment.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// What was said.
    pub text: String,
    /// Start, seconds.
    #[serde(default)]
    pub start: Option<f64>,
    /// End, seconds.
    #[serde(default)]
    pub end: Option<f64>,
    /// Who said it: consecutive segments of one speaker make one paragraph.
    #[serde(default)]
    pub speaker: Option<String>,
}

/// Most segments in one draft request.
pub const MAX_SEGMENTS: usize = 2000;

/// Most paragraphs (chunks) one draft generates.
pub const MAX_CHUNKS: usize = 500;

impl CreateDraft {
    /// The checked segments (1 to [`MAX_SEGMENTS`], each 1 to 8,000
    /// characters, times finite and ordered).
    pub fn segments(&self) -> Result<Vec<Segment>, ApiError> {
        let segs: Vec<Segment> = match &self.transcript {
            Transcript::Text(t) => t
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| Segment { text: l.into(), start: None, end: None, speaker: None })
                .collect(),
            Transcript::Segments(s) => s.clone(),
        };
        if segs.is_empty() || segs.len() > MAX_SEGMENTS {
            return Err(ApiError::bad("transcript", format!("give 1 to {MAX_SEGMENTS} segments")));
        }
        for (i, s) in segs.iter().enumerate() {
            let n = s.text.trim().chars().count();
            if n == 0 || n > 8000 {
                return Err(ApiError::bad(
                    &format!("transcript[{i}].text"),
                    "must hold 1 to 8000 characters",
                ));
            }
            for (name, t) in [("start", s.start), ("end", s.end)] {
                if t.is_some_and(|t| !t.is_finite() || t < 0.0) {
                    return Err(ApiError::bad(
                        &format!("transcript[{i}].{name}"),
                        "must be a time in seconds ≥ 0",
                    ));
                }
            }
            if let (Some(a), Some(b)) = (s.start, s.end) {
                if b < a {
                    return Err(ApiError::bad(
                        &format!("transcript[{i}].end"),
                        "is before `start`",
                    ));
                }
            }
            if s.speaker.as_ref().is_some_and(|sp| sp.chars().count() > 200) {
                return Err(ApiError::bad(
                    &format!("transcript[{i}].speaker"),
                    "at most 200 characters",
                ));
            }
        }
        if self.max_tokens.is_some_and(|m| m == 0 || m > 1024) {
            return Err(ApiError::bad("max_tokens", "must be 1 to 1024"));
        }
        if self
            .title
            .as_ref()
            .is_some_and(|t| t.chars().count() > 300 || t.chars().any(char::is_control))
        {
            return Err(ApiError::bad("title", "one line of at most 300 characters"));
        }
        if self.session.as_ref().is_some_and(|s| {
            s.is_empty() || s.chars().count() > 200 || s.chars().any(char::is_control)
        }) {
            return Err(ApiError::bad("session", "one line of 1 to 200 characters"));
        }
        Ok(segs)
    }
}
