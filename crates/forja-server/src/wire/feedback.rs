//! `POST /v1/feedback`: one item or `{"examples": [...]}`, read strictly
//! (an unknown field names itself), and what happened to each item.

use crate::ApiError;
use forja_control::feedback::Feedback;
use forja_core::{ChatMessage, Role};
use forja_store::{Appended, Example};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Most items in one post.
pub const MAX_ITEMS: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageWire {
    role: String,
    #[serde(default)]
    content: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackWire {
    #[serde(default)]
    messages: Option<Vec<MessageWire>>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    correction: Option<String>,
    #[serde(default)]
    rating: Option<i64>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    completion_id: Option<String>,
}

fn bad(param: String, why: impl Into<String>) -> ApiError {
    ApiError::bad(&param, why)
}

impl FeedbackWire {
    fn into_feedback(self, at: &str) -> Result<Feedback, ApiError> {
        let messages = match self.messages {
            None => None,
            Some(list) => {
                let mut out = Vec::with_capacity(list.len());
                for (i, m) in list.into_iter().enumerate() {
                    let role = match m.role.as_str() {
                        "system" | "developer" => Role::System,
                        "user" => Role::User,
                        "assistant" => Role::Assistant,
                        "tool" => Role::Tool,
                        r => {
                            return Err(bad(
                                format!("{at}messages[{i}].role"),
                                format!("unknown role `{}`", forja_control::clip(r, 40)),
                            ))
                        }
                    };
                    let content = match m.content {
                        Value::String(s) => s,
                        Value::Null => String::new(),
                        _ => {
                            return Err(bad(
                                format!("{at}messages[{i}].content"),
                                "`content` must be a string",
                            ))
                        }
                    };
                    out.push(ChatMessage { role, content });
                }
                Some(out)
            }
        };
        let rating = match self.rating {
            None => None,
            Some(r) if (1..=5).contains(&r) => Some(r as u8),
            Some(r) => return Err(bad(format!("{at}rating"), format!("{r} is not in 1..=5"))),
        };
        Ok(Feedback {
            messages,
            prompt: self.prompt,
            output: self.output,
            correction: self.correction,
            rating,
            metadata: self.metadata.unwrap_or_default(),
            source: self.source,
            completion_id: self.completion_id,
        })
    }
}

/// The items of a feedback post.
pub fn items(body: &[u8]) -> Result<Vec<Feedback>, ApiError> {
    let v: Value = super::parse(body)?;
    let one = |v: Value, at: &str| -> Result<Feedback, ApiError> {
        let w: FeedbackWire = serde_json::from_value(v).map_err(|e| {
            let param = if at.is_empty() { "body" } else { at.trim_end_matches('.') };
            bad(
                param.to_string(),
                format!("invalid feedback: {}", forja_control::clip(&e.to_string(), 200)),
            )
        })?;
        w.into_feedback(at)
    };
    match v {
        Value::Object(mut o) if o.contains_key("examples") => {
            let list = o.remove("examples").unwrap_or_default();
            if !o.is_empty() {
                return Err(ApiError::bad(
                    "examples",
                    "with `examples`, the body has no other fields",
                ));
            }
            let Value::Array(list) = list else {
                return Err(ApiError::bad("examples", "`examples` must be a list"));
            };
            if list.len() > MAX_ITEMS {
                return Err(ApiError::bad(
                    "examples",
                    format!("at most {MAX_ITEMS} examples per request"),
                ));
            }
            list.into_iter().enumerate().map(|(i, v)| one(v, &format!("examples[{i}]."))).collect()
        }
        v @ Value::Object(_) => Ok(vec![one(v, "")?]),
        _ => Err(ApiError::bad("body", "the body must be a JSON object")),
    }
}

/// One stored example: its id, status and, when refused, why.
pub fn example(e: &Example) -> Value {
    json!({"id": format!("ex-{}", e.id), "status": e.status.as_str(), "reason": e.reason, "job_id": e.job_id})
}

/// What appending did: one entry per item, the job it triggered, or why
/// the threshold was held.
pub fn appended(a: &Appended) -> Value {
    json!({
        "object": "list",
        "data": a.examples.iter().map(example).collect::<Vec<_>>(),
        "job": a.job.as_ref().map(super::jobs::job),
        "held": a.held,
    })
}
