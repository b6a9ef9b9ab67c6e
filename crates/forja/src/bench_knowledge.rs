//! `forja bench knowledge`: the knowledge base measured on the demo
//! council's minutes (demo/knowledge_qa.rs): retrieval hit@1, hit@k and MRR
//! for BM25, dense and hybrid; ingest throughput and query latency; with
//! `--answers`, how often the chat model answers right with and without
//! retrieval; with `--scale-chunks`, BM25 query latency over a grown base
//! and an exact scan over as many vectors. `--out` keeps the corpus, the
//! questions and the indexed passages for scripts/knowledge-peer.py (the
//! same queries on rank-bm25).

use crate::args::{BenchKnowledgeArgs, DataDirArgs};
use crate::demo::knowledge_qa::{corpus, Qa};
use anyhow::{Context, Result};
use forja_control::knowledge::{
    passage_text, AddSource, FeedPolicy, Hit, Knowledge, Mode, Pii, Query,
};
use forja_core::text::fold;
use forja_core::{ChatMessage, GenerationParams, Role};
use forja_knowledge::context::{self, Passage};
use forja_knowledge::DocFormat;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// A knowledge base in a fresh data directory, with one tenant.
fn base(
    dir: &std::path::Path,
    embedder: Option<Arc<forja_engine::Embedder>>,
) -> Result<(Knowledge, forja_store::Tenant)> {
    let (control, _rt) = crate::registry::control(&DataDirArgs {
        data_dir: Some(dir.to_path_buf()),
        database: None,
    })?;
    let settings = forja_store::TenantSettings { storage_mb: 0, ..Default::default() };
    let t = control.store.create_tenant("bench", "pro", &settings)?;
    let k =
        Knowledge::open(Arc::new(control), dir.join("knowledge"), embedder, FeedPolicy::default())?;
    Ok((k, t))
}

