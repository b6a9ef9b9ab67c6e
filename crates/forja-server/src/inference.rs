//! OpenAI-compatible inference: `/v1/chat/completions`, `/v1/completions`
//! (plain JSON or server-sent events, with `logprobs`, `top_logprobs` and
//! `echo`), `/v1/models`, `/v1/embeddings`, and `/metrics` (serving's
//! series and the node's own, `node_metrics`). The model
//! named in a request is resolved per tenant by forja-serve; prompts are
//! tokenised and grammars compiled off the async runtime, and generation
//! runs in its batcher under admission control (429 with `Retry-After`
//! over a tenant's in-flight cap or a full queue). A client that
//! disconnects cancels its generation, queued or running; a request past
//! `--request-timeout-s` is cancelled and answered 504.

use crate::auth::TenantAuth;
use crate::infer_wire::{self, Format, GenBody, Prompt, Usage};
use crate::{logprobs, ApiError, AppState};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use forja_core::{ChatMessage, Role};
use forja_engine::{Completion, FinishReason, Grammar};
use forja_serve::dictionary::{Dictionary, StreamRewriter};
use forja_serve::{GenEvent, GenRequest, GenStream, ServeError, Serving, Target};
use forja_store::{CompletionRecord, Tenant};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The tenant a response was for (read by [`track`] for the metric label).
#[derive(Clone)]
struct TenantLabel(String);

/// Counts and times every inference request (route, status, tenant).
pub async fn track(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.uri().path().to_string();
    let m = &s.metrics;
    m.active.inc();
    let t = Instant::now();
    let resp = next.run(req).await;
    m.active.dec();
    let tenant = resp.extensions().get::<TenantLabel>().map(|t| t.0.clone()).unwrap_or_default();
    m.request(&route, resp.status().as_str(), &tenant);
    m.latency.with_label_values(&[&route]).observe(t.elapsed().as_secs_f64());
    resp
}

fn labelled(r: Result<Response, ApiError>, tenant: &Tenant) -> Response {
    let mut resp = r.unwrap_or_else(IntoResponse::into_response);
    resp.extensions_mut().insert(TenantLabel(tenant.name.clone()));
    resp
}

/// `GET /metrics`: Prometheus text format. Open unless a metrics token is
/// configured or series carry tenant names; then the token or an admin key.
pub async fn metrics(State(s): State<AppState>, req: Request) -> Response {
    let a = &s.metrics_access;
    if a.token.is_some() || a.tenant_labels {
        let (parts, _) = req.into_parts();
        let given = crate::auth::bearer(&parts);
        let by_token = a
            .token
            .as_deref()
            .zip(given.as_deref())
            .is_some_and(|(want, got)| forja_control::webhook::constant_eq(want, got));
        if !by_token {
            match crate::auth::key(&parts, &s).await {
                Ok(k) if k.role == forja_store::Role::Admin => {}
                Ok(_) => {
                    return ApiError::Forbidden(
                        "/metrics (use the metrics token or an admin key)".into(),
                    )
                    .into_response()
                }
                Err(e) => return e.into_response(),
            }
        }
    }
    if let Some(sv) = s.serving.get() {
        sv.refresh_gauges();
    }
    let node = s.node_metrics.clone();
    node.update_health(&s.health);
    node.update_curation(&s.control.curator.stats);
    match s.run(|c| Ok((c.store.node_stats()?, c.store.now()))).await {
        Ok((stats, now)) => node.update(&stats, now),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the node's statistics for /metrics");
            node.failed();
        }
    }
    let body = format!("{}{}", s.metrics.render(), node.render());
    ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

pub(crate) fn serving(s: &AppState) -> Result<Arc<Serving>, ApiError> {
    s.serving.get().cloned().ok_or(ApiError::NotReady)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Parses a body off the async runtime when it is large.
async fn parsed<T: Send + 'static>(
    body: axum::body::Bytes,
    f: impl FnOnce(&[u8]) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if body.len() < 64 << 10 {
        return f(&body);
    }
    tokio::task::spawn_blocking(move || f(&body))
        .await
        .map_err(|e| ApiError::Internal(format!("a parsing task failed: {e}")))?
}

