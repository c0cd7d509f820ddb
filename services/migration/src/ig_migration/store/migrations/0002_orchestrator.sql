-- The orchestrator's state lives in the database it migrates (as pgroll's does), so a batch and its checkpoint
-- commit in one transaction: a killed orchestrator resumes exactly where the last commit left it.
CREATE TABLE {schema}.changes (
    change       text PRIMARY KEY,
    plan_yaml    text NOT NULL,
    plan_sha256  text NOT NULL,
    phase        text NOT NULL DEFAULT 'submitted',   -- last phase completed
    state        text NOT NULL DEFAULT 'pending',     -- pending | running | paused | completed | failed | backed-out
    cutover_committed boolean NOT NULL DEFAULT false,
    owner        text,
    detail       text NOT NULL DEFAULT '',
    submitted_at timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {schema}.checkpoints (
    change        text PRIMARY KEY REFERENCES {schema}.changes (change) ON DELETE CASCADE,
    last_key      bigint NOT NULL,
    end_key       bigint NOT NULL,
    done          bigint NOT NULL DEFAULT 0,
    total         bigint NOT NULL,
    batches       integer NOT NULL DEFAULT 0,
    active_seconds double precision NOT NULL DEFAULT 0,
    throttled_seconds double precision NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {schema}.batches (
    change    text NOT NULL REFERENCES {schema}.changes (change) ON DELETE CASCADE,
    batch_no  integer NOT NULL,
    lo_key    bigint NOT NULL,      -- exclusive
    hi_key    bigint NOT NULL,      -- inclusive
    rows      bigint NOT NULL,
    state     text NOT NULL DEFAULT 'copied',   -- copied | backed-out
    copied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (change, batch_no)
);

CREATE TABLE {schema}.timeline (
    id         bigserial PRIMARY KEY,
    change     text NOT NULL REFERENCES {schema}.changes (change) ON DELETE CASCADE,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    from_phase text NOT NULL,
    to_phase   text NOT NULL,
    detail     text NOT NULL DEFAULT ''
);

-- Measured results by kind (gates, backfill, shadow-read, cutover, aca, backout, ...), one JSON document each.
CREATE TABLE {schema}.results (
    change text NOT NULL REFERENCES {schema}.changes (change) ON DELETE CASCADE,
    kind   text NOT NULL,
    body   jsonb NOT NULL,
    at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (change, kind)
);

-- Metric windows sampled before cutover (blue baseline) for the canary analysis after it.
CREATE TABLE {schema}.samples (
    change text NOT NULL REFERENCES {schema}.changes (change) ON DELETE CASCADE,
    metric text NOT NULL,
    side   text NOT NULL,    -- baseline | canary
    value  double precision NOT NULL,
    at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX samples_by_metric ON {schema}.samples (change, metric, side);
