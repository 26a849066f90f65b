-- Callback deliveries (PostgreSQL twin of ../sqlite/0002_deliveries.sql).
CREATE TABLE mts_deliveries (
    id              BIGSERIAL PRIMARY KEY,
    request_id      TEXT NOT NULL REFERENCES mts_requests (id) ON DELETE CASCADE,
    line_no         BIGINT,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_status     BIGINT,
    last_error      TEXT,
    updated_at      TEXT NOT NULL
);

CREATE INDEX mts_deliveries_due ON mts_deliveries (status, next_attempt_at);
