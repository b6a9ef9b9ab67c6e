//! Generation for the API: prompts tokenised and grammars compiled off the
//! async runtime, admission control, and the batcher jobs of one request.
//!
//! - **Admission.** Every request asks for `prompts × n` sequences. A
//!   tenant may have at most [`Admission::per_tenant`] in flight and the
//!   node [`Admission::max_queue`] in all; past either the request is
//!   refused at once with [`ServeError::Busy`] (a 429 with `Retry-After`),
//!   never queued without bound. Slots are released when each sequence's
//!   result is delivered (or dropped).
//! - **Grammars.** A schema or grammar bigger than [`GrammarLimits`] is
//!   refused before compiling. Compilation runs on its own thread with a
//!   large stack (deeply nested schemas recurse in llguidance), at most
//!   [`GrammarLimits::max_concurrent`] at a time; compiled grammars are
//!   cached by their text.
//! - **Fairness and cancellation.** Each job's owner is the tenant (the
//!   batcher shares slots between owners), and its probe reports the
//!   client gone as soon as the request's stream is dropped.

use crate::{lock, Result, ServeError, Serving, Target};
use forja_core::{ChatMessage, GenerationParams};
use forja_engine::{Completion, Constraint, ConstraintCompiler, Grammar, Job, JobEvent, Request};
use forja_store::Tenant;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;

/// Caps on sequences in flight.
#[derive(Debug, Clone)]
pub struct Admission {
    /// Sequences (prompts × choices) one tenant may have queued or running.
    pub per_tenant: usize,
    /// Sequences the node accepts in all before refusing.
    pub max_queue: usize,
}

impl Default for Admission {
    fn default() -> Self {
        Admission { per_tenant: 32, max_queue: 256 }
    }
}

/// Caps on `response_format` grammars.
#[derive(Debug, Clone)]
pub struct GrammarLimits {
    /// Largest schema (as JSON), regex or Lark grammar, bytes.
    pub max_bytes: usize,
    /// Deepest nesting of a JSON schema.
    pub max_depth: usize,
    /// Compilations running at once.
    pub max_concurrent: usize,
    /// Stack of a compiling thread, bytes.
    pub stack_bytes: usize,
}

impl Default for GrammarLimits {
    fn default() -> Self {
        GrammarLimits {
            max_bytes: 64 << 10,
            max_depth: 32,
            max_concurrent: 2,
            stack_bytes: 256 << 20,
        }
    }
}

/// Sequences in flight per tenant and in all.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    by_tenant: Mutex<HashMap<String, usize>>,
    total: AtomicUsize,
}

/// One admitted sequence of a tenant; released when dropped.
struct Slot {
    inflight: Arc<InFlight>,
    tenant: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let f = &self.inflight;
        f.total.fetch_sub(1, Ordering::SeqCst);
        let mut m = lock(&f.by_tenant);
        if let Some(n) = m.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.tenant);
            }
        }
    }
}

/// One generation request: prompts (token ids), parameters, choices per
/// prompt, and an optional grammar.
#[derive(Debug, Clone)]
pub struct GenRequest {
    /// Prompt token ids.
    pub prompts: Vec<Vec<u32>>,
    /// Limits and sampling (the seed of choice `c` is `seed + c`).
    pub params: GenerationParams,
    /// Choices per prompt.
    pub n: usize,
    /// The grammar every choice follows.
    pub grammar: Option<Grammar>,
}

/// What a choice produced.
#[derive(Debug)]
pub enum GenEvent {
    /// More text.
    Text(String),
    /// Its end.
    Done(forja_engine::Result<Completion>),
}

/// The choices of one request as they are generated. Dropping it cancels
/// every choice still queued or running.
#[derive(Debug)]
pub struct GenStream {
    rx: mpsc::UnboundedReceiver<(usize, GenEvent)>,
    /// Choices (prompts × n), indexed `prompt * n + choice`.
    pub choices: usize,
    /// Prompt tokens over every prompt (once per prompt).
    pub prompt_tokens: usize,
}

