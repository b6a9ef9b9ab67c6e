//! The documents commands: `forja corrections diff` (a generated DOCX vs
//! its corrected version), `forja draft` (minutes from a transcript, by a
//! running node), `forja dictionary` (a tenant's entity fixes, on the data
//! directory), `forja bench align` (transcript-to-minutes
//! alignment quality on demo sessions) and `forja bench diff` (DOCX read +
//! diff time on long minutes).

use crate::args::{
    BenchAlignArgs, BenchDiffArgs, CorrectionsDiffArgs, DictionaryCommand, DraftArgs,
};
use crate::demo::scenario;
use anyhow::{bail, Context, Result};
use forja_docs::align::{align, AlignParams, Segment};
use forja_docs::diff::{diff, DiffOptions, OpKind};
use forja_docs::docx::{read_docx, write_docx, DraftMeta, ReadLimits};
use forja_docs::entity::EntityRule;
use forja_docs::learn::{learning, Learning};
use forja_docs::{Block, Document};
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

fn read(path: &Path) -> Result<Document> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    read_docx(&bytes, &ReadLimits::default()).with_context(|| path.display().to_string())
}

/// `forja corrections diff GENERATED FINAL [--json]`.
pub fn corrections_diff(a: CorrectionsDiffArgs) -> Result<ExitCode> {
    let gen = read(&a.generated)?;
    let fin = read(&a.final_)?;
    if let (Some(g), Some(f)) = (&gen.document_id, &fin.document_id) {
        if g != f {
            bail!(
                "{} descends from document {f}, not from {} (document {g}); compare it with its own draft",
                a.final_.display(),
                a.generated.display()
            );
        }
    }
    let rule = EntityRule::default();
    let delta = diff(&gen.blocks, &fin.blocks, &DiffOptions::default());
    let learned: Vec<Learning> = delta.ops.iter().map(|op| learning(op, &rule)).collect();
    if a.json {
        let refs: Vec<&Learning> = learned.iter().collect();
        let v = forja_server::wire::documents::delta(&delta, &refs, &gen.blocks, &fin.blocks);
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let idx = |v: &[usize]| v.iter().map(|i| format!("#{}", i + 1)).collect::<Vec<_>>().join("+");
    println!(
        "{} ({} paragraphs) -> {} ({} paragraphs)",
        a.generated.display(),
        gen.blocks.len(),
        a.final_.display(),
        fin.blocks.len()
    );
    let (mut dict, mut pairs) = (0, 0);
    for (op, taught) in delta.ops.iter().zip(&learned) {
        if op.kind == OpKind::Unchanged {
            continue;
        }
        let from = if op.matched_by == "copy" {
            format!("copy of {}", idx(&op.generated))
        } else {
            idx(&op.generated)
        };
        let mut line = format!("  {:<13} {:>9} -> {:<9}", op.kind.name(), from, idx(&op.final_));
        match taught {
            Learning::Dictionary(fixes) => {
                dict += 1;
                let f: Vec<String> =
                    fixes.iter().map(|f| format!("\"{}\" -> \"{}\"", f.wrong, f.right)).collect();
                line += &format!(" dictionary: {}", f.join(", "));
            }
            Learning::Pair => {
                pairs += 1;
                line += &format!(" training pair, {:.0} % of words changed", op.edit_ratio * 100.0);
            }
            Learning::Nothing(why) if op.kind != OpKind::Moved => line += &format!(" ({why})"),
            Learning::Nothing(_) => {}
        }
        println!("{line}");
    }
    let counts: Vec<String> = OpKind::ALL
        .iter()
        .map(|&k| (k.name(), delta.count(k)))
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    println!(
        "{}; learns {dict} dictionary fix(es) and {pairs} training pair(s)",
        counts.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

/// A session's transcript cut into ASR-like segments (6 to 14 words,
/// 0.4 s a word) and, for each utterance, its range of segments.
fn segments_of(
    utterances: &[&scenario::Utterance],
    t0: f64,
) -> (Vec<Segment>, Vec<(usize, usize)>) {
    let mut segs = Vec::new();
    let mut truth = Vec::new();
    let mut t = t0;
    for (u, utt) in utterances.iter().enumerate() {
        let words: Vec<&str> = utt.transcript.split_whitespace().collect();
        let first = segs.len();
        let mut i = 0;
        let mut k = u;
        while i < words.len() {
            let n = (6 + (k * 7919 % 9)).min(words.len() - i);
            k += 1;
            let text = words[i..i + n].join(" ");
            segs.push(Segment { text, start: Some(t), end: Some(t + 0.4 * n as f64) });
            t += 0.4 * n as f64 + 0.3;
            i += n;
        }
        truth.push((first, segs.len().saturating_sub(1).max(first)));
    }
    (segs, truth)
}

#[derive(Default)]
struct AlignTally {
    paragraphs: usize,
    linked: usize,
    correct: usize,
    linked_segments: usize,
    right_segments: usize,
    score_sum: f64,
    coverage_sum: f64,
    runs: usize,
    short: usize,
    short_correct: usize,
}

impl AlignTally {
    fn add(&mut self, a: &forja_docs::align::Alignment, truth: &[(usize, usize)], paras: &[&str]) {
        self.runs += 1;
        self.score_sum += a.score as f64;
        self.coverage_sum += a.coverage as f64;
        for (p, link) in a.links.iter().enumerate() {
            self.paragraphs += 1;
            let short = paras[p].split_whitespace().count() <= 8;
            self.short += short as usize;
            let Some(l) = link else { continue };
            self.linked += 1;
            let (t0, t1) = truth[p];
            let inside = (l.first..=l.last).filter(|s| (t0..=t1).contains(s)).count();
            let span = l.last - l.first + 1;
            self.linked_segments += span;
            self.right_segments += inside;
            // Correct: at least half of the linked span is the paragraph's.
            if inside > 0 && 2 * inside >= span {
                self.correct += 1;
                self.short_correct += short as usize;
            }
        }
    }

    fn json(&self, name: &str) -> serde_json::Value {
        let r = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        json!({
            "case": name,
            "paragraphs": self.paragraphs,
            "score": self.score_sum / self.runs.max(1) as f64,
            "coverage": self.coverage_sum / self.runs.max(1) as f64,
            "linked": r(self.linked, self.paragraphs),
            "link_precision": r(self.correct, self.linked),
            "link_recall": r(self.correct, self.paragraphs),
            "segment_precision": r(self.right_segments, self.linked_segments),
            "short_paragraphs": self.short,
            "short_recall": r(self.short_correct, self.short),
        })
    }
}

/// `forja bench align`: three cases on demo sessions (each session as it
/// is; with one agenda item moved in the minutes; all sessions as one long
/// transcript), scored against the generator's truth.
pub fn bench_align(a: BenchAlignArgs) -> Result<ExitCode> {
    let d = AlignParams::default();
    let params = AlignParams {
        max_lookahead: a.max_lookahead.unwrap_or(d.max_lookahead),
        word_count_threshold: a.word_count_threshold.unwrap_or(d.word_count_threshold),
        length_penalty_factor: a.length_penalty_factor.unwrap_or(d.length_penalty_factor),
        ..d
    };
    let council = scenario::council(a.seed);
    let sessions = scenario::sessions(&council, a.seed, a.sessions.max(1));
    let started = Instant::now();
    let (mut plain, mut moved, mut long) =
        (AlignTally::default(), AlignTally::default(), AlignTally::default());
    for s in &sessions {
        let utts: Vec<&scenario::Utterance> = s.utterances.iter().collect();
        let (segs, truth) = segments_of(&utts, 0.0);
        let paras: Vec<&str> = utts.iter().map(|u| u.minutes.as_str()).collect();
        plain.add(&align(&segs, &paras, &params), &truth, &paras);
        // The minutes list the last agenda item first.
        let items: Vec<usize> = (0..utts.len()).filter(|&i| utts[i].kind == "item").collect();
        if let (Some(&first), Some(&last)) = (items.first(), items.last()) {
            if last > first {
                let mut order: Vec<usize> = (0..utts.len()).collect();
                let x = order.remove(last);
                order.insert(first, x);
                let paras: Vec<&str> = order.iter().map(|&i| utts[i].minutes.as_str()).collect();
                let truth: Vec<(usize, usize)> = order.iter().map(|&i| truth[i]).collect();
                moved.add(&align(&segs, &paras, &params), &truth, &paras);
            }
        }
    }
    let all: Vec<&scenario::Utterance> =
        sessions.iter().flat_map(|s| s.utterances.iter()).collect();
    let (segs, truth) = segments_of(&all, 0.0);
    let paras: Vec<&str> = all.iter().map(|u| u.minutes.as_str()).collect();
    long.add(&align(&segs, &paras, &params), &truth, &paras);
    let elapsed = started.elapsed().as_secs_f64();
    let rows = [
        plain.json("per session"),
        moved.json("one agenda item moved"),
        long.json("all sessions, one transcript"),
    ];
    if a.json {
        let out = json!({"params": {"max_lookahead": params.max_lookahead, "word_count_threshold": params.word_count_threshold,
            "length_penalty_factor": params.length_penalty_factor}, "sessions": sessions.len(), "transcript_segments_long": segs.len(),
            "seconds": elapsed, "cases": rows});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} demo sessions (seed {}), max_lookahead {}, word_count_threshold {}, length_penalty_factor {}; {:.2} s",
        sessions.len(),
        a.seed,
        params.max_lookahead,
        params.word_count_threshold,
        params.length_penalty_factor,
        elapsed
    );
    println!("| case | paragraphs | score | coverage | linked | link precision | link recall | segment precision | short (≤ 8 words) recall |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in rows {
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} ({}) |",
            r["case"].as_str().unwrap_or(""),
            r["paragraphs"],
            r["score"].as_f64().unwrap_or(0.0),
            r["coverage"].as_f64().unwrap_or(0.0),
            r["linked"].as_f64().unwrap_or(0.0),
            r["link_precision"].as_f64().unwrap_or(0.0),
            r["link_recall"].as_f64().unwrap_or(0.0),
            r["segment_precision"].as_f64().unwrap_or(0.0),
            r["short_recall"].as_f64().unwrap_or(0.0),
            r["short_paragraphs"],
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `forja bench diff`: minutes of N pages written as DOCX, a corrected
/// version with edits every few paragraphs (word edits, name fixes, moves
/// to a later page, deletions, insertions), then read both and diff,
/// median of R runs.
pub fn bench_diff(a: BenchDiffArgs) -> Result<ExitCode> {
    let council = scenario::council(a.seed);
    let target = a.pages.max(1) * 8;
    let mut gen: Vec<Block> = Vec::with_capacity(target);
    let mut n = 0usize;
    'outer: for s in scenario::sessions(&council, a.seed, target / 10 + 1) {
        for u in &s.utterances {
            if gen.len() == target {
                break 'outer;
            }
            gen.push(Block::paragraph(u.minutes.clone()).with_chunk(format!("u{n}")));
            n += 1;
        }
    }
    let mut fin = gen.clone();
    let mut moves = Vec::new();
    for (i, b) in fin.iter_mut().enumerate() {
        if i % 7 == 3 {
            b.text = b.text.replacen(" la ", " esta ", 1);
        }
        if i % 11 == 5 {
            b.text = b.text.replacen("Pleno", "Ayuntamiento Pleno", 1);
        }
        if i % 50 == 10 {
            moves.push(i);
        }
    }
    for (k, &i) in moves.iter().enumerate().rev() {
        let p = fin.remove(i);
        fin.insert((i + 20 + k).min(fin.len()), p);
    }
    let mut i = 0;
    fin.retain(|_| {
        i += 1;
        i % 97 != 0
    });
    for k in (0..fin.len()).step_by(83).rev() {
        fin.insert(
            k,
            Block::paragraph(format!("Nota de secretaría número {k}: consta en el expediente.")),
        );
    }
    let g_bytes =
        write_docx(&gen, &DraftMeta { title: Some("bench"), document_id: Some("bench") })?;
    let f_bytes =
        write_docx(&fin, &DraftMeta { title: Some("bench"), document_id: Some("bench") })?;
    let words: usize = gen.iter().map(|b| b.text.split_whitespace().count()).sum();
    let (mut reads, mut diffs) = (Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..a.repetitions.max(1) {
        let t = Instant::now();
        let g = read_docx(&g_bytes, &ReadLimits::default())?;
        let f = read_docx(&f_bytes, &ReadLimits::default())?;
        reads.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let d = diff(&g.blocks, &f.blocks, &DiffOptions::default());
        diffs.push(t.elapsed().as_secs_f64());
        last = Some(d);
    }
    let med = |xs: &mut Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    };
    let d = last.expect("at least one run");
    let count = |k| d.count(k);
    println!(
        "{} pages: {} paragraphs, {} words, DOCX {} + {} KiB; read both {:.1} ms, diff {:.1} ms (median of {}); \
         {} unchanged, {} edited, {} moved, {} moved+edited, {} inserted, {} deleted",
        a.pages,
        gen.len(),
        words,
        g_bytes.len() / 1024,
        f_bytes.len() / 1024,
        med(&mut reads) * 1e3,
        med(&mut diffs) * 1e3,
        a.repetitions.max(1),
        count(OpKind::Unchanged),
        count(OpKind::Edited),
        count(OpKind::Moved),
        count(OpKind::MovedEdited),
        count(OpKind::Inserted),
        count(OpKind::Deleted),
    );
    Ok(ExitCode::SUCCESS)
}

/// The segments of a transcript file (JSON, JSONL or text).
fn transcript_segments(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            return Ok(match v {
                serde_json::Value::Object(mut m) => m.remove("segments").with_context(|| {
                    format!("{}: a JSON object needs a `segments` list", path.display())
                })?,
                v => v,
            });
        }
        // JSONL: a segment per line.
        let mut segs = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}: line {}: not JSON", path.display(), i + 1))?;
            segs.push(v);
        }
        return Ok(serde_json::Value::Array(segs));
    }
    Ok(serde_json::Value::String(text))
}

