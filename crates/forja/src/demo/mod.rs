//! `forja up --demo`: one iteration of the learning loop, driven through
//! the node's own HTTP API like any client would: golden set → corrections
//! (feedback) → threshold trigger → training → evaluation vs the current
//! model → gate → promotion → hot-swap → a before/after sample, then a
//! report (JSON and Markdown) in the data directory.
//!
//! The scenario is [`scenario`] (Spanish council minutes: ASR
//! transcript → acta paragraph). Iteration k posts the k-th block of
//! training utterances, as JSON feedback or (with `documents`) as drafted
//! and corrected DOCX minutes ([`documents`]); the state lives in the
//! node's database, so a restarted demo picks up the job it was waiting
//! for.

mod documents;
pub mod federated;
pub mod iterations;
pub mod knowledge_qa;
pub mod memory_facts;
pub mod scenario;
mod secretary;

use crate::api::{Api, Body};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use scenario::{self as demo, Split, Utterance};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The demo tenant's name.
pub const TENANT: &str = "demo-actas";

/// What one demo iteration does.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub seed: u64,
    pub corrections: usize,
    pub golden: usize,
    /// The served base model's name, as requests give it.
    pub model: String,
    /// Corrections arrive as corrected DOCX minutes (drafted by the node,
    /// edited by a simulated secretary) instead of JSON feedback.
    pub documents: bool,
    /// Spoken numbers are written as digits before the model sees a
    /// transcript (inverse text normalisation).
    pub itn: bool,
}

/// The scenario's data: the council, training utterances in order, and
/// the golden set.
struct Data {
    council: demo::Council,
    train: Vec<Utterance>,
    golden: Vec<Utterance>,
}

/// Golden utterances taken from each golden session.
const GOLDEN_PER_SESSION: usize = 4;

fn data(cfg: &DemoConfig) -> Data {
    let council = demo::council(cfg.seed);
    let (mut train, mut golden) = (Vec::new(), Vec::new());
    // Enough sessions for the golden set and several iterations.
    for s in demo::sessions(&council, cfg.seed, 400) {
        match demo::split_of(&s.id) {
            Split::Train => train.extend(s.utterances),
            // A few utterances of each golden session, spread over the
            // session, so the golden set reaches sessions with the speakers
            // and topics that later iterations bring.
            Split::Golden if golden.len() < cfg.golden => {
                let n = s.utterances.len();
                let picks: Vec<usize> =
                    (0..GOLDEN_PER_SESSION).map(|j| j * n / GOLDEN_PER_SESSION).collect();
                golden.extend(
                    s.utterances
                        .into_iter()
                        .enumerate()
                        .filter(|(i, _)| picks.contains(i))
                        .map(|(_, u)| u),
                );
            }
            _ => {}
        }
    }
    golden.truncate(cfg.golden);
    Data { council, train, golden }
}

/// The chat an utterance is drafted from: the instruction and its
/// transcript (with spoken numbers as digits when `itn`: the demo is the
/// ASR client, and ITN is the step after ASR).
fn messages(u: &Utterance, itn: bool) -> Value {
    let transcript =
        if itn { forja_docs::itn::spanish(&u.transcript) } else { u.transcript.clone() };
    json!([
        {"role": "system", "content": demo::SYSTEM_PROMPT},
        {"role": "user", "content": transcript},
    ])
}

