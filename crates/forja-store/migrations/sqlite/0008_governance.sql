-- forja control plane, schema 8: governance and the ledger.
--
-- Model versions may wait for auditors (`awaiting_audit`). Auditors are
-- node-wide (an operator registers their ed25519 public keys); a vote is
-- one auditor's signed approve/reject of one version's evaluation report.
-- The ledger is a hash-chained, node-signed log of federation and
-- governance events: entry n carries the hash of entry n-1.

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
    status          TEXT NOT NULL CHECK (status IN ('candidate', 'awaiting_audit', 'promoted', 'rejected', 'archived', 'failed')),
    status_reason   TEXT,
    created_at      INTEGER NOT NULL,
    promoted_at     INTEGER,
    promoted_by     TEXT
);
INSERT INTO model_versions_new SELECT * FROM model_versions;
DROP TABLE model_versions;
ALTER TABLE model_versions_new RENAME TO model_versions;
CREATE INDEX model_versions_tenant ON model_versions (tenant_id, created_at);
CREATE INDEX model_versions_awaiting ON model_versions (status) WHERE status = 'awaiting_audit';

CREATE TABLE auditors (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    public_key     TEXT NOT NULL UNIQUE,   -- ed25519, hex
    reputation     INTEGER NOT NULL,
    active         INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE TABLE audit_votes (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    version_id     TEXT NOT NULL REFERENCES model_versions(id),
    auditor_id     TEXT NOT NULL REFERENCES auditors(id),
    approve        INTEGER NOT NULL,
    report_sha256  TEXT NOT NULL,
    signed_at      INTEGER NOT NULL,
    signature      TEXT NOT NULL UNIQUE,
    reputation     INTEGER NOT NULL,       -- the auditor's, when it voted
    settled        INTEGER NOT NULL DEFAULT 0,  -- slashed or rewarded already
    created_at     INTEGER NOT NULL,
    UNIQUE (version_id, auditor_id)
);

CREATE TABLE ledger (
    seq         INTEGER PRIMARY KEY,       -- 1, 2, ... without gaps
    kind        TEXT NOT NULL,
    tenant_id   TEXT,
    body        TEXT NOT NULL,             -- JSON, hashed as stored
    created_at  INTEGER NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL UNIQUE,
    signer      TEXT NOT NULL,             -- the node's public key, hex
    signature   TEXT NOT NULL
);
