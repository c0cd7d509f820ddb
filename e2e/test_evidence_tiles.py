"""The evidence ledger as a C2SP tlog-tiles log, served by the real service on its public listener and verified by
an implementation that is not ours: golang.org/x/mod's sumdb/note (the checkpoint's signature) and sumdb/tlog
(tiles authenticated against the root, inclusion and consistency proofs), built from the Go module proxy
(tools/tlog-verify, `ig-infra tool tlog-verify`). Building it is part of the test: if it cannot be built, the test
fails."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from ig.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from ig_common.grpc_client import channel_as
from ig_evidence.domain import merkle, note
from ig_infra.go_tools import tool_path
from ig_infra.paths import Paths
from ig_infra.process import free_port
from ig_release.suite import service

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class TiledLedger:
    url: str  # the public listener: /checkpoint, /tile/...
    stub: ledger_pb2_grpc.LedgerServiceStub
    database_url: str  # the superuser's
    runtime_url: str  # the service's runtime role's


@pytest.fixture(scope="module")
def verifier_binary() -> Path:
    return tool_path(Paths.from_environment().cache, "tlog-verify")


@pytest.fixture(scope="module")
def ledger(infra: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TiledLedger]:
    own_url = infra.new_database("ig_tiles")
    work = tmp_path_factory.mktemp("tiles")
    grpc_port, public_port = free_port(), free_port()
    env = {**infra.env(own_url, "evidence"), "IG_GRPC_PORT": str(grpc_port), "IG_PUBLIC_PORT": str(public_port),
           "IG_BLOB_STORE_PATH": str(work / "blobs")}
    try:
        with service("ig_evidence.app", env, work / "evidence.log", free_port()):
            url = f"http://127.0.0.1:{public_port}"
            deadline = time.monotonic() + 30
            while status(f"{url}/checkpoint")[0] != 404:  # listening, and the ledger is still empty
                assert time.monotonic() < deadline, "the public listener did not come up"
                time.sleep(0.2)
            stub = ledger_pb2_grpc.LedgerServiceStub(channel_as("release", f"127.0.0.1:{grpc_port}"))
            yield TiledLedger(url, stub, own_url, infra.service_dsn("evidence", own_url))
    finally:
        infra.drop_database(own_url)


def status(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()
    except OSError:
        return 0, {}, b""


def append(stub: ledger_pb2_grpc.LedgerServiceStub, count: int, tag: str) -> list[ledger_pb2.Entry]:
    def one(i: int) -> ledger_pb2.Entry:
        return stub.Append(ledger_pb2.AppendRequest(kind="release.tiles-test", subject=f"{tag}-{i}",
                                                    payload=f"payload {tag} {i}".encode(), tenant="alpha")).entry
    with ThreadPoolExecutor(8) as pool:  # concurrent writers: several entries per integration batch
        return sorted(pool.map(one, range(count)), key=lambda e: e.seq)


def run_verifier(binary: Path, ledger: TiledLedger, checkpoint: ledger_pb2.CheckpointResponse, leaves: list[int],
                 old_checkpoint: Path | None = None) -> subprocess.CompletedProcess[str]:
    args = [str(binary), "-url", ledger.url, "-vkey", checkpoint.verifier_key, "-origin", checkpoint.origin,
            "-leaves", ",".join(map(str, leaves))]
    if old_checkpoint is not None:
        args += ["-old-checkpoint", str(old_checkpoint)]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def test_tiles_served_over_http_verify_with_golang_x_mod(ledger: TiledLedger, verifier_binary: Path,
                                                         tmp_path: Path) -> None:
    first = append(ledger.stub, 300, "a")
    head = ledger.stub.Checkpoint(ledger_pb2.CheckpointRequest())  # waits for integration of what was appended
    assert head.tree_size == 300
    code, _, old_note = status(f"{ledger.url}/checkpoint")
    assert code == 200 and note.open_checkpoint(old_note.decode(), head.verifier_key).tree_size == 300
    (tmp_path / "old-checkpoint").write_bytes(old_note)
    later = append(ledger.stub, 333, "b")  # 633: two full level-0 tiles, a partial one, a partial level-1 tile
    entries = first + later
    head = ledger.stub.Checkpoint(ledger_pb2.CheckpointRequest())
    assert head.tree_size == 633

    leaves = [0, 1, 255, 256, 299, 511, 512, 632]
    verified = run_verifier(verifier_binary, ledger, head, leaves, tmp_path / "old-checkpoint")
    assert verified.returncode == 0, verified.stderr
    result = json.loads(verified.stdout)
    assert (result["size"], result["root"], result["consistent_from"]) == (633, head.root_hash, 300)
    # The bytes x/mod proved in the tree are each entry's entry hash: from them a verifier goes to the entry.
    assert [(e["index"], e["entry_hash"]) for e in result["entries"]] == [
        (i, entries[i].entry_hash) for i in leaves]
    assert merkle.leaf_hash(bytes.fromhex(entries[632].entry_hash)).hex() == ledger.stub.InclusionProof(
        ledger_pb2.InclusionProofRequest(seq=633, tree_size=633)).leaf_hash


def test_a_tile_rewritten_below_the_service_fails_the_independent_verifier(ledger: TiledLedger,
                                                                          verifier_binary: Path) -> None:
    head = ledger.stub.Checkpoint(ledger_pb2.CheckpointRequest())
    assert run_verifier(verifier_binary, ledger, head, [3]).returncode == 0

    async def rewrite_leaf_hash() -> bytes:
        conn = await asyncpg.connect(ledger.database_url)
        try:
            # A superuser switches the tiles' extend-only trigger off for the session and swaps leaf 3's hash.
            await conn.execute("SET session_replication_role = replica")
            original = bytes(await conn.fetchval(
                "SELECT hashes FROM evidence.ledger_tiles WHERE level = 0 AND idx = 0"))
            forged = original[:96] + bytes(32) + original[128:]
            await conn.execute("UPDATE evidence.ledger_tiles SET hashes = $1 WHERE level = 0 AND idx = 0", forged)
            return original
        finally:
            await conn.close()

    async def restore(original: bytes) -> None:
        conn = await asyncpg.connect(ledger.database_url)
        try:
            await conn.execute("SET session_replication_role = replica")
            await conn.execute("UPDATE evidence.ledger_tiles SET hashes = $1 WHERE level = 0 AND idx = 0", original)
        finally:
            await conn.close()

    original = asyncio.run(rewrite_leaf_hash())
    try:
        refused = run_verifier(verifier_binary, ledger, head, [3])
        assert refused.returncode != 0 and "tlog-verify:" in refused.stderr, refused.stdout
        assert not ledger.stub.Verify(ledger_pb2.VerifyRequest()).ok
    finally:
        asyncio.run(restore(original))
    assert ledger.stub.Verify(ledger_pb2.VerifyRequest()).ok


@pytest.mark.parametrize(("path", "code", "content_type", "length"), [
    ("tile/0/000", 200, "application/octet-stream", 8192),
    ("tile/0/002.p/121", 200, "application/octet-stream", 121 * 32),
    ("tile/0/001.p/5", 200, "application/octet-stream", 5 * 32),  # any prefix of a tile is a past partial tile
    ("tile/1/000.p/2", 200, "application/octet-stream", 64),
    ("tile/entries/000", 200, "application/octet-stream", 256 * 34),
    ("tile/entries/002.p/121", 200, "application/octet-stream", 121 * 34),
    ("tile/0/002.p/122", 404, "application/problem+json", None),  # beyond the integrated tree
    ("tile/0/003", 404, "application/problem+json", None),
    ("tile/1/000", 404, "application/problem+json", None),
    ("tile/0/2", 400, "application/problem+json", None),
    ("tile/0/000.p/256", 400, "application/problem+json", None),
    ("tile/8/0/000", 400, "application/problem+json", None),  # x/mod's layout, not C2SP's
])
def test_the_tlog_tiles_layout_types_and_caching(ledger: TiledLedger, path: str, code: int, content_type: str,
                                                 length: int | None) -> None:
    if ledger.stub.Checkpoint(ledger_pb2.CheckpointRequest()).tree_size < 633:
        append(ledger.stub, 633 - ledger.stub.Checkpoint(ledger_pb2.CheckpointRequest()).tree_size, "fill")
    got, headers, body = status(f"{ledger.url}/{path}")
    assert (got, headers["content-type"]) == (code, content_type), body[:300]
    if length is not None:
        assert len(body) == length
        assert headers["cache-control"] == "public, max-age=31536000, immutable"
    if path.startswith("tile/entries/"):
        assert body[:2] == b"\x00\x20"  # each entry: a 2-byte length, then its 32-byte entry hash


def test_the_checkpoint_is_a_signed_note_cached_for_seconds(ledger: TiledLedger) -> None:
    head = ledger.stub.Checkpoint(ledger_pb2.CheckpointRequest())
    got, headers, body = status(f"{ledger.url}/checkpoint")
    assert (got, headers["content-type"], headers["cache-control"]) == (
        200, "text/plain; charset=utf-8", "public, max-age=2")
    assert note.open_checkpoint(body.decode(), head.verifier_key).tree_size >= head.tree_size


def test_the_runtime_role_cannot_rewrite_tiles(ledger: TiledLedger) -> None:
    async def attempts() -> list[str]:
        conn = await asyncpg.connect(ledger.runtime_url)
        refused = []
        try:
            size = await conn.fetchval("SELECT size FROM evidence.ledger_tree")
            for statement, args in [
                ("UPDATE evidence.ledger_tiles SET hashes = hashes WHERE level = 0", ()),
                ("DELETE FROM evidence.ledger_tiles", ()),
                ("UPDATE evidence.ledger_tree SET size = 1", ()),
                # through the SECURITY DEFINER function: a full tile of the integrated tree, rewritten
                ("SELECT evidence.ledger_integrate($1::bigint, $1::bigint + 1, $2::bytea, '{0}', '{0}', "
                 "ARRAY[$3::bytea])",
                 (size, bytes(32), bytes(8192))),
                # or a tree that does not start where the tiles end
                ("SELECT evidence.ledger_integrate($1::bigint - 1, $1::bigint, $2::bytea, '{}', '{}', '{}')",
                 (size, bytes(32))),
            ]:
                with pytest.raises(asyncpg.PostgresError) as error:
                    await conn.execute(statement, *args)
                refused.append(str(error.value))
        finally:
            await conn.close()
        return refused

    messages = asyncio.run(attempts())
    assert all("permission denied" in m for m in messages[:3]), messages
    assert "may only be extended" in messages[3] or "width" in messages[3], messages[3]
    assert "not" in messages[4] and "ledger tree is at size" in messages[4], messages[4]


def test_a_size_not_integrated_in_time_is_unavailable_and_served_once_integrated(ledger: TiledLedger) -> None:
    async def hold_the_tree() -> asyncpg.Connection:
        conn = await asyncpg.connect(ledger.database_url)
        await conn.execute("BEGIN")
        await conn.execute("SELECT size FROM evidence.ledger_tree FOR UPDATE")  # as another replica's integrator
        return conn

    append(ledger.stub, 1, "integrated")
    ledger.stub.Checkpoint(ledger_pb2.CheckpointRequest())  # something is integrated before the tree is held
    loop = asyncio.new_event_loop()
    try:
        holder = loop.run_until_complete(hold_the_tree())
        try:
            seq = append(ledger.stub, 1, "pending")[0].seq
            with pytest.raises(grpc.RpcError) as pending:
                ledger.stub.Checkpoint(ledger_pb2.CheckpointRequest(tree_size=seq), timeout=30)
            assert pending.value.code() == grpc.StatusCode.UNAVAILABLE
            assert f"tree_size: {seq} is sequenced but not yet integrated" in (pending.value.details() or "")
            assert status(f"{ledger.url}/checkpoint")[0] == 200  # the last integrated one, without waiting
        finally:
            loop.run_until_complete(holder.close())
    finally:
        loop.close()
    assert ledger.stub.Checkpoint(ledger_pb2.CheckpointRequest(tree_size=seq), timeout=30).tree_size == seq
