"""Incident webhooks against real PostgreSQL and a real HTTP receiver: signed the Standard Webhooks way, sent
outside any transaction, ordered within an alert group, never held back by another group, given up when refused
for good."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from ig_burn.store import MIGRATIONS
from ig_burn.webhook import WebhookSender, backoff_seconds
from ig_burn.webhook_signing import new_secret, webhook_signer
from ig_common.db import prepare_schema
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

pytestmark = pytest.mark.integration


class Receiver:
    """Answers each POST with the status its group is set to (200 by default); records verified bodies, and
    refuses (and records) any whose Standard Webhooks signature does not verify with ``secret``."""

    def __init__(self, secret: str) -> None:
        self.received: list[dict[str, Any]] = []
        self.forged = 0
        self.status_by_group: dict[str, int] = {}
        self.hold = threading.Event()  # set: answer at once; clear: hang until set
        self.hold.set()
        self.in_flight = threading.Event()
        receiver, verifier = self, Webhook(secret)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    verifier.verify(body, {k.lower(): v for k, v in self.headers.items()})
                except WebhookVerificationError:
                    receiver.forged += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                receiver.in_flight.set()
                receiver.hold.wait(10)
                document = json.loads(body)
                status = receiver.status_by_group.get(document["groupKey"], 200)
                if status == 200:
                    receiver.received.append(document)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "webhook.secret"
    path.write_text(new_secret())
    return path


@pytest.fixture
def receiver(secret_file: Path) -> Iterator[Receiver]:
    running = Receiver(secret_file.read_text())
    yield running
    running.hold.set()
    running.server.shutdown()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[tuple[asyncpg.Pool, str]]:
    schema = f"burn_w{uuid.uuid4().hex[:8]}"
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert pool is not None
    await prepare_schema(pool, schema, MIGRATIONS)
    yield pool, schema
    await pool.execute(f"DROP SCHEMA {schema} CASCADE")
    await pool.close()


async def notify(pool: asyncpg.Pool, schema: str, group: str, status: str) -> None:
    body = {"version": "4", "groupKey": group, "status": status}
    await pool.execute(f"INSERT INTO {schema}.webhook_deliveries (payload, group_key) VALUES ($1::jsonb, $2)",
                       json.dumps(body), group)


def sender(store: tuple[asyncpg.Pool, str], receiver: Receiver, secret_file: Path, **options: Any) -> WebhookSender:
    pool, schema = store
    return WebhookSender(pool, schema, receiver.url, webhook_signer(secret_file), **options)


async def test_notifications_are_signed_and_a_forged_one_is_refused(
        store: tuple[asyncpg.Pool, str], receiver: Receiver, secret_file: Path, tmp_path: Path) -> None:
    pool, schema = store
    await notify(pool, schema, "g1", "firing")
    async with httpx.AsyncClient(timeout=5) as client:
        assert await sender(store, receiver, secret_file).deliver_pending(client) == 1
        other = tmp_path / "other.secret"
        other.write_text(new_secret())
        await notify(pool, schema, "g2", "firing")
        assert await sender(store, receiver, other).deliver_pending(client) == 0  # signed with the wrong secret
    assert [r["groupKey"] for r in receiver.received] == ["g1"] and receiver.forged == 1


async def test_no_row_is_locked_while_a_notification_is_on_the_wire(
        store: tuple[asyncpg.Pool, str], receiver: Receiver, secret_file: Path) -> None:
    pool, schema = store
    await notify(pool, schema, "g1", "firing")
    receiver.hold.clear()
    async with httpx.AsyncClient(timeout=5) as client:
        sending = asyncio.ensure_future(sender(store, receiver, secret_file).deliver_pending(client))
        assert await asyncio.to_thread(receiver.in_flight.wait, 5)
        # The review's finding: the old sender held a transaction and the row's lock across the HTTP call.
        async with pool.acquire() as conn, conn.transaction():
            locked = len(await conn.fetch(f"SELECT id FROM {schema}.webhook_deliveries FOR UPDATE NOWAIT"))
        receiver.hold.set()
        assert await sending == 1
    assert locked == 1


async def test_order_is_kept_per_group_and_a_failing_group_holds_back_no_other(
        store: tuple[asyncpg.Pool, str], receiver: Receiver, secret_file: Path) -> None:
    pool, schema = store
    receiver.status_by_group["down"] = 503
    for group, status in [("down", "firing"), ("up", "firing"), ("down", "resolved"), ("up", "resolved")]:
        await notify(pool, schema, group, status)
    webhook = sender(store, receiver, secret_file)
    async with httpx.AsyncClient(timeout=5) as client:
        await webhook.deliver_pending(client)
        await webhook.deliver_pending(client)  # "up"'s second; "down" waits out its backoff
    assert [(r["groupKey"], r["status"]) for r in receiver.received] == [("up", "firing"), ("up", "resolved")]
    row = await pool.fetchrow(f"SELECT attempts, next_attempt_at > now() AS backing_off, gave_up_at "
                              f"FROM {schema}.webhook_deliveries WHERE group_key = 'down' ORDER BY id LIMIT 1")
    assert (row["attempts"], row["backing_off"], row["gave_up_at"]) == (1, True, None)
    # Its resolved notification never overtakes its firing one.
    assert await pool.fetchval(f"SELECT count(*) FROM {schema}.webhook_deliveries "
                               "WHERE group_key = 'down' AND attempts > 0") == 1


async def test_a_notification_refused_for_good_is_given_up_and_its_group_moves_on(
        store: tuple[asyncpg.Pool, str], receiver: Receiver, secret_file: Path) -> None:
    pool, schema = store
    receiver.status_by_group["bad"] = 400
    await notify(pool, schema, "bad", "firing")
    await notify(pool, schema, "bad", "resolved")
    webhook = sender(store, receiver, secret_file)
    async with httpx.AsyncClient(timeout=5) as client:
        assert await webhook.deliver_pending(client) == 0
        receiver.status_by_group["bad"] = 200
        assert await webhook.deliver_pending(client) == 1
    assert [r["status"] for r in receiver.received] == ["resolved"]
    assert await pool.fetchval(f"SELECT count(*) FROM {schema}.webhook_deliveries WHERE gave_up_at IS NOT NULL") == 1


@pytest.mark.parametrize(("attempts", "seconds"), [(1, 1.0), (2, 2.0), (5, 16.0), (9, 256.0), (10, 300.0), (60, 300.0)])
def test_backoff_doubles_up_to_five_minutes(attempts: int, seconds: float) -> None:
    assert backoff_seconds(attempts) == seconds


@pytest.mark.parametrize(("content", "message"), [
    ("not-a-secret", "starts with 'whsec_'"),
    ("whsec_!!!", "not base64"),
    ("whsec_" + "c2hvcnQ=", "at least 24 random bytes"),
])
def test_a_bad_secret_file_is_refused_naming_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "secret"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        webhook_signer(path)
