"""Throttle state, transitions, incidents and pending webhooks: one transaction per transition.

A transition commits its flag changes, the new state, the ``ig.burn.v1`` event, the incident row with its
``ig.incidents.v1`` event and the webhook delivery together. It re-reads the state row under a lock first, so a
restarted (or second) evaluator that reaches the same decision finds the work already done and does nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ig_common.events.outbox import Executor, enqueue, enqueue_many

from ig_burn.domain.flags import AUTOMATION, SkippedChange, split_pinned
from ig_burn.domain.throttle import THROTTLED, ThrottleState, Transition
from ig_burn.events import builders
from ig_burn.store.flags import FlagStore


@dataclass(frozen=True)
class AppliedTransition:
    transition: Transition
    changed_flags: tuple[str, ...]
    skipped: tuple[SkippedChange, ...]
    incident_id: str | None


@dataclass(frozen=True)
class IncidentRow:
    incident_id: str
    slo: str
    service: str
    status: str
    severity: str
    summary: str
    opened_at: datetime
    resolved_at: datetime | None


def _state(row: Any) -> ThrottleState:
    return ThrottleState(slo=row["slo"], state=row["state"], since=row["since"], alert=row["alert"],
                         stale=row["stale"], monthly_budget_consumed=row["monthly_budget_consumed"],
                         evaluated_at=row["evaluated_at"])


class ThrottleStore:
    def __init__(self, schema: str, flags: FlagStore, external_url: str) -> None:
        self.schema = schema
        self.flags = flags
        self.external_url = external_url
        self.webhooks_enabled = False

    async def load_states(self, conn: Executor) -> dict[str, ThrottleState]:
        rows = await conn.fetch(f"SELECT * FROM {self.schema}.throttle_state")
        return {row["slo"]: _state(row) for row in rows}

    async def save_states(self, conn: Executor, states: Sequence[tuple[ThrottleState, str]]) -> None:
        """Upsert many observed states (no transition) in one statement."""
        if not states:
            return
        columns = list(zip(*[(s.slo, service, s.state, s.since, s.alert, s.stale, s.monthly_budget_consumed,
                              s.evaluated_at) for s, service in states], strict=True))
        await conn.execute(
            f"""INSERT INTO {self.schema}.throttle_state AS t
                    (slo, service, state, since, alert, stale, monthly_budget_consumed, evaluated_at)
                SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[],
                                     $6::boolean[], $7::float8[], $8::timestamptz[])
                ON CONFLICT (slo) DO UPDATE SET alert = EXCLUDED.alert, stale = EXCLUDED.stale,
                    monthly_budget_consumed = EXCLUDED.monthly_budget_consumed, evaluated_at = EXCLUDED.evaluated_at,
                    service = EXCLUDED.service
                WHERE t.state = EXCLUDED.state""",
            *[list(c) for c in columns])

    async def apply_transition(self, conn: Executor, new_state: ThrottleState, transition: Transition,
                               service: str, severity: str) -> AppliedTransition | None:
        """Commit one transition (call inside a transaction); None when the stored state had already moved."""
        row = await conn.fetchrow(f"SELECT * FROM {self.schema}.throttle_state WHERE slo = $1 FOR UPDATE",
                                  transition.slo)
        stored = row["state"] if row else "ok"
        if stored != transition.from_state:
            return None
        keys = [k for k, _ in transition.flag_changes]
        current = {f.key: f for f in await self.flags.list_flags(conn, keys)}
        apply, skipped = split_pinned(list(transition.flag_changes), current)
        reason = f"auto-throttle {transition.from_state} -> {transition.to_state} for SLO {transition.slo}: " \
                 f"{transition.reason}"
        for key, value in apply:
            await self.flags.set(conn, key, value, pinned=False, changed_by=AUTOMATION, reason=reason)
        await conn.execute(
            f"""INSERT INTO {self.schema}.transitions (slo, from_state, to_state, monthly_budget_consumed, reason,
                    skipped) VALUES ($1, $2, $3, $4, $5, $6::jsonb)""",
            transition.slo, transition.from_state, transition.to_state, transition.monthly_budget_consumed,
            transition.reason, json.dumps([{"flag": s.key, "wanted": s.wanted, "reason": s.reason} for s in skipped]))
        await conn.execute(
            f"""INSERT INTO {self.schema}.throttle_state
                    (slo, service, state, since, alert, stale, monthly_budget_consumed, evaluated_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                ON CONFLICT (slo) DO UPDATE SET state = EXCLUDED.state, since = EXCLUDED.since,
                    alert = EXCLUDED.alert, stale = EXCLUDED.stale, service = EXCLUDED.service,
                    monthly_budget_consumed = EXCLUDED.monthly_budget_consumed, evaluated_at = EXCLUDED.evaluated_at""",
            new_state.slo, service, new_state.state, new_state.since, new_state.alert, new_state.stale,
            new_state.monthly_budget_consumed, new_state.evaluated_at)
        await enqueue(conn, self.schema, builders.burn_transition(transition, service))
        if transition.to_state == THROTTLED:
            incident_id = await self._open_incident(conn, transition, service, severity, skipped)
        else:
            incident_id = await self._resolve_incident(conn, transition)
        return AppliedTransition(transition, tuple(k for k, _ in apply), tuple(skipped), incident_id)

    async def _open_incident(self, conn: Executor, transition: Transition, service: str, severity: str,
                             skipped: Sequence[SkippedChange]) -> str | None:
        summary = f"SLO {transition.slo} ({service}) throttled: {transition.reason}"
        if skipped:
            summary += "; left pinned: " + ", ".join(f"{s.key} ({s.reason})" for s in skipped)
        row = await conn.fetchrow(
            f"""INSERT INTO {self.schema}.incidents (incident_id, slo, service, status, severity, summary)
                VALUES ($1, $2, $3, 'open', $4, $5) ON CONFLICT DO NOTHING RETURNING *""",
            f"inc_{uuid.uuid4().hex[:20]}", transition.slo, service, severity, summary)
        if row is None:  # already open: never a second incident for the same burn
            return None
        await self._announce(conn, row)
        return str(row["incident_id"])

    async def _resolve_incident(self, conn: Executor, transition: Transition) -> str | None:
        row = await conn.fetchrow(
            f"""UPDATE {self.schema}.incidents SET status = 'resolved', resolved_at = now(),
                    summary = summary || ' | resolved: ' || $2
                WHERE slo = $1 AND status = 'open' RETURNING *""", transition.slo, transition.reason)
        if row is None:
            return None
        await self._announce(conn, row)
        return str(row["incident_id"])

    async def _announce(self, conn: Executor, row: Any) -> None:
        await enqueue_many(conn, self.schema, [
            builders.incident(row["incident_id"], row["slo"], row["service"], row["status"], row["summary"])])
        if not self.webhooks_enabled:
            return
        body = builders.alertmanager_webhook(
            incident_id=row["incident_id"], slo=row["slo"], service=row["service"], status=row["status"],
            severity=row["severity"], summary=row["summary"], opened_at=row["opened_at"],
            resolved_at=row["resolved_at"], external_url=self.external_url)
        await conn.execute(f"INSERT INTO {self.schema}.webhook_deliveries (payload, group_key) VALUES ($1::jsonb, $2)",
                           json.dumps(body), str(body["groupKey"]))

    async def incidents(self, conn: Executor, limit: int = 50) -> list[IncidentRow]:
        rows = await conn.fetch(f"SELECT * FROM {self.schema}.incidents ORDER BY opened_at DESC LIMIT $1", limit)
        return [IncidentRow(**{k: r[k] for k in IncidentRow.__dataclass_fields__}) for r in rows]

    async def recent_transitions(self, conn: Executor, limit: int = 50) -> list[dict[str, Any]]:
        rows = await conn.fetch(f"SELECT * FROM {self.schema}.transitions ORDER BY id DESC LIMIT $1", limit)
        return [dict(r) for r in rows]