impl GenStream {
    /// The next event of any choice; `None` once all are done (or the
    /// generation thread stopped).
    pub async fn recv(&mut self) -> Option<(usize, GenEvent)> {
        self.rx.recv().await
    }
}

/// Depth of a JSON value (a scalar is 1).
fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 1,
    }
}

impl Serving {
    /// Tokenises a chat (rendered with the model's template), off the async
    /// runtime.
    pub async fn chat_prompt(&self, messages: Vec<ChatMessage>) -> Result<Vec<u32>> {
        let engine = self.engine.clone();
        blocking(move || {
            let text = engine.render_chat(&messages, true)?;
            Ok(engine.tokenizer().encode(&text, false)?)
        })
        .await
    }

    /// Tokenises raw prompts (BOS added when the model wants one), off the
    /// async runtime.
    pub async fn text_prompts(&self, texts: Vec<String>) -> Result<Vec<Vec<u32>>> {
        let engine = self.engine.clone();
        blocking(move || texts.iter().map(|t| Ok(engine.tokenizer().encode(t, true)?)).collect())
            .await
    }

    /// The bytes a token stands for, and its text (lossy UTF-8): what
    /// log-probability reports show.
    pub fn token_piece(&self, id: u32) -> (String, Vec<u8>) {
        let pieces = self.pieces.get_or_init(|| {
            forja_engine::constraint::vocab_bytes(self.engine.tokenizer()).unwrap_or_default()
        });
        let bytes = match pieces.get(id as usize) {
            Some(b) if !b.is_empty() => b.clone(),
            _ => self.engine.tokenizer().token(id).unwrap_or_default().into_bytes(),
        };
        (String::from_utf8_lossy(&bytes).into_owned(), bytes)
    }

    /// Checks a grammar's size before any work (a 400 naming the limit).
    pub fn check_grammar(&self, g: &Grammar) -> Result<()> {
        let lim = &self.cfg.grammar;
        let (bytes, deep) = match g {
            Grammar::JsonObject => (0, 0),
            Grammar::JsonSchema(s) => (s.to_string().len(), depth(s)),
            Grammar::Regex(r) => (r.len(), 0),
            Grammar::Lark(l) => (l.len(), 0),
        };
        let refuse = |reason: String| Err(forja_engine::EngineError::Grammar { reason }.into());
        if bytes > lim.max_bytes {
            return refuse(format!(
                "the grammar is {bytes} bytes; this server compiles at most {} (--max-grammar-kb)",
                lim.max_bytes
            ));
        }
        if deep > lim.max_depth {
            return refuse(format!(
                "the JSON schema nests {deep} levels deep; at most {} are allowed",
                lim.max_depth
            ));
        }
        Ok(())
    }

