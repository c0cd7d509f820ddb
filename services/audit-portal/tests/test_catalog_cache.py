"""The catalog's short-lived memory of evidence reads: per key (always including the tenant), concurrent misses
share one call, answers expire, failures are never remembered."""

from __future__ import annotations

import asyncio

import pytest
from ig_portal.clients.evidence import NotFound, Recent


class Backend:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.missing: set[str] = set()

    async def releases(self, tenant: str) -> list[str]:
        self.calls.append(tenant)
        await asyncio.sleep(0.01)
        if tenant in self.missing:
            raise NotFound(tenant)
        return [f"{tenant}-v1"]


async def test_concurrent_readers_share_one_call_per_tenant() -> None:
    backend, recent = Backend(), Recent[str, list[str]](seconds=60)
    answers = await asyncio.gather(*(recent.get(t, lambda t=t: backend.releases(t))  # type: ignore[misc]
                                     for t in ["alpha"] * 5 + ["beta"] * 3))
    assert answers == [["alpha-v1"]] * 5 + [["beta-v1"]] * 3
    assert sorted(backend.calls) == ["alpha", "beta"]


async def test_answers_expire() -> None:
    backend, recent = Backend(), Recent[str, list[str]](seconds=0.05)
    await recent.get("alpha", lambda: backend.releases("alpha"))
    await recent.get("alpha", lambda: backend.releases("alpha"))
    assert backend.calls == ["alpha"]
    await asyncio.sleep(0.06)
    await recent.get("alpha", lambda: backend.releases("alpha"))
    assert backend.calls == ["alpha", "alpha"]


async def test_failures_are_not_remembered_and_zero_seconds_disables() -> None:
    backend, recent = Backend(), Recent[str, list[str]](seconds=60)
    backend.missing.add("alpha")
    for _ in range(2):
        with pytest.raises(NotFound):
            await recent.get("alpha", lambda: backend.releases("alpha"))
    assert backend.calls == ["alpha", "alpha"]
    off = Recent[str, list[str]](seconds=0)
    backend.missing.clear()
    await off.get("beta", lambda: backend.releases("beta"))
    await off.get("beta", lambda: backend.releases("beta"))
    assert backend.calls.count("beta") == 2


async def test_a_reader_that_gives_up_does_not_cancel_the_shared_call() -> None:
    backend, recent = Backend(), Recent[str, list[str]](seconds=60)
    gone = asyncio.create_task(recent.get("alpha", lambda: backend.releases("alpha")))
    stays = asyncio.create_task(recent.get("alpha", lambda: backend.releases("alpha")))
    await asyncio.sleep(0)
    gone.cancel()
    assert await stays == ["alpha-v1"]
    assert backend.calls == ["alpha"]
