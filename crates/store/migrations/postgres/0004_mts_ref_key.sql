-- A record's reference is '<key>.<nonce>': the key stays with the (connector, registrant) row
-- and the nonce is fresh per send. A late callback of an earlier send is then recognised by its
-- key as stale (acknowledged, ignored) instead of being refused as unknown.
ALTER TABLE mts_records ADD COLUMN ref_key TEXT;
-- Rows sent before: their whole reference is the key.
UPDATE mts_records SET ref_key = ref;
CREATE UNIQUE INDEX mts_records_ref_key_key ON mts_records (ref_key);
