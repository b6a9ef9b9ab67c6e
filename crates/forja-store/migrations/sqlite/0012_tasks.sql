-- forja control plane, schema 12: the node's scheduled tasks. The fire
-- each task last claimed and who holds it now (a lease, so one runner
-- works on a task at a time across processes sharing this database), and
-- the record of every run.

CREATE TABLE task_state (
    name         TEXT PRIMARY KEY,                 -- backup, gc, report, …
    last_fire    INTEGER,                          -- scheduled time of the last claimed fire
    holder       TEXT,                             -- the runner holding the lease
    lease_until  INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE task_runs (
    id             TEXT PRIMARY KEY,               -- run-…
    name           TEXT NOT NULL,
    scheduled_for  INTEGER,                        -- NULL: started by hand
    started_at     INTEGER NOT NULL,
    finished_at    INTEGER,
    outcome        TEXT NOT NULL,                  -- running | ok | warning | failed | skipped | abandoned
    detail         TEXT NOT NULL DEFAULT '',
    runner         TEXT NOT NULL,
    missed         INTEGER NOT NULL DEFAULT 0      -- fires that passed unrun before this one
);
CREATE INDEX task_runs_by_name ON task_runs(name, started_at DESC);
