-- The append check of 0002, once per INSERT statement instead of once per row: the statement's rows (a
-- transition table) must be seq = size + 1, size + 2, ... in order, the first linking to the head's hash and each
-- to the one before; the head row is locked and moved once, to the last of them. Per row, a batch of n entries
-- updated the one head row n times in one transaction, and each update had to walk the versions the earlier ones
-- left; the guarantee is the same: whoever inserts, no gap and no fork, checked under the head's row lock before the
-- statement's rows can commit. The lock is taken before the first row goes in (a BEFORE STATEMENT trigger), as the
-- per-row trigger took it: every writer then waits for the head before it touches the entries' unique indexes, so
-- two writers racing for the same seqs queue on the head instead of deadlocking on each other's rows.
CREATE FUNCTION {schema}.ledger_lock_head_for_append() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM FROM {schema}.ledger_head WHERE singleton FOR UPDATE;
    RETURN NULL;
END;
$$;
ALTER FUNCTION {schema}.ledger_lock_head_for_append() OWNER TO ig_ledger_owner;

CREATE FUNCTION {schema}.ledger_check_appended() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head record;
    bad record;
    last record;
BEGIN
    SELECT size, head_hash INTO head FROM {schema}.ledger_head WHERE singleton FOR UPDATE;
    SELECT a.seq INTO bad FROM (
        SELECT seq, prev_hash, row_number() OVER (ORDER BY seq) AS position,
               lag(entry_hash, 1, head.head_hash) OVER (ORDER BY seq) AS linked_to
        FROM appended) AS a
    WHERE a.seq <> head.size + a.position OR a.prev_hash <> a.linked_to
    ORDER BY a.seq LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger append of seq % does not extend the head (size %)', bad.seq, head.size
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    SELECT seq, entry_hash INTO last FROM appended ORDER BY seq DESC LIMIT 1;
    IF FOUND THEN
        UPDATE {schema}.ledger_head SET size = last.seq, head_hash = last.entry_hash WHERE singleton;
    END IF;
    RETURN NULL;
END;
$$;
ALTER FUNCTION {schema}.ledger_check_appended() OWNER TO ig_ledger_owner;

CREATE TRIGGER ledger_entries_lock_head_first BEFORE INSERT ON {schema}.ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.ledger_lock_head_for_append();
CREATE TRIGGER ledger_entries_extend_head_once AFTER INSERT ON {schema}.ledger_entries
    REFERENCING NEW TABLE AS appended FOR EACH STATEMENT EXECUTE FUNCTION {schema}.ledger_check_appended();
DROP TRIGGER ledger_entries_extend_head ON {schema}.ledger_entries;
