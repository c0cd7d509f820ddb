-- Transactional outbox: a state change and its event commit together; the relay publishes afterwards.
CREATE TABLE IF NOT EXISTS {schema}.outbox (
    id           bigserial PRIMARY KEY,
    ce_id        text NOT NULL UNIQUE,
    topic        text NOT NULL,
    ce_type      text NOT NULL,
    ce_source    text NOT NULL,
    ce_subject   text,
    ce_time      timestamptz NOT NULL,
    message_key  bytea,
    payload      bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON {schema}.outbox (id) WHERE published_at IS NULL;

-- Inbox: consumers are at-least-once; a ce_id seen before is skipped.
CREATE TABLE IF NOT EXISTS {schema}.inbox (
    consumer    text NOT NULL,
    ce_id       text NOT NULL,
    topic       text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, ce_id)
);
