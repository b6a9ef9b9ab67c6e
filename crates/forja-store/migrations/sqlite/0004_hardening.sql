-- forja control plane, schema 4: keys with roles, names and expiry; leases
-- bound to the key that took them and a secret token; examples held back
-- after a cancel; `failed` model versions; per-tenant storage accounting.
-- Runs with foreign keys off (SQLite's 12-step table rebuild) and is
-- checked with `PRAGMA foreign_key_check` before it commits.

-- API keys: an `admin` role, a name, an expiry.
CREATE TABLE api_keys_new (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT REFERENCES tenants(id),   -- NULL for worker and admin keys
    role        TEXT NOT NULL CHECK (role IN ('tenant', 'worker', 'admin')),
    hash        TEXT NOT NULL UNIQUE,          -- sha256 of the key, hex
    prefix      TEXT NOT NULL,                 -- first characters, for display
    name        TEXT,                          -- for people
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,                       -- not valid from then on
    revoked_at  INTEGER
);
INSERT INTO api_keys_new (id, tenant_id, role, hash, prefix, created_at, revoked_at)
    SELECT id, tenant_id, role, hash, prefix, created_at, revoked_at FROM api_keys;
DROP TABLE api_keys;
ALTER TABLE api_keys_new RENAME TO api_keys;
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- Examples: `held` (back from a cancelled job, not counted by triggers
-- until released or trained deliberately). Raw inputs stored before this
-- schema were not scrubbed: they are replaced by the curated line (or a
-- marker), so no personal data that curation removed stays at rest.
CREATE TABLE examples_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    created_at   INTEGER NOT NULL,
    source       TEXT NOT NULL,
    input        TEXT NOT NULL,          -- what was posted, PII-scrubbed (JSON)
    record       TEXT,                   -- the curated training line (JSON), if kept
    content_hash TEXT,                   -- of the curated line; exact dedup per tenant
    status       TEXT NOT NULL CHECK (status IN ('curated', 'rejected', 'claimed', 'held')),
    reason       TEXT,                   -- why rejected
    job_id       TEXT                    -- the job that claimed it
);
INSERT INTO examples_new (id, tenant_id, created_at, source, input, record, content_hash, status, reason, job_id)
    SELECT id, tenant_id, created_at, source,
           COALESCE(record, '{"redacted":"stored before inputs were scrubbed"}'),
           record, content_hash, status, reason, job_id FROM examples;
DROP TABLE examples;
ALTER TABLE examples_new RENAME TO examples;
CREATE INDEX examples_pending ON examples (tenant_id, status);
CREATE INDEX examples_job ON examples (job_id);
CREATE UNIQUE INDEX examples_dedup ON examples (tenant_id, content_hash)
    WHERE status IN ('curated', 'claimed', 'held');

-- Model versions: `failed` (could not be loaded in serving).
CREATE TABLE model_versions_new (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    job_id          TEXT UNIQUE REFERENCES jobs(id),
    parent_id       TEXT REFERENCES model_versions(id),
    base_model      TEXT NOT NULL,
    base_sha256     TEXT,
    adapter_sha256  TEXT NOT NULL,
    adapter_files   TEXT NOT NULL,
    dataset_sha256  TEXT,
    manifest        TEXT NOT NULL,
    code_commit     TEXT,
    hyperparameters TEXT,
    golden_set_id   TEXT REFERENCES golden_sets(id),
    eval            TEXT,
    eval_sha256     TEXT,
    gate            TEXT,
    status          TEXT NOT NULL CHECK (status IN ('candidate', 'promoted', 'rejected', 'archived', 'failed')),
    status_reason   TEXT,
    created_at      INTEGER NOT NULL,
    promoted_at     INTEGER,
    promoted_by     TEXT
);
INSERT INTO model_versions_new SELECT * FROM model_versions;
DROP TABLE model_versions;
ALTER TABLE model_versions_new RENAME TO model_versions;
CREATE INDEX model_versions_tenant ON model_versions (tenant_id, created_at);
UPDATE model_versions SET status = 'failed'
    WHERE status = 'rejected' AND status_reason LIKE 'failed to load in serving%';

-- Leases: the key that took the job and the sha256 of the lease's token.
ALTER TABLE jobs ADD COLUMN lease_key TEXT;
ALTER TABLE jobs ADD COLUMN lease_token TEXT;

-- Storage a tenant uses (bytes it sent that are kept: uploads, golden
-- sets, examples, the completion log), checked against its quota.
ALTER TABLE tenants ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN origin TEXT NOT NULL DEFAULT 'upload';   -- upload | generated
ALTER TABLE golden_sets ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
UPDATE tenants SET stored_bytes =
      (SELECT COALESCE(SUM(bytes), 0) FROM files WHERE files.tenant_id = tenants.id)
    + (SELECT COALESCE(SUM(length(input) + COALESCE(length(record), 0)), 0)
         FROM examples WHERE examples.tenant_id = tenants.id)
    + (SELECT COALESCE(SUM(length(messages) + length(output)), 0)
         FROM completions WHERE completions.tenant_id = tenants.id);
