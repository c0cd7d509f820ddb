"""A cap on the size of an HTTP request body, for every listener ``serve_http`` runs.

Without one, any caller who reaches a listener (before it is even authenticated) could make a service read an
arbitrarily large body into memory: FastAPI parses a JSON body whole. A body over the cap is refused with 413
problem+json, by its ``Content-Length`` before anything reads it, or, sent chunked, as soon as what was read passes
the cap (the route then never sees the body).
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """``app`` refusing request bodies over ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            declared = _content_length(scope)
        except ValueError:
            await _problem(send, 400, "Invalid Content-Length", "the Content-Length header is not a byte count")
            return
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        started = refused = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Answered here, before the app's error handling can turn the exception into a 500.
                    if not started:
                        await self._refuse(send)
                        refused = True
                    raise BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 went out; whatever the app's error handling sends after it is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not refused:
                raise

    async def _refuse(self, send: Send) -> None:
        await _problem(send, 413, "Request body too large",
                       f"the request body is over this endpoint's limit of {self.max_bytes} bytes")


def _content_length(scope: Scope) -> int | None:
    """The declared body length, None when there is none; ValueError when it is not a byte count."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            if not text.isdigit():
                raise ValueError(text)
            return int(text)
    return None


async def _problem(send: Send, status: int, title: str, detail: str) -> None:
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()
    # No "Connection: close": the client may still be sending the body, and a close under its writes resets the
    # connection before it reads the answer. uvicorn reads and drops the rest of a body once the response is
    # complete (without buffering it), so the connection stays usable.
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
