-- forja control plane, schema 2: golden sets and the model registry.

CREATE TABLE golden_sets (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    version      INTEGER NOT NULL,
    name         TEXT NOT NULL,
    sha256       TEXT NOT NULL,           -- artifact address of the JSONL
    examples     INTEGER NOT NULL,
    prompt_keys  TEXT NOT NULL,           -- JSON array: kept out of training
    created_at   INTEGER NOT NULL,
    UNIQUE (tenant_id, version)
);

CREATE TABLE model_versions (
    id              TEXT PRIMARY KEY,     -- UUID
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    job_id          TEXT UNIQUE REFERENCES jobs(id),
    parent_id       TEXT REFERENCES model_versions(id),
    base_model      TEXT NOT NULL,
    base_sha256     TEXT,
    adapter_sha256  TEXT NOT NULL,
    adapter_files   TEXT NOT NULL,        -- {name: sha256} (JSON)
    dataset_sha256  TEXT,
    manifest        TEXT NOT NULL,        -- JSON
    code_commit     TEXT,
    hyperparameters TEXT,                 -- JSON
    golden_set_id   TEXT REFERENCES golden_sets(id),
    eval            TEXT,                 -- summary reports (JSON)
    eval_sha256     TEXT,                 -- full report artifact
    gate            TEXT,                 -- the gate's decision (JSON)
    status          TEXT NOT NULL CHECK (status IN ('candidate', 'promoted', 'rejected', 'archived')),
    status_reason   TEXT,
    created_at      INTEGER NOT NULL,
    promoted_at     INTEGER,
    promoted_by     TEXT
);
CREATE INDEX model_versions_tenant ON model_versions (tenant_id, created_at);

CREATE TABLE aliases (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    version_id  TEXT NOT NULL REFERENCES model_versions(id),
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE registry_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    kind        TEXT NOT NULL,            -- registered | promoted | rolled_back | rejected | alias_set | status
    version_id  TEXT,
    previous_id TEXT,
    alias       TEXT,
    actor       TEXT NOT NULL,
    reason      TEXT,
    created_at  INTEGER NOT NULL
);
CREATE INDEX registry_log_tenant ON registry_log (tenant_id, id);

-- Bumped by every champion move: the NEW_MODEL_AVAILABLE flag for pollers.
ALTER TABLE tenants ADD COLUMN model_generation INTEGER NOT NULL DEFAULT 0;
