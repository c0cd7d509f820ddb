-- Every request updates the same few bucket rows (its address, its user). In a logged table each update holds
-- the row lock until its commit is flushed to disk, so on a busy disk a hot bucket admits only a handful of
-- requests per second. Bucket state is disposable (after a crash buckets simply start full), so skip the WAL.
ALTER TABLE {schema}.rate_buckets SET UNLOGGED;
