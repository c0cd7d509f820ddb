"""The tenant-wide access log: search (JSON and a page) for the tenant's admins and auditors, exports with proofs
for its admins.

The tenant is the caller's, from the verified identity; no parameter names one. Pages are read from the indexed
projection (``store.access_log``), newest first, continued by an opaque HMAC'd cursor bound to the tenant and the
filters. An export starts with the ledger's signed checkpoint and carries each row's inclusion proof in it; rows
are read and proved a page at a time and streamed, never the whole log in memory.
"""

from __future__ import annotations

import asyncio
import csv
import inspect
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel

from ig_portal.api.audit import ERRORS, AuditApi
from ig_portal.api.catalog import valid_release
from ig_portal.api.page_docs import PAGE_RESPONSES
from ig_portal.api.pages import SECURITY_HEADERS, TEMPLATES, LoginRequired
from ig_portal.clients.ledger import LedgerUnavailable
from ig_portal.domain import access_export
from ig_portal.domain.access import Action
from ig_portal.domain.access_log import MAX_PAGE, CursorInvalid, Cursors, LogFilter
from ig_portal.domain.identity import Principal
from ig_portal.store.access_log import AccessLogStore, LogRow, Position

ActionName = Literal["view", "read", "download", "export"]
Outcome = Literal["ok", "refused"]


class LogEntryOut(BaseModel):
    seq: int
    at: str
    user: str
    email: str
    action: str
    status: int
    outcome: str
    object: str
    release: str
    downloadId: str
    entryHash: str


class LogPageOut(BaseModel):
    tenant: str
    entries: list[LogEntryOut]
    next: str | None = None
    skipped: int = 0


def entry_out(row: LogRow) -> LogEntryOut:
    e = row.entry
    return LogEntryOut(seq=row.seq, at=e.at, user=e.user, email=e.email, action=e.action.value, status=e.status,
                       outcome=e.outcome, object=e.object, release=e.release, downloadId=e.download_id,
                       entryHash=row.entry_hash)


@dataclass
class FilterParams:
    """The access log's filter as its three routes (search, export, page) take it from the query string; checked
    by ``log_filter`` once the caller is known."""

    user: Annotated[str, Query(max_length=320)] = ""
    action: ActionName | Literal[""] = ""
    release: Annotated[str, Query(max_length=64)] = ""
    outcome: Outcome | Literal[""] = ""
    since: Annotated[datetime | None, Query(alias="from")] = None
    until: datetime | None = None


async def filter_params(**given: Any) -> FilterParams:
    """FilterParams built on the event loop: FastAPI runs a plain class dependency in its thread pool, and that hop
    (a worker thread's wake-up, twice) was paid by every search. The parameters are FilterParams' own."""
    return FilterParams(**given)


filter_params.__signature__ = inspect.signature(FilterParams).replace(  # type: ignore[attr-defined]
    return_annotation=FilterParams)
FilterQuery = Annotated[FilterParams, Depends(filter_params)]


def log_filter(params: FilterParams) -> LogFilter:
    try:
        for name, value in (("from", params.since), ("until", params.until)):
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name}: give a time zone (e.g. 2026-12-06T00:00:00Z)")
        return LogFilter(user=params.user, action=params.action,
                         release=valid_release(params.release) if params.release else "",
                         outcome=params.outcome, since=params.since, until=params.until)
    except ValueError as error:
        raise HTTPException(400, str(error)) from error


def filter_query(chosen: LogFilter) -> dict[str, str]:
    """The filter back as query parameters (the page's links, an export's header), empty ones left out."""
    return {k: v for k, v in (("user", chosen.user), ("action", chosen.action), ("release", chosen.release),
                              ("outcome", chosen.outcome), ("from", chosen.since.isoformat() if chosen.since else ""),
                              ("until", chosen.until.isoformat() if chosen.until else "")) if v}


