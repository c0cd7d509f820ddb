"""gRPC Run on the real PostgreSQL: a plan runs only with a valid signature by a configured approver who did not
submit it. The servicer is called directly with the verified caller bound as the authorization interceptor binds
it (the mTLS transport itself is covered by the suite's matrix test)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from ig.migration.v1 import migration_pb2
from ig_common.authz.caller import Caller, bind_caller, unbind_caller
from ig_common.db import create_pool, prepare_service_schema
from ig_common.spiffe import SpiffeId
from ig_migration.api.grpc_service import MigrationServicer
from ig_migration.domain.approval import sign_plan
from ig_migration.store import MIGRATIONS, SCHEMA, state, target
from ig_migration.workload import create_assets

from .helpers import migrator_dsn, plan_yaml, settings, triggers_on

pytestmark = pytest.mark.integration
CHANGE = "add-asset-index-v3"


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code, self.details = code, details


class Context:
    """What the servicer uses of grpc.aio.ServicerContext: abort raises, as grpc's does."""

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


@dataclass
class Keys:
    directory: Path
    private: dict[str, ec.EllipticCurvePrivateKey]

    def sign(self, name: str, plan: str) -> str:
        return sign_plan(self.private[name], plan)


def make_keys(tmp_path: Path, listed: tuple[str, ...], unlisted: tuple[str, ...] = ()) -> Keys:
    directory = tmp_path / "approvers"
    directory.mkdir()
    private = {}
    for name in listed + unlisted:
        key = private[name] = ec.generate_private_key(ec.SECP256R1())
        if name in listed:
            (directory / f"{name}.pub").write_bytes(key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return Keys(directory, private)


def as_workload(name: str) -> object:
    return bind_caller(Caller(SpiffeId("maestro.local", "ig", name), frozenset()))


@pytest.fixture
async def servicer_pool(fresh_dsn: str) -> AsyncIterator[Any]:
    pool = await create_pool(fresh_dsn, max_size=3)
    await prepare_service_schema(pool, SCHEMA, MIGRATIONS, migrator_dsn(fresh_dsn))
    async with pool.acquire() as conn:
        await create_assets(conn, 2000)
    yield pool
    await pool.close()


async def call(method: Any, request: Any, caller: str) -> Any:
    token = as_workload(caller)
    try:
        return await method(request, Context())
    finally:
        unbind_caller(token)


async def refused(servicer: MigrationServicer, signature: str, caller: str = "operator") -> str:
    with pytest.raises(Aborted) as refusal:
        await call(servicer.Run, migration_pb2.RunRequest(change=CHANGE, signature=signature), caller)
    assert refusal.value.code is grpc.StatusCode.FAILED_PRECONDITION, refusal.value
    return refusal.value.details


async def nothing_ran(pool: Any) -> None:
    async with pool.acquire() as conn:
        row = await state.load_change(conn, CHANGE)
        assert row is not None and (row.phase.value, row.state) == ("submitted", "pending")
        assert not await target.table_exists(conn, "public.assets_v3")
        assert await triggers_on(conn, "public.assets") == []


async def test_run_refuses_unsigned_self_signed_unknown_and_changed_plans(servicer_pool: Any, fresh_dsn: str,
                                                                           tmp_path: Path) -> None:
    keys = make_keys(tmp_path, listed=("approver", "operator"), unlisted=("mallory",))
    servicer = MigrationServicer(servicer_pool, settings(fresh_dsn, tmp_path, migration_approvers=keys.directory),
                                 asyncio.Event())
    plan = plan_yaml()
    submitted = await call(servicer.Submit, migration_pb2.SubmitRequest(plan_yaml=plan), "operator")
    assert submitted.submitted_by == "spiffe://maestro.local/ns/ig/sa/operator"

    assert "no signature given" in await refused(servicer, "")
    assert "signed by operator, who submitted it" in await refused(servicer, keys.sign("operator", plan))
    assert "does not verify" in await refused(servicer, keys.sign("mallory", plan))
    await nothing_ran(servicer_pool)

    # The approver signed one plan; a changed one is submitted (and then run) with that signature.
    signature = keys.sign("approver", plan)
    changed = plan_yaml(**{"batch.size": 50})
    await call(servicer.Submit, migration_pb2.SubmitRequest(plan_yaml=changed, signature=signature), "operator")
    assert "plan changed after it was signed" in await refused(servicer, "")
    assert "plan changed after it was signed" in await refused(servicer, signature)
    await nothing_ran(servicer_pool)

    # No approvers configured: every plan is refused, naming the setting.
    unconfigured = MigrationServicer(servicer_pool, settings(fresh_dsn, tmp_path), asyncio.Event())
    await call(unconfigured.Submit, migration_pb2.SubmitRequest(plan_yaml=plan), "operator")
    assert "IG_MIGRATION_APPROVERS" in await refused(unconfigured, keys.sign("approver", plan))
    await nothing_ran(servicer_pool)


async def test_an_approved_plan_runs_and_the_approval_is_recorded(servicer_pool: Any, fresh_dsn: str,
                                                                  tmp_path: Path) -> None:
    keys = make_keys(tmp_path, listed=("approver",))
    servicer = MigrationServicer(servicer_pool, settings(fresh_dsn, tmp_path, migration_approvers=keys.directory),
                                 asyncio.Event())
    plan = plan_yaml()
    await call(servicer.Submit, migration_pb2.SubmitRequest(plan_yaml=plan, signature=keys.sign("approver", plan)),
               "operator")
    result = await call(servicer.Run, migration_pb2.RunRequest(change=CHANGE, until_phase="shadow-read"), "operator")
    assert (result.phase, result.approved_by) == ("shadow-read", "approver"), result.detail
    async with servicer_pool.acquire() as conn:
        row = await state.load_change(conn, CHANGE)
        assert row is not None and row.approved_by == "approver" and row.submitted_by == ("operator",)
        assert await target.table_exists(conn, "public.assets_v3")
    report = (tmp_path / f"{CHANGE}.json").read_text()
    assert '"approved_by": "approver"' in report

    # Resuming needs the approval again: with the key removed from the directory, the stored signature no longer
    # verifies and the run does not continue.
    (keys.directory / "approver.pub").rename(keys.directory / "approver.pub.revoked")
    (keys.directory / "other.pub").write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(Aborted) as revoked:
        await call(servicer.Run, migration_pb2.RunRequest(change=CHANGE), "operator")
    assert revoked.value.code is grpc.StatusCode.FAILED_PRECONDITION and "does not verify" in revoked.value.details
    async with servicer_pool.acquire() as conn:
        assert (await state.load_change(conn, CHANGE)).phase.value == "shadow-read"  # type: ignore[union-attr]


async def test_submit_and_run_need_a_verified_caller(servicer_pool: Any, fresh_dsn: str, tmp_path: Path) -> None:
    servicer = MigrationServicer(servicer_pool, settings(fresh_dsn, tmp_path), asyncio.Event())
    with pytest.raises(Aborted) as anonymous:
        await servicer.Submit(migration_pb2.SubmitRequest(plan_yaml=plan_yaml()), Context())  # type: ignore[arg-type]
    assert anonymous.value.code is grpc.StatusCode.UNAUTHENTICATED
