-- Entries from before 0011: attributed only where their appender wrote the tenant it had verified into the payload,
-- i.e. the evidence service's own registrations (the registering tenant) and the portal's access entries (the
-- signed-in user's tenant). Other kinds' payloads are whatever the caller sent, and a manifest names no tenant:
-- those rows stay NULL rather than be given a tenant nothing verified. (The helper lives in the schema, not
-- pg_temp: the migrator may not create temporary objects.)
--
-- No statement here takes a table lock that stops appends or reads: the UPDATE holds row locks on old rows only
-- (appends insert new ones), the trigger function is replaced (a catalog row, not the table) and VALIDATE CONSTRAINT
-- takes SHARE UPDATE EXCLUSIVE, which neither INSERT nor SELECT conflicts with. As this backfill first ran, inside
-- 0011 after its ADD COLUMN (ACCESS EXCLUSIVE) and with DISABLE TRIGGER (SHARE ROW EXCLUSIVE), both held until
-- commit, appends and reads waited 215 s at 10 M entries (bench_migration_0011.py).
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

-- The one UPDATE these rows will ever see. The append-only trigger's function lets exactly it through, and only
-- inside this transaction: it is replaced here and put back before commit, so no other session ever runs the
-- lenient version (catalog changes are transactional). What it lets through: on ledger_entries, an UPDATE that sets
-- a NULL tenant and changes nothing else.
CREATE OR REPLACE FUNCTION {schema}.ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'ledger_entries' AND TG_OP = 'UPDATE' AND TG_LEVEL = 'ROW' THEN
        IF OLD.tenant IS NULL AND NEW.tenant IS NOT NULL
                AND (NEW.seq, NEW.ts, NEW.kind, NEW.subject, NEW.payload, NEW.payload_sha256, NEW.prev_hash,
                     NEW.entry_hash)
                    IS NOT DISTINCT FROM (OLD.seq, OLD.ts, OLD.kind, OLD.subject, OLD.payload, OLD.payload_sha256,
                                          OLD.prev_hash, OLD.entry_hash) THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'ledger table %.% is append-only: % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
-- Rows already attributed (a database that ran 0011 when it still held this backfill) are left alone.
UPDATE {schema}.ledger_entries SET tenant = {schema}.ledger_0011_verified_tenant_of(payload)
    WHERE kind IN ('evidence.bundle_registered', 'ig.audit.access') AND tenant IS NULL
      AND {schema}.ledger_0011_verified_tenant_of(payload) IS NOT NULL;
-- Back to refusing every change (0002's body, word for word).
CREATE OR REPLACE FUNCTION {schema}.ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger table %.% is append-only: % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
DROP FUNCTION {schema}.ledger_0011_verified_tenant_of(bytea);  -- a helper of this backfill only

ALTER TABLE {schema}.ledger_entries VALIDATE CONSTRAINT ledger_entries_tenant_check;
