//! OpenAI inference wire formats: chat completion and completion request
//! bodies read field by field (so an error names the field), the
//! `response_format` grammars (plus forja's `regex` and `lark`), and the
//! response and stream chunk objects.

use crate::ApiError;
use forja_core::{ChatMessage, GenerationParams, Role, SamplingParams};
use serde_json::{json, Map, Value};

/// A grammar the output must follow.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// A JSON value valid against the schema.
    JsonSchema(Value),
    /// A regular expression (forja extension).
    Regex(String),
    /// A Lark grammar (forja extension, llguidance's dialect).
    Lark(String),
}

impl Format {
    /// The metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::JsonObject => "json_object",
            Format::JsonSchema(_) => "json_schema",
            Format::Regex(_) => "regex",
            Format::Lark(_) => "lark",
        }
    }
}

/// What log-probabilities a request wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Logprobs {
    /// Alternatives per generated token (`None`: no report).
    pub generated: Option<usize>,
    /// Echo the prompt (completions), scoring its tokens with this many
    /// alternatives when `generated` is set.
    pub echo: bool,
}

/// What both generation endpoints accept.
#[derive(Debug, Clone)]
pub struct GenBody {
    /// `model`.
    pub model: String,
    /// Limits and sampling (max_tokens already capped).
    pub params: GenerationParams,
    /// Choices per prompt.
    pub n: usize,
    /// Server-sent events.
    pub stream: bool,
    /// A final usage chunk when streaming.
    pub include_usage: bool,
    /// The grammar.
    pub format: Format,
    /// Log-probabilities and echo.
    pub logprobs: Logprobs,
}

/// A prompt of a completion request: text, or token ids.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Text (tokenised by the server).
    Text(String),
    /// Token ids, used as given.
    Tokens(Vec<u32>),
}

/// The `rag` extension of a chat request.
#[derive(Debug, Clone, PartialEq)]
pub struct Rag {
    /// Passages to retrieve.
    pub k: usize,
    /// Only these sources.
    pub sources: Option<Vec<String>>,
    /// `hybrid`, `bm25` or `dense`.
    pub mode: forja_control::knowledge::Mode,
}

/// The `memory` extension of a chat request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryAsk {
    /// Facts to recall (`None`: the tenant's default, else 8; 0: none).
    pub k: Option<usize>,
    /// Extract facts from this message (`None`: the tenant's setting).
    pub remember: Option<bool>,
}

/// A chat completion request.
#[derive(Debug, Clone)]
pub struct ChatBody {
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// `rag`: absent (`None`: the tenant's default), `false` (`Some(None)`)
    /// or what to retrieve.
    pub rag: Option<Option<Rag>>,
    /// `memory`: absent (`None`: the tenant's default), `false`
    /// (`Some(None)`: neither recall nor extraction) or what to do.
    pub memory: Option<Option<MemoryAsk>>,
    /// Everything else.
    pub gen: GenBody,
}

/// A completion request: one or more raw prompts.
#[derive(Debug, Clone)]
pub struct CompletionBody {
    /// The prompts.
    pub prompts: Vec<Prompt>,
    /// Everything else.
    pub gen: GenBody,
}

fn bad(param: &str, msg: impl Into<String>) -> ApiError {
    ApiError::bad(param, msg)
}

fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad("body", "the body must be a JSON object")),
        Err(e) => Err(bad("body", format!("invalid JSON: {e}"))),
    }
}

fn num(m: &Map<String, Value>, k: &str) -> Result<Option<f64>, ApiError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| bad(k, format!("`{k}` must be a number"))),
    }
}

fn uint(m: &Map<String, Value>, k: &str) -> Result<Option<u64>, ApiError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad(k, format!("`{k}` must be a non-negative integer"))),
    }
}

fn flag(m: &Map<String, Value>, k: &str) -> Result<bool, ApiError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad(k, format!("`{k}` must be true or false"))),
    }
}

/// Most prompts in one completion request.
pub const MAX_PROMPTS: usize = 256;

