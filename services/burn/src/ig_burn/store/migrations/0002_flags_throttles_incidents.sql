-- Flag Registry: the current value per flag plus every change ever made (who, why, when).
CREATE TABLE {schema}.flags (
    key         text PRIMARY KEY,
    value       jsonb NOT NULL,
    pinned      boolean NOT NULL DEFAULT false,
    changed_by  text NOT NULL,
    reason      text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    version     bigint NOT NULL
);

CREATE TABLE {schema}.flag_history (
    id          bigserial PRIMARY KEY,
    key         text NOT NULL,
    old_value   jsonb,
    new_value   jsonb NOT NULL,
    pinned      boolean NOT NULL,
    changed_by  text NOT NULL,
    reason      text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    version     bigint NOT NULL,
    UNIQUE (key, version)
);

-- One row per SLO with a throttle policy: what the automation last decided (recovered on restart).
CREATE TABLE {schema}.throttle_state (
    slo                      text PRIMARY KEY,
    service                  text NOT NULL,
    state                    text NOT NULL CHECK (state IN ('ok', 'throttled')),
    since                    timestamptz NOT NULL,
    alert                    text NOT NULL CHECK (alert IN ('none', 'warn', 'page')),
    stale                    boolean NOT NULL,
    monthly_budget_consumed  double precision NOT NULL,
    evaluated_at             timestamptz
);

CREATE TABLE {schema}.transitions (
    id                       bigserial PRIMARY KEY,
    slo                      text NOT NULL,
    from_state               text NOT NULL,
    to_state                 text NOT NULL,
    monthly_budget_consumed  double precision NOT NULL,
    reason                   text NOT NULL,
    skipped                  jsonb NOT NULL DEFAULT '[]',
    at                       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {schema}.incidents (
    incident_id  text PRIMARY KEY,
    slo          text NOT NULL,
    service      text NOT NULL,
    status       text NOT NULL CHECK (status IN ('open', 'resolved')),
    severity     text NOT NULL,
    summary      text NOT NULL,
    opened_at    timestamptz NOT NULL DEFAULT now(),
    resolved_at  timestamptz
);
-- At most one open incident per SLO, whatever a restart or a second replica does.
CREATE UNIQUE INDEX incidents_one_open_per_slo ON {schema}.incidents (slo) WHERE status = 'open';

-- Alertmanager-compatible webhook notifications, sent after commit and retried until delivered.
CREATE TABLE {schema}.webhook_deliveries (
    id            bigserial PRIMARY KEY,
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    delivered_at  timestamptz,
    attempts      int NOT NULL DEFAULT 0,
    last_error    text
);
CREATE INDEX webhook_deliveries_pending ON {schema}.webhook_deliveries (id) WHERE delivered_at IS NULL;
