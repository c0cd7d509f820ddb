"""Every listener refuses a request body over its cap (ig_common.http_body_limit, applied by serve_http): by the
declared length before the route reads a byte, and for a chunked body as soon as the bytes read pass the cap."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from ig_common.http_server import serve_http
from ig_common.ports import free_port

LIMIT = 1000


@pytest.fixture
def reads() -> list[int]:
    """The body lengths the route got to read."""
    return []


@contextlib.asynccontextmanager
async def served(reads: list[int]) -> AsyncIterator[str]:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        body = await request.body()
        reads.append(len(body))
        return {"length": len(body)}

    port, stop = free_port(), asyncio.Event()
    server = asyncio.create_task(serve_http(app, "127.0.0.1", port, stop, max_body_bytes=LIMIT))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        for _ in range(100):
            with contextlib.suppress(httpx.TransportError):
                await client.get("/")
                break
            await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await server


async def chunks(total: int, size: int = 100) -> AsyncIterator[bytes]:
    """A body without Content-Length (sent chunked)."""
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


@pytest.mark.parametrize(("length", "chunked", "status"), [
    (LIMIT, False, 200),
    (LIMIT + 1, False, 413),
    (LIMIT, True, 200),
    (LIMIT + 1, True, 413),
    (50 * LIMIT, True, 413),
])
async def test_a_body_over_the_cap_is_refused_with_a_problem(reads: list[int], length: int, chunked: bool,
                                                             status: int) -> None:
    async with served(reads) as url, httpx.AsyncClient(base_url=url, timeout=5) as client:
        answer = await client.post("/echo", content=chunks(length) if chunked else b"x" * length)
    assert answer.status_code == status, answer.text
    if status == 413:
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["detail"] == f"the request body is over this endpoint's limit of {LIMIT} bytes"
        assert reads == []  # the route never saw the body
    else:
        assert answer.json() == {"length": length} and reads == [length]


async def test_a_content_length_that_is_not_a_byte_count_is_refused(reads: list[int]) -> None:
    async with served(reads) as url:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
    assert status_line.split()[1] in (b"400",), status_line
    assert reads == []
