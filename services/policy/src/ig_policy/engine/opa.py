"""The OPA sidecar over opa-python-client's async client: one aiohttp session, keep-alive connections.

Every round trip runs under its own deadline (``IG_OPA_TIMEOUT_MS``), and reading the policy revision under
another; the client's session has none of its own, since aiohttp arms and cancels a timer for every request that
has one (about 0.3 ms of CPU per decision on the 2-vCPU benchmark host). The deadline covers the round trip only:
at most ``max_in_flight`` round trips run at once and evaluations wait for one in a queue here, so a burst queues
instead of timing out inside OPA. Unreachable, slow, erroring or undefined answers all become DENY
ig.system.engine_unavailable.

OPA's API is locked (policies/opa-system/authz.rego): every call carries the service's bearer token
(``IG_OPA_TOKEN_FILE``), and the token only lets it ask for decisions and read the loaded policies.

Group commit: an evaluation is sent on the next event-loop turn together with everything else waiting then, up to
``coalesce`` per round trip, as ``data.ig.ctx.decisions`` over ``input.requests``. Nobody waits for a batch to fill:
when a slot is free a lone request goes alone. Under load every slot is busy, the queue grows while they are, and
each freed slot takes the whole queue at once - so batches grow exactly when the per-request HTTP, JSON and
query set-up work on both sides would otherwise dominate what a decision costs (that is how the Reasoner stays
within a few milliseconds of raw OPA while logging every decision). Too many concurrent round trips would only
queue inside OPA (GOMAXPROCS) and spend the budget there.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import structlog
from ig_common.lifecycle import wait_at_most
from opa_client.opa_async import AsyncOpaClient
from prometheus_client import Counter, Gauge, Histogram

from ig_policy.domain.model import ENGINE_UNAVAILABLE, Verdict
from ig_policy.domain.revision import UNKNOWN_REVISION, policy_revision
from ig_policy.domain.verdict import engine_unavailable, verdict_from_engine

log = structlog.get_logger(__name__)

ENGINE_LATENCY = Histogram(
    "ig_policy_engine_seconds", "OPA round-trip time per evaluation",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
)
ENGINE_FAILURES = Counter("ig_policy_engine_failures_total", "Evaluations answered fail-closed, by cause", ["cause"])
REVISION_INFO = Gauge("ig_policy_revision_info", "The policy revision in force (value 1)", ["revision"])
BATCH_SIZE = Histogram(
    "ig_policy_engine_batch_size", "Evaluations per OPA round trip (group commit)", buckets=(1, 2, 4, 8, 16, 32, 64),
)
QUEUED = Gauge("ig_policy_engine_queued", "Evaluations waiting for a free OPA round-trip slot")


class OpaEngine:
    def __init__(self, url: str, *, timeout_ms: int = 50, decision_path: str = "ig/ctx/decision",
                 batch_path: str = "ig/ctx/decisions", data_path: str = "ig/config", max_in_flight: int = 4,
                 coalesce: int = 32, revision_timeout_s: float = 5.0, token: str | None = None) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = parts.scheme == "https"
        self._timeout = timeout_ms / 1000
        self.timeout_ms = timeout_ms
        package, _, rule = decision_path.rpartition("/")
        self._package, self._rule = package.replace("/", "."), rule
        batch_package, _, batch_rule = batch_path.rpartition("/")
        self._batch_package, self._batch_rule = batch_package.replace("/", "."), batch_rule
        self._coalesce = coalesce
        self._pending: deque[tuple[dict[str, Any], asyncio.Future[Verdict]]] = deque()
        self._flush_scheduled = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._data_path = data_path
        self._max_in_flight = max_in_flight
        self._revision_timeout = revision_timeout_s
        self._token = token
        self._client: AsyncOpaClient | None = None
        self.revision = UNKNOWN_REVISION

    async def start(self) -> None:
        """Open the session (inside the running loop); OPA need not be up yet."""
        client = AsyncOpaClient(host=self._host, port=self._port, ssl=self._ssl, retries=0, timeout=None,
                                token=self._token)
        # The client's aiohttp session pools keep-alive connections (100 at most, above our slots).
        await client.__aenter__()
        self._client = client

    async def warm_up(self) -> None:
        """Evaluate the decision rule and the batch rule once, answers unused, before the service takes calls.

        OPA prepares a rule's query on its first evaluation, and this client opens its first connection to the
        sidecar (with its TLS handshake) on its first call; on a busy node the two together outlasted the decision
        budget, so a new pod failed its first decisions closed (`ig.system.engine_unavailable`: the policy chart's
        helm test in `make test`, 2026-12-07). Bounded by the revision timeout; a failure is logged and start-up goes
        on (those first decisions then fail closed, as without it). Neither call is a decision: nothing is counted
        or logged as one."""
        client = self._client
        if client is None:
            return
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._revision_timeout):
                await client.query_rule({}, self._package, self._rule)
                await client.query_rule({"requests": []}, self._batch_package, self._batch_rule)
        except Exception as error:
            log.warning("opa_warm_up_failed", error=str(error) or type(error).__name__)
            return
        log.info("opa_warmed_up", seconds=round(time.perf_counter() - started, 3))

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close_connection()

    async def evaluate(self, policy_input: dict[str, Any]) -> Verdict:
        if self._client is None:
            ENGINE_FAILURES.labels("not_started").inc()
            return engine_unavailable("the engine client is not started")
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self._pending.append((policy_input, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        """Fill every free slot with up to ``coalesce`` waiting evaluations; the rest wait for a slot to free."""
        self._flush_scheduled = False
        while self._pending and len(self._in_flight) < self._max_in_flight:
            take = min(self._coalesce, len(self._pending))
            chunk = [self._pending.popleft() for _ in range(take)]
            BATCH_SIZE.observe(take)
            task = asyncio.ensure_future(self._answer(chunk))
            self._in_flight.add(task)
            task.add_done_callback(self._slot_freed)
        QUEUED.set(len(self._pending))

    def _slot_freed(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._pending and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def _answer(self, chunk: list[tuple[dict[str, Any], asyncio.Future[Verdict]]]) -> None:
        try:
            verdicts = await self._round_trip([policy_input for policy_input, _ in chunk])
        except BaseException:
            # Fail closed for everyone in the batch, whatever went wrong (cancellation at shutdown included).
            verdicts = [engine_unavailable("the engine call was interrupted")] * len(chunk)
            raise
        finally:
            for (_, future), verdict in zip(chunk, verdicts, strict=True):
                if not future.done():
                    future.set_result(verdict)

    async def _round_trip(self, inputs: list[dict[str, Any]]) -> list[Verdict]:
        """One HTTP call for one or many inputs; any failure answers every one of them fail-closed."""
        client = self._client
        if client is None:
            ENGINE_FAILURES.labels("not_started").inc()
            return [engine_unavailable("the engine client is not started")] * len(inputs)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                if len(inputs) == 1:
                    answers: list[Any] = [await client.query_rule(inputs[0], self._package, self._rule)]
                else:
                    batch = await client.query_rule({"requests": inputs}, self._batch_package, self._batch_rule)
                    answers = _split(batch, len(inputs))
        except TimeoutError:
            ENGINE_FAILURES.labels("timeout").inc(len(inputs))
            return [engine_unavailable(f"no answer within {self.timeout_ms} ms")] * len(inputs)
        except Exception as error:
            ENGINE_FAILURES.labels("error").inc(len(inputs))
            log.warning("opa_call_failed", error=str(error) or type(error).__name__)
            return [engine_unavailable("the engine was unreachable or failed")] * len(inputs)
        finally:
            ENGINE_LATENCY.observe(time.perf_counter() - started)
        verdicts = [verdict_from_engine(answer) for answer in answers]
        undefined = sum(v.rule_id == ENGINE_UNAVAILABLE for v in verdicts)
        if undefined:
            ENGINE_FAILURES.labels("undefined").inc(undefined)
        return verdicts

    async def refresh_revision(self) -> str:
        """Hash the loaded decision policy modules and data documents; keeps the last revision when OPA is away.

        OPA's own modules (package system.*: the API guard) are left out: the revision names the decision policy,
        the same wherever a bundle is served, whatever guards the sidecar's API there."""
        client = self._client
        if client is None:
            return self.revision
        try:
            async with asyncio.timeout(self._revision_timeout):
                ids = await client.get_policies_list()
                sources = []
                for policy_id in ids:
                    module = (await client.get_policy(policy_id)).get("result", {})
                    if not _opa_system_module(module):
                        sources.append(str(module.get("raw", "")))
                data = (await client.get_data(self._data_path)).get("result")
        except Exception as error:
            log.warning("policy_revision_unavailable", error=str(error) or type(error).__name__)
            return self.revision
        revision = policy_revision(sources, data)
        if revision != self.revision:
            REVISION_INFO.clear()
            REVISION_INFO.labels(revision).set(1)
            log.info("policy_revision_loaded", revision=revision, modules=len(sources))
            self.revision = revision
        return revision

    async def keep_revision_fresh(self, stop: asyncio.Event, every_s: float) -> None:
        """OPA reloads the policy directory on change (--watch); follow it, and close the session at the end."""
        try:
            while not stop.is_set():
                await self.refresh_revision()
                await wait_at_most(stop, every_s)
        finally:
            await self.close()


def _opa_system_module(module: dict[str, Any]) -> bool:
    """True for a module of package ``system`` or below (OPA's configuration of itself)."""
    path = module.get("ast", {}).get("package", {}).get("path", [])
    return len(path) > 1 and path[1].get("value") == "system"


def _split(batch: Any, count: int) -> list[Any]:
    """``{"result": [d1, d2, ...]}`` -> ``[{"result": d1}, ...]``; a wrong shape answers each one undefined."""
    documents = batch.get("result") if isinstance(batch, dict) else None
    if not isinstance(documents, list) or len(documents) != count:
        return [{}] * count
    return [{"result": document} for document in documents]