/// `POST /v1/chat/completions`.
pub async fn chat(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    body: axum::body::Bytes,
) -> Response {
    let r = async {
        let cap = s.live.max_tokens_cap();
        let body = parsed(body, move |b| infer_wire::chat(b, cap)).await?;
        let sv = serving(&s)?;
        let target = sv.resolve(&t, &body.gen.model).await?;
        let max = body.gen.params.max_tokens;
        let (shown, citations) =
            match crate::rag::effective(body.rag, &t, s.knowledge.has_embedder()) {
                Some(rag) => {
                    let (m, c) =
                        crate::rag::augment(&s, &sv, &t, body.messages.clone(), rag, max).await?;
                    (m, Some(c))
                }
                None => (body.messages.clone(), None),
            };
        let mem = crate::memory::effective(body.memory, &t);
        let about = crate::memory::last_user(&body.messages).unwrap_or_default().to_string();
        let (shown, memory_facts) = if mem.k > 0 && !about.is_empty() {
            let (m, f) =
                crate::memory::recall(&s, &sv, &t, shown, about.clone(), mem.k, max).await?;
            (m, Some(f))
        } else {
            (shown, None)
        };
        let prompt = sv.chat_prompt(shown).await.map_err(|e| match e {
            ServeError::Engine(forja_engine::EngineError::NoChatTemplate) => ApiError::bad(
                "messages",
                "this model has no chat template; use /v1/completions with a raw prompt",
            ),
            e => e.into(),
        })?;
        let call = Call {
            id: format!("chatcmpl-{}", uuid()),
            chat: true,
            messages: body.messages,
            prompts: vec![prompt],
            texts: Vec::new(),
            citations,
            memory_facts,
            remember: (mem.remember && !about.is_empty()).then_some(about),
        };
        generate(&s, &sv, &t, target, body.gen, call).await
    }
    .await;
    labelled(r, &t)
}

/// `POST /v1/completions`.
pub async fn completions(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    body: axum::body::Bytes,
) -> Response {
    let r = async {
        let cap = s.live.max_tokens_cap();
        let body = parsed(body, move |b| infer_wire::completion(b, cap)).await?;
        let sv = serving(&s)?;
        let target = sv.resolve(&t, &body.gen.model).await?;
        let texts: Vec<String> = body
            .prompts
            .iter()
            .map(|p| match p {
                Prompt::Text(t) => t.clone(),
                Prompt::Tokens(_) => String::new(),
            })
            .collect();
        let encoded = sv.text_prompts(texts.clone()).await?;
        let (mut prompts, mut shown) = (Vec::new(), Vec::new());
        for ((p, enc), text) in body.prompts.iter().zip(encoded).zip(texts) {
            match p {
                Prompt::Text(_) => {
                    prompts.push(enc);
                    shown.push(text);
                }
                Prompt::Tokens(ids) => {
                    shown.push(ids.iter().map(|&i| sv.token_piece(i).0).collect());
                    prompts.push(ids.clone());
                }
            }
        }
        let messages = vec![ChatMessage { role: Role::User, content: shown[0].clone() }];
        let call = Call {
            id: format!("cmpl-{}", uuid()),
            chat: false,
            messages,
            prompts,
            texts: shown,
            citations: None,
            memory_facts: None,
            remember: None,
        };
        generate(&s, &sv, &t, target, body.gen, call).await
    }
    .await;
    labelled(r, &t)
}

fn uuid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub(crate) fn engine_err(e: forja_engine::EngineError) -> ApiError {
    ApiError::Serve(ServeError::Engine(e))
}

/// What kind of call is being answered.
struct Call {
    id: String,
    chat: bool,
    /// The conversation kept for feedback (a raw prompt is one user turn).
    messages: Vec<ChatMessage>,
    /// Prompt token ids, one per prompt.
    prompts: Vec<Vec<u32>>,
    /// Completions: each prompt's text (what `echo` shows).
    texts: Vec<String>,
    /// The passages retrieval put in the prompt (`None`: no retrieval).
    citations: Option<Value>,
    /// The remembered facts put in the prompt (`None`: no recall).
    memory_facts: Option<Value>,
    /// The user's message to extract facts from once answered.
    remember: Option<String>,
}

