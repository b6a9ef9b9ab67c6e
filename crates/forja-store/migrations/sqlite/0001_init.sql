-- forja control plane, schema 1. Times are unix seconds (UTC). JSON columns
-- hold serde-serialised Rust types; a Postgres port maps them to jsonb.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    tier        TEXT NOT NULL,
    settings    TEXT NOT NULL,          -- TenantSettings (JSON)
    cron_last   INTEGER,                -- last cron fire handled
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT REFERENCES tenants(id),   -- NULL for worker keys
    role        TEXT NOT NULL CHECK (role IN ('tenant', 'worker')),
    hash        TEXT NOT NULL UNIQUE,          -- sha256 of the key, hex
    prefix      TEXT NOT NULL,                 -- first characters, for display
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE examples (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    created_at   INTEGER NOT NULL,
    source       TEXT NOT NULL,
    input        TEXT NOT NULL,          -- what was posted (JSON)
    record       TEXT,                   -- the curated training line (JSON), if kept
    content_hash TEXT,                   -- of the curated line; exact dedup per tenant
    status       TEXT NOT NULL CHECK (status IN ('curated', 'rejected', 'claimed')),
    reason       TEXT,                   -- why rejected
    job_id       TEXT                    -- the job that claimed it
);
CREATE INDEX examples_pending ON examples (tenant_id, status);
CREATE INDEX examples_job ON examples (job_id);
CREATE UNIQUE INDEX examples_dedup ON examples (tenant_id, content_hash)
    WHERE status IN ('curated', 'claimed');

CREATE TABLE files (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    purpose        TEXT NOT NULL,
    filename       TEXT NOT NULL,
    bytes          INTEGER NOT NULL,
    sha256         TEXT NOT NULL,
    lines          INTEGER NOT NULL,
    status         TEXT NOT NULL,
    status_details TEXT,
    created_at     INTEGER NOT NULL
);
CREATE INDEX files_tenant ON files (tenant_id, created_at);

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    model            TEXT NOT NULL,
    training_file    TEXT,
    validation_file  TEXT,
    status           TEXT NOT NULL,
    trigger          TEXT NOT NULL,
    spec             TEXT NOT NULL,      -- JobSpec (JSON): requested hyperparameters, resources, limits
    resolved         TEXT,               -- Hyperparameters after "auto" (JSON)
    priority         INTEGER NOT NULL,
    error_code       TEXT,
    error_message    TEXT,
    error_param      TEXT,
    trained_tokens   INTEGER,
    fine_tuned_model TEXT,
    adapter_sha256   TEXT,
    result           TEXT,               -- JobResult (JSON)
    progress_step    INTEGER NOT NULL DEFAULT 0,
    progress_total   INTEGER NOT NULL DEFAULT 0,
    lease_worker     TEXT,
    lease_until      INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER
);
CREATE INDEX jobs_tenant ON jobs (tenant_id, created_at);
CREATE INDEX jobs_queue ON jobs (status, priority, created_at);

CREATE TABLE job_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      TEXT NOT NULL REFERENCES jobs(id),
    created_at  INTEGER NOT NULL,
    level       TEXT NOT NULL,
    kind        TEXT NOT NULL,           -- message | metrics
    message     TEXT NOT NULL,
    data        TEXT                     -- JSON
);
CREATE INDEX job_events_job ON job_events (job_id, id);

CREATE TABLE checkpoints (
    id          TEXT PRIMARY KEY,
    job_id      TEXT NOT NULL REFERENCES jobs(id),
    step        INTEGER NOT NULL,
    files       TEXT NOT NULL,           -- {relative path: sha256} (JSON)
    metrics     TEXT NOT NULL,           -- JSON
    created_at  INTEGER NOT NULL,
    UNIQUE (job_id, step)
);

CREATE TABLE webhooks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    job_id      TEXT NOT NULL,
    url         TEXT NOT NULL,
    event       TEXT NOT NULL,           -- fine_tuning.job.succeeded, …
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    last_error  TEXT
);
CREATE INDEX webhooks_due ON webhooks (status, next_at);