/// Blocks until the node's model is loaded.
pub fn wait_ready(ready: &std::sync::atomic::AtomicBool, timeout: Duration) -> Result<()> {
    let t0 = Instant::now();
    loop {
        if ready.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        if t0.elapsed() > timeout {
            bail!("the node did not become ready in {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn spinner(msg: &str) -> ProgressBar {
    let b = ProgressBar::new_spinner();
    b.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"));
    b.set_message(msg.to_string());
    b.enable_steady_tick(Duration::from_millis(200));
    b
}

fn bar(len: u64, template: &str) -> ProgressBar {
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "),
    );
    b
}

/// Runs one loop iteration and writes the report; returns it.
pub fn run(addr: std::net::SocketAddr, key: &str, dir: &Path, cfg: &DemoConfig) -> Result<Value> {
    let api = Api::new(&format!("http://{addr}"), key, Duration::from_secs(600));
    let out = dir.join("demo");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let data = data(cfg);
    let base = cfg.model.clone();

    // The golden set: held-out sessions, uploaded once.
    let golden_sets = api.get("/v1/registry/golden")?;
    let golden_id = match golden_sets["data"].as_array().and_then(|d| d.first()) {
        Some(g) => g["id"].as_str().unwrap_or_default().to_string(),
        None => {
            let mut jsonl = String::new();
            for u in &data.golden {
                let mut m = messages(u, cfg.itn);
                m.as_array_mut()
                    .expect("an array")
                    .push(json!({"role": "assistant", "content": u.minutes}));
                let line = json!({"id": format!("{}#{}", u.session, u.index), "messages": m});
                jsonl.push_str(&line.to_string());
                jsonl.push('\n');
            }
            let g = api.ok(
                "POST",
                "/v1/registry/golden?name=actas-golden.jsonl",
                Some(Body::Bytes(jsonl.into_bytes(), "application/jsonl".into())),
            )?;
            g["id"].as_str().unwrap_or_default().to_string()
        }
    };

    // Resume the job of an interrupted run, or start an iteration.
    let jobs = api.get("/v1/fine_tuning/jobs?limit=100")?;
    let jobs = jobs["data"].as_array().cloned().unwrap_or_default();
    let unfinished = jobs
        .iter()
        .find(|j| !matches!(j["status"].as_str(), Some("succeeded" | "failed" | "cancelled")));
    let (iteration, job_id, curation) = match unfinished {
        Some(j) => {
            let id = j["id"].as_str().unwrap_or_default().to_string();
            eprintln!("demo: resuming iteration {} (job {id})", jobs.len());
            (jobs.len(), id, Value::Null)
        }
        None => {
            let k = jobs.len();
            let (id, curation) = post_corrections(&api, &data, cfg, k, &out)?;
            (k + 1, id, curation)
        }
    };

    let job = follow_job(&api, &job_id)?;
    let version = wait_version(&api, &job_id)?;
    let promoted = version["status"] == "promoted";
    let gate = &version["gate"];
    let (decision, mut reasons) = (
        gate["outcome"].as_str().or(version["status"].as_str()).unwrap_or("unknown").to_string(),
        gate["reasons"].as_array().cloned().unwrap_or_default(),
    );
    if reasons.is_empty() && !promoted {
        reasons.extend(version["status_reason"].as_str().map(|r| json!(r)));
    }
    eprintln!(
        "gate: {decision}{}",
        if reasons.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                reasons.iter().filter_map(|r| r.as_str()).collect::<Vec<_>>().join("; ")
            )
        }
    );
    let vid = version["id"].as_str().unwrap_or_default().to_string();
    let swap_s = if promoted { Some(wait_swap(&api, &base, &vid)?) } else { None };
    let samples = samples(&api, &base, &vid, &data.golden[..data.golden.len().min(3)], cfg.itn)?;

    let eval = &version["eval"]["summary"];
    let metric = |side: &str, m: &str| eval[side]["metrics"][m].as_f64();
    let (wer_before, wer_after) = (metric("baseline", "wer"), metric("candidate", "wer"));
    let started = job["started_at"].as_i64();
    let finished = job["finished_at"].as_i64();
    let report = json!({
        "iteration": iteration,
        "tenant": TENANT,
        "base_model": base,
        "job_id": job_id,
        "version_id": vid,
        "parent_version_id": version["parent_id"],
        "golden_set_id": golden_id,
        "golden_examples": data.golden.len(),
        "compared_with": eval["baseline"]["subject"],
        "curation": curation,
        "training": {
            "hyperparameters": job["hyperparameters"],
            "trained_tokens": job["trained_tokens"],
            "steps": job["progress"]["total_steps"],
            "seconds": started.zip(job["last_step_at"].as_i64()).map(|(s, f)| f - s),
            "job_seconds": started.zip(finished).map(|(s, f)| f - s),
            "checkpoint_chosen": eval["chosen"],
        },
        "metrics_before": eval["baseline"]["metrics"],
        "metrics_after": eval["candidate"]["metrics"],
        "wer_before": wer_before,
        "wer_after": wer_after,
        "wer_relative_reduction": wer_before.zip(wer_after).map(|(b, a)| if b > 0.0 { (b - a) / b } else { 0.0 }),
        "gate": {"decision": decision, "reasons": reasons, "checks": gate["checks"], "probe_checks": gate["probe_checks"]},
        "probe": eval["probe"],
        "evaluation": {"seconds": eval["seconds"], "full_evaluations": eval["full_evaluations"]},
        "training_mix": job["training_mix"],
        "general_rows_used": version["manifest"]["general_replay"]["row_ids"].as_array().map(Vec::len),
        "itn": cfg.itn,
        "promoted": promoted,
        "hot_swap_seconds": swap_s,
        "samples": samples,
        "lineage": {
            "training_file": job["training_file"],
            "validation_file": job["validation_file"],
            "adapter_sha256": version["adapter_sha256"],
            "dataset_sha256": version["dataset_sha256"],
            "code_commit": version["code_commit"],
        },
    });
    write_report(&out, &report)?;
    Ok(report)
}

