-- forja control plane, schema 6: chat conversations kept per tenant (the
-- web UI's history), their messages already PII-scrubbed.

CREATE TABLE conversations (
    id          TEXT PRIMARY KEY,                    -- conv-…
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    title       TEXT NOT NULL,
    model       TEXT,                                -- what it talks to (`default@champion`…)
    mode        TEXT,                                -- the mode its system prompt came from
    bytes       INTEGER NOT NULL DEFAULT 0,          -- charged to the tenant's quota
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX conversations_tenant ON conversations (tenant_id, updated_at);

CREATE TABLE conversation_messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role            TEXT NOT NULL,                   -- system | user | assistant
    content         TEXT NOT NULL,
    completion_id   TEXT,                            -- assistant: the completion it came from
    created_at      INTEGER NOT NULL
);
CREATE INDEX conversation_messages_conv ON conversation_messages (conversation_id, id);
