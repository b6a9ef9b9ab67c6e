//! Continuous batching for a server: one thread owns the engine's
//! generation loop; requests join between forward passes and leave as soon
//! as they finish, so a long answer never holds a short one back. Live
//! sequences are grouped by adapter (one forward pass per adapter per
//! round), prompt chunks share passes with decode steps, and every request
//! streams its text through its own callback, whose `false` cancels it.
//! With a draft model, a sequence that decodes alone (no grammar, no
//! log-probabilities) advances by speculative steps
//! ([`crate::speculative`]); as soon as others join it decodes in the
//! batch again (its draft cache catches up by itself).
//!
//! **Fairness.** Every job names an owner (the server passes the tenant).
//! Waiting jobs queue per owner; a free slot goes to the owner with the
//! fewest live sequences (round robin among equals), and when the batch
//! is full and an owner waits with less than its fair share
//! (`max_batch / owners with work`), the newest sequence of the owner
//! furthest above its share is paused (it keeps its KV cache and resumes
//! where it stopped), so one owner's flood cannot hold another's short
//! request behind it. Greedy output does not depend on any of this.
//!
//! **Robustness.** A job whose client is gone is dropped before it is
//! admitted and at every pass (its `cancelled` probe); a panic inside a
//! pass (a kernel, a grammar, a sink) fails that pass's requests and the
//! loop goes on: no request can take the generation thread down.

use crate::generate::{self, advance, Completion, Request, Seq, TokenFilter};
use crate::lora::Adapter;
use crate::models::llama::Lora;
use crate::speculative::{SpecConfig, SpecStats, Speculator};
use crate::{Engine, EngineError, Result};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
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

/// Whether the client of a job went away (its work can be dropped).
pub type Cancelled = Box<dyn Fn() -> bool + Send>;

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
    /// Whose job it is: slots are shared fairly between owners.
    pub owner: String,
    /// Polled before admission and at every pass; `true` drops the job.
    pub cancelled: Option<Cancelled>,
}

impl Job {
    /// A job of `owner` on the base model, with no grammar and no probe.
    pub fn new(request: Request, owner: impl Into<String>, sink: Sink) -> Job {
        Job { request, adapter: None, filter: None, sink, owner: owner.into(), cancelled: None }
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.as_ref().is_some_and(|c| c())
    }
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
    /// Sequences paused to give their slot to another owner.
    pub preempted: AtomicUsize,
    /// Jobs submitted and not yet taken off the channel.
    in_channel: AtomicUsize,
    /// Jobs dropped before or during generation because their client left.
    pub dropped: AtomicUsize,
    /// Passes that panicked (their requests failed; the loop went on).
    pub panics: AtomicUsize,
}

impl BatcherStats {
    fn add_spec(&self, s: SpecStats) {
        self.spec_drafted.fetch_add(s.drafted, Ordering::Relaxed);
        self.spec_accepted.fetch_add(s.accepted, Ordering::Relaxed);
        self.spec_fallbacks.fetch_add(usize::from(s.fell_back), Ordering::Relaxed);
    }
}

/// Serving is busy while a request is queued, waiting or generating:
/// training on the same cores gives way ([`crate::Yield`]).
impl crate::Foreground for BatcherStats {
    fn busy(&self) -> bool {
        self.live.load(Ordering::Relaxed) > 0
            || self.queued.load(Ordering::Relaxed) > 0
            || self.in_channel.load(Ordering::Relaxed) > 0
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
        self.stats.in_channel.fetch_add(1, Ordering::Relaxed);
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
    owner: String,
    cancelled: Option<Cancelled>,
}

impl Live<'_> {
    fn is_cancelled(&self) -> bool {
        self.cancelled.as_ref().is_some_and(|c| c())
    }
}

/// A job waiting for a slot: new, or paused to make room for another owner.
enum Waiting<'t> {
    New(Box<Job>),
    Paused(Box<Live<'t>>),
}

/// Waiting work, one queue per owner, served round robin.
#[derive(Default)]
struct Queues<'t> {
    by_owner: std::collections::HashMap<String, std::collections::VecDeque<Waiting<'t>>>,
    /// Owners in the order they get their next turn.
    order: std::collections::VecDeque<String>,
    len: usize,
}

impl<'t> Queues<'t> {
    fn push_back(&mut self, owner: &str, w: Waiting<'t>) {
        self.queue(owner).push_back(w);
        self.len += 1;
    }

    fn push_front(&mut self, owner: &str, w: Waiting<'t>) {
        self.queue(owner).push_front(w);
        self.len += 1;
    }

