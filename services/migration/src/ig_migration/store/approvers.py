"""The approver keys the service trusts: a directory of ``<name>.pub`` PEM public keys (IG_MIGRATION_APPROVERS).

``<name>`` is the identity the key belongs to (a workload name such as ``approver``, or a person's user name), the
name compared with the plan's submitter. A directory fits a Kubernetes ConfigMap mounted as files; it is read at
every Run, so removing a key revokes its approvals without a restart.
"""

from __future__ import annotations

from pathlib import Path

from ig_migration.domain.approval import ApproverKey, approver_key_from_pem


def load_approvers(directory: Path) -> list[ApproverKey]:
    """Every ``*.pub`` of ``directory``; ValueError naming the file for anything unreadable (fail closed)."""
    if not directory.is_dir():
        raise ValueError(f"{directory} is not a directory of <name>.pub approver keys")
    found = []
    for path in sorted(directory.glob("*.pub")):
        try:
            found.append(approver_key_from_pem(path.stem, path.read_bytes()))
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from error
    if not found:
        raise ValueError(f"{directory} holds no <name>.pub approver key")
    return found
