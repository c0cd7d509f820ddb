"""The evidence artifact of a run: JSON for machines and a summary for the release notes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from ig_migration.domain.plan import Plan
from ig_migration.store import state
from ig_migration.store.target import Conn


async def build_report(conn: Conn, plan: Plan, change: str) -> dict[str, Any]:
    row = await state.load_change(conn, change)
    assert row is not None
    results = await state.load_results(conn, change)
    baseline, aca = results.get("baseline", {}), results.get("aca", {})
    return {
        "change": change, "run_id": row.run_id, "scope": plan.scope, "strategy": plan.strategy,
        "plan_sha256": row.plan_sha256,
        "blue": plan.blue.model_dump(), "green": {"table": plan.green.table, "version": plan.green.version},
        "phase": row.phase.value, "state": row.state, "detail": row.detail,
        "approval": {"submitted_by": list(row.submitted_by), "submitter": row.submitter_actor,
                     "approved_by": row.approved_by},
        "timeline": await state.timeline(conn, change),
        "preflight": results.get("preflight"), "expand": results.get("expand"),
        "backfill": results.get("backfill"), "shadow_read": results.get("shadow-read"),
        "cutover": results.get("cutover"),
        "error_rate": {"before": baseline.get("error_rate"), "after": aca.get("error_rate")},
        "aca": aca or None, "verify": results.get("verify"), "contract": results.get("contract"),
        "backout_plan": {"name": plan.backout,
                         "steps": [f"switch {plan.cutover.view} back to {plan.blue.table} in one short transaction "
                                   f"(green -> blue dual-write has kept blue complete)",
                                   "validate row counts and checksums of both tables in one snapshot",
                                   f"drop the dual-write triggers and {plan.green.table}"]},
        "backout": results.get("backout"), "partial_backout": results.get("partial-backout"),
        "failure": results.get("failure"),
    }


def summary(report: dict[str, Any]) -> str:
    lines = [f"# Migration {report['change']} ({report['blue']['version']} -> {report['green']['version']} "
             f"on {report['scope']}): {report['state']}", ""]
    approval = report["approval"]
    lines.append(f"Submitted by {', '.join(approval['submitted_by']) or 'the CLI (database credentials)'}; "
                 f"approved by {approval['approved_by'] or 'nobody (run through the CLI)'}")
    lines += ["", "## Timeline"]
    lines += [f"- {t['at']} {t['from']} -> {t['to']}: {t['detail']}" for t in report["timeline"]]
    if report.get("preflight"):
        lines += ["", "## Gates"] + [f"- {g['gate']}: {'pass' if g['passed'] else 'FAIL'} measured {g['measured']}"
                                     f" vs limit {g['limit']} ({g['detail']})" for g in report["preflight"]["gates"]]
    if report.get("backfill"):
        b = report["backfill"]
        lines += ["", f"Backfill: {b['rows']} rows in {b['active_seconds']} s ({b['rows_per_second']} rows/s), "
                      f"throttled {b['throttled_seconds']} s"]
    if report.get("shadow_read"):
        s = report["shadow_read"]
        lines.append(f"Shadow read: {s['compared']} entities, {s['mismatches']} mismatches")
    if report.get("cutover"):
        c = report["cutover"]
        lines.append(f"Cutover: {c['duration_ms']} ms (lock wait {c['lock_wait_ms']} ms, held {c['lock_hold_ms']} ms)")
    rate = report["error_rate"]
    lines.append(f"Error rate (rolled-back transactions): before {rate['before']}, after {rate['after']}")
    if report.get("aca"):
        a = report["aca"]
        lines += ["", f"## ACA score {a['score']} (threshold {a['threshold']}, vetoed by {a.get('vetoed_by') or []})"]
        lines += [f"- {m['metric']}: {m['verdict']} ({'pass' if m['passed'] else 'FAIL'}"
                  f"{', critical' if m['critical'] else ''})"
                  f" baseline {_num(m['baseline_median'])} -> canary {_num(m['canary_median'])}; {m['reason']}"
                  for m in a.get("metrics", [])]
    lines += ["", f"## Backout plan {report['backout_plan']['name']}"]
    lines += [f"{i}. {step}" for i, step in enumerate(report["backout_plan"]["steps"], 1)]
    if report.get("backout"):
        lines.append(f"Backout result: {report['backout']['detail']}")
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


async def write_report(conn: Conn, plan: Plan, change: str, directory: Path) -> Path:
    report = await build_report(conn, plan, change)
    return await asyncio.to_thread(_write, directory, change, report)


def _write(directory: Path, change: str, report: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{change}.json"
    path.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    (directory / f"{change}.md").write_text(summary(report), encoding="utf-8")
    return path