fn grammar(f: &Format) -> Option<Grammar> {
    match f {
        Format::Text => None,
        Format::JsonObject => Some(Grammar::JsonObject),
        Format::JsonSchema(s) => Some(Grammar::JsonSchema(s.clone())),
        Format::Regex(r) => Some(Grammar::Regex(r.clone())),
        Format::Lark(l) => Some(Grammar::Lark(l.clone())),
    }
}

/// Queues `n` choices per prompt and answers as JSON or a stream.
async fn generate(
    s: &AppState,
    sv: &Arc<Serving>,
    t: &Tenant,
    target: Target,
    gen: GenBody,
    call: Call,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let req = GenRequest {
        prompts: call.prompts.clone(),
        params: gen.params.clone(),
        n: gen.n,
        grammar: grammar(&gen.format),
    };
    // The tenant's entity dictionary rewrites free text (not grammar-bound
    // answers, which a rewrite could break).
    let dict = if gen.format == Format::Text {
        sv.dictionary(t).await?
    } else {
        Arc::new(Dictionary::empty())
    };
    let stream = sv.generate(t, &target, req).await?;
    if gen.format != Format::Text {
        sv.metrics.constrained.with_label_values(&[gen.format.kind()]).inc();
    }
    sv.metrics.prompt_tokens(&t.name, stream.prompt_tokens as u64);
    let run = Run {
        jobs: stream.choices,
        prompt_tokens: stream.prompt_tokens,
        stream,
        n: gen.n.max(1),
        started,
        deadline: tokio::time::Instant::now() + s.live.request_timeout(),
        timeout: s.live.request_timeout(),
        first: None,
        sv: sv.clone(),
        control: s.control.clone(),
        memory: s.memory.clone(),
        tenant: t.clone(),
        model: target.model,
        call,
        logprobs: gen.logprobs,
        created: now_secs(),
        dict,
    };
    if gen.stream {
        Ok(run.stream(gen.include_usage))
    } else {
        run.collect().await
    }
}

/// The choices of one request being generated.
struct Run {
    stream: GenStream,
    jobs: usize,
    n: usize,
    started: Instant,
    deadline: tokio::time::Instant,
    timeout: Duration,
    first: Option<Instant>,
    sv: Arc<Serving>,
    control: Arc<forja_control::Control>,
    memory: crate::memory::Extractor,
    tenant: Tenant,
    model: String,
    call: Call,
    logprobs: infer_wire::Logprobs,
    prompt_tokens: usize,
    created: u64,
    dict: Arc<Dictionary>,
}

fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "stop",
        // Cancelled only when the client is gone or the request timed out.
        FinishReason::Length | FinishReason::Cancelled => "length",
    }
}

impl Run {
    /// The next event, `Err` at the deadline.
    async fn next(&mut self) -> Result<Option<(usize, GenEvent)>, ApiError> {
        match tokio::time::timeout_at(self.deadline, self.stream.recv()).await {
            Ok(Some(m)) => {
                if matches!(m.1, GenEvent::Text(..)) {
                    self.first.get_or_insert_with(Instant::now);
                }
                Ok(Some(m))
            }
            Ok(None) => Ok(None),
            Err(_) => Err(ApiError::Timeout(self.timeout.as_secs())),
        }
    }