/// Posts iteration `k`'s corrections (as feedback or as documents);
/// returns the job they triggered and what curation did with them.
fn post_corrections(
    api: &Api,
    data: &Data,
    cfg: &DemoConfig,
    k: usize,
    out: &Path,
) -> Result<(String, Value)> {
    let n = cfg.corrections;
    let block = data.train.get(k * n..(k + 1) * n).with_context(|| {
        format!(
            "the demo's generator has {} training utterances and iteration {} needs {}; use a new --data-dir or --demo-seed",
            data.train.len(),
            k + 1,
            (k + 1) * n
        )
    })?;
    let (job, curation) = if cfg.documents {
        documents::post(api, block, &data.council, cfg, out)?
    } else {
        post_feedback(api, block, cfg.itn)?
    };
    let job = match job {
        Some(j) => j,
        // Duplicates (or, for documents, deletions and dictionary fixes)
        // kept the count under the threshold: train on what is pending.
        None => api.post("/v1/learning/train", json!({}))?["id"]
            .as_str()
            .context("train-now returned no job")?
            .to_string(),
    };
    Ok((job, curation))
}

/// Posts `block` as JSON feedback, 50 per request.
fn post_feedback(api: &Api, block: &[Utterance], itn: bool) -> Result<(Option<String>, Value)> {
    let n = block.len();
    let b = bar(n as u64, "curate  [{bar:30}] {pos}/{len} corrections {msg}");
    let (mut accepted, mut refused, mut duplicates) = (0u64, 0u64, 0u64);
    let mut job = None;
    let mut reasons: std::collections::BTreeMap<String, u64> = Default::default();
    for chunk in block.chunks(50) {
        let examples: Vec<Value> = chunk
            .iter()
            .map(|u| {
                json!({
                    "messages": messages(u, itn),
                    "correction": u.minutes,
                    "source": "demo",
                    "metadata": {"session": u.session, "utterance": u.index, "kind": u.kind},
                })
            })
            .collect();
        let r = api.post("/v1/feedback", json!({ "examples": examples }))?;
        for e in r["data"].as_array().into_iter().flatten() {
            let reason = e["reason"].as_str().unwrap_or("");
            match e["status"].as_str() {
                Some("rejected") if reason.contains("duplicate") => duplicates += 1,
                Some("rejected") => {
                    refused += 1;
                    *reasons.entry(reason.to_string()).or_default() += 1;
                }
                _ => accepted += 1,
            }
        }
        if let Some(id) = r["job"]["id"].as_str() {
            job = Some(id.to_string());
        }
        b.inc(chunk.len() as u64);
        b.set_message(format!("{accepted} curated, {duplicates} duplicates, {refused} refused"));
    }
    b.finish();
    eprintln!(
        "curate: {n} corrections posted: {accepted} curated, {duplicates} exact duplicates, {refused} refused"
    );
    let pii: u64 = block.iter().map(|u| u.pii.len() as u64).sum();
    let curation = json!({
        "source": "feedback",
        "posted": n, "curated": accepted, "duplicates": duplicates, "refused": refused,
        "refusal_reasons": reasons, "pii_in_transcripts": pii,
    });
    Ok((job, curation))
}

