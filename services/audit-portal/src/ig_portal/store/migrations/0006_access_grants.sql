-- Access grants (issue #24 item 4): an admin lets one auditor see one release for a window, optionally behind an
-- NDA accepted once (the acceptance is also ledgered with its time and address). Numbered 0006: 0005 is the
-- tenant-wide access log's.
CREATE TABLE {schema}.access_grants (
    id                text PRIMARY KEY,
    tenant            text NOT NULL,
    release           text NOT NULL,
    auditor           text NOT NULL,
    valid_from        timestamptz NOT NULL,
    valid_until       timestamptz NOT NULL,
    nda_text          text NOT NULL DEFAULT '',
    granted_by        text NOT NULL,
    granted_at        timestamptz NOT NULL DEFAULT now(),
    revoked_at        timestamptz,
    nda_accepted_at   timestamptz,
    nda_accepted_from text,
    CHECK (valid_until > valid_from)
);
CREATE INDEX access_grants_tenant ON {schema}.access_grants (tenant, release);
