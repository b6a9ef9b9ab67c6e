-- forja control plane, schema 10: the knowledge base. Sources (documents,
-- feed entries) and their passages are the truth; the node's search index
-- is derived from them and replays `knowledge_chunks` / `knowledge_removals`
-- past the sequence numbers its last commit recorded.

CREATE TABLE knowledge_feeds (
    id              TEXT PRIMARY KEY,                    -- kfd-…
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    url             TEXT NOT NULL,
    title           TEXT,
    interval_s      INTEGER NOT NULL,
    pii             TEXT NOT NULL,                       -- scrub | keep
    next_at         INTEGER NOT NULL,                    -- when it is polled next
    last_polled_at  INTEGER,
    last_status     TEXT,                                -- what the last poll did, or why it failed
    items           INTEGER NOT NULL DEFAULT 0,          -- entries added so far
    failures        INTEGER NOT NULL DEFAULT 0,          -- consecutive failed polls
    created_at      INTEGER NOT NULL,
    UNIQUE (tenant_id, url)
);
CREATE INDEX knowledge_feeds_due ON knowledge_feeds (next_at);

CREATE TABLE knowledge_sources (
    id          TEXT PRIMARY KEY,                        -- ksrc-…
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    kind        TEXT NOT NULL,                           -- document | feed_item | minutes
    title       TEXT NOT NULL,
    url         TEXT,
    format      TEXT NOT NULL,                           -- text | markdown | html | docx
    lang        TEXT NOT NULL,                           -- es | en | other
    pii         TEXT NOT NULL,                           -- scrub | keep
    origin      TEXT,                                    -- a feed entry's key: added once
    feed_id     TEXT REFERENCES knowledge_feeds(id) ON DELETE SET NULL,
    content_sha TEXT NOT NULL,
    text        TEXT NOT NULL,                           -- the canonical text spans point into
    chunks      INTEGER NOT NULL,
    duplicates  INTEGER NOT NULL,                        -- passages left out as (near) duplicates
    bytes       INTEGER NOT NULL,                        -- charged to the tenant's quota
    created_at  INTEGER NOT NULL
);
CREATE INDEX knowledge_sources_tenant ON knowledge_sources (tenant_id, created_at);
CREATE INDEX knowledge_sources_feed ON knowledge_sources (feed_id);
CREATE UNIQUE INDEX knowledge_sources_origin ON knowledge_sources (tenant_id, origin)
    WHERE origin IS NOT NULL;

CREATE TABLE knowledge_chunks (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,       -- never reused: the index's marker
    tenant_id   TEXT NOT NULL,
    source_id   TEXT NOT NULL REFERENCES knowledge_sources(id) ON DELETE CASCADE,
    ordinal     INTEGER NOT NULL,
    heading     TEXT NOT NULL,
    text        TEXT NOT NULL,
    span_start  INTEGER NOT NULL,                        -- bytes in the source's text
    span_end    INTEGER NOT NULL,
    content_hash TEXT NOT NULL,                          -- exact dedup
    signature   BLOB NOT NULL,                           -- MinHash (u32 LE), near dedup
    embedding   BLOB NOT NULL                            -- f32 LE; empty without an embedder
);
CREATE INDEX knowledge_chunks_tenant ON knowledge_chunks (tenant_id, seq);
CREATE INDEX knowledge_chunks_source ON knowledge_chunks (source_id);

CREATE TABLE knowledge_removals (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL,
    source_id   TEXT NOT NULL,
    removed_at  INTEGER NOT NULL
);
CREATE INDEX knowledge_removals_tenant ON knowledge_removals (tenant_id, seq);
