-- The ledger's Merkle tree as C2SP tlog-tiles (domain/tiles.py): one row per tile of up to 256 hashes, growing until
-- full, and the integrated tree (size and root) the tiles describe. Entries are sequenced as before; an integrator
-- extends the tiles from the integrated size to the head in batches (store/tiles.py), so proofs and past roots
-- read O(log n) tiles instead of every leaf.
CREATE TABLE {schema}.ledger_tiles (
    level   smallint NOT NULL CHECK (level BETWEEN 0 AND 63),
    idx     bigint NOT NULL CHECK (idx >= 0),
    hashes  bytea NOT NULL CHECK (length(hashes) BETWEEN 32 AND 8192 AND length(hashes) % 32 = 0),
    PRIMARY KEY (level, idx)
);

CREATE TABLE {schema}.ledger_tree (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    size        bigint NOT NULL CHECK (size >= 0),
    root_hash   bytea NOT NULL CHECK (length(root_hash) = 32)
);
INSERT INTO {schema}.ledger_tree (singleton, size, root_hash) VALUES (true, 0, sha256(''::bytea));

-- A tile only grows: its hashes are hashes of finished subtrees, so a wider version must start with the narrower
-- one. Rows are never deleted; the tree only moves forward, and never past the sequenced head.
CREATE FUNCTION {schema}.ledger_tile_extends() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.level <> OLD.level OR NEW.idx <> OLD.idx OR length(NEW.hashes) <= length(OLD.hashes)
            OR substring(NEW.hashes FROM 1 FOR length(OLD.hashes)) <> OLD.hashes THEN
        RAISE EXCEPTION 'ledger tile %/% may only be extended, not rewritten', OLD.level, OLD.idx
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;

CREATE FUNCTION {schema}.ledger_tree_advances() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.size <= OLD.size OR NEW.size > (SELECT size FROM {schema}.ledger_head WHERE singleton) THEN
        RAISE EXCEPTION 'ledger tree may only advance towards the head (from % to %)', OLD.size, NEW.size
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER ledger_tiles_extend_only BEFORE UPDATE ON {schema}.ledger_tiles
    FOR EACH ROW EXECUTE FUNCTION {schema}.ledger_tile_extends();
CREATE TRIGGER ledger_tiles_no_delete BEFORE DELETE ON {schema}.ledger_tiles
    FOR EACH ROW EXECUTE FUNCTION {schema}.ledger_refuse_change();
CREATE TRIGGER ledger_tiles_no_truncate BEFORE TRUNCATE ON {schema}.ledger_tiles
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.ledger_refuse_change();
CREATE TRIGGER ledger_tree_advance_only BEFORE UPDATE ON {schema}.ledger_tree
    FOR EACH ROW EXECUTE FUNCTION {schema}.ledger_tree_advances();
CREATE TRIGGER ledger_tree_no_delete BEFORE DELETE ON {schema}.ledger_tree
    FOR EACH ROW EXECUTE FUNCTION {schema}.ledger_refuse_change();
CREATE TRIGGER ledger_tree_no_truncate BEFORE TRUNCATE ON {schema}.ledger_tree
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.ledger_refuse_change();

-- The integrated size, its row locked until the caller's transaction ends; NULL when another integrator (of any
-- replica) holds it, so that one integrates at a time and the others do not queue behind it.
CREATE FUNCTION {schema}.ledger_lock_tree() RETURNS bigint
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT size FROM {schema}.ledger_tree WHERE singleton FOR UPDATE SKIP LOCKED
$$;

-- Records a batch's integration: the changed tiles (each the tile's whole new content, which must have the width
-- the tree of to_size gives it) and the new size and root. Refused unless the tree is still at from_size.
CREATE FUNCTION {schema}.ledger_integrate(from_size bigint, to_size bigint, root bytea, levels smallint[],
                                          idxs bigint[], contents bytea[])
    RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    current bigint;
    misshapen record;
BEGIN
    SELECT size INTO current FROM {schema}.ledger_tree WHERE singleton FOR UPDATE;
    IF current <> from_size THEN
        RAISE EXCEPTION 'ledger tree is at size %, not %', current, from_size
            USING ERRCODE = 'serialization_failure';
    END IF;
    SELECT t.level, t.idx INTO misshapen FROM unnest(levels, idxs, contents) AS t(level, idx, hashes)
        WHERE length(t.hashes) / 32 <> least(256, (to_size >> (8 * t.level)) - t.idx * 256) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger tile %/% does not have the width of a tree of size %', misshapen.level,
            misshapen.idx, to_size USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    INSERT INTO {schema}.ledger_tiles (level, idx, hashes)
        SELECT * FROM unnest(levels, idxs, contents)
        ON CONFLICT (level, idx) DO UPDATE SET hashes = EXCLUDED.hashes;
    UPDATE {schema}.ledger_tree SET size = to_size, root_hash = root WHERE singleton;
END;
$$;

ALTER TABLE {schema}.ledger_tiles OWNER TO ig_ledger_owner;
ALTER TABLE {schema}.ledger_tree OWNER TO ig_ledger_owner;
ALTER FUNCTION {schema}.ledger_tile_extends() OWNER TO ig_ledger_owner;
ALTER FUNCTION {schema}.ledger_tree_advances() OWNER TO ig_ledger_owner;
ALTER FUNCTION {schema}.ledger_lock_tree() OWNER TO ig_ledger_owner;
ALTER FUNCTION {schema}.ledger_integrate(bigint, bigint, bytea, smallint[], bigint[], bytea[]) OWNER TO ig_ledger_owner;

REVOKE ALL ON {schema}.ledger_tiles, {schema}.ledger_tree FROM PUBLIC, {runtime_role};
GRANT SELECT ON {schema}.ledger_tiles, {schema}.ledger_tree TO {runtime_role};
REVOKE ALL ON FUNCTION {schema}.ledger_lock_tree(),
    {schema}.ledger_integrate(bigint, bigint, bytea, smallint[], bigint[], bytea[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {schema}.ledger_lock_tree(),
    {schema}.ledger_integrate(bigint, bigint, bytea, smallint[], bigint[], bytea[]) TO {runtime_role};