/// Reads the shared fields; `max_cap` is the server's max_tokens cap;
/// `chat` selects the chat form of `logprobs` (a flag plus `top_logprobs`)
/// over the completions form (a number, plus `echo`).
fn gen(m: &Map<String, Value>, max_cap: usize, chat: bool) -> Result<GenBody, ApiError> {
    let model = match m.get("model") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(bad(
                "model",
                "`model` is required: `base`, a version id or `<base>@<alias>`",
            ))
        }
    };
    let logprobs = if chat {
        if m.get("echo").is_some_and(|e| !e.is_null()) {
            return Err(bad("echo", "`echo` is a completions parameter"));
        }
        let top = uint(m, "top_logprobs")?;
        match (flag(m, "logprobs")?, top) {
            (true, t) => Logprobs { generated: Some(t.unwrap_or(0) as usize), echo: false },
            (false, Some(_)) => {
                return Err(bad("top_logprobs", "`top_logprobs` needs `logprobs: true`"))
            }
            (false, None) => Logprobs::default(),
        }
    } else {
        let n = match m.get("logprobs") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(false)) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                bad("logprobs", "`logprobs` must be the number of alternatives (0 to 20)")
            })? as usize),
        };
        Logprobs { generated: n, echo: flag(m, "echo")? }
    };
    if logprobs.generated.is_some_and(|n| n > forja_core::MAX_TOP_LOGPROBS) {
        let p = if chat { "top_logprobs" } else { "logprobs" };
        return Err(bad(p, format!("at most {} alternatives", forja_core::MAX_TOP_LOGPROBS)));
    }
    for k in ["presence_penalty", "frequency_penalty"] {
        if num(m, k)?.is_some_and(|v| v != 0.0) {
            return Err(bad(
                k,
                format!("`{k}` is not supported; use `repetition_penalty` (forja)"),
            ));
        }
    }
    if m.get("tools").is_some_and(|t| !t.is_null()) {
        return Err(bad("tools", "tool calling is not supported by forja yet"));
    }
    let max_tokens = uint(m, "max_completion_tokens")?.or(uint(m, "max_tokens")?);
    let max_tokens = match max_tokens {
        Some(0) if logprobs.echo => 0,
        Some(0) => {
            return Err(bad("max_tokens", "`max_tokens` must be at least 1 (0 only with `echo`)"))
        }
        Some(n) if n as usize > max_cap => {
            return Err(bad(
                "max_tokens",
                format!(
                    "`max_tokens` {n} exceeds this server's cap of {max_cap} (--max-tokens-cap)"
                ),
            ))
        }
        Some(n) => n as usize,
        None => max_cap,
    };
    let stop = match m.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("stop", "`stop` must be a string or a list of strings"))?,
        Some(_) => return Err(bad("stop", "`stop` must be a string or a list of strings")),
    };
    if stop.len() > 4 {
        return Err(bad("stop", "at most 4 stop sequences"));
    }
    if stop.iter().any(|s| s.chars().count() > 256) {
        return Err(bad("stop", "stop sequences of at most 256 characters"));
    }
    let temperature = num(m, "temperature")?.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(bad("temperature", "`temperature` must be between 0 and 2"));
    }
    let sampling = SamplingParams {
        temperature: temperature as f32,
        top_p: num(m, "top_p")?.unwrap_or(1.0) as f32,
        top_k: uint(m, "top_k")?.unwrap_or(0) as usize,
        min_p: num(m, "min_p")?.unwrap_or(0.0) as f32,
        repetition_penalty: num(m, "repetition_penalty")?.unwrap_or(1.0) as f32,
        seed: uint(m, "seed")?,
        ..SamplingParams::default()
    };
    // forja (and llama.cpp) extension: keep going past end tokens (benchmarks).
    let ignore_eos = flag(m, "ignore_eos")?;
    let params = GenerationParams {
        max_tokens,
        stop,
        ignore_eos,
        sampling,
        logprobs: logprobs.generated,
        prompt_logprobs: logprobs.echo.then(|| logprobs.generated.unwrap_or(0)),
    };
    params.validate().map_err(|e| match e {
        forja_core::CoreError::InvalidParam { name, reason } => {
            bad(name, format!("`{name}` {reason}"))
        }
        e => bad("body", e.to_string()),
    })?;
    let n = uint(m, "n")?.unwrap_or(1) as usize;
    if !(1..=8).contains(&n) {
        return Err(bad("n", "`n` must be between 1 and 8"));
    }
    let stream = flag(m, "stream")?;
    let include_usage = m
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if model.len() > 256 {
        return Err(bad("model", "at most 256 characters"));
    }
    Ok(GenBody { model, params, n, stream, include_usage, format: format(m)?, logprobs })
}

