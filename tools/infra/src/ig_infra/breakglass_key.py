"""The local suite's demo break-glass approver: a P-256 key pair and the policy service's approvers file.

The policy service accepts a break-glass grant only when an approver it trusts for the tenant signed it
(IG_BREAKGLASS_APPROVERS_PATH; services/policy/README.md, "Break-glass"). So that `make up` can show one, ig-infra
makes one approver for tenant alpha (the sample tenant whose policy enables break-glass for on-call staff), kept
0600 in the run dir, and lists it. Issue a grant with
`ig-policy break-glass --approver-key $IG_BREAKGLASS_APPROVER_KEY --subject u-alice --tenant alpha
--scope resource_type=case,resource_id=*,action=read,classification=internal --justification "..." --ttl 15m`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization

from ig_infra.pki import _write_public, load_or_create_signing_key

APPROVER = "alpha-duty-manager"  # the grants' iss; `ig-policy break-glass` takes it from the key file's name
TENANTS = ("alpha",)
MAX_GRANT_MINUTES = 60  # alpha's own cap in policies/rego/ig/config/data.json (break_glass.max_minutes)


def breakglass_directory(run: Path) -> Path:
    return run / "breakglass"


def breakglass_approver_key(run: Path) -> Path:
    return breakglass_directory(run) / f"{APPROVER}.key"


def breakglass_approvers_file(run: Path) -> Path:
    return breakglass_directory(run) / "approvers.yaml"


def ensure_breakglass_approver(run: Path) -> Path:
    """The demo approver's key (created when missing), its .pub beside it, and the approvers file listing it for
    alpha; returns the file."""
    key_path = breakglass_approver_key(run)
    key = load_or_create_signing_key(key_path)
    public = key.public_key()
    _write_public(key_path.with_suffix(".pub"), public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    key_id = hashlib.sha256(public.public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()
    entry = {"name": APPROVER, "keyId": key_id, "publicKeyPath": key_path.with_suffix(".pub").name}
    path = breakglass_approvers_file(run)
    path.write_text("# Written by ig-infra: the demo break-glass approver (IG_BREAKGLASS_APPROVER_KEY).\n"
                    + yaml.safe_dump({"tenants": {t: {"maxGrantMinutes": MAX_GRANT_MINUTES, "approvers": [entry]}
                                                  for t in TENANTS}}, sort_keys=False))
    return path
