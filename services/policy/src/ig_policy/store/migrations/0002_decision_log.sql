-- The decision log: one row per decision (batch items too), the full JSON record after masking.
CREATE TABLE {schema}.decision_log (
    decision_id     text PRIMARY KEY,
    ts              timestamptz NOT NULL,
    result          text NOT NULL,
    rule_id         text NOT NULL,
    tenant          text NOT NULL,
    action          text NOT NULL,
    policy_revision text NOT NULL,
    record          jsonb NOT NULL
);
CREATE INDEX decision_log_tenant_ts ON {schema}.decision_log (tenant, ts);
CREATE INDEX decision_log_rule_ts ON {schema}.decision_log (rule_id, ts);

-- Records the log could not take under overload: never silent, counted here and in a metric.
CREATE TABLE {schema}.decision_log_gaps (
    id               bigserial PRIMARY KEY,
    dropped          bigint NOT NULL,
    first_dropped_at timestamptz NOT NULL,
    last_dropped_at  timestamptz NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
