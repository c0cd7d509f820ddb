-- Takes are batched: one upsert per bucket serves every request of the batch, so the row records how many
-- tokens that upsert gave out (the requests are served in arrival order, see domain.ratelimit).
ALTER TABLE {schema}.rate_buckets ADD COLUMN granted_count integer NOT NULL DEFAULT 0;
