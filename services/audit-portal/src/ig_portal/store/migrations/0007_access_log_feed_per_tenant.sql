-- The ledger returns one tenant's entries per read (issue #21), so the feed keeps a position per tenant. A tenant
-- without a row starts where the single position of 0005 stood: everything below it was read for every tenant.
CREATE TABLE {schema}.access_log_feed_tenants (
    tenant   text PRIMARY KEY,
    next_seq bigint NOT NULL
);
