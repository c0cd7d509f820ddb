-- Each Run of a change gets an id of its own, so that a caller can tie the Status stream and the ig.migration.v1
-- events to the run it started (a resumed change is a new run).
ALTER TABLE {schema}.changes ADD COLUMN run_id text NOT NULL DEFAULT '';
