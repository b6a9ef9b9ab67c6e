//! `forja bench memory`: entity memory measured on what the demo
//! municipality's residents say (demo/memory_facts.rs, truth known). Each
//! utterance goes through the path a served conversation takes: the chat
//! model extracts facts under the memory schema (llguidance), forja-control
//! checks and stores them. Reported: the model's extraction precision and
//! recall, the same after the checks (what memory keeps), and how often the
//! model answers a question that needs a remembered fact, without memory and
//! with the recalled facts in the user turn (as the server builds it).

use crate::args::{BenchMemoryArgs, DataDirArgs};
use crate::demo::memory_facts::{corpus, Truth};
use anyhow::{anyhow, Context, Result};
use forja_control::memory::{self, entity_key, verb_key, RawFact, Source};
use forja_core::text::fold;
use forja_core::{ChatMessage, GenerationParams, Role};
use forja_engine::{Batcher, BatcherConfig, Constraint, Engine, Grammar, Job, JobEvent, Request};
use forja_knowledge::context;
use serde_json::{json, Value};
use std::ops::AddAssign;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// Greedy generation of one conversation, under `grammar` when given.
pub fn generate(
    batcher: &Batcher,
    messages: &[ChatMessage],
    grammar: Option<&Constraint>,
    max_tokens: usize,
) -> Result<String> {
    let engine = batcher.engine();
    let text = engine.render_chat(messages, true)?;
    let prompt = engine.tokenizer().encode(&text, false)?;
    let mut params = GenerationParams { max_tokens, ..Default::default() };
    params.sampling.temperature = 0.0;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut job = Job::new(
        Request { prompt, params },
        "bench",
        Box::new(move |e| {
            if let JobEvent::Done(r) = e {
                let _ = tx.send(r);
            }
            true
        }),
    );
    job.filter = grammar.map(|c| Box::new(c.clone()) as Box<dyn forja_engine::TokenFilter>);
    batcher.submit(job)?;
    let done = rx.recv().map_err(|_| anyhow!("the generation thread stopped"))??;
    Ok(done.text)
}

/// Whether an extracted fact is the true one: same subject and object
/// keys, and the same verb key (any copula for a copula).
fn same(f: &RawFact, t: &Truth) -> bool {
    let copula = |v: &str| matches!(v, "es" | "son" | "sera" | "fue" | "era" | "is");
    let (fv, tv) = (verb_key(&f.verb), verb_key(&t.verb));
    entity_key(&f.subject) == entity_key(&t.subject)
        && entity_key(&f.object) == entity_key(&t.object)
        && (fv == tv || (copula(&fv) && copula(&tv)))
}

/// Precision and recall of `got` (per utterance) against the truth.
fn score(got: &[Vec<RawFact>], truth: &[Vec<Truth>]) -> Value {
    let (mut tp, mut n_got, mut n_true) = (0usize, 0usize, 0usize);
    for (g, t) in got.iter().zip(truth) {
        n_got += g.len();
        n_true += t.len();
        tp += t.iter().filter(|t| g.iter().any(|f| same(f, t))).count();
    }
    let p = tp as f64 / n_got.max(1) as f64;
    let r = tp as f64 / n_true.max(1) as f64;
    json!({"precision": p, "recall": r, "f1": if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 },
           "extracted": n_got, "true": n_true, "correct": tp})
}

