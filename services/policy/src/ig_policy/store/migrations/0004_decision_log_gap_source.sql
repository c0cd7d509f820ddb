-- A gap the decision-log writer found in its write-ahead log (a torn batch after a machine crash) names where it
-- was found, so that reading the same WAL again after a crash records it once.
ALTER TABLE {schema}.decision_log_gaps ADD COLUMN source text UNIQUE;
