"""The authorization table's invariants (policies/authz/grpc_methods_test.rego) hold, checked by the real OPA."""

from __future__ import annotations

import subprocess

from ig_infra.components.opa import opa_binary
from ig_infra.paths import Paths

AUTHZ = Paths.from_environment().repo / "policies" / "authz"


def test_the_grpc_table_keeps_its_invariants() -> None:
    opa = opa_binary(Paths.from_environment().cache)  # built when missing: a build failure fails this test
    done = subprocess.run([str(opa), "test", "-v", str(AUTHZ / "grpc-methods.yaml"),
                           str(AUTHZ / "grpc_methods_test.rego")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS: 19/19" in done.stdout, done.stdout
