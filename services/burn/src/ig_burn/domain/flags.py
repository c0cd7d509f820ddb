"""Flags: keys, values, OFREP evaluation results and the ETag of a flag set.

A flag holds one JSON value (bool, number, string or object). Evaluation is static (no targeting rules): the
value is the same for every context, which OFREP calls reason STATIC; a pinned flag says so in its metadata.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Union

FlagValue = Union[bool, int, float, str, dict[str, Any], list[Any]]  # noqa: UP007 (a runtime alias)
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
AUTOMATION = "ig-burn"


def check_flag_key(key: object) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError("must be 1-128 characters: letters, digits, '.', '_' or '-', starting alphanumeric")
    return key


def check_flag_value(value: object) -> FlagValue:
    if value is None:
        raise ValueError("must be a boolean, number, string or object, not null")
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise ValueError("must be a finite number")
    if not isinstance(value, bool | int | float | str | dict | list):
        raise ValueError(f"unsupported type {type(value).__name__}")
    return value


@dataclass(frozen=True)
class Flag:
    key: str
    value: FlagValue
    pinned: bool
    changed_by: str
    reason: str
    changed_at: datetime
    version: int = 1


@dataclass(frozen=True)
class SkippedChange:
    key: str
    wanted: FlagValue
    reason: str


def variant_of(value: FlagValue) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float | str):
        return str(value)
    return "object"


def ofrep_result(flag: Flag) -> dict[str, Any]:
    """The OFREP success body for one flag."""
    metadata: dict[str, Any] = {"version": flag.version, "changedBy": flag.changed_by, "pinned": flag.pinned}
    return {"key": flag.key, "value": flag.value, "reason": "STATIC", "variant": variant_of(flag.value),
            "metadata": metadata}


def ofrep_not_found(key: str) -> dict[str, Any]:
    return {"key": key, "errorCode": "FLAG_NOT_FOUND", "errorDetails": f"flag {key!r} is not in the registry"}


def json_bytes(document: object) -> bytes:
    """Compact UTF-8 JSON, the form every OFREP answer is sent in."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class OfrepSnapshot:
    """Every OFREP success answer of one flag set, serialised once when the set changes (not per request)."""

    etag: str
    single: Mapping[str, bytes]
    bulk: bytes

    @classmethod
    def of(cls, flags: Iterable[Flag]) -> OfrepSnapshot:
        ordered = sorted(flags, key=lambda f: f.key)
        results = [ofrep_result(f) for f in ordered]
        return cls(etag=flag_set_etag(ordered), single={r["key"]: json_bytes(r) for r in results},
                   bulk=json_bytes({"flags": results}))


def flag_set_etag(flags: Iterable[Flag]) -> str:
    """A strong ETag over every flag's key and version: any change anywhere changes it."""
    digest = hashlib.sha256()
    for flag in sorted(flags, key=lambda f: f.key):
        digest.update(f"{flag.key}\x00{flag.version}\x00".encode())
    return f'"{digest.hexdigest()[:32]}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = [c.strip().removeprefix("W/") for c in if_none_match.split(",")]
    return "*" in candidates or etag in candidates


def split_pinned(
    wanted: Sequence[tuple[str, FlagValue]], current: Mapping[str, Flag]
) -> tuple[list[tuple[str, FlagValue]], list[SkippedChange]]:
    """Changes automation may make, and those it must leave alone because a human pinned the flag."""
    apply, skipped = [], []
    for key, value in wanted:
        flag = current.get(key)
        if flag is not None and flag.pinned:
            skipped.append(SkippedChange(key, value, f"pinned by {flag.changed_by}: {flag.reason}"))
        elif flag is None or not same_value(flag.value, value):
            apply.append((key, value))
    return apply, skipped


def same_value(left: FlagValue, right: FlagValue) -> bool:
    return json.dumps(left, sort_keys=True) == json.dumps(right, sort_keys=True) and type(left) is type(right)
