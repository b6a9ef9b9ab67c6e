-- forja control plane, schema 11: entity memory. Subject-verb-object facts
-- per tenant, with where they came from and what superseded them; the
-- words of their entities for recall; facts that were refused, and why.

CREATE TABLE memory_facts (
    id             TEXT PRIMARY KEY,                       -- mem-…
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    subject        TEXT NOT NULL,                          -- as shown
    verb           TEXT NOT NULL,
    object         TEXT NOT NULL,
    since          TEXT,                                   -- YYYY, YYYY-MM or YYYY-MM-DD
    subject_key    TEXT NOT NULL,                          -- folded: lower case, no accents, words
    verb_key       TEXT NOT NULL,
    object_key     TEXT NOT NULL,
    source_kind    TEXT NOT NULL,                          -- conversation | document | manual
    source_ref     TEXT,                                   -- completion id, document title, …
    confidence     REAL NOT NULL,
    mentions       INTEGER NOT NULL DEFAULT 1,             -- times it was stated (merged duplicates)
    bytes          INTEGER NOT NULL,                       -- charged to the tenant's quota
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    superseded_by  TEXT REFERENCES memory_facts(id) ON DELETE SET NULL,
    superseded_at  INTEGER                                 -- NULL: current
);
CREATE INDEX memory_facts_svo ON memory_facts (tenant_id, subject_key, verb_key, object_key);
CREATE INDEX memory_facts_vo ON memory_facts (tenant_id, verb_key, object_key);
CREATE INDEX memory_facts_updated ON memory_facts (tenant_id, updated_at DESC);

CREATE TABLE memory_terms (
    fact_id    TEXT NOT NULL REFERENCES memory_facts(id) ON DELETE CASCADE,
    tenant_id  TEXT NOT NULL,
    term       TEXT NOT NULL,                              -- a folded word of the subject or object
    PRIMARY KEY (fact_id, term)
);
CREATE INDEX memory_terms_lookup ON memory_terms (tenant_id, term);

CREATE TABLE memory_rejections (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    source_kind  TEXT NOT NULL,
    source_ref   TEXT,
    reason       TEXT NOT NULL,
    text         TEXT NOT NULL,                            -- what was refused, scrubbed and clipped
    text_key     TEXT NOT NULL,                            -- folded, for forgetting an entity
    created_at   INTEGER NOT NULL
);
CREATE INDEX memory_rejections_tenant ON memory_rejections (tenant_id, id DESC);
