-- Per-request counters, kept in the transaction that stores a batch of results: finishing a
-- request no longer rescans its records (a 100,000-record request made that quadratic).
ALTER TABLE mts_requests ADD COLUMN number_pending BIGINT NOT NULL DEFAULT 0;
ALTER TABLE mts_requests ADD COLUMN number_failed BIGINT NOT NULL DEFAULT 0;

UPDATE mts_requests SET
    number_pending = (SELECT COUNT(*) FROM mts_records d
                      WHERE d.request_id = mts_requests.id AND d.status IN ('submitted', 'processing')),
    number_failed = (SELECT COUNT(*) FROM mts_records d
                     WHERE d.request_id = mts_requests.id AND d.status IN ('invalid', 'error'));

-- The deliverer picks requests with a due callback, then reads that request's pending ones.
CREATE INDEX mts_deliveries_request ON mts_deliveries (request_id, status);

-- Work is handed out by line range of a request (one row updated per claim) instead of record
-- by record: a record is written once, when its result is stored. Records below
-- claimed_upto that are still 'submitted' are in the hands of a worker, or of a dead process
-- (the next start moves claimed_upto back).
ALTER TABLE mts_requests ADD COLUMN claimed_upto BIGINT NOT NULL DEFAULT 0;
UPDATE mts_records SET status = 'submitted' WHERE status = 'processing';
UPDATE mts_requests SET claimed_upto = number_total
    WHERE status NOT IN ('submitted', 'submitted_with_errors', 'processing');
DROP INDEX mts_records_status;
CREATE INDEX mts_requests_claimable ON mts_requests (created_at) WHERE claimed_upto < number_total;
