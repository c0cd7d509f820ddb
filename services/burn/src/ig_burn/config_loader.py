"""Read SLO and throttle-policy YAML files from a directory; every error names the file, field and reason."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ig_burn.domain.slo import Slo, SloValidationError, check_unique, parse_slo_documents
from ig_burn.domain.throttle import ThrottlePolicy, check_policies, parse_policy_documents


@dataclass(frozen=True)
class BurnConfig:
    slos: tuple[Slo, ...]
    policies: tuple[ThrottlePolicy, ...]


def load_config(directory: Path) -> BurnConfig:
    if not directory.is_dir():
        raise SloValidationError(str(directory), "<directory>", "is not a directory of SLO YAML files")
    slos: list[Slo] = []
    policies: list[ThrottlePolicy] = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        text = path.read_text(encoding="utf-8")
        slos.extend(parse_slo_documents(text, str(path)))
        policies.extend(parse_policy_documents(text, str(path)))
    check_unique(slos)
    check_policies(policies, {s.name for s in slos})
    return BurnConfig(tuple(slos), tuple(policies))
