"""The in-process engine (the policy compiled to Wasm) answers exactly as the OPA sidecar, or lets the sidecar answer.

Differential: every golden case, as sent and as the service sends it (its clock in context.time, its region in
context.region), and generated inputs are asked of both; wherever the module answers, its whole document (result,
rule_id, explanation, reasons in order, obligations) must equal OPA's. Fallback: whenever the module cannot answer
(a builtin it lacks or cannot answer for certain, a failure inside, another policy revision at the sidecar), the
sidecar's verdict is returned and the cause counted.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ig_policy.api.translate import request_from_proto
from ig_policy.domain.verdict import verdict_from_engine
from ig_policy.engine.inprocess import InProcessEngine
from ig_policy.engine.opa import OpaEngine
from ig_policy.engine.wasm import WasmBundle, WasmPolicy, read_bundle
from ig_policy.engine.wasm_builtins import BUILTINS, CannotAnswer
from ig_policy.testing import GOLDEN_NOW, POLICIES, GoldenCase, OpaServer, golden_cases, proto_from_input, wasm_bundle
from prometheus_client import REGISTRY

pytestmark = pytest.mark.integration

CASES = golden_cases()
BASE = next(c for c in CASES if c.name == "same tenant and purpose may read").input
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> WasmBundle:
    return read_bundle(wasm_bundle(tmp_path_factory.mktemp("wasm") / "bundle.tar.gz"))


@pytest.fixture(scope="module")
def module(bundle: WasmBundle) -> WasmPolicy:
    return WasmPolicy(bundle)


@pytest.fixture(scope="module")
def opa(private_opa: OpaServer) -> httpx.Client:
    with httpx.Client(base_url=private_opa.url, headers=private_opa.headers, timeout=20) as client:
        yield client


def opa_document(opa: httpx.Client, document: Any) -> Any:
    reply = opa.post("/v1/data/ig/ctx/decision", json={"input": document})
    assert reply.status_code == 200, reply.text
    return reply.json()


def differs(opa: httpx.Client, module: WasmPolicy, document: Any) -> str | None:
    """None when both answer the same (or the module declines: the sidecar then answers); else what differs."""
    try:
        mine = module.evaluate(document)
    except CannotAnswer:
        return None
    theirs = opa_document(opa, document)
    return None if mine == theirs else f"module {mine} != OPA {theirs}"


def as_the_service_sends(case: GoldenCase, region: str = "region-a") -> dict[str, Any] | None:
    """The golden request through the gRPC translation, with the service's clock and region, or None when protobuf
    cannot carry it."""
    message = proto_from_input(case.input)
    if message is None:
        return None
    request, errors = request_from_proto(message)
    return None if errors else request.to_policy_input(GOLDEN_NOW, region)


def test_the_module_needs_only_the_builtins_this_host_implements(module: WasmPolicy) -> None:
    assert module.builtins_missing == []
    assert set(module.builtins_wanted) <= set(BUILTINS)


def test_the_module_was_built_from_the_revision_the_sidecar_reports(bundle: WasmBundle, engine: OpaEngine) -> None:
    assert bundle.revision == engine.revision


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_golden_case_gets_opas_exact_answer(opa: httpx.Client, module: WasmPolicy, case: GoldenCase) -> None:
    assert differs(opa, module, case.input) is None
    served = as_the_service_sends(case)
    if served is not None:
        assert differs(opa, module, served) is None
        # What the service can receive, the module answers itself (no round trip).
        assert module.evaluate(served) == opa_document(opa, served)


def test_the_module_answers_every_golden_input_but_an_unparseable_time(module: WasmPolicy) -> None:
    declined = []
    for case in CASES:
        try:
            module.evaluate(case.input)
        except CannotAnswer:
            declined.append(case.id)
    assert declined == ["malformed_input:unparseable time is malformed"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)
FIELDS = ["actor.id", "actor.tenant", "actor.roles", "actor.purposes", "resource.tenant", "resource.purpose",
          "resource.region", "resource.classification", "action", "context.time", "context.network_zone",
          "context.device_trust", "context.session_risk", "context.auth_level", "context.region",
          "context.break_glass"]


def patched(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    result = copy.deepcopy(document)
    *parents, last = path.split(".")
    target = result
    for key in parents:
        target = target[key]
    target[last] = value
    return result


@FUZZ
@given(document=json_values)
def test_arbitrary_json_gets_opas_answer(opa: httpx.Client, module: WasmPolicy, document: Any) -> None:
    assert differs(opa, module, document) is None


@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(FIELDS), json_values), min_size=1, max_size=3))
def test_any_field_set_to_any_value_gets_opas_answer(
    opa: httpx.Client, module: WasmPolicy, changes: list[tuple[str, Any]]
) -> None:
    document = BASE
    for field, value in changes:
        document = patched(document, field, value)
    assert differs(opa, module, document) is None


MOMENTS = st.datetimes(min_value=datetime(1950, 1, 1), max_value=datetime(2150, 1, 1))
OFFSETS = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59)


@FUZZ
@given(moment=MOMENTS, offset=OFFSETS, tenant=st.sampled_from(["alpha", "beta", "gamma"]),
       risk=st.integers(min_value=0, max_value=100), mfa=st.booleans(), minutes=st.integers(-120, 600),
       justification=st.text(max_size=60), zone=st.sampled_from(["corp", "vpn", "public", "unknown"]))
def test_times_zones_risks_and_break_glass_get_opas_answer(
    opa: httpx.Client, module: WasmPolicy, moment: datetime, offset: int, tenant: str, risk: int, mfa: bool,
    minutes: int, justification: str, zone: str,
) -> None:
    local = moment.replace(tzinfo=UTC).astimezone(timezone(timedelta(minutes=offset)))
    expiry = (moment + timedelta(minutes=minutes)).replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    document = patched(BASE, "context.time", local.isoformat())
    for field, value in (("actor.tenant", tenant), ("resource.tenant", tenant), ("context.session_risk", risk),
                         ("context.auth_level", "mfa" if mfa else "pwd"), ("context.network_zone", zone),
                         ("context.break_glass", {"justification": justification, "expires_at": expiry})):
        document = patched(document, field, value)
    # Well-formed times are the service's everyday input: the module must answer them itself, and as OPA does.
    assert module.evaluate(document) == opa_document(opa, document)


# Fallback to the sidecar, counted by cause.


def fallbacks(cause: str) -> float:
    return REGISTRY.get_sample_value("ig_policy_inprocess_fallbacks_total", {"cause": cause}) or 0.0


def answered_in_process() -> float:
    return REGISTRY.get_sample_value("ig_policy_inprocess_answers_total") or 0.0


async def test_an_input_the_module_cannot_answer_is_answered_by_the_sidecar_and_counted(
    bundle: WasmBundle, module: WasmPolicy, engine: OpaEngine, opa: httpx.Client
) -> None:
    inprocess = InProcessEngine(engine, module, bundle.revision)
    unparseable = patched(BASE, "context.time", "next Monday at ten")
    before, answered = fallbacks("builtin"), answered_in_process()
    verdict = await inprocess.evaluate(unparseable)
    assert fallbacks("builtin") == before + 1 and answered_in_process() == answered
    assert verdict == verdict_from_engine(opa_document(opa, unparseable))
    assert verdict.rule_id == "ig.input.invalid"
    # ... and a well-formed one is answered here, not counted as a fallback.
    assert (await inprocess.evaluate(BASE)).result.value == "ALLOW"
    assert fallbacks("builtin") == before + 1 and answered_in_process() == answered + 1


@pytest.mark.parametrize(("cause", "broken"), [
    ("builtin", lambda name, function: None if name == "sprintf" else function),  # not implemented here
    ("module_error", lambda name, function: _raising if name == "time.weekday" else function),
])
async def test_a_module_that_fails_inside_leaves_the_decision_to_the_sidecar(
    bundle: WasmBundle, engine: OpaEngine, opa: httpx.Client, cause: str,
    broken: Callable[[str, Any], Any],
) -> None:
    builtins = {name: fn for name, function in BUILTINS.items() if (fn := broken(name, function)) is not None}
    inprocess = InProcessEngine(engine, WasmPolicy(bundle, builtins=builtins), bundle.revision)
    before = fallbacks(cause)
    verdict = await inprocess.evaluate(BASE)
    assert fallbacks(cause) == before + 1
    assert verdict == verdict_from_engine(opa_document(opa, BASE))


def _raising(*_: Any) -> Any:
    raise RuntimeError("a bug in a builtin")


async def test_a_module_built_from_another_revision_never_answers(
    tmp_path: Path, engine: OpaEngine, opa: httpx.Client
) -> None:
    # A candidate that reverses the allowance message: were the module asked, the explanation would show it.
    candidate = tmp_path / "rego"
    shutil.copytree(POLICIES, candidate)
    purpose = candidate / "ig" / "purpose.rego"
    purpose.write_text(purpose.read_text().replace("so '%s' is allowed.", "so '%s' is allowed (candidate)."))
    other = read_bundle(wasm_bundle(tmp_path / "candidate.tar.gz", candidate))
    assert other.revision != engine.revision
    module = WasmPolicy(other)
    assert "(candidate)" in module.evaluate(BASE)["result"]["explanation"]
    inprocess = InProcessEngine(engine, module, other.revision)
    before = fallbacks("revision")
    verdict = await inprocess.evaluate(BASE)
    assert fallbacks("revision") == before + 1
    assert verdict == verdict_from_engine(opa_document(opa, BASE))
    assert "(candidate)" not in verdict.explanation


async def test_the_decision_service_decides_the_same_through_either_engine(
    bundle: WasmBundle, module: WasmPolicy, engine: OpaEngine, decision_log: Any, clock: Any
) -> None:
    """Through DecisionService, which writes its clock and region into the input: each golden request the service
    can receive gets the same verdict and revision from the sidecar and from the module, and the module answers
    them all itself."""
    from ig_policy.decisions import DecisionService

    sidecar = DecisionService(engine, decision_log, region="region-b", clock=clock)
    inprocess = DecisionService(InProcessEngine(engine, module, bundle.revision), decision_log,
                                region="region-b", clock=clock)
    answered, compared = answered_in_process(), 0
    for case in CASES:
        message = proto_from_input(case.input)
        if message is None or request_from_proto(message)[1]:
            continue
        request = request_from_proto(message)[0]
        theirs, mine = await sidecar.decide(request), await inprocess.decide(request)
        assert (mine.verdict, mine.policy_revision) == (theirs.verdict, theirs.policy_revision), case.id
        compared += 1
    assert compared >= 60
    assert answered_in_process() == answered + compared
