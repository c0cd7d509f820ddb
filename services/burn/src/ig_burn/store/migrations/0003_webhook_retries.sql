-- Webhook deliveries leave the transaction: a pass claims the head notification of each alert group for a short
-- lease, sends outside any transaction, then records the outcome. Failures back off (next_attempt_at); a
-- notification the receiver refuses for good, or one that exhausts its attempts, is given up (gave_up_at) so the
-- notifications after it in its group move on. Order is kept per alert group (Alertmanager's groupKey), not across
-- groups: one failing group no longer holds back the others.
ALTER TABLE {schema}.webhook_deliveries
    ADD COLUMN group_key       text NOT NULL DEFAULT '',
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN claimed_until   timestamptz,
    ADD COLUMN gave_up_at      timestamptz;
UPDATE {schema}.webhook_deliveries SET group_key = coalesce(payload->>'groupKey', '');
DROP INDEX {schema}.webhook_deliveries_pending;
CREATE INDEX webhook_deliveries_pending ON {schema}.webhook_deliveries (group_key, id)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
