//! OpenAI-compatible inference: `/v1/chat/completions`, `/v1/completions`
//! (plain JSON or server-sent events), `/v1/models`, `/v1/embeddings`, and
//! `/metrics`. The model named in a request is resolved per tenant by
//! forja-serve; generation runs in its batcher. A client that disconnects
//! cancels its generation (the next token finds nobody listening); a
//! request past `--request-timeout-s` is cancelled and answered 504.

use crate::auth::TenantAuth;
use crate::infer_wire::{self, Format, GenBody, Usage};
use crate::{ApiError, AppState};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use forja_core::{ChatMessage, Role};
use forja_engine::{Completion, EngineError, FinishReason, Job, JobEvent, Request as GenRequest};
use forja_serve::{ServeError, Serving, Target};
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
    m.requests.with_label_values(&[&route, resp.status().as_str(), &tenant]).inc();
    m.latency.with_label_values(&[&route]).observe(t.elapsed().as_secs_f64());
    resp
}

fn labelled(r: Result<Response, ApiError>, tenant: &Tenant) -> Response {
    let mut resp = r.unwrap_or_else(IntoResponse::into_response);
    resp.extensions_mut().insert(TenantLabel(tenant.name.clone()));
    resp
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(s): State<AppState>) -> Response {
    if let Some(sv) = s.serving.get() {
        sv.refresh_gauges();
    }
    ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render())
        .into_response()
}

fn serving(s: &AppState) -> Result<Arc<Serving>, ApiError> {
    s.serving.get().cloned().ok_or(ApiError::NotReady)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `POST /v1/chat/completions`.
pub async fn chat(
    State(s): State<AppState>,
    TenantAuth(t): TenantAuth,
    body: axum::body::Bytes,
) -> Response {
    let r = async {
        let body = infer_wire::chat(&body, s.limits.max_tokens_cap)?;
        let sv = serving(&s)?;
        let target = sv.resolve(&t, &body.gen.model).await?;
        let text = sv.engine().render_chat(&body.messages, true).map_err(|e| match e {
            EngineError::NoChatTemplate => ApiError::bad(
                "messages",
                "this model has no chat template; use /v1/completions with a raw prompt",
            ),
            e => ApiError::bad("messages", e.to_string()),
        })?;
        let prompt = sv.engine().tokenizer().encode(&text, false).map_err(engine_err)?;
        let call = Call { id: format!("chatcmpl-{}", uuid()), chat: true, messages: body.messages };
        generate(&s, &sv, &t, target, vec![prompt], body.gen, call).await
    }
    .await;
    labelled(r, &t)
}

/// `POST /v1/completions`.
pub async fn completions(
    State(s): State<AppState>,
    TenantAuth(t): TenantAuth,
    body: axum::body::Bytes,
) -> Response {
    let r = async {
        let body = infer_wire::completion(&body, s.limits.max_tokens_cap)?;
        let sv = serving(&s)?;
        let target = sv.resolve(&t, &body.gen.model).await?;
        let tok = sv.engine().tokenizer();
        let prompts = body
            .prompts
            .iter()
            .map(|p| tok.encode(p, true).map_err(engine_err))
            .collect::<Result<Vec<_>, _>>()?;
        let messages = vec![ChatMessage { role: Role::User, content: body.prompts[0].clone() }];
        let call = Call { id: format!("cmpl-{}", uuid()), chat: false, messages };
        generate(&s, &sv, &t, target, prompts, body.gen, call).await
    }
    .await;
    labelled(r, &t)
}

fn uuid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn engine_err(e: EngineError) -> ApiError {
    ApiError::Serve(ServeError::Engine(e))
}

/// What kind of call is being answered.
struct Call {
    id: String,
    chat: bool,
    /// The conversation kept for feedback (a raw prompt is one user turn).
    messages: Vec<ChatMessage>,
}

enum Msg {
    Text(usize, String),
    Done(usize, forja_engine::Result<Completion>),
}

/// Queues `n` choices per prompt and answers as JSON or a stream.
async fn generate(
    s: &AppState,
    sv: &Arc<Serving>,
    t: &Tenant,
    target: Target,
    prompts: Vec<Vec<u32>>,
    gen: GenBody,
    call: Call,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let (tx, rx) = mpsc::unbounded_channel();
    let n = gen.n;
    let prompt_tokens: usize = prompts.iter().map(Vec::len).sum();
    let jobs = prompts.len() * n;
    for (p, prompt) in prompts.into_iter().enumerate() {
        for c in 0..n {
            let idx = p * n + c;
            let mut params = gen.params.clone();
            params.sampling.seed = params.sampling.seed.map(|seed| seed.wrapping_add(c as u64));
            let filter = crate::grammar::filter(sv, &gen.format)?;
            let tx = tx.clone();
            let sink: forja_engine::batcher::Sink = Box::new(move |ev| match ev {
                JobEvent::Text(text) => tx.send(Msg::Text(idx, text.to_string())).is_ok(),
                JobEvent::Done(r) => tx.send(Msg::Done(idx, r)).is_ok(),
            });
            let job = Job {
                request: GenRequest { prompt: prompt.clone(), params },
                adapter: target.adapter.clone(),
                filter,
                sink,
            };
            // Dropping `rx` on an error here cancels the choices already queued.
            sv.submit(job)?;
        }
    }
    drop(tx);
    if gen.format != Format::Text {
        sv.metrics.constrained.with_label_values(&[gen.format.kind()]).inc();
    }
    sv.metrics.prompt_tokens.with_label_values(&[&t.name]).inc_by(prompt_tokens as u64);
    let run = Run {
        rx,
        jobs,
        started,
        deadline: tokio::time::Instant::now() + s.limits.request_timeout,
        timeout: s.limits.request_timeout,
        first: None,
        sv: sv.clone(),
        tenant: t.clone(),
        model: target.model,
        call,
        prompt_tokens,
        created: now_secs(),
    };
    if gen.stream {
        Ok(run.stream(gen.include_usage))
    } else {
        run.collect().await
    }
}

/// The choices of one request being generated.
struct Run {
    rx: mpsc::UnboundedReceiver<Msg>,
    jobs: usize,
    started: Instant,
    deadline: tokio::time::Instant,
    timeout: Duration,
    first: Option<Instant>,
    sv: Arc<Serving>,
    tenant: Tenant,
    model: String,
    call: Call,
    prompt_tokens: usize,
    created: u64,
}

fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "stop",
        // Cancelled only when the client is gone or the request timed out.
        FinishReason::Length | FinishReason::Cancelled => "length",
    }
}