/// `forja draft`: posts the transcript to `/v1/documents` and writes the DOCX.
pub fn draft(a: DraftArgs) -> Result<ExitCode> {
    let transcript = transcript_segments(&a.transcript)?;
    let mut body = json!({"transcript": transcript, "model": a.model});
    for (k, v) in [("title", a.title.clone()), ("session", a.session.clone())] {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
    if let Some(m) = a.max_tokens {
        body["max_tokens"] = json!(m);
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(3600)))
        .build()
        .into();
    let base = a.url.trim_end_matches('/');
    let auth = format!("Bearer {}", a.api_key);
    let mut resp = agent
        .post(format!("{base}/v1/documents"))
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .send(body.to_string().as_bytes())
        .with_context(|| format!("{base}: cannot reach the node (is `forja up` running?)"))?;
    let status = resp.status().as_u16();
    let v: serde_json::Value =
        serde_json::from_str(&resp.body_mut().read_to_string()?).unwrap_or_default();
    if status != 200 {
        let msg = v["error"]["message"].as_str().unwrap_or("no error message");
        bail!("{}: the node answered {status}: {msg}", a.transcript.display());
    }
    let url = format!("{base}{}", v["content_url"].as_str().unwrap_or_default());
    let mut resp = agent.get(&url).header("authorization", &auth).call()?;
    if resp.status().as_u16() != 200 {
        bail!("{url}: the node answered {}", resp.status().as_u16());
    }
    let bytes = resp.body_mut().with_config().limit(256 << 20).read_to_vec()?;
    std::fs::write(&a.out, &bytes).with_context(|| format!("{}: cannot write", a.out.display()))?;
    eprintln!(
        "{}: {} paragraphs, document {} (version {} of its session)",
        a.out.display(),
        v["paragraphs"].as_array().map_or(0, Vec::len),
        v["id"].as_str().unwrap_or("?"),
        v["version"]
    );
    Ok(ExitCode::SUCCESS)
}

