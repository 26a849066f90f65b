-- Registry schema (SQLite). Column-for-column identical to the PostgreSQL schema; timestamps are
-- stored as the text sqlx writes for chrono values, and JSON as text.

CREATE TABLE id_types (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    validation_regex TEXT,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX id_types_name_key ON id_types (lower(name));

CREATE TABLE registrants (
    id INTEGER PRIMARY KEY,
    external_key TEXT,
    is_group BOOLEAN NOT NULL DEFAULT FALSE,
    name TEXT NOT NULL,
    given_name TEXT,
    family_name TEXT,
    addl_name TEXT,
    gender TEXT,
    birthdate DATE,
    birthdate_not_exact BOOLEAN NOT NULL DEFAULT FALSE,
    birth_place TEXT,
    address TEXT,
    phone TEXT,
    phone_numbers TEXT NOT NULL DEFAULT '[]',
    email TEXT,
    registration_date DATE,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    disabled_reason TEXT,
    group_kind TEXT,
    attributes TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    CONSTRAINT registrants_external_key_key UNIQUE (external_key)
);
CREATE INDEX registrants_name_idx ON registrants (name, id);
CREATE INDEX registrants_updated_idx ON registrants (updated_at, id);

CREATE TABLE reg_ids (
    id INTEGER PRIMARY KEY,
    registrant_id INTEGER NOT NULL REFERENCES registrants (id) ON DELETE CASCADE,
    id_type_id INTEGER NOT NULL REFERENCES id_types (id),
    value TEXT NOT NULL,
    expiry_date DATE,
    status TEXT NOT NULL DEFAULT 'valid' CHECK (status IN ('valid', 'invalid')),
    description TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CONSTRAINT reg_ids_registrant_type_key UNIQUE (registrant_id, id_type_id)
);
CREATE INDEX reg_ids_type_value_idx ON reg_ids (id_type_id, value);

CREATE TABLE memberships (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL REFERENCES registrants (id) ON DELETE CASCADE,
    individual_id INTEGER NOT NULL REFERENCES registrants (id) ON DELETE CASCADE,
    kinds TEXT NOT NULL DEFAULT '[]',
    start_date DATE,
    end_date DATE,
    created_at TEXT NOT NULL,
    CONSTRAINT memberships_group_individual_key UNIQUE (group_id, individual_id)
);
CREATE INDEX memberships_individual_idx ON memberships (individual_id);

CREATE TABLE bank_accounts (
    id INTEGER PRIMARY KEY,
    registrant_id INTEGER NOT NULL REFERENCES registrants (id) ON DELETE CASCADE,
    account_number TEXT NOT NULL,
    iban TEXT,
    bank_code TEXT,
    bic TEXT,
    account_holder_name TEXT,
    created_at TEXT NOT NULL,
    CONSTRAINT bank_accounts_registrant_account_key UNIQUE (registrant_id, account_number)
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    entity TEXT NOT NULL,
    entity_id INTEGER,
    registrant_id INTEGER,
    request_id TEXT,
    before TEXT,
    after TEXT
);
CREATE INDEX audit_log_registrant_idx ON audit_log (registrant_id, id);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    key_id TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'registrar', 'viewer', 'connector')),
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    CONSTRAINT api_keys_key_id_key UNIQUE (key_id)
);
