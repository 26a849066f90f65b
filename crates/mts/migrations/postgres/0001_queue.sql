-- MTS simulator queue (PostgreSQL twin of ../sqlite/0001_queue.sql): written before the HTTP
-- answer, so a restart loses nothing (MTS keeps its queue in memory, spec §5.3).
CREATE TABLE mts_requests (
    id            TEXT PRIMARY KEY,
    status        TEXT NOT NULL,
    input_type    TEXT NOT NULL,
    output_type   TEXT NOT NULL,
    delivery_type TEXT NOT NULL,
    output_format TEXT NOT NULL,
    callback_props TEXT,
    number_total  BIGINT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE mts_records (
    seq           BIGSERIAL UNIQUE,
    request_id    TEXT NOT NULL REFERENCES mts_requests (id) ON DELETE CASCADE,
    line_no       BIGINT NOT NULL,
    received      TEXT NOT NULL,
    demographics  TEXT,
    vid           TEXT,
    status        TEXT NOT NULL,
    token         TEXT,
    error_code    TEXT,
    error_message TEXT,
    result        TEXT,
    attempts      BIGINT NOT NULL DEFAULT 0,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (request_id, line_no)
);

CREATE INDEX mts_records_status ON mts_records (status, seq);
