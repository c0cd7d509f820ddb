-- The provenance ledger: append-only, hash-chained entries; the database itself refuses UPDATE, DELETE, TRUNCATE.
CREATE TABLE {schema}.ledger_entries (
    seq             bigint PRIMARY KEY CHECK (seq >= 1),
    ts              timestamptz NOT NULL,
    kind            text NOT NULL,
    subject         text NOT NULL,
    payload         bytea NOT NULL,
    payload_sha256  text NOT NULL CHECK (payload_sha256 ~ '^[0-9a-f]{64}$'),
    prev_hash       text NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    entry_hash      text NOT NULL UNIQUE CHECK (entry_hash ~ '^[0-9a-f]{64}$')
);
CREATE INDEX ledger_entries_kind_subject ON {schema}.ledger_entries (kind, subject, seq);
CREATE INDEX ledger_entries_subject ON {schema}.ledger_entries (subject, seq);

-- One row: the tree size and head hash. Appenders take its row lock, which serialises seq assignment across
-- every replica: no two entries can get the same seq (no fork) and none is skipped (no gap).
CREATE TABLE {schema}.ledger_head (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    size        bigint NOT NULL,
    head_hash   text NOT NULL
);
INSERT INTO {schema}.ledger_head (singleton, size, head_hash) VALUES (true, 0, repeat('0', 64));

-- Signed checkpoints handed out so far (append-only too): Verify re-checks them against the recomputed tree.
CREATE TABLE {schema}.ledger_checkpoints (
    tree_size   bigint PRIMARY KEY CHECK (tree_size >= 1),
    root_hash   text NOT NULL,
    note        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION {schema}.ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger table %.% is append-only: % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

-- An insert must extend the head exactly: seq = size + 1 and prev_hash = head_hash (checked in the database,
-- so even a buggy or foreign writer cannot create a gap or a fork).
CREATE FUNCTION {schema}.ledger_check_append() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head record;
BEGIN
    SELECT size, head_hash INTO head FROM {schema}.ledger_head WHERE singleton FOR UPDATE;
    IF NEW.seq <> head.size + 1 OR NEW.prev_hash <> head.head_hash THEN
        RAISE EXCEPTION 'ledger append of seq % does not extend the head (size %)', NEW.seq, head.size
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    UPDATE {schema}.ledger_head SET size = NEW.seq, head_hash = NEW.entry_hash WHERE singleton;
    RETURN NEW;
END;
$$;

CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON {schema}.ledger_entries
    FOR EACH ROW EXECUTE FUNCTION {schema}.ledger_refuse_change();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON {schema}.ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.ledger_refuse_change();
CREATE TRIGGER ledger_entries_extend_head BEFORE INSERT ON {schema}.ledger_entries
    FOR EACH ROW EXECUTE FUNCTION {schema}.ledger_check_append();
CREATE TRIGGER ledger_checkpoints_append_only BEFORE UPDATE OR DELETE ON {schema}.ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION {schema}.ledger_refuse_change();
CREATE TRIGGER ledger_checkpoints_no_truncate BEFORE TRUNCATE ON {schema}.ledger_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.ledger_refuse_change();

-- The Merkle signing key of this ledger's checkpoints is generated once and kept here (see store/ledger.py).
CREATE TABLE {schema}.ledger_signing_key (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    origin       text NOT NULL,
    private_pem  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
