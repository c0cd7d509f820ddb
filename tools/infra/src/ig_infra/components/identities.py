"""Workload identities: the development CA (cached) and a short-lived certificate per workload (run dir).

First in start order: PostgreSQL, Kafka and every service and client take their certificate from here.
"""

from __future__ import annotations

from pathlib import Path

from ig_infra.approver import approver_signing_key, ensure_approver_signing_key
from ig_infra.breakglass_key import breakglass_approver_key, breakglass_approvers_file, ensure_breakglass_approver
from ig_infra.components.base import Component
from ig_infra.decision_log_keys import decision_log_env, decision_log_keys_exist, ensure_decision_log_keys
from ig_infra.ledger_key import ensure_ledger_checkpoint_key, ledger_checkpoint_key
from ig_infra.paths import REPO_ROOT
from ig_infra.pki import (
    CLIENT_IDENTITIES,
    SERVICE_IDENTITIES,
    WITNESS_IDENTITIES,
    DevCA,
    IssuedIdentity,
    ca_directory,
    ensure_identities,
    identities_directory,
    is_fresh,
    spiffe_id,
)
from ig_infra.release_key import ensure_release_signing_key, release_signing_key, trusted_signers_file
from ig_infra.witnesses import ensure_witness_keys, witness_keys_exist

AUTHZ_TABLE = REPO_ROOT / "policies" / "authz" / "grpc-methods.yaml"
ALL_IDENTITIES = SERVICE_IDENTITIES + CLIENT_IDENTITIES + WITNESS_IDENTITIES


class Identities(Component):
    name = "identities"
    regional = False  # files only: no process, no port

    @property
    def root(self) -> Path:
        return identities_directory(self.paths.run)

    def start(self) -> None:
        ensure_identities(self.paths.cache, self.paths.run, ALL_IDENTITIES)
        ensure_approver_signing_key(self.paths.run)
        ensure_ledger_checkpoint_key(self.paths.run)
        ensure_release_signing_key(self.paths.run, AUTHZ_TABLE)
        ensure_witness_keys(self.paths.run)
        ensure_decision_log_keys(self.paths.run)
        ensure_breakglass_approver(self.paths.run)

    def issued(self, name: str) -> IssuedIdentity:
        return IssuedIdentity(name, self.root / name, spiffe_id(name))

    def ca(self) -> DevCA:
        """The development CA itself, for a test that issues an identity of its own."""
        return DevCA.load_or_create(ca_directory(self.paths.cache))

    def running(self) -> bool:
        return self.healthy()

    def healthy(self) -> bool:
        keys = (approver_signing_key(self.paths.run), ledger_checkpoint_key(self.paths.run),
                release_signing_key(self.paths.run), trusted_signers_file(self.paths.run),
                breakglass_approver_key(self.paths.run), breakglass_approvers_file(self.paths.run))
        return (all(k.exists() for k in keys) and witness_keys_exist(self.paths.run)
                and decision_log_keys_exist(self.paths.run)
                and all(is_fresh(self.issued(name)) for name in ALL_IDENTITIES))

    def stop(self) -> bool:
        return False

    def address(self) -> str:
        return f"{self.root} (CA {ca_directory(self.paths.cache)})"

    @property
    def logs(self) -> Path:
        return self.root

    def env(self) -> dict[str, str]:
        # IG_RELEASE_SIGNING_KEY: what the release flow and `make evidence` sign with; IG_TRUSTED_SIGNERS_PATH: the
        # file that pins it for the evidence service (which refuses bundles of any other signer).
        # IG_DECISION_LOG_*: the policy log's pepper and replay public key (the service), the replay private key
        # (`ig-policy replay`; locally one user holds both, a cluster gives the service only the first two).
        # IG_BREAKGLASS_APPROVERS_PATH: the policy service's break-glass approvers (the demo approver for alpha);
        # IG_BREAKGLASS_APPROVER_KEY: that approver's key, for `ig-policy break-glass`.
        return {"IG_IDENTITIES": str(self.root), "IG_AUTHZ_TABLE": str(AUTHZ_TABLE),
                "IG_RELEASE_SIGNING_KEY": str(release_signing_key(self.paths.run)),
                "IG_TRUSTED_SIGNERS_PATH": str(trusted_signers_file(self.paths.run)),
                "IG_BREAKGLASS_APPROVERS_PATH": str(breakglass_approvers_file(self.paths.run)),
                "IG_BREAKGLASS_APPROVER_KEY": str(breakglass_approver_key(self.paths.run)),
                **decision_log_env(self.paths.run)}
