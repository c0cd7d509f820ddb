"""Shared fixtures of the evidence tests: keys, a complete set of inputs, a contract without ledger anchoring."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from ig_evidence.cli import main

REPO = Path(__file__).resolve().parents[3]
CONTRACT = REPO / "policies/evidence/release-contract.v1.yaml"
COLLECTED_TYPES = ["load-report", "chaos-report", "aca-report", "dr-log", "rtbf-log", "residency-proof", "slo-report",
                   "decision-coverage", "multi-region", "migration-timeline"]
EPOCH = "1767225600"


def write_inputs(root: Path, types: list[str] = COLLECTED_TYPES) -> Path:
    for artifact_type in types:
        (root / artifact_type).mkdir(parents=True, exist_ok=True)
        (root / artifact_type / f"{artifact_type}.json").write_text(f'{{"type": "{artifact_type}", "ok": true}}\n')
    return root


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env={"SOURCE_DATE_EPOCH": EPOCH, **(env or {})},
                              catch_exceptions=False)


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("keys")
    assert run("keygen", "--out", str(directory)).exit_code == 0
    return directory


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    return write_inputs(tmp_path / "inputs")


@pytest.fixture(scope="session")
def offline_contract(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped contract with ledger anchoring optional, for builds without a running ledger."""
    document = yaml.safe_load(CONTRACT.read_text())
    document["spec"]["ledgerAnchor"] = "optional"
    path = tmp_path_factory.mktemp("contract") / "contract.yaml"
    path.write_text(yaml.safe_dump(document))
    return path