fn add(
    k: &Knowledge,
    t: &forja_store::Tenant,
    name: &str,
    text: &str,
) -> Result<forja_store::KnowledgeSource> {
    let a = AddSource {
        title: None,
        name: name.into(),
        url: None,
        format: Some(DocFormat::Markdown),
        bytes: text.as_bytes().to_vec(),
        pii: Pii::Keep,
        kind: "document",
        origin: None,
        feed_id: None,
    };
    Ok(k.add_unsynced(t, a).with_context(|| name.to_string())?.source)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

/// Retrieval quality and latency of one mode.
fn measure(
    k: &Knowledge,
    t: &forja_store::Tenant,
    qa: &[Qa],
    src: &HashMap<String, String>,
    mode: Mode,
    depth: usize,
) -> Result<Value> {
    let (mut hit1, mut hitk, mut rr, mut ms) = (0usize, 0usize, 0f64, Vec::new());
    for q in qa {
        let started = Instant::now();
        let hits =
            k.search(t, &Query { text: q.question.clone(), k: depth, sources: None, mode })?;
        ms.push(started.elapsed().as_secs_f64() * 1e3);
        let want = src.get(&q.doc).map(String::as_str);
        let answer = fold(&q.answer);
        let rank = hits.iter().position(|h| {
            Some(h.chunk.source_id.as_str()) == want && fold(&h.chunk.chunk.text).contains(&answer)
        });
        if let Some(r) = rank {
            hit1 += (r == 0) as usize;
            hitk += 1;
            rr += 1.0 / (r + 1) as f64;
        }
    }
    let n = qa.len().max(1) as f64;
    Ok(json!({
        "mode": mode.name(), "questions": qa.len(), "hit@1": hit1 as f64 / n,
        format!("hit@{depth}"): hitk as f64 / n, "mrr": rr / n,
        "p50_ms": pct(&mut ms, 0.5), "p99_ms": pct(&mut ms, 0.99),
    }))
}

/// How often the chat model's greedy answer contains the answer, without
/// and with the top passages in the user turn (as the server builds it).
fn answers(
    a: &BenchKnowledgeArgs,
    k: &Knowledge,
    t: &forja_store::Tenant,
    qa: &[Qa],
) -> Result<Value> {
    let path = crate::models::resolve(&a.model)?;
    let opts = forja_engine::LoadOptions { threads: a.threads, ..Default::default() };
    let engine = forja_engine::Engine::load(&path, &opts, &mut |_| {})?;
    let specials = engine.tokenizer().special_texts();
    let mut params = GenerationParams { max_tokens: 40, ..Default::default() };
    params.sampling.temperature = 0.0;
    let (mut plain, mut n) = (0usize, 0usize);
    let mut rag = [0usize; 2];
    // An even spread over the question kinds.
    let step = (qa.len() / a.answers.max(1)).max(1);
    for q in qa.iter().step_by(step).take(a.answers) {
        n += 1;
        let ask = |content: String| -> Result<bool> {
            let m = [ChatMessage { role: Role::User, content }];
            let (c, _) = engine.chat(&m, &params, None, |_| true)?;
            let right = fold(&c.text).contains(&fold(&q.answer));
            if a.show_answers {
                let mark = if right { "ok " } else { "BAD" };
                eprintln!("{mark} [{}] {:?} -> {:?}", q.answer, q.question, c.text);
            }
            Ok(right)
        };
        plain += ask(q.question.clone())? as usize;
        for (i, mode) in [Mode::Bm25, Mode::Hybrid].into_iter().enumerate() {
            if mode == Mode::Hybrid && !k.has_embedder() {
                continue;
            }
            let hits =
                k.search(t, &Query { text: q.question.clone(), k: 3, sources: None, mode })?;
            let passages: Vec<Passage<'_>> = hits.iter().map(Hit::passage).collect();
            let block = context::render(&passages, &specials);
            rag[i] += ask(context::user_turn(&block, &q.question))? as usize;
        }
    }
    let d = n.max(1) as f64;
    Ok(json!({
        "model": a.model, "questions": n, "without_rag": plain as f64 / d,
        "with_rag_bm25": rag[0] as f64 / d, "with_rag_hybrid": rag[1] as f64 / d, "passages": 3,
    }))
}

/// BM25 latency over a base grown to `target` passages, and an exact scan
/// over `target` unit vectors of the embedder's dimension.
fn scale(a: &BenchKnowledgeArgs, qa: &[Qa], dim: usize) -> Result<Value> {
    let tmp = tempfile::tempdir()?;
    let (k, t) = base(tmp.path(), None)?;
    let started = Instant::now();
    let (mut passages, mut docs, mut n) = (0u64, 0usize, a.sessions);
    while (passages as usize) < a.scale_chunks {
        n *= 2;
        let (more, _) = corpus(a.seed, n);
        for d in more.iter().skip(docs) {
            passages += add(&k, &t, &d.name, &d.text)?.chunks;
            docs += 1;
            if docs % 2000 == 0 {
                k.sync_index()?;
            }
            if passages as usize >= a.scale_chunks {
                break;
            }
        }
    }
    k.sync_index()?;
    let ingest_s = started.elapsed().as_secs_f64();
    let mut ms = Vec::new();
    for q in qa {
        let started = Instant::now();
        k.search(&t, &Query { text: q.question.clone(), k: a.k, sources: None, mode: Mode::Bm25 })?;
        ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    // The exact scan's cost does not depend on the values: random unit vectors.
    let mut vectors = forja_knowledge::Vectors::new(dim);
    let mut x = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let mut v = vec![0f32; dim];
    for i in 0..passages as i64 {
        v.iter_mut().for_each(|e| *e = next());
        let norm = v.iter().map(|e| e * e).sum::<f32>().sqrt();
        v.iter_mut().for_each(|e| *e /= norm);
        vectors.add(i, "s", &v);
    }
    let mut scan = Vec::new();
    for _ in 0..qa.len().clamp(20, 200) {
        v.iter_mut().for_each(|e| *e = next());
        let started = Instant::now();
        std::hint::black_box(vectors.search(&v, None, a.k));
        scan.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(json!({
        "passages": passages, "documents": docs, "ingest_s": ingest_s,
        "ingest_docs_per_s": docs as f64 / ingest_s,
        "bm25_p50_ms": pct(&mut ms, 0.5), "bm25_p99_ms": pct(&mut ms, 0.99),
        "dense_scan_p50_ms": pct(&mut scan, 0.5), "dense_scan_p99_ms": pct(&mut scan, 0.99),
        "dim": dim,
    }))
}

/// `forja bench knowledge`.
pub fn run(a: BenchKnowledgeArgs) -> Result<ExitCode> {
    let embedder = crate::models::embedder(&a.embedding_model)?;
    let dim = embedder.as_ref().map_or(384, |e| e.dim());
    let (docs, qa) = corpus(a.seed, a.sessions.max(1));
    let tmp = tempfile::tempdir()?;
    let (k, t) = base(tmp.path(), embedder.clone())?;
    let started = Instant::now();
    let mut src = HashMap::new();
    for d in &docs {
        src.insert(d.name.clone(), add(&k, &t, &d.name, &d.text)?.id);
    }
    k.sync_index()?;
    let ingest_s = started.elapsed().as_secs_f64();
    let chunks = k.control().store.knowledge_chunks_after(Some(&t.id), 0, usize::MAX >> 1)?;
    let ingest = json!({
        "documents": docs.len(), "passages": chunks.len(), "seconds": ingest_s,
        "docs_per_s": docs.len() as f64 / ingest_s, "passages_per_s": chunks.len() as f64 / ingest_s,
        "embedder": embedder.as_ref().map(|e| e.name()),
    });
    eprintln!("ingested {} documents ({} passages) in {ingest_s:.2} s", docs.len(), chunks.len());
    let mut modes = vec![Mode::Bm25];
    if embedder.is_some() {
        modes.extend([Mode::Dense, Mode::Hybrid]);
    }
    let mut retrieval = Vec::new();
    for m in modes {
        let r = measure(&k, &t, &qa, &src, m, a.k)?;
        eprintln!("{r}");
        retrieval.push(r);
    }
    // Per kind of question, hybrid (or BM25).
    let best = if embedder.is_some() { Mode::Hybrid } else { Mode::Bm25 };
    let mut by_kind = serde_json::Map::new();
    for kind in ["amount", "closing", "request"] {
        let sub: Vec<Qa> = qa.iter().filter(|q| q.kind == kind).cloned().collect();
        by_kind.insert(kind.into(), measure(&k, &t, &sub, &src, best, a.k)?);
    }
    let answered = if a.answers > 0 { Some(answers(&a, &k, &t, &qa)?) } else { None };
    if let Some(v) = &answered {
        eprintln!("{v}");
    }
    let scaled = if a.scale_chunks > 0 { Some(scale(&a, &qa, dim)?) } else { None };
    if let Some(v) = &scaled {
        eprintln!("{v}");
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
        c.lines()
            .find(|l| l.starts_with("model name"))
            .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
    });
    let results = json!({
        "cpu": cpu, "sessions": a.sessions, "seed": a.seed, "k": a.k, "ingest": ingest,
        "retrieval": retrieval, "by_kind": by_kind, "answers": answered, "scale": scaled,
    });
    println!("{}", serde_json::to_string_pretty(&results)?);
    if let Some(out) = &a.out {
        std::fs::create_dir_all(out.join("docs"))?;
        for d in &docs {
            std::fs::write(out.join("docs").join(&d.name), &d.text)?;
        }
        let names: HashMap<&str, &str> =
            src.iter().map(|(n, id)| (id.as_str(), n.as_str())).collect();
        let mut lines = String::new();
        for c in &chunks {
            let doc = names.get(c.source_id.as_str()).copied().unwrap_or("");
            let text = passage_text(&c.title, &c.chunk.heading, &c.chunk.text);
            lines += &format!(
                "{}\n",
                json!({"id": c.seq, "doc": doc, "text": text, "passage": c.chunk.text})
            );
        }
        std::fs::write(out.join("chunks.jsonl"), lines)?;
        let mut lines = String::new();
        for q in &qa {
            lines += &format!(
                "{}\n",
                json!({"kind": q.kind, "question": q.question, "answer": q.answer, "doc": q.doc})
            );
        }
        std::fs::write(out.join("qa.jsonl"), lines)?;
        std::fs::write(out.join("results.json"), serde_json::to_string_pretty(&results)?)?;
    }
    Ok(ExitCode::SUCCESS)
}
