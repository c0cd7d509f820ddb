"""Every service's /metrics is collected off the event loop (ig_common.http_server.build_http_app): a collector that
blocks, as the policy supervisor's does while it reads its workers' /metrics over HTTP, holds up neither the probes
nor the requests on the same loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import httpx
from ig_common.http_server import build_http_app
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class BlockingCollector(Collector):
    """Blocks its scrape until released (at most 5 s)."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registering asks for the names; without describe() the registry would collect, and block, right there.
        yield GaugeMetricFamily("ig_test_blocking_collector", "a collector that blocks until released")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self.release.wait(5)
        yield GaugeMetricFamily("ig_test_blocking_collector", "a collector that blocks until released", value=1)


async def test_a_scrape_that_blocks_holds_up_neither_the_probes_nor_the_loop() -> None:
    release = threading.Event()
    collector = BlockingCollector(release)
    REGISTRY.register(collector)
    try:
        app = build_http_app("metrics-test")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            scrape = asyncio.create_task(client.get("/metrics"))
            await asyncio.sleep(0.2)
            health = await asyncio.wait_for(client.get("/healthz"), 2)
            assert health.status_code == 200
            assert not scrape.done(), "the scrape finished before its collector was released"
            release.set()
            answer = await asyncio.wait_for(scrape, 5)
        assert answer.status_code == 200
        assert "ig_test_blocking_collector 1.0" in answer.text
        assert answer.headers["content-type"].startswith("text/plain")
    finally:
        release.set()
        REGISTRY.unregister(collector)


async def test_a_scraper_that_asks_for_openmetrics_gets_it() -> None:
    app = build_http_app("metrics-test")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        answer = await client.get("/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    assert answer.text.endswith("# EOF\n")
