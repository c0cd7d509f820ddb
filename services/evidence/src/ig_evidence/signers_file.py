"""The trusted-signers file (IG_TRUSTED_SIGNERS_PATH): read it, and pin a key in it (``ig-evidence trust``).

The document's shape and its checks are domain/trusted_signers.py's; this module only does the file I/O. Paths in
the file (``publicKeyPath``, ``keylessTrustedRoot``) are relative to the file's own directory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ig_evidence.domain.trusted_signers import (
    TrustedSigners,
    TrustedSignersError,
    key_id,
    parse_trusted_signers,
)


def load_trusted_signers(path: Path) -> TrustedSigners:
    """The pinned signers (TrustedSignersError naming the entry when the file is wrong)."""
    document = _read(path)
    signers = parse_trusted_signers(document, lambda name: (path.parent / name).read_bytes())
    if signers.keyless_trusted_root is not None:
        signers = replace(signers, keyless_trusted_root=str(path.parent / signers.keyless_trusted_root))
    return signers


def _read(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as error:
        raise TrustedSignersError(f"cannot read {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise TrustedSignersError(f"{path}: not YAML ({error})") from error


class _Dumper(yaml.SafeDumper):
    """PEM keys as literal blocks, as a person would write them."""


_Dumper.add_representer(str, lambda dumper, value: dumper.represent_scalar(
    "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None))


def trust_key(path: Path, name: str, public_key_pem: bytes, tenants: Sequence[str]) -> str:
    """Pin ``public_key_pem`` for each of ``tenants`` (the file is created when missing, other entries kept);
    returns the key id. The key is written inline, so the file stands alone (a ConfigMap, say)."""
    loaded = serialization.load_pem_public_key(public_key_pem)
    if not isinstance(loaded, ec.EllipticCurvePublicKey):
        raise TrustedSignersError("the key must be ECDSA P-256")
    document: dict[str, Any] = _read(path) if path.exists() else {"tenants": {}}
    pinned = key_id(loaded)
    entry = {"name": name, "keyId": pinned, "publicKey": public_key_pem.decode()}
    for tenant in tenants:
        entries = [e for e in document["tenants"].get(tenant) or [] if e.get("keyId") != pinned]
        document["tenants"][tenant] = [*entries, dict(entry)]
    parse_trusted_signers(document, lambda name_: (path.parent / name_).read_bytes())  # refuse writing a bad file
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(yaml.dump(document, Dumper=_Dumper, sort_keys=False))
    os.replace(temporary, path)
    return pinned
