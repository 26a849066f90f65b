-- MTS connectors (SQLite; column-for-column identical to the PostgreSQL schema). See
-- src/mts.rs. Timestamps are chrono text; JSON is text.

CREATE TABLE mts_connectors (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    -- MtsConnectorSettings as JSON: everything but the name and the secrets.
    settings TEXT NOT NULL,
    -- Sealed with the deployment's secret key (SecretBox); never returned in clear.
    callback_secret TEXT,
    odk_secret TEXT,
    -- 'stopped' or 'running' (a recurring connector fires every interval while running).
    state TEXT NOT NULL DEFAULT 'stopped' CHECK (state IN ('stopped', 'running')),
    -- ODK input: submissions before this instant have been imported (issue 5).
    watermark TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX mts_connectors_name_key ON mts_connectors (lower(name));

-- One run: a delta, a manual import, or a retry of failed records.
CREATE TABLE mts_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    connector_id INTEGER NOT NULL REFERENCES mts_connectors (id) ON DELETE CASCADE,
    -- 'delta', 'manual' or 'retry'.
    kind TEXT NOT NULL,
    -- 'queued', 'running', 'submitted' (everything sent, callbacks owed), 'completed',
    -- 'failed' (a run error, see error), 'stopped'.
    status TEXT NOT NULL,
    -- Manual import: {"registrant_ids": [...]} or {"filter": [...]}; NULL for a delta.
    selection TEXT,
    error TEXT,
    -- Records handed to MTS; the other counts are derived from mts_records.
    sent INTEGER NOT NULL DEFAULT 0,
    -- Keyset cursor of the selection: the last registrant id sent (a resumed run goes on).
    cursor INTEGER NOT NULL DEFAULT 0,
    window_start TEXT,
    window_end TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);
CREATE INDEX mts_runs_connector_idx ON mts_runs (connector_id, id);
CREATE INDEX mts_runs_status_idx ON mts_runs (status, id);

-- A manual import's registrants (an id list or an uploaded CSV), however many.
CREATE TABLE mts_run_targets (
    run_id INTEGER NOT NULL REFERENCES mts_runs (id) ON DELETE CASCADE,
    registrant_id INTEGER NOT NULL,
    PRIMARY KEY (run_id, registrant_id)
);

-- One MTS request (a chunk of a run).
CREATE TABLE mts_chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES mts_runs (id) ON DELETE CASCADE,
    -- MTS request_identifier, once MTS accepted the request.
    request_id TEXT,
    -- 'submitting', 'submitted', 'done', 'abandoned'.
    status TEXT NOT NULL,
    records INTEGER NOT NULL,
    -- When the watchdog looks at it next (status polling for lost callbacks).
    check_at TEXT NOT NULL,
    polls INTEGER NOT NULL DEFAULT 0,
    last_mts_status TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX mts_chunks_run_idx ON mts_chunks (run_id, id);
CREATE INDEX mts_chunks_check_idx ON mts_chunks (status, check_at);

-- Tokenisation state of one registrant for one connector.
CREATE TABLE mts_records (
    connector_id INTEGER NOT NULL REFERENCES mts_connectors (id) ON DELETE CASCADE,
    registrant_id INTEGER NOT NULL REFERENCES registrants (id) ON DELETE CASCADE,
    -- 'sent', 'processed', 'failed'.
    state TEXT NOT NULL,
    -- Opaque reference carried through MTS (.input.ref); a fresh one per send, so a late
    -- callback of an earlier send is recognised as stale.
    ref TEXT NOT NULL,
    run_id INTEGER REFERENCES mts_runs (id) ON DELETE SET NULL,
    chunk_id INTEGER REFERENCES mts_chunks (id) ON DELETE SET NULL,
    error_code TEXT,
    error_message TEXT,
    -- Sends so far (a re-send after a lost callback counts).
    attempts INTEGER NOT NULL DEFAULT 0,
    next_retry_at TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (connector_id, registrant_id)
);
CREATE UNIQUE INDEX mts_records_ref_key ON mts_records (ref);
CREATE INDEX mts_records_run_idx ON mts_records (run_id, state);
CREATE INDEX mts_records_chunk_idx ON mts_records (chunk_id, state);
CREATE INDEX mts_records_retry_idx ON mts_records (connector_id, state, next_retry_at);

-- Callback sessions opened by /web/session/authenticate (Odoo-compatible login of MTS).
CREATE TABLE mts_callback_sessions (
    -- SHA-256 of the session_id cookie, hex.
    token_hash TEXT NOT NULL,
    -- One row per connector whose credentials the login matched.
    connector_id INTEGER NOT NULL REFERENCES mts_connectors (id) ON DELETE CASCADE,
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (token_hash, connector_id)
);
CREATE INDEX mts_callback_sessions_expiry_idx ON mts_callback_sessions (expires_at);
