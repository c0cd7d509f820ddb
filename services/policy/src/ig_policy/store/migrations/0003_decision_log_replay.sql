-- Decision replay (ig-policy replay): every record carries its input sealed to the replay key ("sealedInput") and
-- keyed pseudonyms instead of bare hashes. Rows written before this migration keep neither, so the check binds
-- new rows only (NOT VALID); replay reads a time range across all tenants, hence the index on ts alone.
ALTER TABLE {schema}.decision_log
    ADD CONSTRAINT decision_log_input_sealed CHECK (record ? 'sealedInput') NOT VALID;
CREATE INDEX decision_log_ts ON {schema}.decision_log (ts);
