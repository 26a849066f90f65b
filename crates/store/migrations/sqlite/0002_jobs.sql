-- Job queue and schedules (SQLite). Column-for-column identical to the PostgreSQL schema; see
-- src/jobs.rs for the state machine. Timestamps are the text sqlx writes for chrono values (one
-- format, so text comparison orders them); JSON is text.

-- AUTOINCREMENT: a job id is never reused, even after old jobs are purged (ids appear in logs).
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'succeeded', 'dead', 'cancelled')),
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),
    run_at TEXT NOT NULL,
    -- The worker that holds the job while running, or held it last.
    locked_by TEXT,
    -- End of the lease while running; NULL otherwise.
    locked_until TEXT,
    last_error TEXT,
    progress_done INTEGER,
    progress_total INTEGER,
    result TEXT,
    dedupe_key TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT,
    CONSTRAINT jobs_dedupe_key_key UNIQUE (dedupe_key)
);
-- Claiming: due queued jobs in run_at order.
CREATE INDEX jobs_claim_idx ON jobs (status, run_at, id);
-- Crash recovery: running jobs whose lease expired.
CREATE INDEX jobs_lease_idx ON jobs (locked_until) WHERE status = 'running';
-- Listing (newest first) by status or kind.
CREATE INDEX jobs_status_id_idx ON jobs (status, id);
CREATE INDEX jobs_kind_id_idx ON jobs (kind, id);

CREATE TABLE schedules (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    every_minutes INTEGER CHECK (every_minutes >= 1),
    -- 'HH:MM', UTC.
    daily_at TEXT,
    next_run_at TEXT NOT NULL,
    last_run_at TEXT,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CONSTRAINT schedules_name_key UNIQUE (name),
    CONSTRAINT schedules_one_spec CHECK ((every_minutes IS NULL) <> (daily_at IS NULL))
);
CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE enabled;
