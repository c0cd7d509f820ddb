"""What may leave the service where: masked explanations for metadata, mask and drop rules for the log.

Mask rules follow OPA's ``system.log.mask``, with one change: a bare JSON pointer (``"/input/actor/id"``, or
``{"op": "pseudonymize", "path": ...}``) replaces the value by its keyed pseudonym (``hmac-sha256:...``, see
ig_policy.domain.protection) instead of erasing it, so a reader can still tell one subject's decisions together;
``{"op": "remove", "path": ...}`` erases and ``{"op": "upsert", "path": ..., "value": "**"}`` replaces (or adds).
Drop rules are objects of log-record fields to values; a record matching every field of any rule is not logged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MASK = "***"
_QUOTED = re.compile(r"'[^']*'")
_UNSAFE = re.compile(r"[^\x20-\x7e]")
MAX_HEADER_TEXT = 256
_MIN_SENSITIVE = 2
DROP_FIELDS = ("result", "ruleId", "tenant", "purpose", "action")


def mask_explanation(text: str, sensitive_values: Iterable[str]) -> str:
    """Explanation safe for headers: quoted values and every input value masked, ASCII only, bounded."""
    masked = _QUOTED.sub(f"'{MASK}'", text)
    for value in sorted({v for v in sensitive_values if len(v) >= _MIN_SENSITIVE}, key=len, reverse=True):
        if value not in masked:
            continue
        # Whole words only: the value "low" must not turn "below" into "be***".
        masked = re.sub(rf"(?<![A-Za-z0-9_]){re.escape(value)}(?![A-Za-z0-9_])", MASK, masked)
    masked = _UNSAFE.sub("?", masked)
    return masked[:MAX_HEADER_TEXT]


def sensitive_values_of(document: Any) -> frozenset[str]:
    """Every string inside an input document: none of them may appear in masked text."""
    found: set[str] = set()
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.add(item)
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return frozenset(found)


MASK_OPS = ("pseudonymize", "remove", "upsert")
Pseudonym = Callable[[Any], str]


@dataclass(frozen=True)
class MaskRule:
    path: tuple[str, ...]
    op: str = "pseudonymize"
    value: Any = None

    def apply(self, record: dict[str, Any], pseudonym: Pseudonym) -> None:
        """Mask in place, copying each dict on the way down first, so shared sub-documents stay untouched."""
        parent: Any = record
        for key in self.path[:-1]:
            if not isinstance(parent, dict) or not isinstance(parent.get(key), dict):
                return
            parent[key] = dict(parent[key])
            parent = parent[key]
        last = self.path[-1]
        if self.op == "upsert":
            parent[last] = self.value
        elif self.op == "remove":
            parent.pop(last, None)
        elif isinstance(parent, dict) and last in parent:
            parent[last] = pseudonym(parent[last])


def _pointer(text: Any) -> tuple[str, ...]:
    if not isinstance(text, str) or not text.startswith("/") or len(text) < 2:
        raise ValueError(f"mask path {text!r} must be a JSON pointer such as /input/actor/id")
    return tuple(part.replace("~1", "/").replace("~0", "~") for part in text[1:].split("/"))


def parse_mask_rules(raw: Iterable[Any]) -> tuple[MaskRule, ...]:
    rules = []
    for item in raw:
        if isinstance(item, str):
            rules.append(MaskRule(_pointer(item)))
        elif isinstance(item, Mapping):
            op = item.get("op", "pseudonymize")
            if op not in MASK_OPS:
                raise ValueError(f"mask op {op!r} must be one of {', '.join(MASK_OPS)}")
            if op == "upsert" and "value" not in item:
                raise ValueError("an upsert mask rule needs a value")
            rules.append(MaskRule(_pointer(item.get("path")), op, item.get("value")))
        else:
            raise ValueError(f"mask rule {item!r} must be a JSON pointer or an object with op/path")
    return tuple(rules)


@dataclass(frozen=True)
class DropRule:
    match: tuple[tuple[str, str], ...]

    def drops(self, record: Mapping[str, Any]) -> bool:
        return all(str(record.get(key, "")).lower() == value.lower() for key, value in self.match)


def parse_drop_rules(raw: Iterable[Any]) -> tuple[DropRule, ...]:
    rules = []
    for item in raw:
        if not isinstance(item, Mapping) or not item:
            raise ValueError(f"drop rule {item!r} must be a non-empty object such as {{\"result\": \"allow\"}}")
        unknown = set(item) - set(DROP_FIELDS)
        if unknown:
            raise ValueError(f"drop rule fields {sorted(unknown)} unknown; use {', '.join(DROP_FIELDS)}")
        rules.append(DropRule(tuple(sorted((str(k), str(v)) for k, v in item.items()))))
    return tuple(rules)


def apply_masks(record: dict[str, Any], rules: Sequence[MaskRule], pseudonym: Pseudonym) -> dict[str, Any]:
    """A masked copy: the caller's record (and the input inside it) stays as it was. Only the dicts on a rule's
    path are copied, not the whole record."""
    if not rules:
        return record
    masked = dict(record)
    for rule in rules:
        rule.apply(masked, pseudonym)
    return masked
