-- Callback deliveries: created in the transaction that finishes a request, so delivery is
-- at-least-once across restarts (MTS: none, spec §13 #2). line_no is NULL for a bulk call.
CREATE TABLE mts_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id      TEXT NOT NULL REFERENCES mts_requests (id) ON DELETE CASCADE,
    line_no         INTEGER,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    updated_at      TEXT NOT NULL
);

CREATE INDEX mts_deliveries_due ON mts_deliveries (status, next_attempt_at);
