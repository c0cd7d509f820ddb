-- Witness cosignatures (c2sp.org/tlog-cosignature) of the ledger's head checkpoints, as the witnesses returned them
-- (store/witnessing.py). A cosignature is checked against the witness's key before it is stored, and a verifier
-- checks it again against the key it pins itself, so the row proves nothing by being here: the runtime role may
-- add rows and read them, never change or remove one.
CREATE TABLE {schema}.ledger_cosignatures (
    tree_size    bigint      NOT NULL CHECK (tree_size > 0),
    root_hash    text        NOT NULL,
    witness      text        NOT NULL,       -- the witness's key name
    key_id       text        NOT NULL,       -- hex of the 4-byte key id (name, 0x04, public key)
    cosignature  text        NOT NULL,       -- the signature line, "— <name> <base64>\n"
    cosigned_at  timestamptz NOT NULL,       -- the timestamp inside the cosignature
    PRIMARY KEY (tree_size, witness, key_id)
);
REVOKE ALL ON {schema}.ledger_cosignatures FROM PUBLIC, {runtime_role};
GRANT SELECT, INSERT ON {schema}.ledger_cosignatures TO {runtime_role};
