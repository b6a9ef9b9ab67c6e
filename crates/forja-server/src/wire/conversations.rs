//! Wire types of `/v1/conversations`: bodies in, conversation objects
//! and exports out.

use super::ApiError;
use forja_store::{Conversation, ConversationMessage, ConversationUpdate};
use serde::Deserialize;
use serde_json::{json, Value};

/// Most messages one request may carry.
pub const MAX_MESSAGES_PER_REQUEST: usize = 64;
/// Most messages one conversation may hold.
pub const MAX_MESSAGES: u64 = 1000;
/// Most bytes of one message.
pub const MAX_CONTENT: usize = 64 * 1024;

/// `POST /v1/conversations`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateConversation {
    /// Shown in the history (default: the first user message, cut).
    #[serde(default)]
    pub title: Option<String>,
    /// The model or alias it talks to.
    #[serde(default)]
    pub model: Option<String>,
    /// The mode its system prompt came from.
    #[serde(default)]
    pub mode: Option<String>,
    /// Its first messages.
    #[serde(default)]
    pub messages: Vec<MessageIn>,
}

/// `POST /v1/conversations/{id}/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendMessages {
    /// The messages to append, in order.
    pub messages: Vec<MessageIn>,
}

/// `PATCH /v1/conversations/{id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConversation {
    /// A new title.
    #[serde(default)]
    pub title: Option<String>,
    /// A new model.
    #[serde(default)]
    pub model: Option<String>,
    /// A new mode.
    #[serde(default)]
    pub mode: Option<String>,
}

/// One message as posted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageIn {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Its text.
    pub content: String,
    /// An assistant message's completion id (`chatcmpl-…`).
    #[serde(default)]
    pub completion_id: Option<String>,
}

fn short(param: &str, v: &Option<String>, max: usize) -> Result<(), ApiError> {
    match v {
        Some(s)
            if s.trim().is_empty()
                || s.chars().count() > max
                || s.chars().any(char::is_control) =>
        {
            Err(ApiError::bad(param, format!("1 to {max} printable characters")))
        }
        _ => Ok(()),
    }
}

impl UpdateConversation {
    /// The checked update.
    pub fn checked(&self) -> Result<ConversationUpdate, ApiError> {
        short("title", &self.title, 200)?;
        short("model", &self.model, 200)?;
        short("mode", &self.mode, 100)?;
        Ok(ConversationUpdate {
            title: self.title.as_ref().map(|t| t.trim().to_string()),
            model: self.model.clone(),
            mode: self.mode.clone(),
        })
    }
}

/// Checks posted messages: 1 to [`MAX_MESSAGES_PER_REQUEST`] (0 allowed
/// when `may_be_empty`), known roles, bounded text and ids.
pub fn check_messages(m: &[MessageIn], may_be_empty: bool) -> Result<(), ApiError> {
    if (m.is_empty() && !may_be_empty) || m.len() > MAX_MESSAGES_PER_REQUEST {
        return Err(ApiError::bad(
            "messages",
            format!("give 1 to {MAX_MESSAGES_PER_REQUEST} messages per request"),
        ));
    }
    for (i, msg) in m.iter().enumerate() {
        if !matches!(msg.role.as_str(), "system" | "user" | "assistant") {
            return Err(ApiError::bad(
                &format!("messages[{i}].role"),
                "use system, user or assistant",
            ));
        }
        if msg.content.len() > MAX_CONTENT {
            return Err(ApiError::bad(
                &format!("messages[{i}].content"),
                format!("at most {MAX_CONTENT} bytes"),
            ));
        }
        short(&format!("messages[{i}].completion_id"), &msg.completion_id, 100)?;
    }
    Ok(())
}

/// A conversation object (with its messages when given).
pub fn conversation(c: &Conversation, messages: Option<&[ConversationMessage]>) -> Value {
    let mut v = json!({
        "id": c.id, "object": "conversation", "title": c.title, "model": c.model,
        "mode": c.mode, "messages_count": c.messages, "bytes": c.bytes,
        "created_at": c.created_at, "updated_at": c.updated_at,
    });
    if let Some(ms) = messages {
        v["messages"] = ms.iter().map(message).collect();
    }
    v
}

/// A stored message.
pub fn message(m: &ConversationMessage) -> Value {
    json!({
        "id": format!("msg-{}", m.id), "role": m.role, "content": m.content,
        "completion_id": m.completion_id, "created_at": m.created_at,
    })
}

/// The conversation as Markdown: a title, then each message under its role.
pub fn markdown(c: &Conversation, messages: &[ConversationMessage]) -> String {
    let mut s = format!("# {}\n\n", c.title.replace('\n', " "));
    if let Some(m) = &c.model {
        s += &format!("Model: `{}`\n\n", m.replace('`', "'"));
    }
    for m in messages {
        s += &format!("## {}\n\n{}\n\n", m.role, m.content.trim_end());
    }
    s
}

/// `PUT /v1/modes`: the tenant's whole list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveModes {
    /// The modes, in picker order.
    pub modes: Vec<ModeIn>,
}

/// One mode as posted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeIn {
    /// Stable id.
    pub id: String,
    /// Shown in the picker.
    pub name: String,
    /// The system prompt.
    pub prompt: String,
}

impl SaveModes {
    /// As store values (checked by the control plane).
    pub fn into_modes(self) -> Vec<forja_store::ChatMode> {
        self.modes
            .into_iter()
            .map(|m| forja_store::ChatMode {
                id: m.id,
                name: m.name.trim().into(),
                prompt: m.prompt,
            })
            .collect()
    }
}

/// The tenant's modes; `custom` when it saved its own.
pub fn modes(list: &[forja_store::ChatMode], custom: bool) -> Value {
    json!({
        "object": "list",
        "custom": custom,
        "data": list.iter().map(|m| json!({"id": m.id, "name": m.name, "prompt": m.prompt})).collect::<Vec<_>>(),
    })
}
