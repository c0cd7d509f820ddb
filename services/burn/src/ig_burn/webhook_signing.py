"""Signing incident notifications the Standard Webhooks way (standardwebhooks.com; the `standardwebhooks` package).

A receiver verifies `webhook-signature` (HMAC-SHA256 over `id.timestamp.body` with the shared secret) and refuses
a notification whose `webhook-timestamp` is more than a few minutes off its clock, so a captured notification
cannot be replayed later and a forged one is refused outright.
"""

from __future__ import annotations

import base64
import binascii
import os
from datetime import UTC, datetime
from pathlib import Path

from standardwebhooks.webhooks import Webhook


class WebhookSigner:
    def __init__(self, secret: str) -> None:
        self._webhook = Webhook(secret)

    def headers(self, delivery_id: str, body: bytes, now: datetime | None = None) -> dict[str, str]:
        moment = now or datetime.now(UTC)
        return {"webhook-id": delivery_id, "webhook-timestamp": str(int(moment.timestamp())),
                "webhook-signature": self._webhook.sign(delivery_id, moment, body)}


def webhook_signer(secret_file: Path) -> WebhookSigner:
    """The signer for the secret in ``secret_file``; ValueError naming what is wrong with it."""
    try:
        secret = secret_file.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ValueError(f"{secret_file}: cannot be read ({error.strerror})") from error
    if not secret.startswith("whsec_"):
        raise ValueError(f"{secret_file}: a Standard Webhooks secret starts with 'whsec_'")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error as error:
        raise ValueError(f"{secret_file}: the part after 'whsec_' is not base64 ({error})") from error
    if len(key) < 24:
        raise ValueError(f"{secret_file}: the secret must hold at least 24 random bytes, not {len(key)}")
    return WebhookSigner(secret)


def new_secret() -> str:
    """A fresh secret in the format the file holds (for `make up` and tests)."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()
