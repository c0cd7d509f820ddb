-- The ledger's tables get an owner of their own, and the service's runtime role keeps only what appending and
-- reading need: SELECT, plus ledger_append / ledger_lock_head, which run as that owner (SECURITY DEFINER). The
-- runtime role holds no INSERT, UPDATE, DELETE or TRUNCATE on the entries, and, not being their owner, cannot
-- ALTER TABLE ... DISABLE TRIGGER either; the append trigger (which moves the head row) still checks every entry.
-- ig-infra (or the chart) creates the role and makes the migrator a member; a single-role superuser setup (tests)
-- gets it here.
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ig_ledger_owner') THEN
        CREATE ROLE ig_ledger_owner NOLOGIN;
    END IF;
END $$;

-- A role must hold CREATE on a schema to be given a table in it.
GRANT USAGE, CREATE ON SCHEMA {schema} TO ig_ledger_owner;
ALTER TABLE {schema}.ledger_entries OWNER TO ig_ledger_owner;
ALTER TABLE {schema}.ledger_head OWNER TO ig_ledger_owner;
ALTER TABLE {schema}.ledger_checkpoints OWNER TO ig_ledger_owner;
ALTER TABLE {schema}.ledger_signing_key OWNER TO ig_ledger_owner;
ALTER FUNCTION {schema}.ledger_refuse_change() OWNER TO ig_ledger_owner;
ALTER FUNCTION {schema}.ledger_check_append() OWNER TO ig_ledger_owner;

-- The migrator's default privileges gave the runtime role full DML on these tables; take it back.
REVOKE ALL ON {schema}.ledger_entries, {schema}.ledger_head, {schema}.ledger_checkpoints,
    {schema}.ledger_signing_key FROM PUBLIC, {runtime_role};
GRANT SELECT ON {schema}.ledger_entries, {schema}.ledger_head TO {runtime_role};
-- A checkpoint and the generated signing key are each written once (INSERT ... ON CONFLICT DO NOTHING); their
-- triggers refuse any change, and only the owner could switch those off. Verify re-checks every checkpoint.
GRANT SELECT, INSERT ON {schema}.ledger_checkpoints, {schema}.ledger_signing_key TO {runtime_role};

-- Appends a batch of entries in seq order (the insert trigger checks each extends the head and moves the head);
-- returns how many were inserted.
CREATE FUNCTION {schema}.ledger_append(seqs bigint[], tss timestamptz[], kinds text[], subjects text[],
                                       payloads bytea[], payload_sha256s text[], prev_hashes text[],
                                       entry_hashes text[])
    RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH entries AS (
        INSERT INTO {schema}.ledger_entries (seq, ts, kind, subject, payload, payload_sha256, prev_hash, entry_hash)
        SELECT * FROM unnest(seqs, tss, kinds, subjects, payloads, payload_sha256s, prev_hashes, entry_hashes)
        ORDER BY 1
        RETURNING seq)
    SELECT count(*) FROM entries
$$;

-- The head row, locked until the caller's transaction ends (the runtime role may not SELECT ... FOR UPDATE it).
CREATE FUNCTION {schema}.ledger_lock_head(OUT size bigint, OUT head_hash text)
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT size, head_hash FROM {schema}.ledger_head WHERE singleton FOR UPDATE
$$;

ALTER FUNCTION {schema}.ledger_append(bigint[], timestamptz[], text[], text[], bytea[], text[], text[], text[])
    OWNER TO ig_ledger_owner;
ALTER FUNCTION {schema}.ledger_lock_head() OWNER TO ig_ledger_owner;
REVOKE ALL ON FUNCTION {schema}.ledger_append(bigint[], timestamptz[], text[], text[], bytea[], text[], text[],
                                              text[]), {schema}.ledger_lock_head() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {schema}.ledger_append(bigint[], timestamptz[], text[], text[], bytea[], text[], text[],
                                                 text[]), {schema}.ledger_lock_head() TO {runtime_role};