    /// Latency and token metrics; keeps choice 0 for feedback (scrubbed,
    /// off the runtime).
    async fn finished(&self, generated: usize, longest: usize, output: String) {
        let m = &self.sv.metrics;
        m.generated_tokens(&self.tenant.name, generated as u64);
        if let Some(first) = self.first {
            m.ttft.observe((first - self.started).as_secs_f64());
            if longest > 1 {
                m.per_token.observe(first.elapsed().as_secs_f64() / (longest - 1) as f64);
            }
        }
        let mut rec = CompletionRecord {
            id: self.call.id.clone(),
            tenant_id: self.tenant.id.clone(),
            model: self.model.clone(),
            messages: self.call.messages.clone(),
            output,
            created_at: 0,
        };
        let (control, tenant) = (self.control.clone(), self.tenant.clone());
        let kept = tokio::task::spawn_blocking(move || {
            control.scrub_completion(&tenant, &mut rec)?;
            control.store.record_completion(&rec).map_err(forja_control::ControlError::from)
        })
        .await;
        if let Ok(Err(e)) = kept {
            tracing::warn!(error = %e, "cannot keep the completion for feedback");
        }
        if let Some(text) = &self.call.remember {
            self.memory.submit(&self.control, &self.sv.metrics, &self.tenant, text, &self.call.id);
        }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.call.chat, chunk) {
            (true, false) => "chat.completion",
            (true, true) => "chat.completion.chunk",
            (false, _) => "text_completion",
        }
    }

    fn envelope(&self, chunk: bool, choices: Vec<Value>) -> Value {
        let mut v = json!({
            "id": self.call.id, "object": self.object(chunk), "created": self.created,
            "model": self.model, "system_fingerprint": infer_wire::fingerprint(),
            "choices": choices,
        });
        if let (false, Some(c)) = (chunk, &self.call.citations) {
            v["citations"] = c.clone();
        }
        if let (false, Some(f)) = (chunk, &self.call.memory_facts) {
            v["memory_facts"] = f.clone();
        }
        v
    }

    /// The `logprobs` of choice `i` (null when not asked for).
    fn logprobs_of(&self, i: usize, c: &Completion) -> Value {
        if self.logprobs.generated.is_none() {
            return Value::Null;
        }
        if self.call.chat {
            return logprobs::chat(&self.sv, &c.logprobs);
        }
        let p = i / self.n;
        let (ids, prompt_lp): (&[u32], &[_]) = if self.logprobs.echo {
            (&self.call.prompts[p], &c.prompt_logprobs)
        } else {
            (&[], &[])
        };
        logprobs::completion(&self.sv, prompt_lp, ids, &c.logprobs, 0)
    }

    /// The text of choice `i` (the prompt first, with `echo`).
    fn text_of(&self, i: usize, c: &Completion) -> String {
        if self.logprobs.echo && !self.call.chat {
            format!("{}{}", self.call.texts[i / self.n], c.text)
        } else {
            c.text.clone()
        }
    }

    /// Waits for every choice and answers one JSON object.
    async fn collect(mut self) -> Result<Response, ApiError> {
        let mut done: Vec<Option<Completion>> = vec![None; self.jobs];
        let mut left = self.jobs;
        while left > 0 {
            match self.next().await? {
                Some((_, GenEvent::Text(..))) => {}
                Some((i, GenEvent::Done(r))) => {
                    done[i] = Some(r.map_err(engine_err)?);
                    left -= 1;
                }
                None => {
                    return Err(ApiError::Internal("the generation thread stopped".into()));
                }
            }
        }
        let mut done: Vec<Completion> = done.into_iter().flatten().collect();
        for c in &mut done {
            if let std::borrow::Cow::Owned(text) = self.dict.apply(&c.text) {
                c.text = text;
            }
        }
        let choices = done
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let reason = finish_reason(c.finish);
                let lp = self.logprobs_of(i, c);
                if self.call.chat {
                    json!({"index": i, "message": {"role": "assistant", "content": c.text},
                           "finish_reason": reason, "logprobs": lp})
                } else {
                    json!({"index": i, "text": self.text_of(i, c), "finish_reason": reason,
                           "logprobs": lp})
                }
            })
            .collect();
        let usage = Usage {
            prompt: self.prompt_tokens,
            completion: done.iter().map(|c| c.tokens.len()).sum(),
        };
        let mut body = self.envelope(false, choices);
        body["usage"] = usage.json();
        let longest = done.iter().map(|c| c.tokens.len()).max().unwrap_or(0);
        self.finished(usage.completion, longest, done[0].text.clone()).await;
        Ok(Json(body).into_response())
    }

    fn chunk(&self, i: usize, text: Option<&str>, reason: Option<&str>, lp: Value) -> Value {
        let choice = if self.call.chat {
            let delta = match text {
                Some(t) => json!({"content": t}),
                None => json!({}),
            };
            json!({"index": i, "delta": delta, "finish_reason": reason, "logprobs": lp})
        } else {
            json!({"index": i, "text": text.unwrap_or(""), "finish_reason": reason, "logprobs": lp})
        };
        self.envelope(true, vec![choice])
    }

    /// Answers with server-sent events: one chunk per piece of text, a
    /// final chunk per choice with its finish reason (and its
    /// log-probabilities, when asked), optional usage, then `[DONE]`.
    fn stream(mut self, include_usage: bool) -> Response {
        let (tx, rx) = mpsc::channel::<SseEvent>(64);
        tokio::spawn(async move {
            let send = |v: Value| SseEvent::default().data(v.to_string());
            if self.call.chat {
                for i in 0..self.jobs {
                    let mut c = self.chunk(i, Some(""), None, Value::Null);
                    c["choices"][0]["delta"]["role"] = json!("assistant");
                    // The first chunk says what the answer was given.
                    if let (0, Some(cites)) = (i, &self.call.citations) {
                        c["citations"] = cites.clone();
                    }
                    if let (0, Some(f)) = (i, &self.call.memory_facts) {
                        c["memory_facts"] = f.clone();
                    }
                    if tx.send(send(c)).await.is_err() {
                        return;
                    }
                }
            } else if self.logprobs.echo {
                for i in 0..self.jobs {
                    let text = self.call.texts[i / self.n].clone();
                    if tx.send(send(self.chunk(i, Some(&text), None, Value::Null))).await.is_err() {
                        return;
                    }
                }
            }
            let (mut left, mut usage) =
                (self.jobs, Usage { prompt: self.prompt_tokens, completion: 0 });
            let (mut output, mut longest) = (String::new(), 0);
            let mut rewriters: Vec<StreamRewriter> =
                (0..self.jobs).map(|_| StreamRewriter::new(self.dict.clone())).collect();
            while left > 0 {
                let ev = match self.next().await {
                    Ok(Some((i, GenEvent::Text(text)))) => {
                        let text = rewriters[i].push(&text);
                        if text.is_empty() {
                            // Nothing to send yet (held back, or a token
                            // that completes no character): still notice
                            // a client that left.
                            if tx.is_closed() {
                                return;
                            }
                            continue;
                        }
                        if i == 0 {
                            output.push_str(&text);
                        }
                        send(self.chunk(i, Some(&text), None, Value::Null))
                    }
                    Ok(Some((i, GenEvent::Done(Ok(c))))) => {
                        let rest = rewriters[i].finish();
                        if !rest.is_empty() {
                            if i == 0 {
                                output.push_str(&rest);
                            }
                            if tx
                                .send(send(self.chunk(i, Some(&rest), None, Value::Null)))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        left -= 1;
                        usage.completion += c.tokens.len();
                        longest = longest.max(c.tokens.len());
                        let lp = self.logprobs_of(i, &c);
                        send(self.chunk(i, None, Some(finish_reason(c.finish)), lp))
                    }
                    Ok(Some((_, GenEvent::Done(Err(e))))) => {
                        left = 0;
                        error_event(engine_err(e))
                    }
                    Ok(None) => return,
                    Err(e) => {
                        left = 0;
                        error_event(e)
                    }
                };
                // A closed channel: the client left; dropping the stream cancels.
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
            if include_usage {
                let mut u = self.envelope(true, Vec::new());
                u["usage"] = usage.json();
                let _ = tx.send(send(u)).await;
            }
            let _ = tx.send(SseEvent::default().data("[DONE]")).await;
            self.finished(usage.completion, longest, output).await;
        });
        let events = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|e| (Ok::<_, std::convert::Infallible>(e), rx))
        });
        Sse::new(events).into_response()
    }
}

