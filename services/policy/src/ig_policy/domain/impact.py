"""Impact of a candidate policy on logged decisions: what changes, where, and whether it is more than allowed.

A logged decision (its result and primary rule, as the service answered) is compared with the candidate's answer
to the same input. A change is a different result (``ALLOW->DENY``, ``DENY->ALLOW``, ``ALLOW->STEP_UP``...);
the same result under another primary rule is counted apart (``rule_only``), since it changes what a caller is
told, not what it may do. Decisions the service answered fail-closed (``ig.system.engine_unavailable``) say
nothing about the policy and are left out; candidate answers that are engine failures are counted as errors.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from ig_policy.domain.model import ENGINE_UNAVAILABLE, Verdict

EXAMPLES_PER_CHANGE = 5


@dataclass(frozen=True)
class LoggedDecision:
    decision_id: str
    tenant: str
    result: str  # as logged: allow, deny, step_up
    rule_id: str

    @property
    def upper_result(self) -> str:
        return self.result.upper()


@dataclass(frozen=True)
class Threshold:
    """CI mode: more changes than ``max_changes``, or a larger share than ``max_ratio``, fails the run."""

    max_changes: int | None = None
    max_ratio: float | None = None

    @property
    def active(self) -> bool:
        return self.max_changes is not None or self.max_ratio is not None


def transition(before: str, after: str) -> str:
    return f"{before}->{after}"


@dataclass
class ImpactReport:
    replayed: int = 0
    changed: int = 0
    rule_only: int = 0
    errors: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    changes: Counter[str] = field(default_factory=Counter)
    by_tenant: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    by_logged_rule: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    by_candidate_rule: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    examples: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    error_examples: list[str] = field(default_factory=list)

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    def add(self, logged: LoggedDecision, candidate: Verdict) -> None:
        if logged.rule_id == ENGINE_UNAVAILABLE:
            self.skip("logged_engine_unavailable")
            return
        self.replayed += 1
        if candidate.rule_id == ENGINE_UNAVAILABLE:
            self.errors += 1
            if len(self.error_examples) < EXAMPLES_PER_CHANGE:
                self.error_examples.append(logged.decision_id)
            return
        after = candidate.result.value
        if after == logged.upper_result:
            if candidate.rule_id != logged.rule_id:
                self.rule_only += 1
            return
        change = transition(logged.upper_result, after)
        self.changed += 1
        self.changes[change] += 1
        self.by_tenant[logged.tenant][change] += 1
        self.by_logged_rule[logged.rule_id][change] += 1
        self.by_candidate_rule[candidate.rule_id][change] += 1
        if len(self.examples[change]) < EXAMPLES_PER_CHANGE:
            self.examples[change].append(logged.decision_id)

    @property
    def change_ratio(self) -> float:
        return self.changed / self.replayed if self.replayed else 0.0

    def exceeds(self, threshold: Threshold) -> list[str]:
        """Why the run fails in CI mode (empty: it passes). Candidate errors always fail it: unknown impact."""
        reasons = []
        if threshold.max_changes is not None and self.changed > threshold.max_changes:
            reasons.append(f"{self.changed} decisions change, more than --max-changes {threshold.max_changes}")
        if threshold.max_ratio is not None and self.change_ratio > threshold.max_ratio:
            reasons.append(f"{self.change_ratio:.4f} of decisions change, more than --max-change-ratio "
                           f"{threshold.max_ratio}")
        if threshold.active and self.errors:
            reasons.append(f"the candidate could not decide {self.errors} decisions")
        return reasons

    def as_json(self) -> dict[str, Any]:
        def plain(table: defaultdict[str, Counter[str]]) -> dict[str, dict[str, int]]:
            return {key: dict(sorted(counts.items())) for key, counts in sorted(table.items())}

        return {
            "replayed": self.replayed, "changed": self.changed, "change_ratio": round(self.change_ratio, 6),
            "rule_only_changed": self.rule_only, "candidate_errors": self.errors,
            "skipped": dict(sorted(self.skipped.items())), "changes": dict(sorted(self.changes.items())),
            "by_tenant": plain(self.by_tenant), "by_logged_rule": plain(self.by_logged_rule),
            "by_candidate_rule": plain(self.by_candidate_rule),
            "examples": {key: list(ids) for key, ids in sorted(self.examples.items())},
            "candidate_error_examples": list(self.error_examples),
        }


def render_text(report: dict[str, Any]) -> str:
    """The report for a terminal: totals, each change with examples, then per tenant and per rule."""
    lines = [f"replayed {report['replayed']} decisions: {report['changed']} change result "
             f"({report['change_ratio']:.2%}), {report['rule_only_changed']} only their rule, "
             f"{report['candidate_errors']} candidate errors, skipped {report['skipped'] or 0}"]
    for change, count in report["changes"].items():
        lines.append(f"  {change}: {count}  e.g. {', '.join(report['examples'].get(change, []))}")
    for title, key in (("per tenant", "by_tenant"), ("per logged rule", "by_logged_rule"),
                       ("per candidate rule", "by_candidate_rule")):
        if report[key]:
            lines.append(f"{title}:")
            lines += [f"  {name}: " + ", ".join(f"{c} {n}" for c, n in counts.items())
                      for name, counts in report[key].items()]
    return "\n".join(lines)