/// `forja dictionary list|add|remove`.
pub fn dictionary(cmd: DictionaryCommand) -> Result<ExitCode> {
    use forja_store::prelude::*;
    let open = |data, tenant: &str| -> Result<(forja_store::SqliteStore, forja_store::Tenant)> {
        let store = crate::admin::open(data, std::time::Duration::from_secs(5))?;
        let t = store.tenant_by_name(tenant).with_context(|| format!("no tenant `{tenant}`"))?;
        Ok((store, t))
    };
    match cmd {
        DictionaryCommand::List { tenant, data } => {
            let (store, t) = open(&data, &tenant)?;
            for e in store.dictionary(&t.id)? {
                let from = match (&e.source_document, &e.source_chunk) {
                    (Some(d), Some(c)) => format!("{d} ({c})"),
                    (Some(d), None) => d.clone(),
                    _ => "by hand".into(),
                };
                println!("{}\t{}\t{from}", e.wrong, e.right);
            }
        }
        DictionaryCommand::Add { tenant, wrong, right, data } => {
            let (w, r) = (wrong.trim().to_string(), right.trim().to_string());
            if w.is_empty()
                || r.is_empty()
                || w == r
                || w.chars().chain(r.chars()).any(char::is_control)
            {
                bail!("give a misspelling and a different fix, each on one line");
            }
            let (store, t) = open(&data, &tenant)?;
            let entry = forja_store::DictionaryEntry {
                wrong: w,
                right: r,
                source_document: None,
                source_chunk: None,
                created_at: 0,
            };
            let n = store.upsert_dictionary(&t.id, &[entry])?;
            eprintln!("{tenant}: {n} entries (a running node applies them within 2 s)");
        }
        DictionaryCommand::Remove { tenant, wrong, data } => {
            let (store, t) = open(&data, &tenant)?;
            store
                .remove_dictionary(&t.id, &wrong)
                .with_context(|| format!("{tenant}: no entry `{wrong}`"))?;
            eprintln!("{tenant}: removed `{wrong}`");
        }
    }
    Ok(ExitCode::SUCCESS)
}