    fn queue(&mut self, owner: &str) -> &mut std::collections::VecDeque<Waiting<'t>> {
        if !self.by_owner.contains_key(owner) {
            self.order.push_back(owner.to_string());
        }
        self.by_owner.entry(owner.to_string()).or_default()
    }

    /// The front job of `owner`; the owner goes to the back of the turn order.
    fn pop(&mut self, owner: &str) -> Option<Waiting<'t>> {
        let q = self.by_owner.get_mut(owner)?;
        let w = q.pop_front();
        if q.is_empty() {
            self.by_owner.remove(owner);
            self.order.retain(|o| o != owner);
        } else if let Some(pos) = self.order.iter().position(|o| o == owner) {
            let o = self.order.remove(pos).expect("found");
            self.order.push_back(o);
        }
        self.len -= usize::from(w.is_some());
        w
    }

    /// Drops waiting jobs whose client left (their sinks hear `Done`).
    fn drop_cancelled(&mut self, stats: &BatcherStats) {
        let mut dropped = Vec::new();
        for q in self.by_owner.values_mut() {
            let mut kept = std::collections::VecDeque::with_capacity(q.len());
            for w in q.drain(..) {
                let gone = match &w {
                    Waiting::New(j) => j.is_cancelled(),
                    Waiting::Paused(l) => l.is_cancelled(),
                };
                if gone {
                    dropped.push(w);
                } else {
                    kept.push_back(w);
                }
            }
            *q = kept;
        }
        self.by_owner.retain(|_, q| !q.is_empty());
        let owners = &self.by_owner;
        self.order.retain(|o| owners.contains_key(o));
        self.len -= dropped.len();
        for w in dropped {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            let cancelled = Ok(Completion {
                text: String::new(),
                tokens: Vec::new(),
                prompt_tokens: 0,
                finish: crate::FinishReason::Cancelled,
                logprobs: Vec::new(),
                prompt_logprobs: Vec::new(),
            });
            match w {
                Waiting::New(mut j) => guarded(|| (j.sink)(JobEvent::Done(cancelled))),
                Waiting::Paused(mut l) => {
                    l.seq.finish = Some(crate::FinishReason::Cancelled);
                    guarded(|| (l.sink)(JobEvent::Done(Ok(l.seq.into_completion()))))
                }
            };
        }
    }
}

/// Runs `f`, turning a panic into `None` (logged).
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(p) => {
            let what = forja_core::panic_message(&*p).unwrap_or("unknown panic");
            tracing::error!(panic = %what, "a panic in the generation thread was contained");
            None
        }
    }
}

fn admitted<'t>(
    engine: &'t Engine,
    draft: Option<&'t (Arc<Engine>, SpecConfig)>,
    job: Job,
) -> Live<'t> {
    let sampling = job.request.params.sampling.clone();
    let seq = Seq::new(&engine.model, &engine.tokenizer, job.request, engine.ctx, job.filter);
    // No speculation under a grammar (the draft knows nothing of the mask)
    // or with log-probabilities (they are the target's, token by token).
    let spec = draft
        .filter(|_| !seq.constrained() && !seq.wants_logprobs())
        .and_then(|(d, cfg)| Speculator::new(d, cfg, &sampling).ok());
    Live {
        seq,
        adapter: job.adapter,
        sink: job.sink,
        spec,
        owner: job.owner,
        cancelled: job.cancelled,
    }
}

/// One speculative step for a sequence decoding alone.
fn speculate(engine: &Engine, l: &mut Live<'_>) -> Result<()> {
    let spec = l.spec.as_mut().expect("checked by the caller");
    let lora = Lora::with(l.adapter.as_deref());
    let seq = &mut l.seq;
    let left = seq.remaining();
    let ids = spec.step(&engine.model, &mut seq.cache, lora, &seq.history, left)?;
    let sink = &mut l.sink;
    l.seq.push_run(&ids, &engine.tokenizer, &mut |t| {
        guarded(|| sink(JobEvent::Text(t))).unwrap_or(false)
    });
    Ok(())
}

