//! [`Conversations`] in SQL (SQLite and Postgres): conversations and their messages, charged
//! to the tenant's storage quota.

use super::rows::{get_tenant, rows};
use super::tenants::{charge, refund};
use super::{new_id, SqliteStore};
use crate::conversations::{
    Conversation, ConversationMessage, ConversationUpdate, Conversations, NewMessage,
};
use crate::db::{params, Connection, OptionalExtension, Row};
use crate::error::{sql, Result, StoreError};

const COLS: &str = "c.id, c.tenant_id, c.title, c.model, c.mode, \
    (SELECT COUNT(*) FROM conversation_messages m WHERE m.conversation_id = c.id), \
    c.bytes, c.created_at, c.updated_at";

fn conv_row(r: &Row<'_>) -> crate::db::Result<Conversation> {
    Ok(Conversation {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        title: r.get(2)?,
        model: r.get(3)?,
        mode: r.get(4)?,
        messages: r.get::<_, i64>(5)? as u64,
        bytes: r.get::<_, i64>(6)? as u64,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

fn get_conv(c: &Connection, tenant_id: &str, id: &str) -> Result<Conversation> {
    c.query_row(
        &format!("SELECT {COLS} FROM conversations c WHERE c.id = ?1 AND c.tenant_id = ?2"),
        [id, tenant_id],
        conv_row,
    )
    .optional()
    .map_err(sql("read conversation"))?
    .ok_or_else(|| StoreError::NotFound { what: "conversation", id: id.into() })
}

/// Bytes a message is charged.
fn message_bytes(m: &NewMessage) -> u64 {
    (m.content.len() + m.role.len() + m.completion_id.as_ref().map_or(0, String::len) + 48) as u64
}

/// Appends `messages` to conversation `id` (already read), charging them.
fn append(
    c: &Connection,
    tenant_id: &str,
    id: &str,
    messages: &[NewMessage],
    now: i64,
) -> Result<()> {
    let bytes: u64 = messages.iter().map(message_bytes).sum();
    charge(c, &get_tenant(c, tenant_id)?, bytes)?;
    for m in messages {
        c.execute(
            "INSERT INTO conversation_messages (conversation_id, role, content, completion_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, m.role, m.content, m.completion_id, now],
        )
        .map_err(sql("store message"))?;
    }
    c.execute(
        "UPDATE conversations SET bytes = bytes + ?1, updated_at = ?2 WHERE id = ?3",
        params![bytes as i64, now, id],
    )
    .map_err(sql("update conversation"))?;
    Ok(())
}

impl Conversations for SqliteStore {
    fn create_conversation(
        &self,
        tenant_id: &str,
        u: &ConversationUpdate,
        messages: &[NewMessage],
    ) -> Result<Conversation> {
        self.tx("create conversation", |c, now| {
            let tenant = get_tenant(c, tenant_id)?;
            let id = new_id("conv");
            let title = u.title.clone().unwrap_or_default();
            let bytes = (title.len() + 64) as u64;
            charge(c, &tenant, bytes)?;
            c.execute(
                "INSERT INTO conversations (id, tenant_id, title, model, mode, bytes, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                params![id, tenant_id, title, u.model, u.mode, bytes as i64, now],
            )
            .map_err(sql("create conversation"))?;
            append(c, tenant_id, &id, messages, now)?;
            get_conv(c, tenant_id, &id)
        })
    }

    fn conversations(
        &self,
        tenant_id: &str,
        search: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Conversation>> {
        // LIKE with its wildcards escaped: the search is a plain substring.
        let pattern = search.map(|s| {
            let esc = s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            format!("%{esc}%")
        });
        self.read(|c, _| {
            rows(
                c,
                "list conversations",
                &format!(
                    "SELECT {COLS} FROM conversations c WHERE c.tenant_id = ?1 AND (CAST(?2 AS TEXT) IS NULL
                       OR c.title {like} ?2 ESCAPE '\\'
                       OR EXISTS (SELECT 1 FROM conversation_messages m
                                  WHERE m.conversation_id = c.id AND m.content {like} ?2 ESCAPE '\\'))
                     ORDER BY c.updated_at DESC, c.id DESC LIMIT ?3",
                    like = c.ilike()
                ),
                params![tenant_id, pattern, limit as i64],
                conv_row,
            )
        })
    }

    fn conversation(&self, tenant_id: &str, id: &str) -> Result<Conversation> {
        self.read(|c, _| get_conv(c, tenant_id, id))
    }

    fn conversation_messages(&self, tenant_id: &str, id: &str) -> Result<Vec<ConversationMessage>> {
        self.read(|c, _| {
            get_conv(c, tenant_id, id)?;
            rows(
                c,
                "list messages",
                "SELECT id, role, content, completion_id, created_at FROM conversation_messages
                 WHERE conversation_id = ?1 ORDER BY id",
                [id],
                |r| {
                    Ok(ConversationMessage {
                        id: r.get(0)?,
                        role: r.get(1)?,
                        content: r.get(2)?,
                        completion_id: r.get(3)?,
                        created_at: r.get(4)?,
                    })
                },
            )
        })
    }

    fn append_messages(
        &self,
        tenant_id: &str,
        id: &str,
        messages: &[NewMessage],
        max_messages: u64,
    ) -> Result<Conversation> {
        self.tx("append messages", |c, now| {
            let conv = get_conv(c, tenant_id, id)?;
            if conv.messages + messages.len() as u64 > max_messages {
                return Err(StoreError::Conflict(format!(
                    "conversation {id} holds {} messages and may hold {max_messages}; start a new one",
                    conv.messages
                )));
            }
            append(c, tenant_id, id, messages, now)?;
            get_conv(c, tenant_id, id)
        })
    }

    fn update_conversation(
        &self,
        tenant_id: &str,
        id: &str,
        u: &ConversationUpdate,
    ) -> Result<Conversation> {
        self.tx("update conversation", |c, now| {
            get_conv(c, tenant_id, id)?;
            c.execute(
                "UPDATE conversations SET title = COALESCE(?1, title), model = COALESCE(?2, model),
                   mode = COALESCE(?3, mode), updated_at = ?4 WHERE id = ?5",
                params![u.title, u.model, u.mode, now, id],
            )
            .map_err(sql("update conversation"))?;
            get_conv(c, tenant_id, id)
        })
    }

    fn delete_conversation(&self, tenant_id: &str, id: &str) -> Result<Conversation> {
        self.tx("delete conversation", |c, _| {
            let conv = get_conv(c, tenant_id, id)?;
            c.execute("DELETE FROM conversation_messages WHERE conversation_id = ?1", [id])
                .map_err(sql("delete messages"))?;
            c.execute("DELETE FROM conversations WHERE id = ?1", [id])
                .map_err(sql("delete conversation"))?;
            refund(c, tenant_id, conv.bytes)?;
            Ok(conv)
        })
    }
}
