"""The tenant-wide access log against the real stack (Dex tokens, the evidence service and its ledger, PostgreSQL,
Kafka, portal processes): filters and pages, refused attempts with their status, tenant isolation, exports whose
proofs `ig-evidence verify-export` checks, neutralised formula cells, skipped entries counted, admin-only exports.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import csv
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from ig.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from ig_common.grpc_client import channel_as

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services" / "audit-portal" / "testing"))
from portal_stack import RELEASE, Stack, shared_stack

pytestmark = pytest.mark.e2e
IG_EVIDENCE = str(Path(sys.executable).parent / "ig-evidence")


@pytest.fixture(scope="module")
def stack(infra: Any, database_url: str, kafka_bootstrap: str) -> Iterator[Stack]:
    yield shared_stack(database_url, kafka_bootstrap)


@pytest.fixture(scope="module")
def portal(stack: Stack) -> Iterator[str]:
    process, url = stack.portal("portal-access-log", rate_requests_per_minute="100000",
                                rate_downloads_per_minute="100000", access_log_feed_seconds="0.2")
    yield url
    # Stopped with its module: its access-log feed would otherwise go on taking the shared ledger's entries (and
    # counting the unreadable ones) ahead of the next module's portal.
    process.stop()


@pytest.fixture(scope="module")
def tokens(stack: Stack) -> dict[str, str]:
    return {user: stack.token(user) for user in ("alpha-auditor", "alpha-admin", "beta-auditor", "beta-admin")}


def get(portal: str, path: str, token: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{portal}{path}", params=params or None, headers={"Authorization": f"Bearer {token}"},
                     timeout=60)


def search(portal: str, token: str, **params: Any) -> dict[str, Any]:
    answer = get(portal, "/audit/access-log", token, **params)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def ledger_key(stack: Stack) -> str:
    """The ledger's checkpoint key, as its operator publishes it: what an outside verifier pins."""
    with channel_as("operator", stack.evidence_grpc) as channel:
        return str(ledger_pb2_grpc.LedgerServiceStub(channel).Checkpoint(ledger_pb2.CheckpointRequest(),
                                                                          timeout=30).verifier_key)


