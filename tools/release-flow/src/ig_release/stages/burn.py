"""Burn stage: the real burn service watching a real Prometheus. A simulated error burst drives monthly burn past
20 % -> throttle flags flip and an incident opens; the errors stop -> burn < 10 % -> rollback, incident resolved.

The burn service of `make up` computes production windows (30 d), which no simulated burst can move in minutes. So
this stage starts the burn harness's private instances (ig_burn.devtools.harness): a private Prometheus scraping
the synthetic exporter, and a burn service with IG_WINDOW_SCALE=86400 (30 d -> 30 s) on a database of its own.
They stay up until the flow ends, because the migration's SLO-headroom gate asks this burn service (service
assets-api, a healthy series of the same exporter): its gRPC listens on IG_RELEASE_BURN_GRPC (default
127.0.0.1:50055), the address the suite's migration service is configured to ask (its IG_BURN_GRPC)."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import ExitStack
from typing import Any

import asyncpg
import httpx
from ig_burn.devtools.harness import BurnProcess, free_port, prometheus_config, synthetic_slo_yaml, throttle_policy_yaml
from ig_burn.devtools.synthetic_exporter import Workload, serve
from ig_infra.components.prometheus import PrivatePrometheus
from ig_infra.paths import Paths

from ig_release.context import ReleaseContext, StageFailed
from ig_release.databases import recreate_for_service

SLO = "release-synthetic-availability"
ASSETS_SLO = "assets-api-availability"
FLAGS = ("subs.optimizedBuffer", "subs.rateLimitPerSecond", "connectors.rateLimitPerSecond", "experiments.paused")


def grpc_port_of(address: str) -> int:
    host, _, port = address.rpartition(":")
    if host not in ("127.0.0.1", "localhost") or not port.isdigit():
        raise StageFailed(f"IG_RELEASE_BURN_GRPC: expected 127.0.0.1:<port> (the burn stage serves it on this "
                          f"machine), got {address!r}")
    return int(port)


class BurnSimulation:
    def __init__(self, ctx: ReleaseContext, resources: ExitStack) -> None:
        self.ctx = ctx
        self.out = ctx.stage_dir("burn")
        self.log = ctx.logs / "burn-service.log"
        self.workload = Workload(series=2, rps=200.0, error_ratio=0.0)
        exporter = serve(self.workload, "127.0.0.1", free_port())
        resources.callback(exporter.shutdown)
        target = f"127.0.0.1:{exporter.server_address[1]}"
        self.prometheus = PrivatePrometheus(Paths.from_environment().cache, self.out / "prometheus",
                                            prometheus_config({"synthetic": target}), free_port()).start()
        resources.callback(self.prometheus.remove)
        slos = self.out / "slos"
        slos.mkdir(exist_ok=True)
        (slos / "release.yaml").write_text(synthetic_slo_yaml(SLO, series="s0000") + "---\n"
                                           + throttle_policy_yaml(SLO, min_dwell="2s"))
        (slos / "assets-api.yaml").write_text(
            synthetic_slo_yaml(ASSETS_SLO, series="s0001").replace("service: synthetic", "service: assets-api"))
        roles = asyncio.run(recreate_for_service(ctx.endpoints, "ig_release_burn", "burn"))
        self.database = ctx.endpoints.database("ig_release_burn")  # the flow reads incidents as the superuser
        env = {**roles, "IG_KAFKA_BOOTSTRAP": ctx.endpoints.kafka_bootstrap,
               "IG_SLO_DIR": str(slos), "IG_PROMETHEUS_URL": self.prometheus.url,
               "IG_EVALUATION_INTERVAL_SECONDS": "1", "IG_WINDOW_SCALE": "86400", "IG_MIN_WINDOW_SECONDS": "3",
               "IG_LOG_LEVEL": "INFO"}
        try:
            self.burn = BurnProcess(env, self.log, caller="release",
                                    grpc_port=grpc_port_of(ctx.endpoints.release_burn_grpc)).start()
        except RuntimeError as error:
            raise StageFailed(f"the burn service did not start: {error}", self.log) from error
        resources.callback(self.burn.stop)
        self.timeline: list[dict[str, Any]] = []
        self.started = time.monotonic()

    def note(self, event: str, **details: Any) -> None:
        self.timeline.append({"t_seconds": round(time.monotonic() - self.started, 2),
                              "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": event, **details})

    def slo(self, name: str = SLO) -> dict[str, Any]:
        items = [s for s in self.burn.get_json("/get-burn")["slos"] if s["slo"] == name]
        if not items:
            raise StageFailed(f"the burn service reports no SLO {name}", self.log)
        return items[0]  # type: ignore[no-any-return]

    def flags(self) -> dict[str, Any]:
        values = {}
        for flag in FLAGS:
            reply = httpx.post(f"{self.burn.url}/ofrep/v1/evaluate/flags/{flag}", json={"context": {}}, timeout=5)
            values[flag] = reply.json().get("value")
        return values

    def wait(self, check: Any, what: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.5)
        raise StageFailed(f"timed out after {timeout:.0f}s waiting for {what}", self.log)

    async def incidents(self) -> list[dict[str, Any]]:
        conn = await asyncpg.connect(self.database)
        try:
            rows = await conn.fetch("SELECT incident_id, status, opened_at, resolved_at FROM burn.incidents "
                                    "WHERE slo = $1 ORDER BY opened_at", SLO)
            return [{k: str(v) for k, v in dict(r).items()} for r in rows]
        finally:
            await conn.close()

    def drive(self) -> dict[str, Any]:
        self.wait(lambda: not self.slo()["stale"] and not self.slo(ASSETS_SLO)["stale"], "first burn data", 90)
        self.note("healthy traffic measured", burn=self.slo()["monthlyBudgetConsumed"], flags=self.flags())
        self.workload.set_ratio(self.ctx.profile.burn_error_ratio, "s0000")
        self.note("error burst injected", error_ratio=self.ctx.profile.burn_error_ratio, objective=0.99)
        over = self.wait(lambda: (s := self.slo())["monthlyBudgetConsumed"] > 0.2 and s, "burn > 20 %", 90)
        self.note("burn above 20 %", burn=over["monthlyBudgetConsumed"], alert=over["alertLevel"])
        self.wait(lambda: self.slo()["throttleState"] == "throttled", "the throttle", 10)
        throttled_flags = self.flags()
        if throttled_flags["subs.optimizedBuffer"] is not False or throttled_flags["experiments.paused"] is not True:
            raise StageFailed(f"throttled, but the flags say {throttled_flags}", self.log)
        opened = asyncio.run(self.incidents())
        if not opened or opened[-1]["status"] != "open":
            raise StageFailed(f"throttled without an open incident: {opened}", self.log)
        self.note("throttle flags flipped, incident opened", flags=throttled_flags, incident=opened[-1])
        self.workload.set_ratio(0.0, "s0000")
        self.note("errors stopped")
        self.wait(lambda: self.slo()["throttleState"] == "ok", "the rollback (burn < 10 %)", 120)
        restored = self.flags()
        resolved = asyncio.run(self.incidents())
        if resolved[-1]["status"] != "resolved" or restored["subs.optimizedBuffer"] is not True:
            raise StageFailed(f"rolled back, but incident {resolved[-1]} flags {restored}", self.log)
        self.note("rolled back, incident resolved", burn=self.slo()["monthlyBudgetConsumed"], flags=restored,
                  incident=resolved[-1])
        return {"peak_burn": over["monthlyBudgetConsumed"], "incident": resolved[-1]["incident_id"]}

    def write_evidence(self) -> None:
        chaos = self.out / "burn-error-burst.json"
        chaos.write_text(json.dumps({
            "experiment": "error burst against the synthetic SLO (real Prometheus, real burn service)",
            "window_scale": 86400, "evaluation_interval_seconds": 1, "timeline": self.timeline}, indent=2) + "\n")
        self.ctx.add_evidence("chaos-report", chaos)
        slo_report = self.out / "slo-report.json"
        slo_report.write_text(json.dumps(self.burn.get_json("/get-burn"), indent=2) + "\n")
        self.ctx.add_evidence("slo-report", slo_report)
        dashboard = self.out / "burn-dashboard.html"
        dashboard.write_text(httpx.get(f"{self.burn.url}/burn", timeout=10).text)
        self.ctx.add_evidence("burn-dashboard", dashboard)


def run(ctx: ReleaseContext, resources: ExitStack) -> str:
    simulation = BurnSimulation(ctx, resources)
    ctx.summary["burn service (private, windows / 86400)"] = simulation.burn.url + "/burn"
    figures = simulation.drive()
    simulation.write_evidence()
    return (f"burn peaked at {figures['peak_burn']:.0%} -> throttled, incident {figures['incident']} opened; "
            f"recovered -> flags rolled back, incident resolved (Prometheus {simulation.prometheus.url})")


