"""Burn stage: the suite's own burn service measuring a synthetic workload in the shared Prometheus. A simulated
error burst drives monthly burn past 20 % -> the service flips the throttle flags and opens an incident, and
Prometheus fires the suite's alert BurnThrottleEngaged; the errors stop -> burn < 10 % -> the service rolls back
and resolves the incident, the alert resolves.

The suite's burn service runs its demo profile (ig_burn.devtools.demo, `make up`): every window divided by 86400,
so 30 d lasts 30 s and a burst of seconds moves the monthly budget, and two demo SLOs on the synthetic exporter's
job, named after the suite (IG_BURN_DEMO_ID): ``release-synthetic-<id>`` (the throttle policy the burst engages)
and ``assets-api-<id>`` (a healthy series; the migration's SLO-headroom gate asks for service assets-api). The
exporter starts before the first stage (``warm_up``) and keeps running until the flow ends, for the migration
stage's gate. The shared Prometheus serves every suite on the machine, so alerts and incidents are picked out by
this suite's SLO name."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
from ig_burn.devtools.demo import DemoNames
from ig_burn.devtools.harness import free_port
from ig_burn.devtools.synthetic_exporter import Workload, serve
from ig_common.http_client import client_as
from ig_infra.components.prometheus import Prometheus
from ig_infra.paths import Paths

from ig_release.burn_watch import IncidentWatch, prometheus_alerts, prometheus_series
from ig_release.context import ReleaseContext, StageFailed

ALERT = "BurnThrottleEngaged"  # charts/burn/rules/release.rules.yml: ig_burn_throttled == 1, no `for:`
FLAGS = ("subs.optimizedBuffer", "subs.rateLimitPerSecond", "connectors.rateLimitPerSecond", "experiments.paused")
ERROR_SERIES = "s0000"  # the release-synthetic SLO's; s0001 (assets-api) stays healthy


@dataclass
class SyntheticTraffic:
    """The exporter the warm-up started, and where the shared Prometheus was told to scrape it."""

    names: DemoNames
    workload: Workload
    target: str
    targets_file: str


def warm_up(ctx: ReleaseContext, resources: ExitStack) -> None:
    """Start the synthetic exporter and register it with the shared Prometheus (a file_sd target under the job the
    demo SLOs query), before the first stage: by the time the burn stage runs, every window has data."""
    if "burn" in ctx.warm:
        return
    try:
        names = DemoNames(ctx.endpoints.burn_demo_id)
    except ValueError as error:
        raise StageFailed(f"IG_BURN_DEMO_ID: {error}") from error
    workload = Workload(series=2, rps=200.0, error_ratio=0.0)
    exporter = serve(workload, "127.0.0.1", free_port())
    resources.callback(exporter.shutdown)
    target = f"127.0.0.1:{exporter.server_address[1]}"
    prometheus = Prometheus(Paths.from_environment())
    targets_file = prometheus.add_exporter(names.synthetic_job, target)
    resources.callback(prometheus.remove_exporter, names.synthetic_job)
    ctx.warm["burn"] = SyntheticTraffic(names, workload, target, str(targets_file))


class BurnDrill:
    def __init__(self, ctx: ReleaseContext, traffic: SyntheticTraffic) -> None:
        self.ctx = ctx
        self.traffic = traffic
        self.names = traffic.names
        self.out = ctx.stage_dir("burn")
        self.log = ctx.logs / "burn-stage.log"
        self.prometheus = ctx.endpoints.prometheus_url
        self.public = ctx.endpoints.burn_public_url
        self.timeline: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self.alert: dict[str, Any] = {"name": ALERT, "slo": self.names.slo}

    def note(self, event: str, **details: Any) -> None:
        self.timeline.append({"t_seconds": round(time.monotonic() - self.started, 2),
                              "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": event, **details})
        with self.log.open("a") as out:
            out.write(json.dumps(self.timeline[-1]) + "\n")

    def get_burn(self) -> dict[str, Any]:
        """The suite's /get-burn, asked as the release workload (mTLS + workload token)."""
        try:
            with client_as("release", self.ctx.endpoints.burn_api, "burn", timeout=5) as client:
                reply = client.get("/get-burn")
                reply.raise_for_status()
                answer: dict[str, Any] = reply.json()
                return answer
        except httpx.HTTPError as error:
            raise StageFailed(f"the suite's burn service at {self.ctx.endpoints.burn_api}: {error!r}",
                              self.log) from error

    def slo(self, name: str | None = None) -> dict[str, Any]:
        wanted = name or self.names.slo
        items = [s for s in self.get_burn()["slos"] if s["slo"] == wanted]
        if not items:
            raise StageFailed(f"the suite's burn service at {self.ctx.endpoints.burn_api} knows no SLO {wanted}: it "
                              f"does not run the demo profile of suite {self.names.suite_id} (IG_BURN_DEMO_ID; "
                              "`make up` starts it, `ig-infra services up` alone keeps production)", self.log)
        return items[0]  # type: ignore[no-any-return]

    def flags(self) -> dict[str, Any]:
        values = {}
        for flag in FLAGS:
            reply = httpx.post(f"{self.public}/ofrep/v1/evaluate/flags/{flag}", json={"context": {}}, timeout=5)
            values[flag] = reply.json().get("value")
        return values

    def flags_become(self, *, optimized_buffer: bool, paused: bool, what: str) -> dict[str, Any]:
        """The flags over OFREP once they show the throttle's state (read for up to 10 s, not once right after
        /get-burn reports the transition); otherwise the stage fails naming what they say. A flag a person pinned is
        left alone by the throttle, so a pinned flag fails here: a full `make test` run showed it, when the flow's
        suite shared a database with a test that pins experiments.paused."""
        seen: dict[str, Any] = {}

        def settled() -> dict[str, Any] | None:
            seen.update(self.flags())
            done = seen["subs.optimizedBuffer"] is optimized_buffer and seen["experiments.paused"] is paused
            return dict(seen) if done else None

        try:
            flags: dict[str, Any] = self.wait(settled, f"the flags to show {what}", 10)
        except StageFailed as error:
            raise StageFailed(f"{what}, but the flags say {seen}", self.log) from error
        return flags

    def alerts(self) -> list[dict[str, Any]]:
        return prometheus_alerts(self.prometheus, ALERT, self.names.slo)

    def wait(self, check: Any, what: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.5)
        raise StageFailed(f"timed out after {timeout:.0f}s waiting for {what}", self.log)

    def check_profile(self) -> float:
        scale = float(self.get_burn()["windowScale"])
        if scale <= 1:
            raise StageFailed(f"the suite's burn service at {self.ctx.endpoints.burn_api} computes production windows "
                              "(windowScale 1): no burst moves a 30-day budget within the flow; start the suite with "
                              "the demo profile (`make up`, or `ig-infra services up --profile demo`)", self.log)
        self.slo(self.names.assets_slo)
        return scale

    def healthy(self) -> bool:
        slo, assets = self.slo(), self.slo(self.names.assets_slo)
        # A throttle or alert an earlier flow left behind is released by the healthy traffic first.
        return not slo["stale"] and not assets["stale"] and slo["throttleState"] == "ok" and not self.alerts()

    def drive(self, watch: IncidentWatch) -> dict[str, Any]:
        job = self.names.synthetic_job
        self.wait(lambda: prometheus_series(self.prometheus, f'up{{job="{job}"}} == 1'),
                  f"Prometheus at {self.prometheus} to scrape the synthetic exporter (job {job}, target "
                  f"{self.traffic.target}, file {self.traffic.targets_file})", 30)
        self.wait(self.healthy, f"healthy burn data of {self.names.slo} (not stale, not throttled, no {ALERT})", 120)
        self.note("healthy traffic measured", burn=self.slo()["monthlyBudgetConsumed"], flags=self.flags())
        ratio = self.ctx.profile.burn_error_ratio
        self.traffic.workload.set_ratio(ratio, ERROR_SERIES)
        self.note("error burst injected", error_ratio=ratio, objective=0.99)
        over = self.wait(lambda: (s := self.slo())["monthlyBudgetConsumed"] > 0.2 and s, "burn > 20 %", 60)
        self.note("burn above 20 %", burn=over["monthlyBudgetConsumed"], alert=over["alertLevel"])
        self.wait(lambda: self.slo()["throttleState"] == "throttled", "the throttle", 15)
        throttled_flags = self.flags_become(optimized_buffer=False, paused=True, what="throttled")
        opened = self.wait(lambda: watch.first("open"), f"the incident of {self.names.slo} on ig.incidents.v1", 20)
        self.note("throttle flags flipped, incident opened", flags=throttled_flags, incident=opened)
        # Held until Prometheus has scraped the throttle and evaluated the rule (5 s + 5 s in the shared instance).
        firing = self.wait(lambda: [a for a in self.alerts() if a["state"] == "firing"],
                           f"Prometheus at {self.prometheus} to fire {ALERT} for slo={self.names.slo}", 60)
        self.alert["firing"] = firing[0]
        self.note(f"Prometheus fired {ALERT}", alert=firing[0])
        self.traffic.workload.set_ratio(0.0, ERROR_SERIES)
        self.note("errors stopped")
        self.wait(lambda: self.slo()["throttleState"] == "ok", "the rollback (burn < 10 %)", 120)
        restored = self.flags_become(optimized_buffer=True, paused=False, what="rolled back")
        resolved = self.wait(lambda: watch.first("resolved", opened["incident_id"]),
                             f"incident {opened['incident_id']} resolved on ig.incidents.v1", 20)
        self.note("rolled back, incident resolved", burn=self.slo()["monthlyBudgetConsumed"], flags=restored,
                  incident=resolved)
        self.wait(lambda: not self.alerts(), f"{ALERT} for slo={self.names.slo} to resolve in Prometheus", 60)
        self.alert["resolved_seen_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.note(f"{ALERT} resolved in Prometheus")
        return {"peak_burn": over["monthlyBudgetConsumed"], "incident": opened["incident_id"],
                "opened": opened, "resolved": resolved}

    def write_evidence(self, scale: float, figures: dict[str, Any]) -> None:
        burn = self.get_burn()
        chaos = self.out / "burn-error-burst.json"
        chaos.write_text(json.dumps({
            "experiment": "error burst against the synthetic SLO, measured by the suite's own burn service in the "
                          "shared Prometheus",
            "window_scale": scale, "burn_service": {"api": self.ctx.endpoints.burn_api, "public": self.public,
                                                    "grpc": self.ctx.endpoints.burn_grpc},
            "prometheus": self.prometheus, "suite_id": self.names.suite_id, "slo": self.names.slo,
            "synthetic_job": self.names.synthetic_job, "alert": self.alert,
            "incident": {"id": figures["incident"], "topic": "ig.incidents.v1", "opened": figures["opened"],
                         "resolved": figures["resolved"]},
            "timeline": self.timeline}, indent=2) + "\n")
        self.ctx.add_evidence("chaos-report", chaos)
        slo_report = self.out / "slo-report.json"
        slo_report.write_text(json.dumps(burn, indent=2) + "\n")
        self.ctx.add_evidence("slo-report", slo_report)
        dashboard = self.out / "burn-dashboard.html"
        dashboard.write_text(httpx.get(f"{self.public}/burn", timeout=10).text)
        self.ctx.add_evidence("burn-dashboard", dashboard)


def run(ctx: ReleaseContext, resources: ExitStack) -> str:
    warm_up(ctx, resources)  # a no-op when the flow warmed it up already
    drill = BurnDrill(ctx, ctx.warm["burn"])
    scale = drill.check_profile()
    ctx.summary[f"burn service (the suite's, every window / {scale:g})"] = drill.public + "/burn"
    watch = IncidentWatch(ctx.endpoints.kafka_bootstrap, drill.names.slo, time.time() - 1).start()
    try:
        figures = drill.drive(watch)
    finally:
        watch.stop()
    drill.write_evidence(scale, figures)
    return (f"burn peaked at {figures['peak_burn']:.0%} -> throttled, incident {figures['incident']} opened, "
            f"{ALERT} fired; recovered -> flags rolled back, incident resolved, alert resolved "
            f"(windows / {scale:g}, Prometheus {drill.prometheus})")
