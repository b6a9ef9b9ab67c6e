-- forja control plane, schema 9: a federation hub's state. Nodes are
-- ed25519 public keys an admin approves or revokes; a delta is a node's
-- signed manifest (its files are artifacts), accepted into a round or
-- rejected with the reason; a round aggregates when enough nodes
-- contributed (or fails at its deadline) and is published as a manifest
-- the hub signs.

CREATE TABLE fed_nodes (
    public_key  TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'revoked')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE fed_rounds (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    status      TEXT NOT NULL CHECK (status IN ('open', 'published', 'failed')),
    opened_at   INTEGER NOT NULL,
    deadline    INTEGER NOT NULL,
    closed_at   INTEGER,
    reason      TEXT,
    manifest    TEXT,      -- the published round manifest (JSON text, as signed)
    signature   TEXT       -- the hub's signature of it
);
CREATE UNIQUE INDEX fed_rounds_one_open ON fed_rounds (status) WHERE status = 'open';

CREATE TABLE fed_deltas (
    sha256      TEXT PRIMARY KEY,      -- of the manifest's bytes
    node        TEXT NOT NULL REFERENCES fed_nodes(public_key),
    round_id    INTEGER REFERENCES fed_rounds(id),
    manifest    TEXT NOT NULL,
    signature   TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('accepted', 'rejected')),
    reason      TEXT,
    checks      TEXT NOT NULL,         -- what the hub measured (JSON)
    created_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX fed_deltas_one_per_round ON fed_deltas (round_id, node) WHERE status = 'accepted';
