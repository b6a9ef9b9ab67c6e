//! Chat conversations kept per tenant: the history a client (the web UI)
//! lists, searches, renames, exports and deletes. Message text arrives
//! already scrubbed of personal data; the store charges it to the tenant's
//! storage quota.

use crate::{Result, Timestamp};

/// A conversation, without its messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    /// `conv-…`.
    pub id: String,
    /// Owner.
    pub tenant_id: String,
    /// Shown in the history list.
    pub title: String,
    /// The model or alias it talks to.
    pub model: Option<String>,
    /// The mode its system prompt came from.
    pub mode: Option<String>,
    /// Its messages.
    pub messages: u64,
    /// Bytes charged to the tenant's quota.
    pub bytes: u64,
    /// Set by the store.
    pub created_at: Timestamp,
    /// The last change (a message appended, a rename).
    pub updated_at: Timestamp,
}

/// One stored message.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationMessage {
    /// Increasing within the node.
    pub id: i64,
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text, scrubbed.
    pub content: String,
    /// An assistant message's completion id (feedback names it).
    pub completion_id: Option<String>,
    /// Set by the store.
    pub created_at: Timestamp,
}

/// A message to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text, scrubbed.
    pub content: String,
    /// An assistant message's completion id.
    pub completion_id: Option<String>,
}

/// What may change on a conversation (`None`: unchanged).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConversationUpdate {
    /// A new title.
    pub title: Option<String>,
    /// A new model.
    pub model: Option<String>,
    /// A new mode.
    pub mode: Option<String>,
}

/// Storage of conversations (part of every [`crate::Store`]).
pub trait Conversations {
    /// Creates a conversation with its first messages, charged to the
    /// tenant's quota in the same transaction.
    fn create_conversation(
        &self,
        tenant_id: &str,
        update: &ConversationUpdate,
        messages: &[NewMessage],
    ) -> Result<Conversation>;
    /// A tenant's conversations, last updated first; with `search`, those
    /// whose title or a message contains it (case-insensitive for ASCII).
    fn conversations(
        &self,
        tenant_id: &str,
        search: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Conversation>>;
    /// A tenant's conversation; another tenant's is `NotFound`.
    fn conversation(&self, tenant_id: &str, id: &str) -> Result<Conversation>;
    /// Its messages in order.
    fn conversation_messages(&self, tenant_id: &str, id: &str) -> Result<Vec<ConversationMessage>>;
    /// Appends messages (charged to the quota); `Conflict` past
    /// `max_messages` in the conversation.
    fn append_messages(
        &self,
        tenant_id: &str,
        id: &str,
        messages: &[NewMessage],
        max_messages: u64,
    ) -> Result<Conversation>;
    /// Renames it or changes its model or mode.
    fn update_conversation(
        &self,
        tenant_id: &str,
        id: &str,
        update: &ConversationUpdate,
    ) -> Result<Conversation>;
    /// Deletes it and its messages; its storage is refunded.
    fn delete_conversation(&self, tenant_id: &str, id: &str) -> Result<Conversation>;
}
