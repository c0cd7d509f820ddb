-- The tenant-wide access log: a projection of the ledger's ig.audit.access entries, one row per entry (keyed by its
-- ledger seq, so feeding an entry twice changes nothing). Each row keeps what proves it against the ledger: ledger
-- time, subject, previous and own entry hash and the payload bytes (exports carry them with inclusion proofs).
CREATE TABLE {schema}.access_log (
    seq            bigint PRIMARY KEY,
    tenant         text NOT NULL,
    user_id        text NOT NULL,
    email          text NOT NULL,
    action         text NOT NULL,
    status         smallint NOT NULL,
    object         text NOT NULL,
    release        text NOT NULL,
    download_id    text NOT NULL,
    request_sha256 text NOT NULL,
    at             timestamptz NOT NULL,
    ledger_ts      timestamptz NOT NULL,
    subject        text NOT NULL,
    prev_hash      text NOT NULL,
    entry_hash     text NOT NULL,
    payload        bytea NOT NULL
);
-- Every search is one tenant's, newest first by access time (ties by seq), continued below the last (at, seq)
-- shown: an index per filter, each ending in (at, seq), so a page, with or without a time range, is one index
-- range scan of at most one page of rows whatever the log's size. (Ordering by seq with a time filter let the
-- planner walk the seq index back through every newer row: 1.3 s for one past day of 1,000,000 rows.)
CREATE INDEX access_log_by_tenant ON {schema}.access_log (tenant, at, seq);
CREATE INDEX access_log_by_user ON {schema}.access_log (tenant, user_id, at, seq);
CREATE INDEX access_log_by_email ON {schema}.access_log (tenant, email, at, seq);
CREATE INDEX access_log_by_action ON {schema}.access_log (tenant, action, at, seq);
CREATE INDEX access_log_by_release ON {schema}.access_log (tenant, release, at, seq);
CREATE INDEX access_log_refused ON {schema}.access_log (tenant, at, seq) WHERE status >= 400;

-- Entries of the access kind that are not access entries (unparseable, or a payload naming another tenant than its
-- subject): skipped, kept here so the count survives restarts and each is counted once.
CREATE TABLE {schema}.access_log_skipped (
    seq    bigint PRIMARY KEY,
    tenant text NOT NULL,
    reason text NOT NULL
);
CREATE INDEX access_log_skipped_by_tenant ON {schema}.access_log_skipped (tenant);

-- How far the ledger has been read (the next seq to ask for): the feed resumes here after a restart.
CREATE TABLE {schema}.access_log_feed (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    next_seq bigint NOT NULL
);
INSERT INTO {schema}.access_log_feed (next_seq) VALUES (1);
