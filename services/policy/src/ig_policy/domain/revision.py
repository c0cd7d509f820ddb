"""The policy revision: one hash over every loaded policy module and the data documents."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import rfc8785

UNKNOWN_REVISION = "unknown"


def policy_revision(policy_sources: Iterable[str], data: Any) -> str:
    """Independent of file paths and load order, so the same bundle has the same revision everywhere."""
    digest = hashlib.sha256()
    for source in sorted(policy_sources):
        digest.update(hashlib.sha256(source.encode()).digest())
    digest.update(rfc8785.dumps(data))
    return "sha256:" + digest.hexdigest()[:32]
