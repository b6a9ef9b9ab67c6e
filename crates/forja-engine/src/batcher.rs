//! Continuous batching for a server: one thread owns the engine's
//! generation loop; requests join between forward passes and leave as soon
//! as they finish, so a long answer never holds a short one back. Live
//! sequences are grouped by adapter (one forward pass per adapter per
//! round), prompt chunks share passes with decode steps, and every request
//! streams its text through its own callback, whose `false` cancels it.
//! With a draft model, a sequence that decodes alone (no grammar) advances
//! by speculative steps ([`crate::speculative`]); as soon as others join it
//! decodes in the batch again (its draft cache catches up by itself).

use crate::generate::{self, advance, Completion, Request, Seq, TokenFilter};
use crate::lora::Adapter;
use crate::models::llama::Lora;
use crate::speculative::{SpecConfig, SpecStats, Speculator};
use crate::{Engine, EngineError, Result};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// What a request hears from the batcher.
#[derive(Debug)]
pub enum JobEvent<'a> {
    /// New text (never part of a stop string).
    Text(&'a str),
    /// The end: the completion, or why the request failed.
    Done(Result<Completion>),
}

/// Receives a request's events; returning `false` to `Text` cancels it.
pub type Sink = Box<dyn FnMut(JobEvent<'_>) -> bool + Send>;

/// One request for the batcher.
pub struct Job {
    /// The prompt and its parameters.
    pub request: Request,
    /// The adapter to apply (`None`: the base model).
    pub adapter: Option<Arc<Adapter>>,
    /// A grammar the output must follow.
    pub filter: Option<Box<dyn TokenFilter>>,
    /// Where its text and result go.
    pub sink: Sink,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Job({} prompt tokens)", self.request.prompt.len())
    }
}

/// Batcher settings.
#[derive(Debug, Clone)]
pub struct BatcherConfig {
    /// Most sequences decoding together; more wait in the queue.
    pub max_batch: usize,
    /// A draft model sharing the tokenizer (checked with
    /// [`crate::speculative::check_compatible`]) and how to speculate.
    pub draft: Option<(Arc<Engine>, SpecConfig)>,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        BatcherConfig { max_batch: 16, draft: None }
    }
}

/// Counters the server exports as metrics.
#[derive(Debug, Default)]
pub struct BatcherStats {
    /// Sequences being generated now.
    pub live: AtomicUsize,
    /// Requests submitted and not yet admitted.
    pub queued: AtomicUsize,
    /// Forward passes run.
    pub passes: AtomicUsize,
    /// Draft tokens proposed by speculative steps.
    pub spec_drafted: AtomicUsize,
    /// Draft tokens the target accepted.
    pub spec_accepted: AtomicUsize,
    /// Sequences that stopped speculating (acceptance too low).
    pub spec_fallbacks: AtomicUsize,
}

impl BatcherStats {
    fn add_spec(&self, s: SpecStats) {
        self.spec_drafted.fetch_add(s.drafted, Ordering::Relaxed);
        self.spec_accepted.fetch_add(s.accepted, Ordering::Relaxed);
        self.spec_fallbacks.fetch_add(usize::from(s.fell_back), Ordering::Relaxed);
    }
}

/// The generation thread and its queue.
pub struct Batcher {
    engine: Arc<Engine>,
    tx: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<BatcherStats>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Batcher({:?})", self.engine)
    }
}

impl Batcher {
    /// Starts the generation thread for `engine`.
    pub fn start(engine: Arc<Engine>, cfg: BatcherConfig) -> Result<Batcher> {
        if let Some((draft, spec)) = &cfg.draft {
            crate::speculative::check_compatible(&engine, draft)?;
            spec.validate()?;
        }
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(BatcherStats::default());
        let thread = {
            let (engine, stats) = (engine.clone(), stats.clone());
            std::thread::Builder::new()
                .name("forja-batcher".into())
                .spawn(move || engine.install(|| run(&engine, &cfg, &rx, &stats)))
                .map_err(|e| EngineError::Device { device: "cpu".into(), reason: e.to_string() })?
        };
        Ok(Batcher { engine, tx: Some(tx), thread: Some(thread), stats })
    }

    /// The engine it runs.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Live counters.
    pub fn stats(&self) -> &Arc<BatcherStats> {
        &self.stats
    }

