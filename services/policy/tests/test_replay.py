"""ig-policy replay against a log whose answers are known: the golden cases sent through the service's decision
path (real OPA, the real log writer and encoder, a database of its own), then replayed against candidates on a
second, real OPA."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from ig_common.db import create_pool, prepare_service_schema
from ig_policy.api.translate import request_from_proto
from ig_policy.decisions import DecisionService
from ig_policy.domain.impact import Threshold
from ig_policy.domain.model import Decision
from ig_policy.domain.protection import InputOpener, RecordProtection
from ig_policy.domain.validation import validate_request
from ig_policy.engine.opa import OpaEngine
from ig_policy.replay import ReplayRequest, UsageError, parse_time, replay
from ig_policy.store import MIGRATIONS, SCHEMA
from ig_policy.store.decision_log import DecisionLog, LogSettings
from ig_policy.testing import (
    POLICIES,
    SettableClock,
    golden_cases,
    new_record_protection,
    opa_binary,
    proto_from_input,
    write_key_files,
)

pytestmark = pytest.mark.integration

ALLOW_READ = """allow contains reason if {
	input.actor.tenant == input.resource.tenant"""
# The candidate: the purpose allowance no longer covers read (the rule ig.purpose.allow_read is gone).
WITHOUT_ALLOW_READ = """allow contains reason if {
	input.action != "read"
	input.actor.tenant == input.resource.tenant"""


@dataclass
class SyntheticLog:
    dsn: str
    protection: RecordProtection
    opener: InputOpener
    decisions: list[tuple[str, Decision]]  # (tenant, decision), in the order made
    since: datetime
    until: datetime


def candidate_without_allow_read(directory: Path) -> Path:
    shutil.copytree(POLICIES, directory, ignore=shutil.ignore_patterns("tests"))
    purpose = directory / "ig" / "purpose.rego"
    source = purpose.read_text()
    assert ALLOW_READ in source, "the candidate edit no longer matches policies/rego/ig/purpose.rego"
    purpose.write_text(source.replace(ALLOW_READ, WITHOUT_ALLOW_READ))
    return directory


@pytest.fixture(scope="module")
async def synthetic_log(infra: Any, engine: OpaEngine) -> AsyncIterator[SyntheticLog]:
    """Every golden case decided at its own moment by the service's decision path and written by the log."""
    database = infra.new_database("ig_replay")
    dsn = infra.service_dsn("policy", database)
    pool = await create_pool(dsn)
    await prepare_service_schema(pool, SCHEMA, MIGRATIONS, infra.service_dsn("policy", database, migrator=True))
    protection, opener = new_record_protection()
    log = DecisionLog(pool, SCHEMA, None, LogSettings(region="region-a", protection=protection,
                                                      mask_rules=()))
    clock = SettableClock()
    # Each case is answered by a service of the region its input names, as the golden contract is.
    services = {region: DecisionService(engine, log, region=region, clock=clock)
                for region in ("region-a", "region-b")}
    made: list[tuple[str, Decision]] = []
    since = datetime.now(UTC) - timedelta(seconds=1)
    for case in golden_cases():
        message = proto_from_input(case.input)
        if message is None:
            continue  # inputs protobuf cannot carry exist only at the Rego layer
        request, errors = request_from_proto(message)
        if errors or validate_request(request) or request.context.time is None:
            continue  # malformed cases never reach the engine through the API
        clock.moment = request.context.time  # the server's clock at the case's moment, as the golden contract does
        made.append((case.input["resource"]["tenant"], await services[request.context.region].decide(request)))
    await log.drain()
    until = datetime.now(UTC) + timedelta(seconds=1)
    try:
        yield SyntheticLog(dsn, protection, opener, made, since, until)
    finally:
        await pool.close()
        infra.drop_database(database)


def request(log: SyntheticLog, candidate: Path, **changes: Any) -> ReplayRequest:
    fields: dict[str, Any] = {"database_url": log.dsn, "candidate": candidate, "opener": log.opener,
                              "since": log.since, "until": log.until, "tenant": None, "threshold": Threshold(),
                              "opa": opa_binary()}
    return ReplayRequest(**{**fields, **changes})


async def test_the_log_holds_what_the_service_answered(synthetic_log: SyntheticLog) -> None:
    conn = await asyncpg.connect(synthetic_log.dsn)
    try:
        count = await conn.fetchval(f"SELECT count(*) FROM {SCHEMA}.decision_log")
    finally:
        await conn.close()
    assert count == len(synthetic_log.decisions) > 50
    results = {d.verdict.result.value for _, d in synthetic_log.decisions}
    assert results == {"ALLOW", "DENY", "STEP_UP"}, "the synthetic log needs every kind of answer"


async def test_the_unchanged_policy_changes_nothing_because_each_decision_is_judged_at_its_own_moment(
    synthetic_log: SyntheticLog,
) -> None:
    # The log holds weekday-morning allows and Saturday-night denials (time windows): judged at replay time instead
    # of the logged moment, one of the two kinds would flip whatever the time now is.
    report = await replay(request(synthetic_log, POLICIES))
    assert report["replayed"] == len(synthetic_log.decisions)
    assert report["changed"] == 0 and report["changes"] == {} and report["candidate_errors"] == 0
    assert report["rule_only_changed"] == 0


async def test_a_candidate_without_an_allow_rule_reports_exactly_the_decisions_it_flips(
    synthetic_log: SyntheticLog, tmp_path: Path
) -> None:
    candidate = candidate_without_allow_read(tmp_path / "candidate")
    flipped = [(tenant, d) for tenant, d in synthetic_log.decisions if d.rule_id == "ig.purpose.allow_read"]
    assert flipped, "the synthetic log has read allowances"
    report = await replay(request(synthetic_log, candidate))
    assert report["changes"] == {"ALLOW->DENY": len(flipped)}
    assert report["by_logged_rule"] == {"ig.purpose.allow_read": {"ALLOW->DENY": len(flipped)}}
    assert report["by_candidate_rule"] == {"ig.default.deny": {"ALLOW->DENY": len(flipped)}}
    per_tenant: dict[str, int] = {}
    for tenant, _ in flipped:
        per_tenant[tenant] = per_tenant.get(tenant, 0) + 1
    assert report["by_tenant"] == {t: {"ALLOW->DENY": n} for t, n in per_tenant.items()}
    flipped_ids = {d.decision_id for _, d in flipped}
    assert set(report["examples"]["ALLOW->DENY"]) <= flipped_ids
    assert len(report["examples"]["ALLOW->DENY"]) == min(5, len(flipped))
    assert report["candidate_revision"].startswith("sha256:")

    tenant = sorted(per_tenant)[0]
    only = await replay(request(synthetic_log, candidate, tenant=tenant))
    assert only["changes"] == {"ALLOW->DENY": per_tenant[tenant]} and set(only["by_tenant"]) == {tenant}


async def test_a_bundle_is_a_candidate_too(synthetic_log: SyntheticLog, tmp_path: Path) -> None:
    directory = candidate_without_allow_read(tmp_path / "candidate")
    bundle = tmp_path / "candidate.tar.gz"
    await asyncio.to_thread(subprocess.run, [opa_binary(), "build", "-o", str(bundle), str(directory)], check=True,
                            capture_output=True)
    report = await replay(request(synthetic_log, bundle))
    flipped = sum(1 for _, d in synthetic_log.decisions if d.rule_id == "ig.purpose.allow_read")
    assert report["changes"] == {"ALLOW->DENY": flipped}


async def test_inputs_sealed_to_another_key_are_not_replayed(synthetic_log: SyntheticLog) -> None:
    _, stranger = new_record_protection()
    report = await replay(request(synthetic_log, POLICIES, opener=stranger,
                                  threshold=Threshold(max_changes=0)))
    assert report["replayed"] == 0
    assert report["skipped"] == {"sealed_input_unopenable": len(synthetic_log.decisions)}
    assert report["exceeded"], "CI mode fails when it cannot see the inputs"


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ig_policy.cli", "replay", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


async def test_ci_mode_exits_non_zero_when_changes_exceed_the_threshold(
    synthetic_log: SyntheticLog, tmp_path: Path
) -> None:
    candidate = candidate_without_allow_read(tmp_path / "candidate")
    flipped = sum(1 for _, d in synthetic_log.decisions if d.rule_id == "ig.purpose.allow_read")
    key = tmp_path / "replay.key"
    write_key_files(synthetic_log.opener, key)
    env = {"IG_DATABASE_URL": synthetic_log.dsn, "IG_DECISION_LOG_REPLAY_KEY_FILE": str(key)}
    common = ("--since", synthetic_log.since.isoformat(), "--until", synthetic_log.until.isoformat(),
              "--candidate", str(candidate), "--opa", opa_binary(), "--json")
    within = cli(*common, "--max-changes", str(flipped), env=env)
    assert within.returncode == 0, within.stderr
    assert json.loads(within.stdout)["changes"] == {"ALLOW->DENY": flipped}
    beyond = cli(*common, "--max-changes", str(flipped - 1), env=env)
    assert beyond.returncode == 1 and f"{flipped} decisions change, more than --max-changes" in beyond.stderr
    ratio = cli(*common, "--max-change-ratio", "0.01", env=env)
    assert ratio.returncode == 1 and "of decisions change, more than --max-change-ratio 0.01" in ratio.stderr
    report = cli(*common[:-1], env=env)  # no threshold: a report, never a failure
    assert report.returncode == 0 and f"ALLOW->DENY: {flipped}" in report.stdout


@pytest.mark.parametrize("content", [b"", b"not a key", b"ed25519"])
def test_a_bad_replay_key_file_is_refused_naming_it(tmp_path: Path, content: bytes) -> None:
    key = tmp_path / "replay.key"
    if content == b"ed25519":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        content = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key.write_bytes(content)
    args = ("--since", "1h", "--candidate", str(POLICIES), "--database-url", "postgresql://unused@127.0.0.1:1/x")
    by_env = cli(*args, env={"IG_DECISION_LOG_REPLAY_KEY_FILE": str(key)})
    assert by_env.returncode == 2 and f"IG_DECISION_LOG_REPLAY_KEY_FILE: {key}" in by_env.stderr
    by_option = cli(*args, "--key", str(key), env={})
    assert by_option.returncode == 2 and f"--key: {key}" in by_option.stderr
    missing = cli(*args, "--key", str(tmp_path / "absent.key"), env={})
    assert missing.returncode == 2 and f"--key: {tmp_path / 'absent.key'}: cannot be read" in missing.stderr


def test_times_are_rfc3339_or_an_age_before_now() -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert parse_time("90m", "--since", now) == now - timedelta(minutes=90)
    assert parse_time("7d", "--since", now) == now - timedelta(days=7)
    assert parse_time("2026-12-05T10:00:00+01:00", "--since", now) == datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    for bad in ("yesterday", "2026-12-05T10:00:00", "5w"):
        with pytest.raises(UsageError, match="--since"):
            parse_time(bad, "--since", now)
