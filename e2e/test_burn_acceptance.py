"""Acceptance (issue 6): with the REAL Prometheus scraping a synthetic exporter, burn > 20 % of the monthly budget
flips the throttle flags within one evaluation interval, opens an incident (PostgreSQL, ig.incidents.v1, an
Alertmanager-compatible webhook), publishes ig.burn.v1 and an OpenFeature client sees the new values; burn < 10 %
rolls everything back and resolves the incident.

Windows are scaled for the test (IG_WINDOW_SCALE=86400: the 30 d window becomes 30 s); production defaults are
checked in the unit tests.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from ig.events.v1 import events_pb2
from ig_burn.devtools.harness import (
    BurnProcess,
    free_port,
    prometheus_config,
    synthetic_slo_yaml,
    throttle_policy_yaml,
    wait_for,
)
from ig_burn.devtools.synthetic_exporter import Workload, serve
from ig_burn.webhook_signing import new_secret
from ig_common.events.envelope import ReceivedEvent, from_kafka_record
from ig_infra.components.prometheus import PrivatePrometheus
from ig_infra.kafka_reading import consumer_at
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

pytestmark = pytest.mark.e2e
INTERVAL = 1.0


class WebhookReceiver:
    """An Alertmanager webhook receiver that records what it is sent, once its Standard Webhooks signature verifies
    with the shared secret (anything else is refused, as a receiver should)."""

    def __init__(self, secret: str) -> None:
        self.bodies: list[dict[str, Any]] = []
        received, verifier = self.bodies, Webhook(secret)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    verifier.verify(body, {name.lower(): value for name, value in self.headers.items()})
                except WebhookVerificationError:
                    self.send_response(401)
                    self.end_headers()
                    return
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/alerts"


@pytest.fixture
def simulation(infra: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    # A database of its own: the flags start at their defaults whatever other burn tests left throttled or pinned.
    database_url = infra.new_database("ig_burn_sim")
    slo = f"sim-{uuid.uuid4().hex[:8]}"
    workload = Workload(series=1, rps=200.0, error_ratio=0.0)
    exporter = serve(workload, "127.0.0.1", free_port())
    prometheus = PrivatePrometheus(infra.paths.cache, tmp_path / "prometheus", prometheus_config(
        {"synthetic": f"127.0.0.1:{exporter.server_address[1]}"}), free_port()).start()
    secret = tmp_path / "webhook.secret"
    secret.write_text(new_secret())
    receiver = WebhookReceiver(secret.read_text())
    config = tmp_path / "slos"
    config.mkdir()
    (config / "sim.yaml").write_text(synthetic_slo_yaml(slo) + "---\n" + throttle_policy_yaml(slo, min_dwell="2s"))
    env = {**infra.env(database_url, "burn"), "IG_SLO_DIR": str(config), "IG_PROMETHEUS_URL": prometheus.url,
           "IG_EVALUATION_INTERVAL_SECONDS": str(INTERVAL), "IG_WINDOW_SCALE": "86400", "IG_MIN_WINDOW_SECONDS": "3",
           "IG_ALERT_WEBHOOK_URL": receiver.url, "IG_ALERT_WEBHOOK_SECRET_FILE": str(secret)}
    burn = BurnProcess(env, tmp_path / "burn.log").start()
    try:
        yield {"slo": slo, "workload": workload, "prometheus": prometheus, "burn": burn, "receiver": receiver,
               "database_url": database_url, "env": env, "tmp": tmp_path}
    finally:
        burn.stop()
        prometheus.remove()
        exporter.shutdown()
        receiver.server.shutdown()
        infra.drop_database(database_url)


def slo_burn(burn: BurnProcess, slo: str) -> dict[str, Any]:
    [item] = [s for s in burn.get_json("/get-burn")["slos"] if s["slo"] == slo]
    return item  # type: ignore[no-any-return]


async def next_event(consumer: AIOKafkaConsumer, slo: str, within: float) -> ReceivedEvent:
    async with asyncio.timeout(within):
        while True:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for r in records:
                    event = from_kafka_record(r.topic, r.key, r.value, list(r.headers))
                    if event.subject == slo or event.key == slo:
                        return event


async def incidents(database_url: str, slo: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch("SELECT * FROM burn.incidents WHERE slo = $1 ORDER BY opened_at", slo))
    finally:
        await conn.close()


async def test_burn_above_20_percent_throttles_and_below_10_percent_rolls_back(
        simulation: dict[str, Any], kafka_bootstrap: str) -> None:
    slo, burn, workload = simulation["slo"], simulation["burn"], simulation["workload"]
    api.set_provider(OFREPProvider(burn.url), domain=slo)
    client = api.get_client(slo)
    async with (consumer_at(kafka_bootstrap, "ig.burn.v1") as burn_events,
                consumer_at(kafka_bootstrap, "ig.incidents.v1") as incident_events):
        # Healthy traffic first: measured (not stale), nothing consumed, flags at their normal values.
        await asyncio.to_thread(wait_for, lambda: not slo_burn(burn, slo)["stale"], timeout=60, what="first data")
        assert slo_burn(burn, slo)["monthlyBudgetConsumed"] == 0.0
        assert client.get_boolean_value("subs.optimizedBuffer", False) is True
        assert client.get_integer_value("subs.rateLimitPerSecond", 0) == 500

        # 5 % errors against a 1 % budget: the scaled month fills past 20 %.
        workload.set_ratio(0.05, None)
        over = await asyncio.to_thread(wait_for, lambda: (s := slo_burn(burn, slo))["monthlyBudgetConsumed"] > 0.2
                                       and s, timeout=60, what="burn > 20 %")
        seen_at = time.monotonic()
        # The tick that measured > 20 % is the tick that decides: by the next interval it has all been committed.
        state = await asyncio.to_thread(wait_for, lambda: slo_burn(burn, slo)["throttleState"] == "throttled",
                                        timeout=INTERVAL + 1.0, what="throttled within one interval")
        assert state and over["alertLevel"] in ("warn", "page")
        assert client.get_boolean_value("subs.optimizedBuffer", True) is False
        assert client.get_integer_value("subs.rateLimitPerSecond", 0) == 50
        assert client.get_integer_value("connectors.rateLimitPerSecond", 0) == 20
        assert client.get_boolean_value("experiments.paused", False) is True
        assert time.monotonic() - seen_at < INTERVAL + 1.0
        [opened] = await incidents(simulation["database_url"], slo)
        assert opened["status"] == "open"
        event = await next_event(burn_events, slo, within=30)
        transition = event.parse(events_pb2.BurnTransition())
        assert (event.type, transition.from_state, transition.to_state) == ("ig.burn.transition.v1", "ok",
                                                                              "throttled")
        assert transition.monthly_budget_consumed > 0.2 and "enter threshold 20%" in transition.reason
        incident_event = await next_event(incident_events, slo, within=30)
        assert incident_event.type == "ig.incident.opened.v1"
        assert incident_event.parse(events_pb2.Incident()).incident_id == opened["incident_id"]
        firing = await asyncio.to_thread(wait_for, lambda: simulation["receiver"].bodies, timeout=15,
                                         what="webhook")
        assert firing[0]["status"] == "firing" and firing[0]["alerts"][0]["labels"]["slo"] == slo

        # Errors stop: once the scaled month forgets them, burn < 10 % releases the throttle.
        workload.set_ratio(0.0, None)
        await asyncio.to_thread(wait_for, lambda: slo_burn(burn, slo)["throttleState"] == "ok", timeout=90,
                                what="rollback")
        assert slo_burn(burn, slo)["monthlyBudgetConsumed"] < 0.1
        assert client.get_boolean_value("subs.optimizedBuffer", False) is True
        assert client.get_integer_value("subs.rateLimitPerSecond", 0) == 500
        assert client.get_boolean_value("experiments.paused", True) is False
        [resolved] = await incidents(simulation["database_url"], slo)
        assert resolved["status"] == "resolved" and resolved["resolved_at"] is not None
        back = (await next_event(burn_events, slo, within=30)).parse(events_pb2.BurnTransition())
        assert (back.from_state, back.to_state) == ("throttled", "ok") and "release threshold 10%" in back.reason
        assert (await next_event(incident_events, slo, within=30)).type == "ig.incident.resolved.v1"
        await asyncio.to_thread(wait_for, lambda: len(simulation["receiver"].bodies) == 2, timeout=15,
                                what="resolved webhook")
        assert simulation["receiver"].bodies[1]["status"] == "resolved"
