-- Four-eyes approval: who submitted the plan (verified callers; an approver must be someone else), the detached
-- signature handed in with it, and the approver a Run verified.
ALTER TABLE {schema}.changes
    ADD COLUMN submitted_by   text[] NOT NULL DEFAULT ARRAY[]::text[],  -- identity names that submitted this plan
    ADD COLUMN submitter_actor text NOT NULL DEFAULT '',                -- the first submitter's full actor string
    ADD COLUMN signature      text NOT NULL DEFAULT '',
    ADD COLUMN approved_by    text;