@dataclass
class AccessLogApi:
    api: AuditApi
    store: AccessLogStore
    cursors: Cursors
    export_max_rows: int
    proof_concurrency: int = 8

    def below(self, cursor: str, principal: Principal, chosen: LogFilter) -> Position | None:
        if not cursor:
            return None
        try:
            return self.cursors.open(cursor, principal.tenant, chosen)
        except (CursorInvalid, ValueError) as error:
            raise HTTPException(400, str(error) if isinstance(error, CursorInvalid) else "cursor: malformed") from error

    async def page(self, principal: Principal, chosen: LogFilter, cursor: str, limit: int) -> LogPageOut:
        rows, more = await self.store.search(principal.tenant, chosen, below=self.below(cursor, principal, chosen),
                                             limit=limit)
        following = self.cursors.issue(principal.tenant, chosen, rows[-1].position) if more and rows else None
        return LogPageOut(tenant=principal.tenant, entries=[entry_out(r) for r in rows], next=following,
                          skipped=await self.store.skipped(principal.tenant))

    async def proofs(self, rows: list[LogRow], tree_size: int) -> list[list[str]]:
        limit = asyncio.Semaphore(self.proof_concurrency)

        async def one(seq: int) -> list[str]:
            async with limit:
                return await self.api.guard.ledger.inclusion(seq, tree_size)

        return list(await asyncio.gather(*(one(r.seq) for r in rows)))

    async def proved_rows(self, principal: Principal, chosen: LogFilter, below: Position | None, tree_size: int,
                          outcome: dict[str, Any]) -> AsyncIterator[tuple[LogRow, list[str]]]:
        """Matching rows in the checkpoint, newest first, with their proofs; at most export_max_rows (then
        ``outcome['next']`` is the cursor to continue with)."""
        sent, last = 0, below
        async for rows in self.store.pages(principal.tenant, chosen, below=below, at_most_seq=tree_size,
                                           page_size=min(500, self.export_max_rows + 1)):
            if len(rows) > self.export_max_rows - sent:
                rows = rows[:self.export_max_rows - sent]
                outcome["complete"] = False
            for row, proof in zip(rows, await self.proofs(rows, tree_size), strict=True):
                yield row, proof
                last = row.position
            sent += len(rows)
            if not outcome["complete"]:
                outcome["next"] = self.cursors.issue(principal.tenant, chosen, last) if last else ""
                return

    async def export(self, request: Request, principal: Principal, chosen: LogFilter, cursor: str,
                     format: str) -> Response:
        if not principal.is_admin:
            raise HTTPException(403, "exports of the access log are for admins of the tenant")
        below = self.below(cursor, principal, chosen)
        await self.api.guard.record(request, principal, Action.EXPORT, f"access-log:{format}",
                                    release=chosen.release)
        try:
            head = await self.api.guard.ledger.checkpoint()
        except LedgerUnavailable as error:
            raise HTTPException(503, "ledger unavailable") from error
        filters = filter_query(chosen)
        outcome: dict[str, Any] = {"complete": True, "next": ""}
        rows = self.proved_rows(principal, chosen, below, head.tree_size, outcome)
        name = f"access-log-{principal.tenant}"
        if format == "csv":
            return StreamingResponse(csv_stream(principal, head.cosigned_note or head.note, head.verifier_key,
                                                head.tree_size, rows, outcome), media_type="text/csv",
                                     headers={"Content-Disposition": f'attachment; filename="{name}.csv"',
                                              "Cache-Control": "no-store"})
        start = access_export.json_head(principal.tenant, filters, principal.email or principal.user,
                                        head.cosigned_note or head.note, head.verifier_key, head.tree_size)
        return StreamingResponse(json_stream(start, rows, outcome), media_type="application/json",
                                 headers={"Content-Disposition": f'attachment; filename="{name}.json"',
                                          "Cache-Control": "no-store"})

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/audit", tags=["audit"], responses=ERRORS)
        api = self.api

        @router.get("/access-log", response_model=LogPageOut,
                    summary="The tenant's access log, newest first (admins and auditors of the tenant)")
        async def search(request: Request,
                         params: FilterQuery,
                         cursor: Annotated[str, Query(max_length=512)] = "",
                         limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50) -> LogPageOut:
            principal = await api.caller(request)
            chosen = log_filter(params)
            found = await self.page(principal, chosen, cursor, limit)
            await api.guard.record(request, principal, Action.READ, "access-log", release=chosen.release)
            return found

        @router.get("/access-log/export", summary="Export the tenant's access log with a signed checkpoint and "
                    "inclusion proofs (admins); check it with `ig-evidence verify-export`",
                    responses={200: {"content": {"text/csv": {}, "application/json": {}}}})
        async def export(request: Request, params: FilterQuery,
                         format: Literal["json", "csv"] = "json",
                         cursor: Annotated[str, Query(max_length=512)] = "") -> Response:
            principal = await api.caller(request)
            chosen = log_filter(params)
            return await self.export(request, principal, chosen, cursor, format)

        return router

    def page_router(self) -> APIRouter:
        router = APIRouter(tags=["pages"], responses=PAGE_RESPONSES)
        guard = self.api.guard

        @router.get("/access-log", response_class=HTMLResponse)
        async def access_log_page(request: Request, params: FilterQuery,
                                  cursor: Annotated[str, Query(max_length=512)] = "") -> Response:
            principal, session = await guard.authenticate(request)
            await guard.admit(request, principal)
            if principal is None:
                raise LoginRequired(str(request.url.path))
            chosen = log_filter(params)
            found = await self.page(principal, chosen, cursor, 50)
            await guard.record(request, principal, Action.VIEW, "access-log", release=chosen.release)
            query = filter_query(chosen)
            context = {"principal": principal, "csrf": session.csrf_token if session else "",
                       "title": "Access log", "page": found, "query": query}
            response = TEMPLATES.TemplateResponse(request, "access_log_search.html", context)
            response.headers.update(SECURITY_HEADERS)
            return response

        return router


async def json_stream(start: dict[str, Any], rows: AsyncIterator[tuple[LogRow, list[str]]],
                      outcome: dict[str, Any]) -> AsyncIterator[str]:
    head = access_export.json_dumps(start)
    yield head[:-1] + ',"entries":['
    first = True
    async for row, proof in rows:
        yield ("" if first else ",") + access_export.json_dumps(
            access_export.json_entry(row.record, row.entry, proof))
        first = False
    yield f'],"complete":{"true" if outcome["complete"] else "false"},' \
          f'"next":{access_export.json_dumps(outcome["next"] or None)}}}'


async def csv_stream(principal: Principal, note: str, verifier_key: str, tree_size: int,
                     rows: AsyncIterator[tuple[LogRow, list[str]]], outcome: dict[str, Any]) -> AsyncIterator[str]:
    def line(cells: list[str] | tuple[str, ...]) -> str:
        out = io.StringIO()
        csv.writer(out).writerow(cells)
        return out.getvalue()

    yield line(access_export.CSV_HEADER)
    yield line(access_export.csv_checkpoint(principal.tenant, note, verifier_key, tree_size))
    async for row, proof in rows:
        yield line(access_export.csv_entry(row.record, row.entry, proof))
    yield line(access_export.csv_end(outcome["complete"], outcome["next"]))
