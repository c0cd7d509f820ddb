"""Schema diffs compare against the previous release's bundle. (The release workflow that passes it:
tools/release-flow/tests/test_release_workflow.py and e2e/test_release_flow.py.)"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from ig_evidence.domain import schema_diff

from .conftest import REPO, run, write_inputs


def test_schema_diff_flags_removed_proto_elements_and_edited_migrations() -> None:
    before = schema_diff.snapshot(proto_elements=["message a.B", "field a.B.x = 1 9"],
                                  sql_migrations={"x/0001_init.sql": "aa", "x/0002_more.sql": "bb"})
    after = schema_diff.snapshot(proto_elements=["message a.B", "field a.B.y = 2 9"],
                                 sql_migrations={"x/0001_init.sql": "zz", "x/0003_new.sql": "cc"})
    diff = schema_diff.diff(before, after, previous_release="v1.2.0")
    assert diff["proto"] == {"added": ["field a.B.y = 2 9"], "removed": ["field a.B.x = 1 9"]}
    assert diff["sql"] == {"added": ["x/0003_new.sql"], "removed": ["x/0002_more.sql"], "changed": ["x/0001_init.sql"]}
    assert diff["breaking"] is True
    assert schema_diff.diff(None, after, previous_release="")["baseline"].startswith("none")


def test_build_diffs_against_the_previous_release_bundle(tmp_path: Path, keys: Path, offline_contract: Path) -> None:
    inputs = write_inputs(tmp_path / "inputs")
    common = ["--inputs", str(inputs), "--key", str(keys / "cosign.key"), "--contract", str(offline_contract),
              "--repo-root", str(REPO)]
    assert run("build", "--release", "v1.2.0", "--out", str(tmp_path / "v1.2.0"), *common).exit_code == 0
    result = run("build", "--release", "v1.2.1", "--out", str(tmp_path / "v1.2.1"), "--previous",
                 str(tmp_path / "v1.2.0"), *common)
    assert result.exit_code == 0, result.output
    with tarfile.open(tmp_path / "v1.2.1" / "evidence-v1.2.1.tar.gz") as tar:
        diff = json.load(tar.extractfile("artifacts/schema-diff/schema-diff.json"))  # type: ignore[arg-type]
        snapshot = json.load(tar.extractfile("artifacts/schema-diff/schema-snapshot.json"))  # type: ignore[arg-type]
    assert diff["previousRelease"] == "v1.2.0" and diff["breaking"] is False
    assert diff["proto"] == {"added": [], "removed": []}
    assert "rpc ig.ledger.v1.LedgerService.Verify(ig.ledger.v1.VerifyRequest) returns (ig.ledger.v1.VerifyResponse)" \
        in snapshot["proto"]
    assert any(name.startswith("ig_evidence/0002_ledger") for name in snapshot["sql"])