fn error_event(e: ApiError) -> SseEvent {
    let (status, body) = e.body();
    tracing::warn!(status = status.as_u16(), "stream ended with an error");
    SseEvent::default().data(body.to_string())
}

/// `GET /v1/models`: the base model's names, then the tenant's versions
/// (`parent` = the base) and aliases (`parent` = the version). No
/// filesystem path is ever shown.
pub async fn models(State(s): State<AppState>, TenantAuth(t, _): TenantAuth) -> Response {
    let r = async {
        let sv = serving(&s)?;
        let (versions, aliases) = sv.models(&t).await?;
        let base = sv.base_name().to_string();
        let mut data: Vec<Value> = sv
            .base_names()
            .iter()
            .map(|n| json!({"id": n, "object": "model", "created": 0, "owned_by": "forja", "root": base, "parent": null}))
            .collect();
        for v in &versions {
            data.push(json!({
                "id": v.id, "object": "model", "created": v.created_at, "owned_by": t.name,
                "root": v.lineage.base_model, "parent": v.lineage.base_model,
                "status": v.lineage.status.as_str(),
            }));
        }
        for a in &aliases {
            data.push(json!({
                "id": format!("{base}@{}", a.name), "object": "model", "created": a.updated_at,
                "owned_by": t.name, "root": base, "parent": a.version_id,
                "serving": sv.serving(&t.id, &a.name),
            }));
        }
        if let Some(e) = &s.embedder {
            for n in &e.names {
                data.push(json!({"id": n, "object": "model", "created": 0, "owned_by": "forja",
                    "root": e.names[0], "parent": null}));
            }
        }
        Ok(Json(json!({"object": "list", "data": data})).into_response())
    }
    .await;
    labelled(r, &t)
}