    /// A grammar compiled for this model's tokenizer: from the cache, or
    /// compiled on a large-stack thread (a bounded number at once).
    pub async fn constraint(self: &Arc<Self>, g: &Grammar) -> Result<Constraint> {
        self.check_grammar(g)?;
        let key = format!("{g:?}");
        if let Some(c) = lock(&self.grammars).get(&key) {
            return Ok(c.clone());
        }
        let _permit = self
            .compiling
            .acquire()
            .await
            .map_err(|_| ServeError::Unavailable("grammar compilation is shut down".into()))?;
        if let Some(c) = lock(&self.grammars).get(&key) {
            return Ok(c.clone());
        }
        let (me, g2) = (self.clone(), g.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<Constraint>>();
        let started = Instant::now();
        std::thread::Builder::new()
            .name("forja-grammar".into())
            .stack_size(self.cfg.grammar.stack_bytes)
            .spawn(move || {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let compiler = me.compiler.get_or_init(|| {
                        ConstraintCompiler::new(me.engine.tokenizer()).map_err(|e| e.to_string())
                    });
                    let compiler = compiler.as_ref().map_err(|e| {
                        ServeError::Invalid(format!("constrained decoding is unavailable: {e}"))
                    })?;
                    Ok(compiler.compile(&g2)?)
                }))
                .unwrap_or_else(|_| {
                    Err(forja_engine::EngineError::Grammar {
                        reason: "the grammar could not be compiled".into(),
                    }
                    .into())
                });
                let _ = tx.send(r);
            })
            .map_err(|e| ServeError::Unavailable(format!("cannot start a grammar thread: {e}")))?;
        let c = rx
            .await
            .map_err(|_| ServeError::Unavailable("the grammar thread stopped".into()))??;
        self.metrics.grammar_compile.observe(started.elapsed().as_secs_f64());
        let mut cache = lock(&self.grammars);
        if cache.len() >= 64 {
            cache.clear();
        }
        cache.insert(key, c.clone());
        Ok(c)
    }

    /// Reserves `n` sequences for `tenant`, or refuses.
    fn admit(&self, tenant: &Tenant, n: usize) -> Result<Vec<Slot>> {
        let lim = &self.cfg.admission;
        let f = &self.inflight;
        let mut m = lock(&f.by_tenant);
        let mine = m.get(&tenant.id).copied().unwrap_or(0);
        if n > lim.per_tenant {
            return Err(forja_engine::EngineError::Params(forja_core::CoreError::InvalidParam {
                name: "n",
                reason: format!(
                    "asks for {n} sequences (prompts × n); this server allows {} per tenant",
                    lim.per_tenant
                ),
            })
            .into());
        }
        if mine + n > lim.per_tenant {
            self.metrics.rejected.with_label_values(&["tenant_in_flight"]).inc();
            return Err(ServeError::Busy {
                reason: format!(
                    "this tenant already has {mine} sequences in flight (limit {}); retry when some finish",
                    lim.per_tenant
                ),
                retry_after_s: 1,
            });
        }
        if f.total.load(Ordering::SeqCst) + n > lim.max_queue {
            self.metrics.rejected.with_label_values(&["queue_full"]).inc();
            return Err(ServeError::Busy {
                reason: "the server's generation queue is full; retry shortly".into(),
                retry_after_s: 2,
            });
        }
        *m.entry(tenant.id.clone()).or_insert(0) += n;
        f.total.fetch_add(n, Ordering::SeqCst);
        Ok((0..n).map(|_| Slot { inflight: f.clone(), tenant: tenant.id.clone() }).collect())
    }

    /// Queues every choice of `req` for `tenant` with `target`'s weights.
    /// Refused at once ([`ServeError::Busy`]) over the admission caps.
    pub async fn generate(
        self: &Arc<Self>,
        tenant: &Tenant,
        target: &Target,
        req: GenRequest,
    ) -> Result<GenStream> {
        let n = req.n.max(1);
        let choices = req.prompts.len() * n;
        let constraint = match &req.grammar {
            Some(g) => Some(self.constraint(g).await?),
            None => None,
        };
        let mut slots = self.admit(tenant, choices)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let prompt_tokens = req.prompts.iter().map(Vec::len).sum();
        for (p, prompt) in req.prompts.into_iter().enumerate() {
            for c in 0..n {
                let idx = p * n + c;
                let mut params = req.params.clone();
                params.sampling.seed = params.sampling.seed.map(|s| s.wrapping_add(c as u64));
                let (tx, probe) = (tx.clone(), tx.clone());
                let slot = slots.pop();
                let sink: forja_engine::batcher::Sink = Box::new(move |ev| {
                    let _held = &slot;
                    match ev {
                        JobEvent::Text(t) => tx.send((idx, GenEvent::Text(t.to_string()))).is_ok(),
                        JobEvent::Done(r) => tx.send((idx, GenEvent::Done(r))).is_ok(),
                    }
                });
                let mut job =
                    Job::new(Request { prompt: prompt.clone(), params }, tenant.id.clone(), sink);
                job.adapter = target.adapter.clone();
                job.filter =
                    constraint.clone().map(|c| Box::new(c) as Box<dyn forja_engine::TokenFilter>);
                job.cancelled = Some(Box::new(move || probe.is_closed()));
                // On an error, dropping `rx` cancels the choices already queued.
                self.submit(job)?;
            }
        }
        Ok(GenStream { rx, choices, prompt_tokens })
    }
}

/// Runs CPU work (tokenising, rendering) on a blocking thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServeError::Unavailable(format!("a serving task failed: {e}")))?
}
