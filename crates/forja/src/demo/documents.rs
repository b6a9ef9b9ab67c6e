//! `forja up --demo --demo-documents`: the iteration's corrections arrive
//! as corrected Word documents instead of JSON feedback (seed 002's main
//! scenario). For each session in the iteration's block the demo posts
//! the ASR transcript to `POST /v1/documents` (the node drafts the minutes
//! with the tenant's champion), downloads the DOCX, lets the simulated
//! [`secretary`] correct it, keeps both files in
//! `DATA_DIR/demo/documents/`, and uploads the final version to
//! `POST /v1/corrections`. The node's delta decides what becomes a
//! training pair, a dictionary entry or nothing; the demo tallies it.

use super::scenario::{Council, Rng, Utterance};
use super::secretary::{self, Actions};
use super::{bar, Api, DemoConfig};
use anyhow::{Context, Result};
use forja_docs::docx::{read_docx, write_docx, DraftMeta, ReadLimits};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Instant;

/// Most tokens the node drafts per paragraph (the official paragraphs are
/// under 120 tokens).
const DRAFT_MAX_TOKENS: u32 = 160;

/// Speech rate the synthetic segment times assume, words per second.
const WORDS_PER_SECOND: f64 = 2.5;

/// What the documents of one iteration produced, summed.
#[derive(Default)]
struct Tally {
    documents: u64,
    paragraphs: u64,
    draft_seconds: f64,
    secretary: Actions,
    ops: BTreeMap<String, u64>,
    learning: BTreeMap<String, u64>,
    curated: u64,
    duplicates: u64,
    refused: u64,
    reasons: BTreeMap<String, u64>,
    dictionary: BTreeSet<String>,
    edit_ratio_sum: f64,
    edit_ratio_n: u64,
    moved_reported: u64,
    deleted_reported: u64,
}

/// Drafts, corrects and uploads the documents of `block`; returns the job
/// the corrections triggered (if the threshold fired) and the tally.
pub(super) fn post(
    api: &Api,
    block: &[Utterance],
    council: &Council,
    cfg: &DemoConfig,
    out: &Path,
) -> Result<(Option<String>, Value)> {
    let dir = out.join("documents");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let b = bar(block.len() as u64, "draft   [{bar:30}] {pos}/{len} utterances {msg}");
    let mut t = Tally::default();
    let mut job = None;
    for session in block.chunk_by(|a, b| a.session == b.session) {
        if let Some(id) = one(api, session, council, cfg, &dir, &mut t)? {
            job = Some(id);
        }
        b.inc(session.len() as u64);
        b.set_message(format!(
            "{} documents, {} pairs curated, {} dictionary entries",
            t.documents,
            t.curated,
            t.dictionary.len()
        ));
    }
    b.finish();
    eprintln!(
        "documents: {} drafted in {:.0} s and corrected ({} paragraphs: {} rewritten, {} names fixed, {} kept, {} moved, {} deleted); \
         the node made {} training pairs ({} curated, {} duplicates, {} refused) and {} dictionary entries",
        t.documents,
        t.draft_seconds,
        t.paragraphs,
        t.secretary.rewritten,
        t.secretary.entity_fixed,
        t.secretary.kept,
        t.secretary.moved,
        t.secretary.deleted,
        t.learning.get("training_pair").copied().unwrap_or(0),
        t.curated,
        t.duplicates,
        t.refused,
        t.dictionary.len(),
    );
    let pii: u64 = block.iter().map(|u| u.pii.len() as u64).sum();
    let curation = json!({
        "source": "documents",
        "utterances": block.len(),
        "documents": t.documents,
        "paragraphs": t.paragraphs,
        "draft_seconds": (t.draft_seconds * 10.0).round() / 10.0,
        "secretary": t.secretary,
        "delta": t.ops,
        "learning": t.learning,
        "moved_reported_as_moved": format!("{}/{}", t.moved_reported, t.secretary.moved),
        "deleted_reported_as_deleted": format!("{}/{}", t.deleted_reported, t.secretary.deleted),
        "mean_edit_ratio": (t.edit_ratio_n > 0).then(|| ((t.edit_ratio_sum / t.edit_ratio_n as f64) * 1000.0).round() / 1000.0),
        "dictionary_entries": t.dictionary,
        "posted": t.learning.get("training_pair").copied().unwrap_or(0),
        "curated": t.curated,
        "duplicates": t.duplicates,
        "refused": t.refused,
        "refusal_reasons": t.reasons,
        "pii_in_transcripts": pii,
        "files": dir.display().to_string(),
    });
    Ok((job, curation))
}