fn format(m: &Map<String, Value>) -> Result<Format, ApiError> {
    let p = "response_format";
    let rf = match m.get(p) {
        None | Some(Value::Null) => return Ok(Format::Text),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(bad(p, "`response_format` must be an object with a `type`")),
    };
    let field = |k: &str| rf.get(k).filter(|v| !v.is_null());
    let text = |k: &str| {
        field(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| bad(p, format!("`response_format.{k}` must be a string")))
    };
    match rf.get("type").and_then(Value::as_str) {
        Some("text") => Ok(Format::Text),
        Some("json_object") => Ok(Format::JsonObject),
        Some("json_schema") => {
            let js = field("json_schema").ok_or_else(|| {
                bad(p, "`response_format.json_schema` is required for type json_schema")
            })?;
            let schema = js.get("schema").filter(|s| s.is_object() || s.is_boolean()).ok_or_else(
                || bad(p, "`response_format.json_schema.schema` must be a JSON Schema object"),
            )?;
            Ok(Format::JsonSchema(schema.clone()))
        }
        Some("regex") => Ok(Format::Regex(text("regex")?)),
        Some("lark") | Some("grammar") => Ok(Format::Lark(text("grammar")?)),
        Some(other) => Err(bad(
            p,
            format!("unknown response_format type `{other}` (text, json_object, json_schema, regex, lark)"),
        )),
        None => Err(bad(p, "`response_format.type` is required")),
    }
}

fn content(v: &Value, i: usize) -> Result<String, ApiError> {
    let param = format!("messages[{i}].content");
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut out = String::new();
            for part in parts {
                match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("text"), Some(Value::String(t))) => out.push_str(t),
                    (Some(t), _) => {
                        return Err(bad(
                            &param,
                            format!("content part type `{t}` is not supported (text only)"),
                        ))
                    }
                    _ => return Err(bad(&param, "content parts need a `type`")),
                }
            }
            Ok(out)
        }
        _ => Err(bad(&param, "`content` must be a string or a list of text parts")),
    }
}

/// Parses a chat completion body.
pub fn chat(body: &[u8], max_cap: usize) -> Result<ChatBody, ApiError> {
    let m = object(body)?;
    let list = match m.get("messages") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        _ => return Err(bad("messages", "`messages` must be a non-empty list")),
    };
    if list.len() > 1024 {
        return Err(bad("messages", "at most 1024 messages"));
    }
    let mut messages = Vec::with_capacity(list.len());
    for (i, msg) in list.iter().enumerate() {
        let role = match msg.get("role").and_then(Value::as_str) {
            Some("system") | Some("developer") => Role::System,
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            Some("tool") => Role::Tool,
            Some(r) => {
                return Err(bad(&format!("messages[{i}].role"), format!("unknown role `{r}`")))
            }
            None => {
                return Err(bad(&format!("messages[{i}].role"), "every message needs a `role`"))
            }
        };
        let content = content(msg.get("content").unwrap_or(&Value::Null), i)?;
        messages.push(ChatMessage { role, content });
    }
    Ok(ChatBody {
        messages,
        rag: rag(m.get("rag"))?,
        memory: memory(m.get("memory"))?,
        gen: gen(&m, max_cap, true)?,
    })
}