/// `POST /v1/embeddings` (the sentence embedder, all-MiniLM-L6-v2 by
/// default, under its Hugging Face id too); `encoding_format` `float` or
/// `base64` (little-endian f32).
pub async fn embeddings(
    State(s): State<AppState>,
    TenantAuth(t, _): TenantAuth,
    body: axum::body::Bytes,
) -> Response {
    let r = async {
        let Some(emb) = s.embedder.clone() else {
            return Err(ApiError::bad(
                "model",
                "this server has no embedding model (start it with --embedding-model)",
            ));
        };
        let v: Value = parsed(body, |b| {
            serde_json::from_slice(b).map_err(|e| {
                ApiError::bad(
                    "body",
                    format!("invalid JSON: {}", forja_control::clip(&e.to_string(), 200)),
                )
            })
        })
        .await?;
        let model = v.get("model").and_then(Value::as_str).unwrap_or_default().to_string();
        if !emb.names.iter().any(|n| n.eq_ignore_ascii_case(&model)) {
            return Err(ApiError::Serve(ServeError::NotFound(format!(
                "embedding model `{}` does not exist; this server embeds with {}",
                forja_control::clip(&model, 80),
                emb.names.join(", ")
            ))));
        }
        let inputs: Vec<String> = match v.get("input") {
            Some(Value::String(x)) => vec![x.clone()],
            Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => {
                a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()
            }
            Some(Value::Array(a)) if !a.is_empty() => {
                return Err(ApiError::bad("input", "token-id inputs are not supported; send text"))
            }
            _ => {
                return Err(ApiError::bad(
                    "input",
                    "`input` must be a string or a non-empty list of strings",
                ))
            }
        };
        if inputs.len() > 2048 {
            return Err(ApiError::bad("input", "at most 2048 inputs per request"));
        }
        let base64 = match v.get("encoding_format").and_then(Value::as_str) {
            None | Some("float") => false,
            Some("base64") => true,
            Some(f) => {
                return Err(ApiError::bad(
                    "encoding_format",
                    format!("`{}` is not float or base64", forja_control::clip(f, 40)),
                ))
            }
        };
        if v.get("dimensions").is_some_and(|d| !d.is_null()) {
            return Err(ApiError::bad("dimensions", "`dimensions` is not supported by this model"));
        }
        let e = emb.embedder.clone();
        let (vectors, tokens) = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
            let tokens: usize = refs.iter().map(|x| e.count_tokens(x).unwrap_or(0)).sum();
            e.embed(&refs).map(|v| (v, tokens))
        })
        .await
        .map_err(|e| ApiError::Internal(format!("the embedding task failed: {e}")))?
        .map_err(engine_err)?;
        let data: Vec<Value> = vectors
            .iter()
            .enumerate()
            .map(|(i, vec)| {
                let embedding = if base64 {
                    use base64::Engine as _;
                    let bytes: Vec<u8> = vec.iter().flat_map(|f| f.to_le_bytes()).collect();
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    json!(vec)
                };
                json!({"object": "embedding", "index": i, "embedding": embedding})
            })
            .collect();
        Ok(Json(json!({
            "object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }))
        .into_response())
    }
    .await;
    labelled(r, &t)
}
