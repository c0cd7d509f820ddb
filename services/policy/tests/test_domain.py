"""The pure parts: validation, reading engine answers fail-closed, masking, log records, revisions."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from ig_policy.domain.losses import Gap, LossTally
from ig_policy.domain.masking import (
    apply_masks,
    mask_explanation,
    parse_drop_rules,
    parse_mask_rules,
    sensitive_values_of,
)
from ig_policy.domain.model import (
    ENGINE_UNAVAILABLE,
    Actor,
    BreakGlass,
    Context,
    Decision,
    DecisionRequest,
    Reason,
    Resource,
    Result,
    Verdict,
)
from ig_policy.domain.record import build_log_record, input_hash
from ig_policy.domain.revision import policy_revision
from ig_policy.domain.validation import MAX_BATCH, validate_batch_size, validate_request
from ig_policy.domain.verdict import engine_unavailable, verdict_from_engine
from ig_policy.testing import new_record_protection

NOW = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
GOOD = DecisionRequest(
    actor=Actor("u-alice", "alpha", ("analyst",), ("investigation",)),
    resource=Resource("case", "case-1", "alpha", "investigation", "region-a", "internal"),
    action="read",
    context=Context(NOW, "corp", "high", 10, "pwd", "region-a"),
)


def with_context(**changes: object) -> DecisionRequest:
    return replace(GOOD, context=replace(GOOD.context, **changes))


def test_a_good_request_has_no_errors() -> None:
    assert validate_request(GOOD) == []


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (replace(GOOD, actor=replace(GOOD.actor, id="")), "actor.id"),
        (replace(GOOD, actor=replace(GOOD.actor, tenant="x" * 257)), "actor.tenant"),
        (replace(GOOD, actor=replace(GOOD.actor, roles=("",))), "actor.roles[0]"),
        (replace(GOOD, actor=replace(GOOD.actor, purposes=("p",) * 65)), "actor.purposes"),
        (replace(GOOD, resource=replace(GOOD.resource, id="a\x00b")), "resource.id"),
        (replace(GOOD, resource=replace(GOOD.resource, classification="")), "resource.classification"),
        (replace(GOOD, action=""), "action"),
        (with_context(time=None), "context.time"),
        (with_context(network_zone="mars"), "context.network_zone"),
        (with_context(device_trust=""), "context.device_trust"),
        (with_context(session_risk=-1), "context.session_risk"),
        (with_context(session_risk=101), "context.session_risk"),
        (with_context(auth_level=""), "context.auth_level"),
        (with_context(region=""), "context.region"),
        (with_context(break_glass=BreakGlass("x" * 1025, NOW)), "context.break_glass.justification"),
        (with_context(break_glass=BreakGlass(grant="e" * 8193)), "context.break_glass.grant"),
    ],
)
def test_each_bad_field_is_named(request_: DecisionRequest, field: str) -> None:
    errors = validate_request(request_, prefix="requests[3].")
    assert [e.field for e in errors] == [f"requests[3].{field}"]
    assert str(errors[0]).startswith(f"requests[3].{field}: ")


def test_batch_sizes() -> None:
    assert validate_batch_size(1) == validate_batch_size(MAX_BATCH) == []
    assert "at least one" in str(validate_batch_size(0)[0])
    assert "at most 1000" in str(validate_batch_size(MAX_BATCH + 1)[0])


def test_policy_input_carries_every_field_and_only_verified_break_glass_facts() -> None:
    asking = with_context(break_glass=BreakGlass("outage", NOW))
    document = asking.to_policy_input()
    assert document["context"]["time"] == "2026-01-05T10:00:00Z"
    assert document["context"]["break_glass"] == {}, "a self-asserted justification and expiry are not passed on"
    verified = {"verified": {"approver": "carol"}}
    assert asking.to_policy_input(break_glass=verified)["context"]["break_glass"] == verified
    assert document["actor"]["roles"] == ["analyst"] and document["resource"]["classification"] == "internal"
    assert "break_glass" not in GOOD.to_policy_input()["context"]


ANSWER = {"result": {"result": "STEP_UP", "rule_id": "ig.risk.step_up", "explanation": "why",
                     "reasons": [{"rule_id": "ig.risk.step_up", "message": "why"}], "obligations": ["step_up:mfa"]}}


def test_a_well_formed_answer_is_read() -> None:
    verdict = verdict_from_engine(ANSWER)
    assert verdict == Verdict(Result.STEP_UP, "ig.risk.step_up", "why", (Reason("ig.risk.step_up", "why"),),
                              ("step_up:mfa",))


@pytest.mark.parametrize(
    "answer",
    [
        None, {}, {"result": None}, {"result": "ALLOW"},
        {"result": {**ANSWER["result"], "result": "MAYBE"}},
        {"result": {**ANSWER["result"], "result": "allow"}},
        {"result": {**ANSWER["result"], "reasons": []}},
        {"result": {**ANSWER["result"], "reasons": [{"rule_id": "", "message": "x"}]}},
        {"result": {**ANSWER["result"], "reasons": ["x"]}},
        {"result": {**ANSWER["result"], "reasons": "x"}},
        {"result": {**ANSWER["result"], "rule_id": 3}},
        {"result": {**ANSWER["result"], "explanation": None}},
        {"result": {**ANSWER["result"], "obligations": [1]}},
        {"result": {**ANSWER["result"], "obligations": "step_up:mfa"}},
    ],
)
def test_anything_unexpected_from_the_engine_denies(answer: object) -> None:
    verdict = verdict_from_engine(answer)
    assert verdict.result is Result.DENY
    assert verdict.rule_id == ENGINE_UNAVAILABLE
    assert [r.rule_id for r in verdict.reasons] == [ENGINE_UNAVAILABLE]


def test_engine_unavailable_explains_itself() -> None:
    verdict = engine_unavailable("no answer within 50 ms")
    expected = "The policy engine could not decide (no answer within 50 ms), so the request is denied."
    assert verdict.explanation == expected


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("Actor tenant 'alpha' differs from resource tenant 'beta'.", {"alpha", "beta"},
         "Actor tenant '***' differs from resource tenant '***'."),
        ("Device trust 'low' is below the required 'medium'.", {"low"},
         "Device trust '***' is below the required '***'."),
        ("user u-alice of alpha was denied", {"u-alice", "alpha", "a"}, "user *** of *** was denied"),
        ("Tenant ÄÖ says \u2603 no\r\n", {"ÄÖ"}, "Tenant *** says ? no??"),
        ("x" * 1000, set(), "x" * 256),
    ],
)
def test_masked_explanations_hold_no_values(text: str, values: set[str], expected: str) -> None:
    assert mask_explanation(text, values) == expected


def test_sensitive_values_are_every_string_in_the_input() -> None:
    assert sensitive_values_of({"a": ["x", {"b": "y"}], "c": 3, "d": ("z",)}) == {"x", "y", "z"}


def decision(**changes: object) -> Decision:
    verdict = Verdict(Result.DENY, "ig.tenant.mismatch", "differs", (Reason("ig.tenant.mismatch", "differs"),))
    base = Decision("dec_1", verdict, "sha256:r", NOW, 1.23456)
    return replace(base, **changes)


PROTECTION, OPENER = new_record_protection()


def test_log_record_is_a_superset_of_the_brief() -> None:
    document = GOOD.to_policy_input()
    record = build_log_record(document, decision(), region="region-a", protection=PROTECTION)
    assert {k: record[k] for k in ("decisionId", "ruleId", "result", "explanation", "tenant", "purpose", "ts")} == {
        "decisionId": "dec_1", "ruleId": "ig.tenant.mismatch", "result": "deny", "explanation": "differs",
        "tenant": "alpha", "purpose": "investigation", "ts": "2026-01-05T10:00:00Z"}
    assert record["subject"] == PROTECTION.pseudonymize("alpha/u-alice")
    assert record["inputHash"] == PROTECTION.pseudonymize(rfc8785.dumps(document))
    assert OPENER.open(record["sealedInput"], "dec_1") == document
    assert record["latencyMs"] == 1.235 and record["policyRevision"] == "sha256:r"
    assert record["reasons"] == [{"ruleId": "ig.tenant.mismatch", "message": "differs"}]


def test_log_record_of_a_shapeless_input_still_builds() -> None:
    record = build_log_record("not an object", decision(), region="region-a", protection=PROTECTION)
    assert record["tenant"] == "" and record["action"] == ""


json_documents = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, database=None)
@given(document=json_documents)
def test_input_hash_is_rfc8785(document: object) -> None:
    assert input_hash(document) == "sha256:" + hashlib.sha256(rfc8785.dumps(document)).hexdigest()


def test_input_hash_is_canonical() -> None:
    assert input_hash({"a": 1, "b": [1, 2]}) == input_hash({"b": [1, 2], "a": 1})
    assert input_hash({"a": 1}) != input_hash({"a": 2})


def test_masks_leave_the_original_record_alone() -> None:
    record = {"input": {"actor": {"id": "u", "tenant": "t"}}, "ruleId": "r"}
    masked = apply_masks(record, parse_mask_rules(["/input/actor/id"]), PROTECTION.pseudonymize)
    assert masked == {"input": {"actor": {"id": PROTECTION.pseudonymize("u"), "tenant": "t"}}, "ruleId": "r"}
    assert record == {"input": {"actor": {"id": "u", "tenant": "t"}}, "ruleId": "r"}
    assert apply_masks(record, (), PROTECTION.pseudonymize) is record


def test_mask_rules_pseudonymize_erase_and_upsert() -> None:
    rules = parse_mask_rules(["/input/actor/id", {"op": "upsert", "path": "/input/context/region", "value": "**"},
                              "/input/missing/deeper", "/input/action/x", {"op": "remove", "path": "/explanation"},
                              {"op": "remove", "path": "/a~1b"}, {"op": "pseudonymize", "path": "/input/actor/roles"}])
    record = {"input": {"actor": {"id": "u", "tenant": "t", "roles": ["a"]}, "context": {}, "action": "read"},
              "explanation": "e", "a/b": 1}
    pseudonym = PROTECTION.pseudonymize
    assert apply_masks(record, rules, pseudonym) == {
        "input": {"actor": {"id": pseudonym("u"), "tenant": "t", "roles": pseudonym(["a"])},
                  "context": {"region": "**"}, "action": "read"}}


@pytest.mark.parametrize(
    "bad", [["input/actor"], [""], [{"op": "drop", "path": "/x"}], [{"op": "upsert", "path": "/x"}], [3], [{"path": 5}]]
)
def test_bad_mask_rules_are_refused(bad: list[object]) -> None:
    with pytest.raises(ValueError):
        parse_mask_rules(bad)


def test_drop_rules_match_every_field_case_insensitively() -> None:
    (rule,) = parse_drop_rules([{"result": "ALLOW", "tenant": "alpha"}])
    assert rule.drops({"result": "allow", "tenant": "alpha"})
    assert not rule.drops({"result": "allow", "tenant": "beta"})
    assert not rule.drops({"result": "deny", "tenant": "alpha"})


@pytest.mark.parametrize("bad", [[{}], ["allow"], [{"colour": "red"}]])
def test_bad_drop_rules_are_refused(bad: list[object]) -> None:
    with pytest.raises(ValueError):
        parse_drop_rules(bad)


def test_revision_ignores_order_but_not_content() -> None:
    one = policy_revision(["package a", "package b"], {"x": 1})
    assert one == policy_revision(["package b", "package a"], {"x": 1})
    assert one != policy_revision(["package a", "package b"], {"x": 2})
    assert one != policy_revision(["package a", "package c"], {"x": 1})
    assert one.startswith("sha256:") and len(one) == len("sha256:") + 32


def test_a_loss_tally_spans_its_losses_and_keeps_what_came_after_a_recorded_gap() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    tally = LossTally()
    assert tally.pending is None and tally.add(0, t0) is False
    assert tally.add(2, t0 + timedelta(seconds=5)) is True, "the first loss of a run is the moment to warn"
    assert tally.add(3, t0, t0 + timedelta(seconds=9)) is False
    recorded = tally.pending
    assert recorded == Gap(5, t0, t0 + timedelta(seconds=9))
    tally.add(1, t0 + timedelta(seconds=20))  # while the gap row was being written
    tally.settle(recorded)
    assert tally.pending is not None and tally.pending.count == 1
    tally.settle(Gap(1, t0, t0))
    assert tally.pending is None
