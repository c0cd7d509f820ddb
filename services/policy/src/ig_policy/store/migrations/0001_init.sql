-- The Policy Reasoner's own schema starts with the shared outbox/inbox (applied by ig_common); tables follow with its issue.
SELECT 1;