    /// Checks `job` (parameters, prompt length against the context) and
    /// queues it; its sink hears the rest.
    pub fn submit(&self, job: Job) -> Result<()> {
        let e = &self.engine;
        generate::check(&e.model, &e.tokenizer, &job.request, e.ctx)?;
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        let tx = self.tx.as_ref().expect("the sender lives until drop");
        tx.send(job).map_err(|_| EngineError::Device {
            device: "batcher".into(),
            reason: "the generation thread has stopped".into(),
        })
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Live<'t> {
    seq: Seq<'t>,
    adapter: Option<Arc<Adapter>>,
    sink: Sink,
    spec: Option<Speculator<'t>>,
}

fn admitted<'t>(
    engine: &'t Engine,
    draft: Option<&'t (Arc<Engine>, SpecConfig)>,
    job: Job,
    stats: &BatcherStats,
) -> Live<'t> {
    stats.queued.fetch_sub(1, Ordering::Relaxed);
    let sampling = job.request.params.sampling.clone();
    let seq = Seq::new(&engine.model, &engine.tokenizer, job.request, engine.ctx, job.filter);
    // No speculation under a grammar: the draft knows nothing of the mask.
    let spec = draft
        .filter(|_| !seq.constrained())
        .and_then(|(d, cfg)| Speculator::new(d, cfg, &sampling).ok());
    Live { seq, adapter: job.adapter, sink: job.sink, spec }
}

/// One speculative step for a sequence decoding alone.
fn speculate(engine: &Engine, l: &mut Live<'_>) -> Result<()> {
    let spec = l.spec.as_mut().expect("checked by the caller");
    let lora = Lora::with(l.adapter.as_deref());
    let seq = &mut l.seq;
    let left = seq.remaining();
    let ids = spec.step(&engine.model, &mut seq.cache, lora, &seq.history, left)?;
    let sink = &mut l.sink;
    l.seq.push_run(&ids, &engine.tokenizer, &mut |t| sink(JobEvent::Text(t)));
    Ok(())
}

fn run(engine: &Engine, cfg: &BatcherConfig, rx: &Receiver<Job>, stats: &BatcherStats) {
    let (model, tok) = (&engine.model, &engine.tokenizer);
    let mut live: Vec<Live> = Vec::new();
    loop {
        if live.is_empty() {
            match rx.recv() {
                Ok(job) => live.push(admitted(engine, cfg.draft.as_ref(), job, stats)),
                Err(_) => return,
            }
        }
        while live.len() < cfg.max_batch.max(1) {
            match rx.try_recv() {
                Ok(job) => live.push(admitted(engine, cfg.draft.as_ref(), job, stats)),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        stats.live.store(live.len(), Ordering::Relaxed);
        let alone = live.len() == 1
            && !live[0].seq.in_prefill()
            && live[0].spec.as_ref().is_some_and(Speculator::active);
        if alone {
            if let Err(e) = speculate(engine, &mut live[0]) {
                tracing::error!(error = %e, "a speculative step failed");
                live[0].seq.error = Some(e);
                live[0].seq.finish = Some(crate::FinishReason::Stop);
            }
            stats.passes.fetch_add(1, Ordering::Relaxed);
            retire(&mut live, Vec::new(), stats);
            continue;
        }
        // One pass per adapter, in order of first appearance.
        let mut groups: Vec<(*const Adapter, Vec<usize>)> = Vec::new();
        for (i, l) in live.iter().enumerate() {
            let key = l.adapter.as_ref().map_or(std::ptr::null(), Arc::as_ptr);
            match groups.iter_mut().find(|g| g.0 == key) {
                Some(g) => g.1.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        let mut failed: Vec<(usize, EngineError)> = Vec::new();
        for (_, idx) in &groups {
            let adapter = live[idx[0]].adapter.clone();
            let t = Instant::now();
            let (mut seqs, mut sinks): (Vec<&mut Seq>, Vec<&mut Sink>) = live
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| idx.contains(i))
                .map(|(_, l)| (&mut l.seq, &mut l.sink))
                .unzip();
            let lora = Lora::with(adapter.as_deref());
            let out = advance(model, tok, &mut seqs, engine.ubatch, lora, &mut |i, text| {
                sinks[i](JobEvent::Text(text))
            });
            stats.passes.fetch_add(1, Ordering::Relaxed);
            tracing::trace!(seqs = idx.len(), secs = t.elapsed().as_secs_f64(), "pass");
            if let Err(e) = out {
                // The pass failed as a whole: every sequence in it fails.
                tracing::error!(error = %e, "a generation pass failed");
                for &i in idx {
                    failed.push((i, EngineError::Generation(e.to_string())));
                }
            }
        }
        retire(&mut live, failed, stats);
    }
}

/// Hands finished and failed sequences their result and drops them.
fn retire(live: &mut Vec<Live<'_>>, mut failed: Vec<(usize, EngineError)>, stats: &BatcherStats) {
    // In reverse, so that swap_remove keeps the indices still to visit valid.
    for i in (0..live.len()).rev() {
        let err = failed.iter().position(|f| f.0 == i).map(|p| failed.swap_remove(p).1);
        if err.is_none() && live[i].seq.finish.is_none() {
            continue;
        }
        let mut l = live.swap_remove(i);
        if let Some(s) = &l.spec {
            stats.add_spec(s.stats());
        }
        let result = match err.or_else(|| l.seq.error.take()) {
            Some(e) => Err(e),
            None => Ok(l.seq.into_completion()),
        };
        (l.sink)(JobEvent::Done(result));
    }
    stats.live.store(live.len(), Ordering::Relaxed);
}
