"""The one place SQL identifiers are quoted. asyncpg binds values, never names, so every table, column, trigger
and function name the orchestrator splices into a statement goes through here, including column names read from
the catalog (which may hold anything but NUL: ``x; DROP TABLE y`` is a legal column name).

Always quoting (unlike PostgreSQL's quote_ident(), which leaves plain lowercase names bare) is the same name for
plan names, which are lowercase by the plan schema, and the exact name for catalog names, whatever their case.
"""

from __future__ import annotations

from collections.abc import Iterable


def quote_ident(name: str) -> str:
    """``name`` as a delimited identifier: in double quotes, embedded double quotes doubled (SQL standard)."""
    if not name or "\x00" in name:
        raise ValueError(f"not a usable SQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def quote_qualified(name: str) -> str:
    """A plan's ``schema.table`` (or bare ``table``) with each part quoted. Only for names the plan schema has
    validated (no dot inside a part); a catalog relation is quoted from its schema and name separately."""
    return ".".join(quote_ident(part) for part in name.split("."))


def quote_list(names: Iterable[str], prefix: str = "") -> str:
    """``"a", "b"`` or, with a prefix such as ``NEW.``, ``NEW."a", NEW."b"``."""
    return ", ".join(prefix + quote_ident(name) for name in names)