def eventually(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


async def _slip_into_ledger(database_url: str, subject: str, payload: bytes) -> int:
    """What a database superuser (not an API caller: only the portal may append this kind) could leave there."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from ig_evidence.store.ledger import CheckpointSigner, LedgerStore

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        store = LedgerStore(pool, "evidence", CheckpointSigner("e2e/forger", Ed25519PrivateKey.generate()))
        # recorded for alpha, whose subject these entries carry: the tenant the portal's feed reads them under
        entry, _ = await store.append("ig.audit.access", subject, payload, tenant="alpha")
        return entry.fields.seq
    finally:
        await pool.close()


def access_payload(**fields: Any) -> bytes:
    body = {"user": "sub-x", "tenant": "alpha", "action": "read", "object": "releases", "release": "",
            "download_id": "", "request_sha256": "0" * 64, "at": "2026-12-06T00:00:00.000Z", "email": "",
            "status": 200, **fields}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def test_the_log_filters_and_pages(portal: str, tokens: dict[str, str]) -> None:
    auditor, admin = tokens["alpha-auditor"], tokens["alpha-admin"]
    artifact = get(portal, "/audit/artifacts", auditor, release=RELEASE).json()["artifacts"][0]
    for _ in range(3):
        link = get(portal, f"/audit/download/{artifact['id']}", auditor).json()
        assert httpx.get(f"{portal}{link['url']}", headers={"Authorization": f"Bearer {auditor}"},
                         timeout=60).status_code == 200
    everything = search(portal, admin, limit=200)
    assert everything["tenant"] == "alpha"
    order = [(e["at"], e["seq"]) for e in everything["entries"]]
    assert order == sorted(order, reverse=True) and len(order) >= 5  # newest first: access time, then seq

    # Pages of 2, cursor to cursor, are the same rows as one page, each once.
    paged, cursor, pages = [], "", 0
    while True:
        page = search(portal, admin, limit=2, action="download", **({"cursor": cursor} if cursor else {}))
        paged += [e["seq"] for e in page["entries"]]
        pages += 1
        if not page["next"]:
            break
        cursor = page["next"]
    downloads = [e["seq"] for e in search(portal, admin, action="download", limit=200)["entries"]]
    assert paged == downloads and len(downloads) >= 3 and pages >= 2
    assert all(e["action"] == "download" for e in search(portal, admin, action="download")["entries"])

    by_user = search(portal, admin, user="auditor@alpha.example", release=RELEASE)["entries"]
    assert by_user and all(e["email"] == "auditor@alpha.example" and e["release"] == RELEASE for e in by_user)
    subject = by_user[0]["user"]
    assert {e["seq"] for e in search(portal, admin, user=subject, release=RELEASE, limit=200)["entries"]} >= \
        {e["seq"] for e in by_user}

    newest = everything["entries"][0]
    later = search(portal, admin, **{"from": newest["at"]})["entries"]
    assert later and all(e["at"] >= newest["at"] for e in later)
    assert all(e["at"] < newest["at"] for e in search(portal, admin, until=newest["at"], limit=200)["entries"])

    # The cursor is the portal's: altered, or reused for another search, it is refused.
    first = search(portal, admin, limit=1)
    encoded, mac = first["next"].split(".")
    tenant, digest, at, _ = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    moved = base64.urlsafe_b64encode(json.dumps([tenant, digest, at, 10 ** 9]).encode()).decode().rstrip("=")
    assert get(portal, "/audit/access-log", admin, cursor=f"{moved}.{mac}").status_code == 400
    assert get(portal, "/audit/access-log", admin, cursor=first["next"], action="view").status_code == 400
    assert get(portal, "/audit/access-log", admin, cursor=first["next"]).status_code == 200
    assert get(portal, "/audit/access-log", admin, outcome="maybe").status_code == 400
    assert get(portal, "/audit/access-log", admin, **{"from": "2026-12-06T00:00:00"}).status_code == 400

    # The page: a table, a filter form, a link to the older entries that works.
    html = get(portal, "/access-log", admin, action="download")
    assert html.status_code == 200 and 'id="access-log-search"' in html.text and 'id="next-page"' not in html.text
    assert html.text.count("<tr class=") == len(downloads[:50])


def test_a_refused_attempt_appears_with_its_status(portal: str, tokens: dict[str, str]) -> None:
    auditor, admin = tokens["alpha-auditor"], tokens["alpha-admin"]
    assert get(portal, "/audit/artifacts", auditor, release="v9.9.9").status_code == 404
    assert get(portal, "/audit/access-logs", auditor, release=RELEASE).status_code == 403
    refused = search(portal, admin, outcome="refused", user="auditor@alpha.example")["entries"]
    statuses = {(e["status"], e["object"], e["action"]) for e in refused}
    assert (404, "refused:/audit/artifacts", "read") in statuses
    assert (403, "refused:/audit/access-logs", "export") in statuses
    assert all(e["outcome"] == "refused" for e in refused)
    assert all(e["outcome"] == "ok" for e in search(portal, admin, outcome="ok", limit=200)["entries"])


def test_the_429_of_a_caller_over_its_limit_is_recorded(stack: Stack, infra: Any, portal: str,
                                                        tokens: dict[str, str]) -> None:
    database = infra.new_database("ig_portal_alog")
    process, limited = stack.portal("portal-access-log-limited", database_url=database,
                                    rate_requests_per_minute="3")
    try:
        token = tokens["beta-auditor"]
        statuses = [get(limited, "/audit/releases", token).status_code for _ in range(6)]
        assert 429 in statuses
    finally:
        process.stop()
        infra.drop_database(database)
    # Recorded in the ledger: another portal's log shows it (its feed reads it from the ledger).
    found = eventually(lambda: [e for e in search(portal, tokens["beta-admin"], outcome="refused", limit=200)[
        "entries"] if e["status"] == 429])
    assert found and found[0]["object"] == "refused:/audit/releases"


def test_an_auditor_of_one_tenant_never_sees_another_tenants_entries(portal: str, tokens: dict[str, str]) -> None:
    assert get(portal, "/audit/releases", tokens["beta-auditor"]).status_code == 200
    alpha = search(portal, tokens["alpha-auditor"], limit=200, tenant="beta")  # a tenant parameter is ignored
    assert alpha["tenant"] == "alpha" and alpha["entries"]
    assert not any(e["email"].endswith("@beta.example") for e in alpha["entries"])
    beta = search(portal, tokens["beta-auditor"], limit=200)
    assert beta["tenant"] == "beta" and beta["entries"]
    assert not {e["seq"] for e in alpha["entries"]} & {e["seq"] for e in beta["entries"]}
    assert not any(e["email"].endswith("@alpha.example") for e in beta["entries"])
    # Nor through a cursor issued to the other tenant.
    alpha_cursor = search(portal, tokens["alpha-auditor"], limit=1)["next"]
    assert get(portal, "/audit/access-log", tokens["beta-auditor"], cursor=alpha_cursor).status_code == 400


def test_auditors_read_the_log_but_exports_are_for_admins(portal: str, tokens: dict[str, str]) -> None:
    auditor = tokens["alpha-auditor"]
    assert get(portal, "/audit/access-log", auditor).status_code == 200
    assert get(portal, "/access-log", auditor).status_code == 200
    assert 'id="export-csv"' not in get(portal, "/access-log", auditor).text
    for fmt in ("csv", "json"):
        refused = get(portal, "/audit/access-log/export", auditor, format=fmt)
        assert refused.status_code == 403 and refused.headers["content-type"].startswith("application/problem+json")
    assert 'id="export-csv"' in get(portal, "/access-log", tokens["alpha-admin"]).text


def test_an_export_verifies_with_ig_evidence_and_formula_cells_are_neutralised(
        stack: Stack, portal: str, tokens: dict[str, str], tmp_path: Path) -> None:
    from ig_portal.domain.access import ledger_subject

    # A well-formed access entry whose user and e-mail would run as formulas in a spreadsheet (an identity
    # provider's claims are not the portal's to choose).
    formula_user, formula_email = "=HYPERLINK(\"http://evil.example\",\"x\")", "@SUM(1+1)"
    seq = asyncio.run(_slip_into_ledger(stack.database_url, ledger_subject("alpha", ""),
                                        access_payload(user=formula_user, email=formula_email, object="-2+3")))
    admin = tokens["alpha-admin"]
    assert eventually(lambda: [e for e in search(portal, admin, user=formula_user)["entries"] if e["seq"] == seq])
    get(portal, "/audit/releases", admin)
    key = ledger_key(stack)

    exported = get(portal, "/audit/access-log/export", admin, format="csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert rows[0]["record"] == "checkpoint" and rows[-1]["record"] == "end" and rows[-1]["object"] == "complete"
    formula_row = next(r for r in rows if r["record"] == "entry" and r["seq"] == str(seq))
    assert formula_row["user"] == "'" + formula_user and formula_row["email"] == "'" + formula_email
    assert formula_row["object"] == "'-2+3"
    for row in rows:
        for name, cell in row.items():
            assert not cell or not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (name, cell)
    assert all(r["tenant"] in ("alpha", "") for r in rows)

    exported_json = get(portal, "/audit/access-log/export", admin, format="json", action="read")
    document = exported_json.json()
    assert document["tenant"] == "alpha" and document["complete"] is True and document["entries"]
    assert all(e["action"] == "read" for e in document["entries"])
    for name, body in (("log.csv", exported.content), ("log.json", exported_json.content)):
        (tmp_path / name).write_bytes(body)
        checked = subprocess.run([IG_EVIDENCE, "verify-export", str(tmp_path / name), "--ledger-key", key,
                                  "--json"], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        report = json.loads(checked.stdout)
        assert report["ok"] and report["tenant"] == "alpha" and report["rows"] >= 1

    # An altered cell, an entry moved to another tenant, a wrong proof, another ledger key: each fails the check.
    tampered = exported.text.replace("'" + formula_email, "'@SUM(2+2)")
    moved, unproven = copy.deepcopy(document), copy.deepcopy(document)
    moved["entries"][0]["ledger"]["payload"] = moved["entries"][0]["ledger"]["payload"].replace(
        '"tenant":"alpha"', '"tenant":"beta"')
    next(e for e in unproven["entries"] if e["ledger"]["inclusion"])["ledger"]["inclusion"][0] = "00" * 32
    other_key = "other+00000000+AQ" + base64.b64encode(bytes(32)).decode()
    for name, body, pinned in (("altered.csv", tampered, key), ("moved.json", json.dumps(moved), key),
                               ("unproven.json", json.dumps(unproven), key), ("log.csv", None, other_key)):
        if body is not None:
            (tmp_path / name).write_text(body)
        checked = subprocess.run([IG_EVIDENCE, "verify-export", str(tmp_path / name), "--ledger-key", pinned],
                                 capture_output=True, text=True)
        assert checked.returncode == 1, (name, checked.stdout, checked.stderr)
        assert "FAIL" in checked.stderr


def test_an_unparseable_or_foreign_entry_is_skipped_and_counted_not_a_500(stack: Stack, portal: str,
                                                                           tokens: dict[str, str]) -> None:
    from ig_portal.domain.access import ledger_subject

    admin = tokens["alpha-admin"]
    before = search(portal, admin)["skipped"]
    slipped = [asyncio.run(_slip_into_ledger(stack.database_url, ledger_subject("alpha", RELEASE), payload))
               for payload in (b"not json", b'{"action": "read"}',
                               access_payload(tenant="beta", release=RELEASE))]  # beta's payload, alpha's subject
    assert eventually(lambda: search(portal, admin)["skipped"] >= before + 3)
    answer = get(portal, "/audit/access-log", admin, limit=200)
    assert answer.status_code == 200
    assert not {e["seq"] for e in answer.json()["entries"]} & set(slipped)
    assert not {e["seq"] for e in search(portal, tokens["beta-admin"], limit=200)["entries"]} & set(slipped)
    page = get(portal, "/access-log", admin)
    assert page.status_code == 200 and f'{search(portal, admin)["skipped"]} ledger entries' in page.text
    counted = [line for line in stack.metrics(portal).splitlines()
               if line.startswith("ig_portal_access_log_unreadable_entries_total")]
    assert counted and float(counted[0].split()[-1]) >= 3
    # The per-release log of before (it read the whole ledger and once answered 500 for good) still answers.
    assert get(portal, "/audit/access-logs", admin, release=RELEASE).status_code == 200


def test_a_new_portal_database_fills_from_the_ledger_with_the_same_rows_and_a_reread_changes_nothing(
        stack: Stack, infra: Any, portal: str, tokens: dict[str, str]) -> None:
    """The feed: a portal on an empty database projects every access entry from seq 1, row for row what the
    requests themselves wrote elsewhere (seq, entry hash, columns); set back to seq 1 it reads everything again and
    no row changes or doubles (rows are keyed by seq)."""
    assert get(portal, "/audit/releases", tokens["alpha-auditor"]).status_code == 200

    async def rows(database_url: str) -> dict[int, tuple[Any, ...]]:
        conn = await asyncpg.connect(database_url)
        try:
            found = await conn.fetch("SELECT seq, tenant, user_id, action, status, object, at, entry_hash, payload "
                                     "FROM portal.access_log")
            return {r["seq"]: tuple(r.values()) for r in found}
        finally:
            await conn.close()

    async def execute(database_url: str, sql: str) -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    written = asyncio.run(rows(stack.database_url))
    database = infra.new_database("ig_portal_feed")
    try:
        process, _ = stack.portal("portal-access-log-fresh", database_url=database, access_log_feed_seconds="0.2")
        try:
            assert eventually(lambda: set(written) <= set(asyncio.run(rows(database))), timeout=30)
            projected = asyncio.run(rows(database))
            assert {seq: projected[seq] for seq in written} == written
        finally:
            process.stop()
        asyncio.run(execute(database, "UPDATE portal.access_log_feed SET next_seq = 1; "
                                      "DELETE FROM portal.access_log_feed_tenants"))
        process, _ = stack.portal("portal-access-log-reread", database_url=database, access_log_feed_seconds="0.2")
        try:
            def reread() -> bool:
                # each tenant's position (the feed reads tenant by tenant) past that tenant's last row
                conn_rows = asyncio.run(rows(database))
                positions = asyncio.run(_feed_positions(database))
                last = {row[1]: seq for seq, row in sorted(conn_rows.items())}
                return all(positions.get(tenant, 0) > seq for tenant, seq in last.items()) and \
                    conn_rows.keys() >= projected.keys()
            assert eventually(reread, timeout=30)
            again = asyncio.run(rows(database))
            assert {seq: again[seq] for seq in projected} == projected
        finally:
            process.stop()
    finally:
        infra.drop_database(database)


async def _feed_positions(database_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        return {r["tenant"]: int(r["next_seq"])
                for r in await conn.fetch("SELECT tenant, next_seq FROM portal.access_log_feed_tenants")}
    finally:
        await conn.close()
