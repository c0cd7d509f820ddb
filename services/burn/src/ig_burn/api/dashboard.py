"""``GET /burn``: the burn dashboard for people without Grafana (burn over time, throttle states, flag changes)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from ig_burn.domain.burn import format_duration
from ig_burn.domain.throttle import THROTTLED
from ig_burn.engine import BurnEngine

_STYLE = """body{font-family:system-ui,sans-serif;margin:2rem;color:#222}table{border-collapse:collapse;margin:1rem 0}
td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}th{background:#f3f3f3}.throttled{background:#fde2e2}
.stale{color:#a60}.warn{color:#b60}.page{color:#c00;font-weight:bold}svg{vertical-align:middle}"""


def sparkline(points: Sequence[tuple[datetime, float]], width: int = 200, height: int = 32) -> str:
    if len(points) < 2:
        return ""
    top = max(0.35, *(v for _, v in points))
    step = width / (len(points) - 1)
    coords = " ".join(f"{i * step:.1f},{height - min(v, top) / top * height:.1f}" for i, (_, v) in enumerate(points))
    threshold = height - 0.2 / top * height
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="monthly burn over time">'
            f'<line x1="0" x2="{width}" y1="{threshold:.1f}" y2="{threshold:.1f}" stroke="#e99" stroke-dasharray="3"/>'
            f'<polyline fill="none" stroke="#36c" stroke-width="1.5" points="{coords}"/></svg>')


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def dashboard_router(engine: BurnEngine) -> APIRouter:
    router = APIRouter()

    @router.get("/burn", response_class=HTMLResponse, summary="Burn dashboard (HTML)")
    async def dashboard() -> HTMLResponse:
        snapshot = engine.snapshot
        rows = []
        for name, slo in sorted(engine.slos.items(), key=lambda item: (item[1].service, item[0])):
            report = snapshot.reports.get(name)
            state = snapshot.states.get(name)
            throttled = bool(state and state.state == THROTTLED)
            stale = snapshot.stale or report is None or not report.complete
            alert = state.alert if state else "none"
            rows.append(
                f'<tr class="{"throttled" if throttled else ""}"><td>{escape(slo.service)}</td><td>{escape(name)}</td>'
                f"<td>{slo.objective:.3%}</td><td>{_pct(report.monthly_budget_consumed if report else None)}</td>"
                f"<td>{_pct(report.weekly_budget_consumed if report else None)}</td>"
                f"<td>{sparkline(list(snapshot.history.get(name, ())))}</td>"
                f"<td>{'throttled' if throttled else ('ok' if state else 'no policy')}</td>"
                f'<td class="{alert}">{alert}</td><td class="stale">{"stale" if stale else ""}</td></tr>')
        async with engine.pool.acquire() as conn:
            changes = await engine.flags.recent_changes(conn, 30)
            incidents = await engine.store.incidents(conn, 20)
        change_rows = "".join(
            f"<tr><td>{c.changed_at:%Y-%m-%d %H:%M:%S}</td><td>{escape(c.key)}</td><td>{escape(repr(c.value))}</td>"
            f"<td>{'pinned' if c.pinned else ''}</td><td>{escape(c.changed_by)}</td><td>{escape(c.reason)}</td></tr>"
            for c in changes)
        incident_rows = "".join(
            f"<tr><td>{escape(i.incident_id)}</td><td>{escape(i.slo)}</td><td>{escape(i.status)}</td>"
            f"<td>{escape(i.severity)}</td><td>{i.opened_at:%Y-%m-%d %H:%M:%S}</td>"
            f"<td>{i.resolved_at.strftime('%Y-%m-%d %H:%M:%S') if i.resolved_at else ''}</td>"
            f"<td>{escape(i.summary)}</td></tr>" for i in incidents)
        evaluated = snapshot.evaluated_at.isoformat() if snapshot.evaluated_at else "never"
        banner = ""
        if engine.scale.divisor != 1:
            banner += (f'<p class="page">Simulation: every window divided by {engine.scale.divisor:g} '
                       f"(30 d lasts {format_duration(engine.scale.apply(30 * 86400))}); "
                       f"these figures are not production burn.</p>")
        if snapshot.stale and snapshot.error:
            banner += f'<p class="stale">Prometheus unavailable, last known state shown: {escape(snapshot.error)}</p>'
        page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="15">
<title>Error budget burn</title><style>{_STYLE}</style></head><body>
<h1>Error budget burn</h1><p>Last evaluation: {escape(evaluated)}</p>{banner}
<h2>SLOs</h2><table><tr><th>service</th><th>SLO</th><th>objective</th><th>monthly budget consumed</th>
<th>weekly</th><th>monthly burn over time (dashed: 20 %)</th><th>throttle</th><th>alert</th><th></th></tr>
{"".join(rows)}</table>
<h2>Flag changes</h2><table><tr><th>when</th><th>flag</th><th>value</th><th></th><th>by</th><th>why</th></tr>
{change_rows}</table>
<h2>Incidents</h2><table><tr><th>id</th><th>SLO</th><th>status</th><th>severity</th><th>opened</th><th>resolved</th>
<th>summary</th></tr>{incident_rows}</table></body></html>"""
        return HTMLResponse(page)

    return router
