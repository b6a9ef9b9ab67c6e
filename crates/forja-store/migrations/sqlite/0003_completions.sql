-- forja control plane, schema 3: served completions, kept for a while so
-- that feedback can name a completion id instead of repeating it.

CREATE TABLE completions (
    id          TEXT PRIMARY KEY,        -- chatcmpl-… / cmpl-…
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    model       TEXT NOT NULL,           -- what answered: base name or version id
    messages    TEXT NOT NULL,           -- the conversation before the answer (JSON)
    output      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX completions_created ON completions (created_at);