/// Live sequences per owner.
fn live_counts(live: &[Live<'_>]) -> std::collections::HashMap<String, usize> {
    let mut n = std::collections::HashMap::new();
    for l in live {
        *n.entry(l.owner.clone()).or_insert(0) += 1;
    }
    n
}

/// Fills free slots fairly, pausing sequences of owners above their share
/// when others wait below theirs.
fn schedule<'t>(
    engine: &'t Engine,
    cfg: &'t BatcherConfig,
    live: &mut Vec<Live<'t>>,
    waiting: &mut Queues<'t>,
    stats: &BatcherStats,
) {
    let max = cfg.max_batch.max(1);
    for _ in 0..2 * max {
        if waiting.len == 0 {
            return;
        }
        let counts = live_counts(live);
        let count = |o: &str| counts.get(o).copied().unwrap_or(0);
        // The waiting owner with the fewest live sequences, in turn order.
        let next = waiting.order.iter().min_by_key(|o| count(o)).cloned().expect("len > 0");
        if live.len() >= max {
            let owners: std::collections::HashSet<&String> =
                counts.keys().chain(waiting.by_owner.keys()).collect();
            let fair = (max / owners.len().max(1)).max(1);
            if count(&next) >= fair {
                return;
            }
            // Pause the newest sequence of the owner furthest above its share.
            let Some((victim, _)) =
                counts.iter().filter(|(_, &n)| n > fair).max_by_key(|(o, &n)| (n, *o))
            else {
                return;
            };
            let Some(pos) = live.iter().rposition(|l| &l.owner == victim) else { return };
            let l = live.remove(pos);
            stats.preempted.fetch_add(1, Ordering::Relaxed);
            let owner = l.owner.clone();
            waiting.push_front(&owner, Waiting::Paused(Box::new(l)));
        }
        match waiting.pop(&next) {
            Some(Waiting::Paused(l)) => live.push(*l),
            Some(Waiting::New(job)) => {
                if let Some(l) = guarded(|| admitted(engine, cfg.draft.as_ref(), *job)) {
                    live.push(l);
                } else {
                    stats.panics.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => return,
        }
    }
}

fn run(engine: &Engine, cfg: &BatcherConfig, rx: &Receiver<Job>, stats: &BatcherStats) {
    let (model, tok) = (&engine.model, &engine.tokenizer);
    let mut live: Vec<Live> = Vec::new();
    let mut waiting = Queues::default();
    loop {
        if live.is_empty() && waiting.len == 0 {
            match rx.recv() {
                Ok(job) => {
                    stats.in_channel.fetch_sub(1, Ordering::Relaxed);
                    let owner = job.owner.clone();
                    waiting.push_back(&owner, Waiting::New(Box::new(job)));
                }
                Err(_) => return,
            }
        }
        while let Ok(job) = rx.try_recv() {
            stats.in_channel.fetch_sub(1, Ordering::Relaxed);
            let owner = job.owner.clone();
            waiting.push_back(&owner, Waiting::New(Box::new(job)));
        }
        waiting.drop_cancelled(stats);
        // Counted as dropped in `retire`, like a sequence whose sink found
        // its client gone in the middle of a pass.
        for l in live.iter_mut().filter(|l| l.seq.finish.is_none() && l.is_cancelled()) {
            l.seq.finish = Some(crate::FinishReason::Cancelled);
        }
        retire(&mut live, Vec::new(), stats);
        schedule(engine, cfg, &mut live, &mut waiting, stats);
        stats
            .queued
            .store(stats.in_channel.load(Ordering::Relaxed) + waiting.len, Ordering::Relaxed);
        stats.live.store(live.len(), Ordering::Relaxed);
        if live.is_empty() {
            continue;
        }
        let alone = live.len() == 1
            && waiting.len == 0
            && !live[0].seq.in_prefill()
            && live[0].spec.as_ref().is_some_and(Speculator::active);
        if alone {
            let failed = match guarded(|| speculate(engine, &mut live[0])) {
                Some(Ok(())) => Vec::new(),
                Some(Err(e)) => {
                    tracing::error!(error = %e, "a speculative step failed");
                    vec![(0, e)]
                }
                None => {
                    stats.panics.fetch_add(1, Ordering::Relaxed);
                    vec![(0, EngineError::Generation("internal error in generation".into()))]
                }
            };
            stats.passes.fetch_add(1, Ordering::Relaxed);
            retire(&mut live, failed, stats);
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
            // A sink that panics cancels its own request only.
            let out = guarded(|| {
                advance(model, tok, &mut seqs, engine.ubatch, lora, &mut |i, text| {
                    guarded(|| sinks[i](JobEvent::Text(text))).unwrap_or_else(|| {
                        stats.panics.fetch_add(1, Ordering::Relaxed);
                        false
                    })
                })
            });
            stats.passes.fetch_add(1, Ordering::Relaxed);
            tracing::trace!(seqs = idx.len(), secs = t.elapsed().as_secs_f64(), "pass");
            let why = match out {
                Some(Ok(_)) => continue,
                Some(Err(e)) => e.to_string(),
                None => {
                    stats.panics.fetch_add(1, Ordering::Relaxed);
                    "internal error in generation".to_string()
                }
            };
            // The pass failed as a whole: every sequence in it fails.
            tracing::error!(error = %why, "a generation pass failed");
            for &i in idx {
                failed.push((i, EngineError::Generation(why.clone())));
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
        if l.seq.finish == Some(crate::FinishReason::Cancelled) {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        let result = match err.or_else(|| l.seq.error.take()) {
            Some(e) => Err(e),
            None => Ok(l.seq.into_completion()),
        };
        guarded(|| (l.sink)(JobEvent::Done(result)));
    }
    stats.live.store(live.len(), Ordering::Relaxed);
}
