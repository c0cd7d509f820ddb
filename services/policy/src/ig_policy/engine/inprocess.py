"""Deciding in this process with the compiled policy, the OPA sidecar whenever the module cannot answer.

OPA stays the engine of record: the revision a decision carries is the sidecar's, and the module answers only while
it was built from exactly that revision (same modules, same data). Every other case goes to the sidecar and is
counted by cause in ``ig_policy_inprocess_fallbacks_total``:

- ``revision``: the sidecar has another policy loaded (a hot reload, a new bundle) than the module was built from;
- ``builtin``: the policy called a builtin this host does not implement, or with arguments it does not answer for
  certain (ig_policy.engine.wasm_builtins);
- ``module_error``: the module aborted or trapped;
- ``undefined``: the module's document was undefined or malformed (the sidecar is asked rather than failing closed
  on the module's word).

The input is the one ``DecisionService`` built (the server's clock in ``context.time``, its region in
``context.region``), the same object either engine receives.
"""

from __future__ import annotations

from typing import Any, Protocol

import structlog
from prometheus_client import Counter

from ig_policy.domain.model import ENGINE_UNAVAILABLE, Verdict
from ig_policy.domain.verdict import verdict_from_engine
from ig_policy.engine.wasm import WasmAbort, WasmPolicy
from ig_policy.engine.wasm_builtins import CannotAnswer

log = structlog.get_logger(__name__)

INPROCESS_ANSWERS = Counter("ig_policy_inprocess_answers_total", "Evaluations answered by the in-process module")
INPROCESS_FALLBACKS = Counter("ig_policy_inprocess_fallbacks_total",
                              "Evaluations the in-process module left to the OPA sidecar, by cause", ["cause"])


class Sidecar(Protocol):
    revision: str

    async def evaluate(self, policy_input: dict[str, Any]) -> Verdict: ...


class InProcessEngine:
    def __init__(self, sidecar: Sidecar, policy: WasmPolicy, module_revision: str) -> None:
        self._sidecar = sidecar
        self._policy = policy
        self.module_revision = module_revision
        self._warned_revision = ""

    @property
    def revision(self) -> str:
        return self._sidecar.revision

    async def evaluate(self, policy_input: dict[str, Any]) -> Verdict:
        verdict = self._module_verdict(policy_input)
        if isinstance(verdict, Verdict):
            return verdict
        INPROCESS_FALLBACKS.labels(verdict).inc()
        return await self._sidecar.evaluate(policy_input)

    def _module_verdict(self, policy_input: dict[str, Any]) -> Verdict | str:
        """The module's verdict, or why the sidecar must answer instead."""
        sidecar_revision = self._sidecar.revision
        if sidecar_revision != self.module_revision:
            if self._warned_revision != sidecar_revision:
                self._warned_revision = sidecar_revision
                log.warning("inprocess_module_revision_differs", module=self.module_revision,
                            sidecar=sidecar_revision)
            return "revision"
        try:
            answer = self._policy.evaluate(policy_input)
        except CannotAnswer:
            return "builtin"
        except (WasmAbort, Exception) as error:  # whatever failed inside, OPA decides
            log.warning("inprocess_module_failed", error=str(error) or type(error).__name__)
            return "module_error"
        verdict = verdict_from_engine(answer)
        if verdict.rule_id == ENGINE_UNAVAILABLE:
            return "undefined"
        INPROCESS_ANSWERS.inc()
        return verdict
