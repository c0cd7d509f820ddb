"""HTTP ``GET /get-burn`` (the brief's fragment, extended per SLO) with an OpenAPI description."""

from __future__ import annotations

import re
from datetime import datetime

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from ig_burn.domain.throttle import OK
from ig_burn.engine import BurnEngine

_SERVICE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")


class AlertOut(BaseModel):
    long_window: str = Field(alias="longWindow")
    short_window: str = Field(alias="shortWindow")
    factor: float
    severity: str
    firing: bool


class SloBurnOut(BaseModel):
    slo: str
    service: str
    objective: float = Field(description="e.g. 0.999")
    monthly_budget_consumed: float | None = Field(alias="monthlyBudgetConsumed",
                                                  description="share of the 28-30 day budget consumed (0.2 = 20 %)")
    weekly_budget_consumed: float | None = Field(alias="weeklyBudgetConsumed")
    remaining_budget: float | None = Field(alias="remainingBudget")
    burn_rates: dict[str, float] = Field(alias="burnRates", description="window -> burn rate (1 = on budget)")
    alerts: list[AlertOut] = Field(description="SRE-workbook multi-window conditions (1h/5m x14.4 ... 3d/6h x1)")
    throttle_state: str = Field(alias="throttleState", description="ok | throttled")
    alert_level: str = Field(alias="alertLevel", description="none | warn | page")
    stale: bool = Field(description="true when the last measurement failed or had no data; the last state is kept")
    missing_windows: list[str] = Field(alias="missingWindows")


class BurnOut(BaseModel):
    evaluated_at: datetime | None = Field(alias="evaluatedAt")
    window_scale: float = Field(alias="windowScale",
                                description="1 = production windows; N = every window divided by N (a simulation)")
    stale: bool
    error: str
    slos: list[SloBurnOut]


def burn_router(engine: BurnEngine) -> APIRouter:
    router = APIRouter(tags=["burn"])

    @router.get("/get-burn", response_model=BurnOut, response_model_by_alias=True,
                summary="Current error-budget burn by service",
                responses={400: {"description": "invalid service name (problem+json)"}})
    async def get_burn(service: str | None = Query(default=None, description="only this service's SLOs")) -> BurnOut:
        if service is not None and not _SERVICE.fullmatch(service):
            raise HTTPException(400, "service: must be a service name like 'policy'")
        snapshot = engine.snapshot
        items = []
        for name, slo in engine.slos.items():
            if service and slo.service != service:
                continue
            report = snapshot.reports.get(name)
            state = snapshot.states.get(name)
            items.append(SloBurnOut.model_validate({
                "slo": name, "service": slo.service, "objective": slo.objective,
                "monthlyBudgetConsumed": report.monthly_budget_consumed if report else None,
                "weeklyBudgetConsumed": report.weekly_budget_consumed if report else None,
                "remainingBudget": report.remaining_budget if report else None,
                "burnRates": {r.window: r.rate for r in report.burn_rates} if report else {},
                "alerts": [{"longWindow": a.long_window, "shortWindow": a.short_window, "factor": a.factor,
                            "severity": a.severity, "firing": a.firing} for a in report.alerts] if report else [],
                "throttleState": state.state if state else OK, "alertLevel": state.alert if state else "none",
                "stale": snapshot.stale or report is None or not report.complete,
                "missingWindows": list(report.missing_windows) if report else [],
            }))
        return BurnOut.model_validate({"evaluatedAt": snapshot.evaluated_at, "windowScale": engine.scale.divisor,
                                       "stale": snapshot.stale,
                                       "error": snapshot.error, "slos": items})

    return router
