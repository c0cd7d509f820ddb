-- The trusted signer a bundle was verified against at registration, as the service's configuration named it
-- (IG_TRUSTED_SIGNERS_PATH): the portal shows this, never a key taken from the bundle. Bundles registered before
-- signers were pinned have none.
ALTER TABLE {schema}.bundles ADD COLUMN signer_name text NOT NULL DEFAULT '';
ALTER TABLE {schema}.bundles ADD COLUMN signer_key_id text NOT NULL DEFAULT '';
