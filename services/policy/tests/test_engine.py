"""The OPA adapter against a real OPA: answers, the policy revision, and failing closed in every way."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from ig_policy.domain.model import ENGINE_UNAVAILABLE, Result
from ig_policy.engine.opa import OpaEngine
from ig_policy.testing import free_port, golden_cases
from prometheus_client import REGISTRY

pytestmark = pytest.mark.integration

ALLOWED = next(c for c in golden_cases() if c.name == "same tenant and purpose may read").input


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers: an OPA that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not done.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    done.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


async def test_an_allowed_input_is_allowed(engine: OpaEngine) -> None:
    verdict = await engine.evaluate(ALLOWED)
    assert verdict.result is Result.ALLOW and verdict.rule_id == "ig.purpose.allow_read"


async def test_the_revision_hashes_the_loaded_policy(engine: OpaEngine) -> None:
    revision = await engine.refresh_revision()
    assert revision.startswith("sha256:") and revision == engine.revision
    assert await engine.refresh_revision() == revision


async def test_a_slow_engine_denies_within_the_default_budget(silent_server: int) -> None:
    engine = OpaEngine(f"http://127.0.0.1:{silent_server}")
    assert engine.timeout_ms == 50
    await engine.start()
    try:
        started = asyncio.get_running_loop().time()
        verdict = await engine.evaluate(ALLOWED)
        elapsed = asyncio.get_running_loop().time() - started
    finally:
        await engine.close()
    assert verdict.result is Result.DENY and verdict.rule_id == ENGINE_UNAVAILABLE
    assert "50 ms" in verdict.explanation
    assert elapsed < 5, "the call must give up at its own deadline, not at some later one"


async def test_an_unreachable_engine_denies_and_keeps_the_revision() -> None:
    engine = OpaEngine(f"http://127.0.0.1:{free_port()}", timeout_ms=2000)
    await engine.start()
    try:
        verdict = await engine.evaluate(ALLOWED)
        assert await engine.refresh_revision() == "unknown"
    finally:
        await engine.close()
    assert verdict.result is Result.DENY and verdict.rule_id == ENGINE_UNAVAILABLE
    assert "unreachable" in verdict.explanation


async def test_an_undefined_decision_denies(opa_url: str, opa_token: str) -> None:
    engine = OpaEngine(opa_url, timeout_ms=2000, decision_path="ig/ctx/no_such_rule", token=opa_token)
    await engine.start()
    try:
        verdict = await engine.evaluate(ALLOWED)
    finally:
        await engine.close()
    assert verdict.result is Result.DENY and verdict.rule_id == ENGINE_UNAVAILABLE
    assert "undefined" in verdict.explanation


async def test_an_engine_not_started_denies() -> None:
    verdict = await OpaEngine("http://127.0.0.1:1").evaluate(ALLOWED)
    assert verdict.result is Result.DENY and verdict.rule_id == ENGINE_UNAVAILABLE


async def test_the_revision_loop_follows_and_closes(opa_url: str, opa_token: str) -> None:
    engine = OpaEngine(opa_url, timeout_ms=2000, token=opa_token)
    await engine.start()
    stop = asyncio.Event()
    task = asyncio.create_task(engine.keep_revision_fresh(stop, 0.05))
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert engine.revision.startswith("sha256:")
    assert (await engine.evaluate(ALLOWED)).rule_id == ENGINE_UNAVAILABLE, "closed after the loop ends"


def round_trips() -> float:
    return REGISTRY.get_sample_value("ig_policy_engine_seconds_count") or 0.0


async def test_concurrent_evaluations_share_one_round_trip_and_keep_their_order(engine: OpaEngine) -> None:
    risky = {**ALLOWED, "context": {**ALLOWED["context"], "session_risk": 60, "auth_level": "pwd"}}
    inputs = [ALLOWED, {**ALLOWED, "action": "fly"}, risky]
    before = round_trips()
    verdicts = await asyncio.gather(*(engine.evaluate(i) for i in inputs))
    assert round_trips() - before == 1
    assert [v.rule_id for v in verdicts] == ["ig.purpose.allow_read", "ig.input.invalid", "ig.risk.step_up"]


async def test_coalescing_is_bounded_per_round_trip(opa_url: str, opa_token: str) -> None:
    engine = OpaEngine(opa_url, timeout_ms=20_000, coalesce=4, token=opa_token)
    await engine.start()
    try:
        before = round_trips()
        verdicts = await asyncio.gather(*(engine.evaluate(ALLOWED) for _ in range(10)))
        assert round_trips() - before == 3
    finally:
        await engine.close()
    assert {v.rule_id for v in verdicts} == {"ig.purpose.allow_read"}


async def test_evaluations_arriving_while_every_slot_is_busy_go_together_when_one_frees(
    opa_url: str, opa_token: str
) -> None:
    engine = OpaEngine(opa_url, timeout_ms=20_000, max_in_flight=1, token=opa_token)
    await engine.start()
    try:
        before = round_trips()
        first = asyncio.ensure_future(engine.evaluate(ALLOWED))
        await asyncio.sleep(0)  # the lone first one takes the only slot on this turn
        later = []
        for _ in range(5):  # each on a later turn, as gateway calls arrive, while the slot is busy
            later.append(asyncio.ensure_future(engine.evaluate(ALLOWED)))
            await asyncio.sleep(0)
        verdicts = await asyncio.gather(first, *later)
        assert round_trips() - before == 2
    finally:
        await engine.close()
    assert {v.rule_id for v in verdicts} == {"ig.purpose.allow_read"}


async def test_without_coalescing_each_evaluation_is_its_own_call(opa_url: str, opa_token: str) -> None:
    engine = OpaEngine(opa_url, timeout_ms=20_000, coalesce=1, token=opa_token)
    await engine.start()
    try:
        before = round_trips()
        verdicts = await asyncio.gather(*(engine.evaluate(ALLOWED) for _ in range(3)))
        assert round_trips() - before == 3
    finally:
        await engine.close()
    assert {v.result for v in verdicts} == {Result.ALLOW}


async def test_a_batch_answer_of_the_wrong_shape_denies_every_item(opa_url: str, opa_token: str) -> None:
    engine = OpaEngine(opa_url, timeout_ms=20_000, batch_path="ig/ctx/decision", token=opa_token)
    await engine.start()
    try:
        verdicts = await asyncio.gather(engine.evaluate(ALLOWED), engine.evaluate(ALLOWED))
    finally:
        await engine.close()
    assert [v.rule_id for v in verdicts] == [ENGINE_UNAVAILABLE, ENGINE_UNAVAILABLE]


async def test_a_slow_batch_denies_every_item(silent_server: int) -> None:
    engine = OpaEngine(f"http://127.0.0.1:{silent_server}")
    await engine.start()
    try:
        verdicts = await asyncio.gather(engine.evaluate(ALLOWED), engine.evaluate(ALLOWED))
    finally:
        await engine.close()
    assert [v.rule_id for v in verdicts] == [ENGINE_UNAVAILABLE, ENGINE_UNAVAILABLE]
    assert all("50 ms" in v.explanation for v in verdicts)


async def test_a_hung_engine_keeps_the_revision_and_gives_up_at_its_deadline(silent_server: int) -> None:
    engine = OpaEngine(f"http://127.0.0.1:{silent_server}", revision_timeout_s=0.3)
    await engine.start()
    try:
        started = asyncio.get_running_loop().time()
        # wait_for only so that a regression fails here instead of hanging until pytest's timeout.
        revision = await asyncio.wait_for(engine.refresh_revision(), 10)
        elapsed = asyncio.get_running_loop().time() - started
    finally:
        await engine.close()
    assert revision == "unknown"
    assert elapsed < 3, "the client's session has no deadline of its own: the revision read must bring one"


@pytest.fixture
async def recording_opa() -> AsyncIterator[tuple[str, list[tuple[str, str, Any]]]]:
    """An OPA stand-in that records each call's method, path and body, and answers an empty result."""
    calls: list[tuple[str, str, Any]] = []

    async def answer(request: web.Request) -> web.Response:
        calls.append((request.method, request.path, await request.json() if request.can_read_body else None))
        return web.json_response({"result": {}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", calls
    await runner.cleanup()


async def test_warming_up_evaluates_the_decision_and_batch_rules_once_and_counts_no_decision(
        recording_opa: tuple[str, list[tuple[str, str, Any]]]) -> None:
    url, calls = recording_opa
    engine = OpaEngine(url, decision_path="ig/ctx/decision", batch_path="ig/ctx/decisions")
    await engine.start()
    try:
        before = round_trips()
        await engine.warm_up()
        assert [(method, path) for method, path, _ in calls] == [
            ("POST", "/v1/data/ig/ctx/decision"), ("POST", "/v1/data/ig/ctx/decisions")]
        assert round_trips() == before, "a warm-up is not a decision"
    finally:
        await engine.close()


async def test_a_warm_up_that_gets_no_answer_gives_up_and_start_up_goes_on(silent_server: int) -> None:
    engine = OpaEngine(f"http://127.0.0.1:{silent_server}", revision_timeout_s=0.3)
    await engine.start()
    try:
        await asyncio.wait_for(engine.warm_up(), 5)
    finally:
        await engine.close()


async def test_warming_up_a_real_opa_leaves_its_answers_unchanged(engine: OpaEngine) -> None:
    await engine.warm_up()
    verdict = await engine.evaluate(ALLOWED)
    assert verdict.result is Result.ALLOW and verdict.rule_id == "ig.purpose.allow_read"
