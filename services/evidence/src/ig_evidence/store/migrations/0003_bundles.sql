-- Registered evidence bundles and their artifacts; artifact bytes live in the content-addressed blob store.
CREATE TABLE {schema}.bundles (
    manifest_sha256   text PRIMARY KEY,
    release           text NOT NULL,
    tenant            text NOT NULL DEFAULT '',
    complete          boolean NOT NULL,
    missing           text[] NOT NULL DEFAULT '{}',
    contract_version  text NOT NULL,
    archive_sha256    text NOT NULL,
    ledger_seq        bigint NOT NULL REFERENCES {schema}.ledger_entries (seq),
    registered_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bundles_release ON {schema}.bundles (tenant, release, registered_at DESC);

CREATE TABLE {schema}.artifacts (
    id                text PRIMARY KEY,
    manifest_sha256   text NOT NULL REFERENCES {schema}.bundles (manifest_sha256),
    release           text NOT NULL,
    tenant            text NOT NULL DEFAULT '',
    name              text NOT NULL,
    type              text NOT NULL,
    media_type        text NOT NULL,
    size              bigint NOT NULL,
    sha256            text NOT NULL,
    UNIQUE (manifest_sha256, name)
);