/// One session's document: draft → secretary → final → delta.
fn one(
    api: &Api,
    utterances: &[Utterance],
    council: &Council,
    cfg: &DemoConfig,
    dir: &Path,
    t: &mut Tally,
) -> Result<Option<String>> {
    let session = &utterances[0].session;
    // Segments without speakers: each utterance is one paragraph (one chunk).
    let mut at = 0.0f64;
    let segments: Vec<Value> = utterances
        .iter()
        .map(|u| {
            let start = at;
            at += u.transcript.split_whitespace().count() as f64 / WORDS_PER_SECOND;
            json!({"text": u.transcript, "start": round1(start), "end": round1(at)})
        })
        .collect();
    let t0 = Instant::now();
    let draft = api.post(
        "/v1/documents",
        json!({
            "transcript": segments,
            "normalize_numbers": cfg.itn,
            "session": session,
            "title": format!("Acta del Pleno {session}"),
            "max_tokens": DRAFT_MAX_TOKENS,
        }),
    )?;
    t.draft_seconds += t0.elapsed().as_secs_f64();
    let id = draft["id"].as_str().context("POST /v1/documents returned no id")?.to_string();
    let bytes = api.bytes(&format!("/v1/documents/{id}/content"))?;
    let doc = read_docx(&bytes, &ReadLimits::default())
        .with_context(|| format!("the node's draft {id} does not read back"))?;
    // Chunk c0001.. is the n-th segment, in order.
    let reference: HashMap<String, String> = utterances
        .iter()
        .enumerate()
        .map(|(i, u)| (format!("c{:04}", i + 1), u.minutes.clone()))
        .collect();
    let mut rng = Rng::new(cfg.seed, 0xd0c5 ^ (utterances[0].index as u64) << 20 ^ hash(session));
    let edited = secretary::edit(&doc.blocks, &reference, council, &mut rng);
    let title = doc.title.clone();
    let fin = write_docx(
        &edited.blocks,
        &DraftMeta { title: title.as_deref(), document_id: doc.document_id.as_deref() },
    )
    .context("the corrected document cannot be written")?;
    let stem = format!("{}-v{}", safe(session), draft["version"].as_u64().unwrap_or(1));
    for (name, data) in [(format!("{stem}.docx"), &bytes), (format!("{stem}-final.docx"), &fin)] {
        let p = dir.join(&name);
        std::fs::write(&p, data).with_context(|| format!("cannot write {}", p.display()))?;
    }
    let r = api.multipart(
        "/v1/corrections",
        &[
            ("file", Some(&format!("{stem}-final.docx")), &fin),
            ("generated_id", None, id.as_bytes()),
        ],
    )?;

    t.documents += 1;
    t.paragraphs += utterances.len() as u64;
    t.secretary.add(&edited.actions);
    for (k, n) in r["summary"].as_object().into_iter().flatten() {
        *t.ops.entry(k.clone()).or_default() += n.as_u64().unwrap_or(0);
    }
    for (k, n) in r["learning"].as_object().into_iter().flatten() {
        *t.learning.entry(k.clone()).or_default() += n.as_u64().unwrap_or(0);
    }
    for p in r["paragraphs"].as_array().into_iter().flatten() {
        let op = p["op"].as_str().unwrap_or("");
        let ids: Vec<&str> =
            p["chunk_ids"].as_array().into_iter().flatten().filter_map(|c| c.as_str()).collect();
        if op.starts_with("moved") && ids.iter().any(|c| edited.moved.iter().any(|m| m == c)) {
            t.moved_reported += 1;
        }
        if op == "deleted" && ids.iter().any(|c| edited.deleted.iter().any(|d| d == c)) {
            t.deleted_reported += 1;
        }
        if !p["generated"].as_array().is_none_or(|g| g.is_empty())
            && !p["final"].as_array().is_none_or(|f| f.is_empty())
        {
            t.edit_ratio_sum += p["edit_ratio"].as_f64().unwrap_or(0.0);
            t.edit_ratio_n += 1;
        }
        for e in p["entities"].as_array().into_iter().flatten() {
            let (w, r) = (e["wrong"].as_str().unwrap_or(""), e["right"].as_str().unwrap_or(""));
            t.dictionary.insert(format!("{w} → {r}"));
        }
        let ex = &p["example"];
        let reason = ex["reason"].as_str().unwrap_or("");
        match ex["status"].as_str() {
            None => {}
            Some("rejected") if reason.contains("duplicate") => t.duplicates += 1,
            Some("rejected") => {
                t.refused += 1;
                *t.reasons.entry(reason.to_string()).or_default() += 1;
            }
            Some(_) => t.curated += 1,
        }
    }
    Ok(r["job"]["id"].as_str().map(String::from))
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// A file-name-safe session id.
fn safe(s: &str) -> String {
    s.chars().map(|c| if c.is_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

/// FNV-1a, to give each session its own editing stream.
fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}