/// `"memory": true | false | {"k": 8, "remember": true}`.
fn memory(v: Option<&Value>) -> Result<Option<Option<MemoryAsk>>, ApiError> {
    let o = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Bool(false)) => return Ok(Some(None)),
        Some(Value::Bool(true)) => return Ok(Some(Some(MemoryAsk::default()))),
        Some(Value::Object(o)) => o,
        Some(_) => {
            return Err(bad("memory", "`memory` must be true, false or an object {k, remember}"))
        }
    };
    if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "k" | "remember")) {
        return Err(bad(&format!("memory.{k}"), "unknown field (use k, remember)"));
    }
    let k = match o.get("k") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(k) if k as usize <= forja_control::memory::MAX_RECALL => Some(k as usize),
            _ => return Err(bad("memory.k", "must be an integer from 0 to 32")),
        },
    };
    let remember = match o.get("remember") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(bad("memory.remember", "must be true or false")),
    };
    Ok(Some(Some(MemoryAsk { k, remember })))
}

/// `"rag": true | false | {"k": 5, "sources": [...], "mode": "hybrid"}`.
fn rag(v: Option<&Value>) -> Result<Option<Option<Rag>>, ApiError> {
    use crate::wire::knowledge as kw;
    let o = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Bool(false)) => return Ok(Some(None)),
        Some(Value::Bool(true)) => &Map::new(),
        Some(Value::Object(o)) => o,
        Some(_) => {
            return Err(bad("rag", "`rag` must be true, false or an object {k, sources, mode}"))
        }
    };
    if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "k" | "sources" | "mode")) {
        return Err(bad(&format!("rag.{k}"), "unknown field (use k, sources, mode)"));
    }
    let k = match o.get("k") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| bad("rag.k", "must be an integer"))? as usize),
    };
    let sources = match o.get("sources") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("rag.sources", "must be a list of source ids"))?,
        ),
        Some(_) => return Err(bad("rag.sources", "must be a list of source ids")),
    };
    let mode = match o.get("mode") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => Some(m.as_str()),
        Some(_) => return Err(bad("rag.mode", "use hybrid, bm25 or dense")),
    };
    let prefix = |e: ApiError| match e {
        ApiError::BadRequest { message, param, code } => {
            ApiError::BadRequest { message, param: param.map(|p| format!("rag.{p}")), code }
        }
        e => e,
    };
    Ok(Some(Some(Rag {
        k: kw::k(k).map_err(prefix)?,
        sources: kw::sources(sources).map_err(prefix)?,
        mode: kw::mode(mode).map_err(prefix)?,
    })))
}

/// Parses a completion body.
pub fn completion(body: &[u8], max_cap: usize) -> Result<CompletionBody, ApiError> {
    let m = object(body)?;
    if m.get("suffix").is_some_and(|s| !s.is_null()) {
        return Err(bad("suffix", "`suffix` is not supported"));
    }
    let ids = |a: &[Value]| -> Option<Vec<u32>> {
        a.iter().map(|t| t.as_u64().filter(|&t| t <= u32::MAX as u64).map(|t| t as u32)).collect()
    };
    let prompts = match m.get("prompt") {
        Some(Value::String(s)) => vec![Prompt::Text(s.clone())],
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => {
            a.iter().filter_map(|s| s.as_str().map(|s| Prompt::Text(s.to_string()))).collect()
        }
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_number) => {
            vec![Prompt::Tokens(ids(a).ok_or_else(|| bad("prompt", "token ids must be integers"))?)]
        }
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_array) => a
            .iter()
            .map(|p| {
                let p = p.as_array().map(Vec::as_slice).unwrap_or_default();
                match ids(p) {
                    Some(t) if !t.is_empty() => Ok(Prompt::Tokens(t)),
                    _ => Err(bad("prompt", "each token-id prompt is a non-empty list of integers")),
                }
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(bad(
            "prompt",
            "`prompt` must be a string, a list of strings, a list of token ids, or a list of those",
        )),
    };
    if prompts.len() > MAX_PROMPTS {
        return Err(bad("prompt", format!("at most {MAX_PROMPTS} prompts per request")));
    }
    Ok(CompletionBody { prompts, gen: gen(&m, max_cap, false)? })
}

/// Token counts of a response.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Prompt tokens (summed over prompts, once per prompt).
    pub prompt: usize,
    /// Generated tokens over every choice.
    pub completion: usize,
}

impl Usage {
    /// The `usage` object.
    pub fn json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
        })
    }
}

/// `system_fingerprint`: forja's version.
pub fn fingerprint() -> String {
    format!("forja-{}", env!("CARGO_PKG_VERSION"))
}
