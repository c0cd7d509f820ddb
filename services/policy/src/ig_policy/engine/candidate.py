"""A second OPA with a candidate policy loaded, private to the replay tool.

It is a separate ``opa run --server`` process (the same binary the suite installs), never the service's sidecar:
the candidate must not answer live traffic, and the sidecar's locked API refuses policy uploads anyway. It listens
on a Unix socket inside a 0700 directory of its own, so only this user reaches it, without a network port or a
token. The candidate is a policy directory or a bundle (``.tar.gz``, loaded with ``--bundle``). Decisions are
asked in batches through the same batch rule the service uses (``data.ig.ctx.decisions`` over
``input.requests``) and read with the same fail-closed reader.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from ig_policy.domain.model import Verdict
from ig_policy.domain.revision import policy_revision
from ig_policy.domain.verdict import engine_unavailable, verdict_from_engine

START_TIMEOUT_S = 60.0


class CandidateError(RuntimeError):
    """The candidate OPA could not start or load the candidate (the message says which and why)."""


def find_opa(explicit: str | None) -> str:
    """``--opa``, else ``opa`` on PATH, else the binary ig-infra builds (a development checkout)."""
    if explicit:
        return explicit
    on_path = shutil.which("opa")
    if on_path:
        return on_path
    try:
        from ig_policy.testing import opa_binary
        built = opa_binary()
    except ImportError as error:
        raise CandidateError("no opa binary: pass --opa or put opa on PATH") from error
    if not Path(built).exists():
        raise CandidateError(f"no opa binary at {built}: pass --opa, or run `uv run ig-infra tool opa`")
    return built


class CandidateEngine:
    def __init__(self, client: httpx.AsyncClient, batch_path: str, data_path: str) -> None:
        self._client = client
        self._batch_path = batch_path
        self._data_path = data_path

    async def revision(self) -> str:
        policies = (await self._client.get("/v1/policies")).json().get("result", [])
        data = (await self._client.get(f"/v1/data/{self._data_path}")).json().get("result")
        return policy_revision((p.get("raw", "") for p in policies), data)

    async def decide(self, inputs: Sequence[Any]) -> list[Verdict]:
        """One round trip for the whole batch; a failed or misshapen answer fails closed for each input."""
        try:
            reply = await self._client.post(f"/v1/data/{self._batch_path}", json={"input": {"requests": list(inputs)}})
            reply.raise_for_status()
            documents = reply.json().get("result")
        except (httpx.HTTPError, ValueError) as error:
            return [engine_unavailable(f"candidate: {type(error).__name__}")] * len(inputs)
        if not isinstance(documents, list) or len(documents) != len(inputs):
            return [engine_unavailable("candidate: the batch answer was malformed")] * len(inputs)
        return [verdict_from_engine({"result": document}) for document in documents]


def _start(opa: str, candidate: Path, scratch: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    if not candidate.exists():
        raise CandidateError(f"candidate {candidate} does not exist")
    load = ["--bundle", str(candidate)] if candidate.is_file() else [str(candidate)]
    socket_path, log_path = scratch / "opa.sock", scratch / "opa.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [opa, "run", "--server", "--addr", f"unix://{socket_path}", "--log-level", "error", *load],
            stdout=log_file, stderr=subprocess.STDOUT,
        )
    return process, socket_path, log_path


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@asynccontextmanager
async def candidate_engine(candidate: Path, *, opa: str, batch_path: str = "ig/ctx/decisions",
                           data_path: str = "ig/config") -> AsyncIterator[CandidateEngine]:
    with tempfile.TemporaryDirectory(prefix="ig-replay-") as scratch:
        process, socket_path, log_path = await asyncio.to_thread(_start, opa, candidate, Path(scratch))
        try:
            transport = httpx.AsyncHTTPTransport(uds=str(socket_path))
            async with httpx.AsyncClient(transport=transport, base_url="http://candidate", timeout=60) as client:
                await _wait_ready(client, process, log_path)
                yield CandidateEngine(client, batch_path, data_path)
        finally:
            await asyncio.to_thread(_stop, process)


async def _wait_ready(client: httpx.AsyncClient, process: subprocess.Popen[bytes], log_path: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    while loop.time() < deadline:
        if process.poll() is not None:
            output = (await asyncio.to_thread(log_path.read_text, errors="replace"))[-2000:]
            raise CandidateError(f"the candidate OPA exited with status {process.returncode}: {output}")
        try:
            if (await client.get("/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise CandidateError(f"the candidate OPA did not become healthy within {START_TIMEOUT_S:.0f} s")
