-- forja control plane, schema 5: documents (transcripts, generated minutes,
-- corrected finals) with their lineage, the chunk sources of a generated
-- document, and each tenant's entity dictionary.

CREATE TABLE documents (
    id          TEXT PRIMARY KEY,                    -- doc-…
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    kind        TEXT NOT NULL,                       -- transcript | generated | final
    parent_id   TEXT REFERENCES documents(id),       -- generated: its transcript; final: its draft
    session     TEXT,                                -- the meeting this belongs to
    version     INTEGER NOT NULL DEFAULT 1,          -- generated: 1 = V1, 2 = a cloned session's V2…
    filename    TEXT NOT NULL,
    sha256      TEXT NOT NULL,                       -- the bytes, in the artifact store
    bytes       INTEGER NOT NULL,
    model       TEXT,                                -- generated: what wrote it
    created_at  INTEGER NOT NULL
);
CREATE INDEX documents_tenant ON documents (tenant_id, created_at);
CREATE INDEX documents_parent ON documents (parent_id);

-- What each chunk of a generated document came from.
CREATE TABLE document_chunks (
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    chunk_id    TEXT NOT NULL,
    source      TEXT NOT NULL,                       -- the transcript segment(s)
    start_s     REAL,
    end_s       REAL,
    PRIMARY KEY (document_id, chunk_id)
);

-- Spelling fixes of names and terms, applied to the tenant's generations.
CREATE TABLE dictionary (
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    wrong           TEXT NOT NULL,
    right           TEXT NOT NULL,
    source_document TEXT,                            -- provenance: the final document…
    source_chunk    TEXT,                            -- …and the paragraph's chunk id
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, wrong)
);
