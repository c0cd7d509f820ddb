"""The Policy Reasoner as a real process with the policy compiled to Wasm (IG_POLICY_WASM_BUNDLE, as `make up` runs
it): every golden request gets OPA's answer through gRPC, decided in the service's process (its own metrics say so,
and its OPA sidecar is asked nothing), and a bundle of another revision leaves every decision to the sidecar."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from ig.policy.v1 import policy_pb2, policy_pb2_grpc
from ig_common.grpc_client import channel_as
from ig_policy.api.translate import request_from_proto
from ig_policy.breakglass import BreakGlassVerifier, load_approvers
from ig_policy.testing import (
    GOLDEN_NOW,
    POLICIES,
    OpaServer,
    RunningService,
    golden_cases,
    opa_server,
    policy_service,
    proto_from_input,
    set_test_clock,
    wasm_bundle,
    write_approvers_file,
)

pytestmark = pytest.mark.e2e

RESULT_NAMES = {policy_pb2.RESULT_ALLOW: "ALLOW", policy_pb2.RESULT_DENY: "DENY", policy_pb2.RESULT_STEP_UP: "STEP_UP"}
CONTRACT = [c for c in golden_cases() if proto_from_input(c.input) is not None]


@pytest.fixture(scope="module")
def opa() -> Iterator[OpaServer]:
    with opa_server() as server:
        yield server


@contextmanager
def started(infra: Any, database_url: str, opa: OpaServer, scratch: Path, bundle: Path
            ) -> Iterator[RunningService]:
    env = {**infra.env(database_url, "policy"), **opa.env()}
    set_test_clock(scratch / "clock", GOLDEN_NOW)
    # The golden break-glass cases carry grants the golden approver signs; the service verifies them.
    with policy_service(env, scratch / "service.log", opa_timeout_ms="5000", decision_log_flush_ms="20",
                        test_clock_file=str(scratch / "clock"), policy_wasm_bundle=str(bundle),
                        breakglass_approvers_path=str(write_approvers_file(scratch / "approvers"))) as running:
        yield running


def metric(service: RunningService, name: str) -> float:
    text = httpx.get(f"{service.http_url}/metrics", timeout=10, follow_redirects=True).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def test_every_golden_request_gets_opas_answer_decided_in_process(
    infra: Any, database_url: str, opa: OpaServer, tmp_path: Path
) -> None:
    (tmp_path / "svc").mkdir()
    with started(infra, database_url, opa, tmp_path / "svc", wasm_bundle(tmp_path / "policy.tar.gz")) as service:
        answered = metric(service, "ig_policy_inprocess_answers_total")
        # Round trips to OPA (the engine's own histogram); the revision refresh does not count there.
        round_trips = metric(service, "ig_policy_engine_seconds_count")
        decided = 0
        verifier = BreakGlassVerifier(load_approvers(tmp_path / "svc" / "approvers" / "approvers.yaml"))
        with channel_as("gateway", service.grpc_address) as channel, \
                httpx.Client(base_url=opa.url, headers=opa.headers, timeout=20) as raw:
            stub = policy_pb2_grpc.PolicyServiceStub(channel)
            for case in CONTRACT:
                message = proto_from_input(case.input)
                if message.context.region not in ("", "region-a"):
                    continue  # this service serves region-a (the contract test asks region-b's of its own)
                set_test_clock(tmp_path / "svc" / "clock", message.context.time.ToDatetime(tzinfo=UTC))
                try:
                    reply = stub.Decide(message, timeout=30)
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
                    continue
                # What OPA answers for the input the service judged: the request with its clock, its region and
                # what it verified of a break-glass grant.
                request, errors = request_from_proto(message)
                assert not errors, errors
                now = message.context.time.ToDatetime(tzinfo=UTC)
                glass = verifier.check(request, now) if request.context.break_glass is not None else None
                judged = request.to_policy_input(now, "region-a", glass.policy_facts if glass is not None else None)
                expected = raw.post("/v1/data/ig/ctx/decision", json={"input": judged}).json()["result"]
                assert (RESULT_NAMES[reply.result], reply.rule_id, reply.explanation, list(reply.obligations),
                        [r.rule_id for r in reply.reasons]) == (
                    expected["result"], expected["rule_id"], expected["explanation"], expected["obligations"],
                    [r["rule_id"] for r in expected["reasons"]]), case.id
                decided += 1
        assert decided >= 50
        assert metric(service, "ig_policy_inprocess_answers_total") == answered + decided
        assert metric(service, "ig_policy_inprocess_fallbacks_total{") == 0
        assert metric(service, "ig_policy_engine_seconds_count") == round_trips


def test_a_bundle_of_another_revision_leaves_every_decision_to_the_sidecar(
    infra: Any, database_url: str, opa: OpaServer, tmp_path: Path
) -> None:
    candidate = tmp_path / "rego"
    shutil.copytree(POLICIES, candidate)
    purpose = candidate / "ig" / "purpose.rego"
    purpose.write_text(purpose.read_text().replace("so '%s' is allowed.", "so '%s' is allowed (candidate)."))
    (tmp_path / "svc").mkdir()
    bundle = wasm_bundle(tmp_path / "candidate.tar.gz", candidate)
    with started(infra, database_url, opa, tmp_path / "svc", bundle) as service:
        allow = next(c for c in CONTRACT if c.name == "same tenant and purpose may read")
        with channel_as("gateway", service.grpc_address) as channel:
            reply = policy_pb2_grpc.PolicyServiceStub(channel).Decide(proto_from_input(allow.input), timeout=30)
        assert reply.result == policy_pb2.RESULT_ALLOW and "(candidate)" not in reply.explanation
        assert metric(service, 'ig_policy_inprocess_fallbacks_total{cause="revision"}') == 1
        assert metric(service, "ig_policy_inprocess_answers_total") == 0
        assert metric(service, "ig_policy_engine_seconds_count") >= 1