/// Follows a job's events with a training bar until it ends; returns it,
/// with `last_step_at` (when its last training step was reported) added.
fn follow_job(api: &Api, id: &str) -> Result<Value> {
    let mut last_step_at = Value::Null;
    let train = bar(0, "train   [{bar:30}] {pos}/{len} steps {msg} {elapsed}");
    let mut eval: Option<ProgressBar> = None;
    let mut seen = 0i64;
    loop {
        let job = api.get(&format!("/v1/fine_tuning/jobs/{id}"))?;
        let evs = api.get(&format!("/v1/fine_tuning/jobs/{id}/events?limit=50"))?;
        let mut evs = evs["data"].as_array().cloned().unwrap_or_default();
        evs.reverse();
        for e in evs {
            let n: i64 = e["id"]
                .as_str()
                .and_then(|s| s.trim_start_matches("ftevent-").parse().ok())
                .unwrap_or(0);
            if n <= seen {
                continue;
            }
            seen = n;
            let d = &e["data"];
            if let Some(step) = d["step"].as_u64().filter(|_| d["train_loss"].is_number()) {
                last_step_at = e["created_at"].clone();
                train.set_length(d["total_steps"].as_u64().unwrap_or(0));
                train.set_position(step);
                train.set_message(format!(
                    "loss {:.3}  {:.0} tok/s",
                    d["train_loss"].as_f64().unwrap_or(f64::NAN),
                    d["tokens_per_second"].as_f64().unwrap_or(0.0)
                ));
            } else if let Some(msg) = e["message"].as_str() {
                if msg.starts_with("Evaluating") || msg.starts_with("Checkpoint") {
                    if !train.is_finished() {
                        train.finish();
                    }
                    let b = eval.get_or_insert_with(|| spinner("evaluate"));
                    b.set_message(format!("evaluate: {msg}"));
                } else if e["level"] != "info" {
                    train.println(format!("  {msg}"));
                }
            }
        }
        match job["status"].as_str() {
            Some("succeeded") => {
                eprintln!(
                    "train + evaluate: job {id} succeeded ({} steps, {} tokens)",
                    job["progress"]["total_steps"], job["trained_tokens"]
                );
                if !train.is_finished() {
                    train.finish();
                }
                if let Some(b) = eval {
                    b.finish_with_message("evaluate: done");
                }
                let mut job = job;
                job["last_step_at"] = last_step_at;
                return Ok(job);
            }
            Some(s @ ("failed" | "cancelled")) => {
                bail!("job {id} {s}: {}", job["error"]["message"].as_str().unwrap_or("no reason"))
            }
            _ => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

/// Waits for the control plane to register the job's adapter (and run the gate).
fn wait_version(api: &Api, job: &str) -> Result<Value> {
    let s = spinner("gate");
    let t0 = Instant::now();
    loop {
        let vs = api.get("/v1/registry/models")?;
        if let Some(v) = vs["data"].as_array().into_iter().flatten().find(|v| v["job_id"] == job) {
            s.finish_and_clear();
            return Ok(v.clone());
        }
        if t0.elapsed() > Duration::from_secs(300) {
            bail!("job {job} succeeded but was not registered within 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits until the tenant's champion is served by `version`; returns the seconds it took.
fn wait_swap(api: &Api, base: &str, version: &str) -> Result<f64> {
    let s = spinner("hot-swap");
    let t0 = Instant::now();
    let req = json!({"model": format!("{base}@champion"), "max_tokens": 1, "temperature": 0,
        "messages": [{"role": "user", "content": "hola"}]});
    loop {
        let r = api.post("/v1/chat/completions", req.clone())?;
        if r["model"] == version {
            s.finish_with_message(format!("hot-swap: {base}@champion is {version}"));
            eprintln!("hot-swap: {base}@champion is served by {version}");
            return Ok(t0.elapsed().as_secs_f64());
        }
        if t0.elapsed() > Duration::from_secs(300) {
            bail!("{base}@champion was still not served by {version} after 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Answers of the base model and of the new version to a few golden prompts.
fn samples(
    api: &Api,
    base: &str,
    version: &str,
    golden: &[Utterance],
    itn: bool,
) -> Result<Vec<Value>> {
    // A sample the model cannot answer (a prompt over its context) says why.
    let answer = |model: &str, u: &Utterance| -> Result<String> {
        let body = json!({"model": model, "messages": messages(u, itn), "temperature": 0, "max_tokens": 160});
        Ok(match api.post("/v1/chat/completions", body) {
            Ok(r) => {
                r["choices"][0]["message"]["content"].as_str().unwrap_or_default().trim().into()
            }
            Err(e) => format!("(no answer: {e})"),
        })
    };
    golden
        .iter()
        .map(|u| {
            Ok(json!({
                "transcript": u.transcript, "reference": u.minutes,
                "before": answer(base, u)?, "after": answer(version, u)?,
            }))
        })
        .collect()
}

fn write_report(out: &Path, r: &Value) -> Result<PathBuf> {
    let it = r["iteration"].as_u64().unwrap_or(0);
    let json_text = serde_json::to_string_pretty(r).expect("report serialises");
    let md = markdown(r);
    for (name, text) in [
        (format!("report-{it}.json"), &json_text),
        ("report.json".to_string(), &json_text),
        (format!("report-{it}.md"), &md),
        ("report.md".to_string(), &md),
    ] {
        let p = out.join(&name);
        let tmp = out.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &p).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(out.join("report.json"))
}

fn num(v: &Value) -> String {
    v.as_f64().map_or("n/a".into(), |x| format!("{x:.4}"))
}

/// The report for people.
pub fn markdown(r: &Value) -> String {
    let mut s = format!(
        "# forja demo: learning loop iteration {}\n\nTenant `{}`, base model `{}`, job `{}` → version `{}` (parent: {}).\n\n",
        r["iteration"], TENANT, r["base_model"].as_str().unwrap_or(""), r["job_id"].as_str().unwrap_or(""),
        r["version_id"].as_str().unwrap_or(""), r["parent_version_id"].as_str().unwrap_or("base model"),
    );
    let c = &r["curation"];
    if c["source"] == "documents" {
        let a = &c["secretary"];
        s += &format!(
            "## Corrections as documents\n\n{} utterances → {} minutes drafted by the node as DOCX ({} s of drafting) and corrected by the simulated secretary: {} paragraphs rewritten, {} with only names respelled, {} kept, {} moved, {} deleted (mean edit ratio {}). The node's delta: {}; moved paragraphs reported as moved: {}, deletions as deleted: {}. It made {} training pairs ({} curated, {} duplicates, {} refused; {} transcripts carried a DNI or phone number, scrubbed before drafting) and {} dictionary entries{}. Files: `{}`.\n\n",
            c["utterances"], c["documents"], c["draft_seconds"], a["rewritten"], a["entity_fixed"], a["kept"], a["moved"], a["deleted"],
            num(&c["mean_edit_ratio"]),
            c["delta"].as_object().map(|o| o.iter().filter(|(_, n)| n.as_u64() != Some(0)).map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ")).unwrap_or_default(),
            c["moved_reported_as_moved"].as_str().unwrap_or(""), c["deleted_reported_as_deleted"].as_str().unwrap_or(""),
            c["posted"], c["curated"], c["duplicates"], c["refused"], c["pii_in_transcripts"],
            c["dictionary_entries"].as_array().map_or(0, |d| d.len()),
            c["dictionary_entries"].as_array().filter(|d| !d.is_empty()).map(|d| format!(" ({})", d.iter().take(6).filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", "))).unwrap_or_default(),
            c["files"].as_str().unwrap_or(""),
        );
    } else if c.is_object() {
        s += &format!(
            "## Curation\n\n{} corrections posted: {} curated, {} exact duplicates, {} refused; {} transcripts carried a DNI or phone number (scrubbed before training).\n\n",
            c["posted"], c["curated"], c["duplicates"], c["refused"], c["pii_in_transcripts"]
        );
    }
    let t = &r["training"];
    s += &format!(
        "## Training\n\n{} steps, {} tokens, {} s of training ({} s with the golden-set evaluations); checkpoint chosen on the golden set: {}.\n\n",
        t["steps"], t["trained_tokens"], t["seconds"], t["job_seconds"], t["checkpoint_chosen"]
    );
    s += &format!(
        "## Golden set ({} examples, never trained on)\n\n| metric | before ({}) | after |\n|---|---|---|\n",
        r["golden_examples"],
        r["compared_with"].as_str().unwrap_or("base")
    );
    for m in ["wer", "cer", "similarity", "exact_match", "loss"] {
        let (b, a) = (&r["metrics_before"][m], &r["metrics_after"][m]);
        if b.is_number() || a.is_number() {
            s += &format!("| {m} | {} | {} |\n", num(b), num(a));
        }
    }
    s += &format!(
        "\nRelative WER reduction: {}.\n\n## Gate\n\n{}{}; promoted: {}; hot-swap: {} s.\n\n## Samples\n\n",
        r["wer_relative_reduction"].as_f64().map_or("n/a".into(), |x| format!("{:.1} %", 100.0 * x)),
        r["gate"]["decision"].as_str().unwrap_or(""),
        r["gate"]["reasons"]
            .as_array()
            .filter(|a| !a.is_empty())
            .map(|a| format!(" ({})", a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join("; ")))
            .unwrap_or_default(),
        r["promoted"],
        num(&r["hot_swap_seconds"]),
    );
    for x in r["samples"].as_array().into_iter().flatten() {
        s += &format!(
            "- transcript: {}\n  - before: {}\n  - after: {}\n  - reference: {}\n",
            x["transcript"].as_str().unwrap_or(""),
            x["before"].as_str().unwrap_or("").replace('\n', " "),
            x["after"].as_str().unwrap_or("").replace('\n', " "),
            x["reference"].as_str().unwrap_or(""),
        );
    }
    s
}
