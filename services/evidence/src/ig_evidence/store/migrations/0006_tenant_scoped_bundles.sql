-- A bundle is registered per tenant: the same manifest may be registered by two tenants that both trust its signer,
-- and one tenant registering a release first no longer makes it "already registered" for another. Artifact ids are
-- tenant-scoped from here on (store/bundles.py artifact_id); existing ids stay what they were.
ALTER TABLE {schema}.artifacts DROP CONSTRAINT artifacts_manifest_sha256_fkey;
ALTER TABLE {schema}.artifacts DROP CONSTRAINT artifacts_manifest_sha256_name_key;
ALTER TABLE {schema}.bundles DROP CONSTRAINT bundles_pkey;
ALTER TABLE {schema}.bundles ADD PRIMARY KEY (tenant, manifest_sha256);
ALTER TABLE {schema}.artifacts ADD CONSTRAINT artifacts_bundle_fkey
    FOREIGN KEY (tenant, manifest_sha256) REFERENCES {schema}.bundles (tenant, manifest_sha256);
ALTER TABLE {schema}.artifacts ADD CONSTRAINT artifacts_bundle_name_key UNIQUE (tenant, manifest_sha256, name);