/// `forja bench memory`.
pub fn run(a: BenchMemoryArgs) -> Result<ExitCode> {
    let (utterances, questions) = corpus(a.seed, a.utterances.max(1));
    let tmp = tempfile::tempdir()?;
    let (control, _rt) = crate::registry::control(&DataDirArgs {
        data_dir: Some(tmp.path().to_path_buf()),
        database: None,
    })?;
    let settings = forja_store::TenantSettings { storage_mb: 0, ..Default::default() };
    let t = control.store.create_tenant("bench", "pro", &settings)?;
    let path = crate::models::resolve(&a.model)?;
    let opts = forja_engine::LoadOptions { threads: a.threads, ..Default::default() };
    let engine = Arc::new(Engine::load(&path, &opts, &mut |_| {})?);
    let specials = engine.tokenizer().special_texts();
    let compiler = forja_engine::ConstraintCompiler::new(engine.tokenizer())?;
    let schema = compiler.compile(&Grammar::JsonSchema(memory::schema()))?;
    let batcher = Batcher::start(engine.clone(), BatcherConfig::default())?;

    let (mut raw, mut kept, mut truth) = (Vec::new(), Vec::new(), Vec::new());
    let (mut unparsed, mut rejected) = (0usize, 0usize);
    let started = Instant::now();
    for (i, u) in utterances.iter().enumerate() {
        let out = generate(&batcher, &memory::extraction_messages(&u.text), Some(&schema), 192)?;
        let source = Source::Conversation(format!("bench-{i}"));
        let facts = match memory::parse(&out) {
            Ok(f) => f,
            Err(why) => {
                unparsed += 1;
                control.reject(&t, &source, &out, &why)?;
                Vec::new()
            }
        };
        let o = control.remember(&t, &facts, &source, Some(&u.text)).context("remember")?;
        rejected += o.rejected.len();
        if a.show {
            eprintln!("{:?}\n  model: {out}\n  rejected: {:?}", u.text, o.rejected);
        }
        let stored: Vec<RawFact> = o
            .stored
            .iter()
            .map(|r| {
                let f = r.fact();
                RawFact {
                    subject: f.subject.clone(),
                    verb: f.verb.clone(),
                    object: f.object.clone(),
                    since: f.since.clone(),
                }
            })
            .collect();
        raw.push(facts);
        kept.push(stored);
        truth.push(u.facts.clone());
    }
    let extract_s = started.elapsed().as_secs_f64();
    let model = score(&raw, &truth);
    let memory_score = score(&kept, &truth);
    eprintln!("extraction (model): {model}\nextraction (kept): {memory_score}");

    // The same questions with a memory holding the true facts: whether
    // the model uses a fact it is given, apart from extraction.
    let gold = control.store.create_tenant("bench-truth", "pro", &settings)?;
    for f in utterances.iter().flat_map(|u| &u.facts) {
        let raw = RawFact {
            subject: f.subject.clone(),
            verb: f.verb.clone(),
            object: f.object.clone(),
            since: f.since.clone(),
        };
        control.add_fact(&gold, &raw).with_context(|| format!("{raw:?}"))?;
    }
    let (mut plain, mut with, mut with_truth) = (0usize, 0usize, 0usize);
    let mut recalled_right = 0usize;
    for q in &questions {
        let right = |text: &str| fold(text).contains(&fold(&q.answer));
        let ask = |content: String| -> Result<String> {
            generate(&batcher, &[ChatMessage { role: Role::User, content }], None, 40)
        };
        let a0 = ask(q.question.clone())?;
        plain += right(&a0) as usize;
        let mut answers = Vec::new();
        for (i, tenant) in [&t, &gold].into_iter().enumerate() {
            let facts = control.recall(tenant, &q.question, a.k)?;
            let lines: Vec<String> = facts.iter().map(memory::fact_line).collect();
            if i == 0 {
                recalled_right += lines.iter().any(|l| right(l)) as usize;
            }
            let answer = if lines.is_empty() {
                a0.clone()
            } else {
                ask(context::user_turn(&context::render_facts(&lines, &specials), &q.question))?
            };
            [&mut with, &mut with_truth][i].add_assign(right(&answer) as usize);
            answers.push(answer);
        }
        if a.show {
            eprintln!(
                "[{}] {:?}\n  without: {a0:?}\n  with:    {:?}\n  truth:   {:?}",
                q.answer, q.question, answers[0], answers[1]
            );
        }
    }
    let n = questions.len().max(1) as f64;
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
        c.lines()
            .find(|l| l.starts_with("model name"))
            .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
    });
    let results = json!({
        "cpu": cpu, "model": a.model, "seed": a.seed, "utterances": utterances.len(),
        "extraction": {
            "model": model, "kept": memory_score, "unparsed_outputs": unparsed,
            "rejected_facts": rejected, "seconds": extract_s,
            "utterances_per_s": utterances.len() as f64 / extract_s,
        },
        "answers": {
            "questions": questions.len(), "k": a.k,
            "recall_has_answer": recalled_right as f64 / n,
            "without_memory": plain as f64 / n, "with_memory": with as f64 / n,
            "with_true_facts": with_truth as f64 / n,
        },
    });
    println!("{}", serde_json::to_string_pretty(&results)?);
    Ok(ExitCode::SUCCESS)
}
