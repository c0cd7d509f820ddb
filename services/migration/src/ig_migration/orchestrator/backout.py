"""Backout, full (the view back to blue, green discarded) or partial (chosen batches re-synced from blue's
record). Writes made while green served are already in blue through the reverse dual-write, so nothing is lost;
each backout is validated by row counts and checksums read in one snapshot."""

from __future__ import annotations

from typing import Any

import structlog

from ig_migration.domain.phases import Phase
from ig_migration.domain.plan import Plan
from ig_migration.store import SCHEMA, state, target
from ig_migration.store.target import Conn, Names

log = structlog.get_logger(__name__)


async def full_backout(conn: Conn, plan: Plan, names: Names, change: str, done: Phase, reason: str) -> dict[str, Any]:
    """``plan.backout`` (e.g. revert-index-v2): serve blue again, prove blue holds every row green had, then
    remove the dual-write and green."""
    row = await state.load_change(conn, change)
    assert row is not None
    body: dict[str, Any] = {"kind": "full", "plan": plan.backout, "reason": reason}
    green_exists = await target.table_exists(conn, names.green)
    if row.cutover_committed and green_exists:
        columns = await target.columns_of(conn, names.blue)
        timing = await target.switch_view(
            conn, names, columns, to_green=False, lock_timeout_ms=plan.cutover.lock_timeout_ms,
            attempts=plan.cutover.attempts,
            record=f"UPDATE {SCHEMA}.changes SET cutover_committed = false, updated_at = now() WHERE change = $1",
            record_args=(change,))
        body["switch_back_ms"] = round(timing.total_ms, 3)
        if plan.kubernetes.enabled and "kubernetes" in (await state.load_results(conn, change)).get("cutover", {}):
            body["kubernetes"] = "restore the Service selector to " + plan.blue.version + " (see cutover result)"
    if green_exists:
        columns = await target.columns_of(conn, names.blue)
        blue, green = await target.fingerprints(conn, [names.blue, names.green], columns, names.key)
        body.update(blue_rows=blue.rows, green_rows=green.rows, blue_checksum=blue.checksum,
                    green_checksum=green.checksum, validated=blue == green)
    else:
        body.update(validated=True, note="green did not exist; blue untouched")
    await target.remove_dual_write(conn, names, plan.cutover.lock_timeout_ms)
    created = (await state.load_results(conn, change)).get("expand", {}).get("created_green")
    if green_exists and created:
        await target.drop_table(conn, names.green, plan.cutover.lock_timeout_ms)
        body["green_dropped"] = True
    body["now_serving"] = names.blue
    body["detail"] = (f"{plan.backout}: {names.view} serves {names.blue} again; "
                      + ("counts and checksums equal" if body["validated"] else "COUNTS OR CHECKSUMS DIFFER"))
    async with conn.transaction():
        await state.save_result(conn, change, "backout", body)
        await state.record_transition(conn, change, done, Phase.BACKED_OUT, body["detail"])
    await state.set_state(conn, change, "backed-out", body["detail"])
    log.info("backout_full", change=change, validated=body["validated"], reason=reason)
    return body


async def partial_backout(conn: Conn, plan: Plan, names: Names, change: str, batches: list[int]) -> dict[str, Any]:
    """Put blue's record back for the entities of ``batches`` (e.g. those a shadow read flagged), whichever side
    serves them now, and validate each batch's key range by count and checksum."""
    ranges = await state.batch_ranges(conn, change, batches)
    unknown = sorted(set(batches) - {r[0] for r in ranges})
    if unknown:
        raise LookupError(f"change {change} has no batches {unknown}")
    row = await state.load_change(conn, change)
    assert row is not None
    serving = names.green if row.cutover_committed else names.blue
    columns = await target.columns_of(conn, names.blue)
    per_batch: list[dict[str, Any]] = []
    for batch_no, lo, hi in ranges:
        restored = await target.resync_range(conn, names, columns, serving, lo, hi)
        blue, green = await target.fingerprints(conn, [names.blue, names.green], columns, names.key, (lo, hi))
        per_batch.append({"batch": batch_no, "keys": [lo, hi], "restored_rows": restored, "blue_rows": blue.rows,
                          "green_rows": green.rows, "blue_checksum": blue.checksum,
                          "green_checksum": green.checksum, "validated": blue == green})
    await state.mark_batches(conn, change, batches, "backed-out")
    validated = all(b["validated"] for b in per_batch)
    body: dict[str, Any] = {"kind": "partial", "batches": per_batch, "validated": validated,
            "blue_rows": sum(b["blue_rows"] for b in per_batch),
            "green_rows": sum(b["green_rows"] for b in per_batch),
            "detail": f"{len(per_batch)} batch(es) restored from blue's record; "
                      + ("counts and checksums equal" if validated else "COUNTS OR CHECKSUMS DIFFER")}
    async with conn.transaction():
        await state.save_result(conn, change, "partial-backout", body)
        await conn.execute(f"INSERT INTO {SCHEMA}.timeline (change, from_phase, to_phase, detail) "
                           f"VALUES ($1, $2, $2, $3)", change, row.phase.value, "partial backout: " + body["detail"])
    log.info("backout_partial", change=change, batches=batches, validated=validated)
    return body