impl Run {
    /// The next message, `Err` at the deadline.
    async fn next(&mut self) -> Result<Option<Msg>, ApiError> {
        match tokio::time::timeout_at(self.deadline, self.rx.recv()).await {
            Ok(Some(m)) => {
                if matches!(m, Msg::Text(..)) {
                    self.first.get_or_insert_with(Instant::now);
                }
                Ok(Some(m))
            }
            Ok(None) => Ok(None),
            Err(_) => Err(ApiError::Timeout(self.timeout.as_secs())),
        }
    }

    /// Latency and token metrics; keeps choice 0 for feedback.
    async fn finished(&self, generated: usize, longest: usize, output: String) {
        let m = &self.sv.metrics;
        m.generated_tokens.with_label_values(&[&self.tenant.name]).inc_by(generated as u64);
        if let Some(first) = self.first {
            m.ttft.observe((first - self.started).as_secs_f64());
            if longest > 1 {
                m.per_token.observe(first.elapsed().as_secs_f64() / (longest - 1) as f64);
            }
        }
        let rec = CompletionRecord {
            id: self.call.id.clone(),
            tenant_id: self.tenant.id.clone(),
            model: self.model.clone(),
            messages: self.call.messages.clone(),
            output,
            created_at: 0,
        };
        let store = self.sv.control().store.clone();
        let kept = tokio::task::spawn_blocking(move || store.record_completion(&rec)).await;
        if let Ok(Err(e)) = kept {
            tracing::warn!(error = %e, "cannot keep the completion for feedback");
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
        json!({
            "id": self.call.id, "object": self.object(chunk), "created": self.created,
            "model": self.model, "system_fingerprint": infer_wire::fingerprint(),
            "choices": choices,
        })
    }

    /// Waits for every choice and answers one JSON object.
    async fn collect(mut self) -> Result<Response, ApiError> {
        let mut done: Vec<Option<Completion>> = vec![None; self.jobs];
        let mut left = self.jobs;
        while left > 0 {
            match self.next().await? {
                Some(Msg::Text(..)) => {}
                Some(Msg::Done(i, r)) => {
                    done[i] = Some(r.map_err(engine_err)?);
                    left -= 1;
                }
                None => {
                    return Err(ApiError::Serve(ServeError::Unavailable(
                        "the generation thread stopped".into(),
                    )))
                }
            }
        }
        let done: Vec<Completion> = done.into_iter().flatten().collect();
        let choices = done
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let reason = finish_reason(c.finish);
                if self.call.chat {
                    json!({"index": i, "message": {"role": "assistant", "content": c.text},
                           "finish_reason": reason, "logprobs": null})
                } else {
                    json!({"index": i, "text": c.text, "finish_reason": reason, "logprobs": null})
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

    fn chunk(&self, i: usize, text: Option<&str>, reason: Option<&str>) -> Value {
        let choice = if self.call.chat {
            let delta = match text {
                Some(t) => json!({"content": t}),
                None => json!({}),
            };
            json!({"index": i, "delta": delta, "finish_reason": reason, "logprobs": null})
        } else {
            json!({"index": i, "text": text.unwrap_or(""), "finish_reason": reason, "logprobs": null})
        };
        self.envelope(true, vec![choice])
    }

    /// Answers with server-sent events: one chunk per piece of text, a
    /// final chunk per choice with its finish reason, optional usage, then
    /// `[DONE]`.
    fn stream(mut self, include_usage: bool) -> Response {
        let (tx, rx) = mpsc::channel::<SseEvent>(64);
        tokio::spawn(async move {
            let send = |v: Value| SseEvent::default().data(v.to_string());
            if self.call.chat {
                for i in 0..self.jobs {
                    let mut c = self.chunk(i, Some(""), None);
                    c["choices"][0]["delta"]["role"] = json!("assistant");
                    if tx.send(send(c)).await.is_err() {
                        return;
                    }
                }
            }
            let (mut left, mut usage) =
                (self.jobs, Usage { prompt: self.prompt_tokens, completion: 0 });
            let (mut output, mut longest) = (String::new(), 0);
            while left > 0 {
                let ev = match self.next().await {
                    Ok(Some(Msg::Text(i, text))) => {
                        if i == 0 {
                            output.push_str(&text);
                        }
                        send(self.chunk(i, Some(&text), None))
                    }
                    Ok(Some(Msg::Done(i, Ok(c)))) => {
                        left -= 1;
                        usage.completion += c.tokens.len();
                        longest = longest.max(c.tokens.len());
                        send(self.chunk(i, None, Some(finish_reason(c.finish))))
                    }
                    Ok(Some(Msg::Done(_, Err(e)))) => {
                        left = 0;
                        error_event(engine_err(e))
                    }
                    Ok(None) => return,
                    Err(e) => {
                        left = 0;
                        error_event(e)
                    }
                };
                // A closed channel: the client left; dropping `self.rx` cancels.
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
/// (`parent` = the base) and aliases (`parent` = the version).
pub async fn models(State(s): State<AppState>, TenantAuth(t): TenantAuth) -> Response {
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
        Ok(Json(json!({"object": "list", "data": data})).into_response())
    }
    .await;
    labelled(r, &t)
}

/// `POST /v1/embeddings` (the sentence embedder, all-MiniLM-L6-v2 by
/// default); `encoding_format` `float` or `base64` (little-endian f32).
pub async fn embeddings(
    State(s): State<AppState>,
    TenantAuth(t): TenantAuth,
    body: axum::body::Bytes,
) -> Response {
    let r = async {
        let Some(emb) = s.embedder.clone() else {
            return Err(ApiError::bad(
                "model",
                "this server has no embedding model (start it with --embedding-model)",
            ));
        };
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad("body", format!("invalid JSON: {e}")))?;
        let model = v.get("model").and_then(Value::as_str).unwrap_or_default().to_string();
        if !emb.names.contains(&model) {
            return Err(ApiError::Serve(ServeError::NotFound(format!(
                "embedding model `{model}` does not exist; this server embeds with {}",
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
                    format!("`{f}` is not float or base64"),
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
        .map_err(|e| ApiError::Serve(ServeError::Unavailable(e.to_string())))?
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
