-- Each entry records the tenant it was appended for, beside the entry and outside its hashed content: entry hashes,
-- the tiles and every checkpoint stay what they were, and LedgerService Get/List return an entry only to readers of
-- its tenant. NULL = attributed to no tenant: readable by no one through Get/List (fail closed); the Merkle-level
-- RPCs and the tiles, which carry hashes only, still cover it.
ALTER TABLE {schema}.ledger_entries ADD COLUMN tenant text CHECK (tenant ~ '^[a-z0-9][a-z0-9-]{0,62}$');
CREATE INDEX ledger_entries_tenant ON {schema}.ledger_entries (tenant, seq);

-- Entries from before this migration: attributed only where their appender wrote the tenant it had verified into
-- the payload, i.e. the evidence service's own registrations (the registering tenant) and the portal's access
-- entries (the signed-in user's tenant). Other kinds' payloads are whatever the caller sent, and a manifest names no
-- tenant: those rows stay NULL rather than be given a tenant nothing verified. (The helper lives in the schema, not
-- pg_temp: the migrator may not create temporary objects.)
CREATE FUNCTION {schema}.ledger_0011_verified_tenant_of(payload bytea) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    tenant text;
BEGIN
    tenant := convert_from(payload, 'UTF8')::jsonb ->> 'tenant';
    RETURN CASE WHEN tenant ~ '^[a-z0-9][a-z0-9-]{0,62}$' THEN tenant END;
EXCEPTION WHEN others THEN  -- not UTF-8, not JSON, not an object: the ledger keeps whatever it took
    RETURN NULL;
END;
$$;
-- The one UPDATE these rows will ever see, as the ledger's owner inside this migration's transaction: the trigger
-- that refuses every change is off for this statement only (the owner's ALTER TABLE holds the table exclusively).
ALTER TABLE {schema}.ledger_entries DISABLE TRIGGER ledger_entries_append_only;
UPDATE {schema}.ledger_entries SET tenant = {schema}.ledger_0011_verified_tenant_of(payload)
    WHERE kind IN ('evidence.bundle_registered', 'ig.audit.access');
ALTER TABLE {schema}.ledger_entries ENABLE TRIGGER ledger_entries_append_only;
DROP FUNCTION {schema}.ledger_0011_verified_tenant_of(bytea);  -- a helper of this backfill only

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
