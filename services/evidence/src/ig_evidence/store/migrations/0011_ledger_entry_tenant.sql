-- Each entry records the tenant it was appended for, beside the entry and outside its hashed content: entry hashes,
-- the tiles and every checkpoint stay what they were, and LedgerService Get/List return an entry only to readers of
-- its tenant. NULL = attributed to no tenant: readable by no one through Get/List (fail closed); the Merkle-level
-- RPCs and the tiles, which carry hashes only, still cover it.
--
-- Nothing here rewrites or scans the entries under a lock that stops appends for long: the column is added without
-- a default (no rewrite), its CHECK holds for new rows at once and is validated over the old ones by 0012 (NOT
-- VALID here: adding it checked would scan the table under ACCESS EXCLUSIVE), and the backfill is 0012's, which
-- takes row locks only. Measured: services/evidence/bench/bench_migration_0011.py (the evidence README, "Upgrading
-- a large ledger").
ALTER TABLE {schema}.ledger_entries ADD COLUMN tenant text;
ALTER TABLE {schema}.ledger_entries ADD CONSTRAINT ledger_entries_tenant_check
    CHECK (tenant ~ '^[a-z0-9][a-z0-9-]{0,62}$') NOT VALID;
CREATE INDEX ledger_entries_tenant ON {schema}.ledger_entries (tenant, seq);

-- ledger_append takes each entry's tenant; the form without it goes, so no writer can append unattributed rows.
CREATE FUNCTION {schema}.ledger_append(seqs bigint[], tss timestamptz[], kinds text[], subjects text[],
                                       payloads bytea[], payload_sha256s text[], prev_hashes text[],
                                       entry_hashes text[], tenants text[])
    RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH entries AS (
        INSERT INTO {schema}.ledger_entries (seq, ts, kind, subject, payload, payload_sha256, prev_hash, entry_hash,
                                            tenant)
        SELECT * FROM unnest(seqs, tss, kinds, subjects, payloads, payload_sha256s, prev_hashes, entry_hashes, tenants)
        ORDER BY 1
        RETURNING seq)
    SELECT count(*) FROM entries
$$;
ALTER FUNCTION {schema}.ledger_append(bigint[], timestamptz[], text[], text[], bytea[], text[], text[], text[], text[])
    OWNER TO ig_ledger_owner;
REVOKE ALL ON FUNCTION {schema}.ledger_append(bigint[], timestamptz[], text[], text[], bytea[], text[], text[],
                                              text[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {schema}.ledger_append(bigint[], timestamptz[], text[], text[], bytea[], text[], text[],
                                                 text[], text[]) TO {runtime_role};
DROP FUNCTION {schema}.ledger_append(bigint[], timestamptz[], text[], text[], bytea[], text[], text[], text[]);
