"""The declarative table of who may call what: gRPC methods, HTTP routes of internal APIs, tenants a workload acts
for, tenants whose ledger entries it may read, ledger kinds it owns.

Pure data and lookups (no gRPC here): the interceptor asks ``may_call``, the ledger asks ``may_append``. Anything
not in the table is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

ANY_KNOWN = "*"
_HTTP_ROUTE = re.compile(r"(GET|HEAD|POST|PUT|PATCH|DELETE) /\S*")


class TableError(ValueError):
    """The table file is malformed; a service refuses to start with it."""


class Refusal(Enum):
    UNKNOWN_IDENTITY = "unknown_identity"
    NOT_GRANTED = "not_granted"


@dataclass(frozen=True)
class AuthorizationTable:
    identities: frozenset[str]
    methods: Mapping[str, frozenset[str]]
    tenants: Mapping[str, frozenset[str]]
    ledger_kinds: Mapping[str, frozenset[str]]
    user_forwarders: frozenset[str]
    # "POST /access/v1/evaluation" -> identities: internal HTTP APIs whose callers prove who they are with a
    # workload token (ig_common.authz.http_guard). Never "*": health and metrics are not behind the guard.
    http_routes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Workload -> tenants whose ledger entries it may read (LedgerService Get/List) with no end user behind the
    # call, without acting for them otherwise: the portal's access-log feed reads back the entries it appended.
    ledger_readers: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> AuthorizationTable:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise TableError(f"authorization table {path}: {error}") from error
        return cls.from_document(document, str(path))

    @classmethod
    def from_document(cls, document: Any, where: str = "authorization table") -> AuthorizationTable:
        if not isinstance(document, dict):
            raise TableError(f"{where}: expected a mapping")
        identities = frozenset(_names(document.get("identities"), f"{where}: identities", allow_any=False))
        if not identities:
            raise TableError(f"{where}: identities: at least one is needed")

        def grants(section: str) -> dict[str, frozenset[str]]:
            raw = document.get(section) or {}
            if not isinstance(raw, dict):
                raise TableError(f"{where}: {section}: expected a mapping")
            found: dict[str, frozenset[str]] = {}
            for key, names in raw.items():
                granted = frozenset(_names(names, f"{where}: {section}.{key}", allow_any=section == "methods"))
                if section == "http" and not _HTTP_ROUTE.fullmatch(str(key)):
                    raise TableError(f"{where}: http.{key}: expected '<HTTP method> /path'")
                unknown = granted - identities - {ANY_KNOWN}
                if unknown and section not in ("tenants", "ledger_readers"):
                    raise TableError(f"{where}: {section}.{key}: unknown identities {sorted(unknown)}")
                found[str(key)] = granted
            return found

        methods = grants("methods")
        for method in methods:
            if not method.startswith("/") or method.count("/") != 2:
                raise TableError(f"{where}: methods.{method}: expected /package.Service/Method")
        tenants = grants("tenants")
        readers = grants("ledger_readers")
        for section, granted in (("tenants", tenants), ("ledger_readers", readers)):
            unknown_holders = set(granted) - identities
            if unknown_holders:
                raise TableError(f"{where}: {section}: unknown identities {sorted(unknown_holders)}")
        forwarders = frozenset(_names(document.get("user_forwarders") or [], f"{where}: user_forwarders",
                                      allow_any=False))
        if forwarders - identities:
            raise TableError(f"{where}: user_forwarders: unknown identities {sorted(forwarders - identities)}")
        return cls(identities, methods, tenants, grants("ledger_kinds"), forwarders, grants("http"), readers)

    def may_call(self, method: str, name: str) -> Refusal | None:
        """None when ``name`` may call ``method``; else why not."""
        if name not in self.identities:
            return Refusal.UNKNOWN_IDENTITY
        granted = self.methods.get(method)
        if granted is None or (name not in granted and ANY_KNOWN not in granted):
            return Refusal.NOT_GRANTED
        return None

    def may_request(self, route: str, name: str) -> Refusal | None:
        """None when ``name`` may send ``route`` ("POST /path") to an internal HTTP API; else why not."""
        if name not in self.identities:
            return Refusal.UNKNOWN_IDENTITY
        return None if name in self.http_routes.get(route, frozenset()) else Refusal.NOT_GRANTED

    def tenants_of(self, name: str) -> frozenset[str]:
        return self.tenants.get(name, frozenset())

    def ledger_tenants_readable_by(self, name: str) -> frozenset[str]:
        """Tenants whose ledger entries ``name`` may read on its own (``ledger_readers``), besides those it acts for."""
        return self.ledger_readers.get(name, frozenset())

    def may_append(self, kind: str, name: str) -> bool:
        row = self.ledger_kind_row(kind)
        return row is not None and name in self.ledger_kinds[row]

    def ledger_kind_row(self, kind: str) -> str | None:
        """The ``ledger_kinds`` row that covers ``kind``: the exact kind first, else the ``prefix.*`` row it falls
        under. A bounded name for a caller-chosen kind (what metrics may label with)."""
        if kind in self.ledger_kinds:
            return kind
        return next((pattern for pattern in self.ledger_kinds
                     if pattern.endswith(".*") and kind.startswith(pattern[:-1])), None)

    def may_forward_users(self, name: str) -> bool:
        return name in self.user_forwarders


def _names(raw: Any, where: str, *, allow_any: bool) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(n, str) and n for n in raw):
        raise TableError(f"{where}: expected a list of names")
    if not allow_any and ANY_KNOWN in raw:
        raise TableError(f"{where}: '{ANY_KNOWN}' is only for methods")
    return list(raw)
