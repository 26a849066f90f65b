-- ODK submissions received through an ODK MTS connector: one row per (connector, ODK instance
-- id). The row is what makes a re-read window or a replayed callback an update (or nothing),
-- never a second registrant. See src/odk_submissions.rs.
CREATE TABLE odk_submissions (
    connector_id INTEGER NOT NULL REFERENCES mts_connectors (id) ON DELETE CASCADE,
    instance_id TEXT NOT NULL,
    -- The last run whose window brought it (odk_run_submissions has every run's).
    run_id INTEGER REFERENCES mts_runs (id) ON DELETE SET NULL,
    submission_date TEXT,
    -- What became of it when last applied: 'created', 'updated', 'duplicate' (its token
    -- belongs to another registrant), 'held' (authentication failed and the connector holds
    -- such submissions for review), 'invalid' (the document is not a valid registrant).
    outcome TEXT NOT NULL,
    -- MTS's status for the record ('processed' or the failure).
    status TEXT NOT NULL,
    registrant_id INTEGER REFERENCES registrants (id) ON DELETE SET NULL,
    duplicate_of INTEGER REFERENCES registrants (id) ON DELETE SET NULL,
    error_code TEXT,
    error_message TEXT,
    -- The result as received, kept for review when no registrant was made from it.
    document TEXT,
    -- SHA-256 of the result as received: an identical replay changes nothing.
    digest TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (connector_id, instance_id)
);
CREATE INDEX odk_submissions_run_idx ON odk_submissions (run_id, outcome);
CREATE INDEX odk_submissions_outcome_idx ON odk_submissions (connector_id, outcome);

-- What each run's window brought, one row per (run, submission): a run's counts stay its own
-- when a later window reads the same submissions again, and a run is complete once it has as
-- many rows as ODK Central held submissions in its window.
CREATE TABLE odk_run_submissions (
    run_id INTEGER NOT NULL REFERENCES mts_runs (id) ON DELETE CASCADE,
    instance_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (run_id, instance_id)
);
