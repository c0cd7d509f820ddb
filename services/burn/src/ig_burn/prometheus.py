"""The Prometheus HTTP API client: instant queries at one evaluation timestamp, over one pooled connection set."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import httpx
import structlog
from opentelemetry import trace
from prometheus_client import Counter, Histogram

from ig_burn.domain.burn import format_duration
from ig_burn.domain.queries import SLO_LABEL, WINDOW_LABEL, Batch

log = structlog.get_logger(__name__)
tracer = trace.get_tracer(__name__)

QUERIES = Counter("ig_burn_prometheus_queries_total", "PromQL queries sent to Prometheus, by outcome", ["outcome"])
QUERY_SECONDS = Histogram("ig_burn_prometheus_query_seconds", "Latency of one PromQL query",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

ErrorRatios = dict[tuple[str, int], float]
_FORM = {"Content-Type": "application/x-www-form-urlencoded"}
_ENCODED_QUERIES_KEPT = 1024
Sample = tuple[Mapping[str, str], float]


class PrometheusUnavailable(Exception):
    """A query failed: Prometheus down, slow, or rejecting the query. Callers keep their last state."""


class PrometheusClient:
    def __init__(self, base_url: str, *, timeout: float, concurrency: int) -> None:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._client = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout, limits=limits)
        self._limit = asyncio.Semaphore(concurrency)
        self._encoded_queries: dict[str, str] = {}

    async def close(self) -> None:
        await self._client.aclose()

    async def error_ratios(self, batches: Sequence[Batch], at: float | None = None) -> ErrorRatios:
        """Run every batch at the same evaluation time; any failure fails the whole evaluation."""
        at = time.time() if at is None else at
        with tracer.start_as_current_span("prometheus.error_ratios") as span:
            span.set_attribute("ig.burn.queries", len(batches))
            results = await asyncio.gather(*(self.instant(b.promql, at) for b in batches))
        ratios: ErrorRatios = {}
        for samples in results:
            for labels, value in samples:
                if SLO_LABEL in labels and WINDOW_LABEL in labels and not math.isnan(value):
                    ratios[(labels[SLO_LABEL], int(labels[WINDOW_LABEL]))] = value
        return ratios

    async def instant(self, promql: str, at: float, *, lookback_seconds: float | None = None) -> list[Sample]:
        """One instant query; ``lookback_seconds`` bounds how old a sample may be (Prometheus' ``lookback_delta``)."""
        body = self._encoded(promql) + f"&time={at:.3f}"
        if lookback_seconds is not None:
            body += f"&lookback_delta={format_duration(lookback_seconds)}"
        async with self._limit:
            started = time.perf_counter()
            try:
                response = await self._client.post("/api/v1/query", content=body.encode(), headers=_FORM)
                answer: dict[str, Any] = response.json()
            except (httpx.HTTPError, ValueError) as error:
                QUERIES.labels("unavailable").inc()
                raise PrometheusUnavailable(f"Prometheus query failed: {error!r}") from error
            finally:
                QUERY_SECONDS.observe(time.perf_counter() - started)
        if response.status_code != 200 or answer.get("status") != "success":
            QUERIES.labels("error").inc()
            raise PrometheusUnavailable(
                f"Prometheus answered {response.status_code}: {answer.get('errorType')}: {answer.get('error')}")
        QUERIES.labels("ok").inc()
        return [(sample["metric"], float(sample["value"][1])) for sample in answer["data"]["result"]]

    def _encoded(self, promql: str) -> str:
        """``query=...`` form-encoded once per distinct query: a tick sends the same (large) batches every time."""
        encoded = self._encoded_queries.get(promql)
        if encoded is None:
            if len(self._encoded_queries) >= _ENCODED_QUERIES_KEPT:
                self._encoded_queries.clear()
            encoded = self._encoded_queries[promql] = urlencode({"query": promql})
        return encoded
