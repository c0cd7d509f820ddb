"""Who may sign a tenant's release evidence: pinned public keys and Sigstore keyless identities, per tenant.

The evidence service reads this from its own configuration (IG_TRUSTED_SIGNERS_PATH), never from a bundle: a
bundle names nothing about its own trust. A key is pinned by its key id, the SHA-256 of its SubjectPublicKeyInfo
(DER) in hex, which is also what a Sigstore bundle's ``publicKey.hint`` carries (base64 there). A keyless signer
is an OIDC issuer plus a subject regular expression matched whole, as cosign's
``--certificate-oidc-issuer`` / ``--certificate-identity-regexp`` do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

TENANT = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
KEY_ID = re.compile(r"^[0-9a-f]{64}$")


class TrustedSignersError(ValueError):
    """The trusted-signers document is malformed (the message names the entry)."""


class SignerNotTrusted(ValueError):
    """A bundle's signer is not one the tenant trusts (the message names the key id or identity)."""


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 of the key's SubjectPublicKeyInfo (DER), hex: the key id a pinned signer is known by."""
    return hashlib.sha256(public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def key_id_from_hint(hint: str) -> str | None:
    """The hex key id in a Sigstore bundle's ``publicKey.hint`` (base64 of the same digest), if it is one."""
    try:
        digest = base64.b64decode(hint, validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest.hex() if len(digest) == 32 else None


@dataclass(frozen=True)
class PinnedKey:
    name: str
    key_id: str
    public_key: ec.EllipticCurvePublicKey

    @property
    def pem(self) -> bytes:
        return self.public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)

    def describe(self) -> str:
        return f"{self.name} (key id {self.key_id})"


@dataclass(frozen=True)
class KeylessIdentity:
    name: str
    issuer: str
    subject_regexp: str

    def matches(self, issuer: str, subject: str) -> bool:
        return issuer == self.issuer and re.fullmatch(self.subject_regexp, subject) is not None

    def describe(self) -> str:
        return f"{self.name} (issuer {self.issuer}, subject ~ {self.subject_regexp})"


@dataclass(frozen=True)
class TenantSigners:
    keys: tuple[PinnedKey, ...] = ()
    identities: tuple[KeylessIdentity, ...] = ()

    def describe(self) -> str:
        return ", ".join([k.describe() for k in self.keys] + [i.describe() for i in self.identities]) or "none"

    def key(self, wanted: str) -> PinnedKey | None:
        return next((k for k in self.keys if k.key_id == wanted), None)


@dataclass(frozen=True)
class TrustedSigners:
    tenants: Mapping[str, TenantSigners] = field(default_factory=dict)
    # The Sigstore trusted root (a file path) keyless signatures are checked against; required by any identity.
    keyless_trusted_root: str | None = None

    def of(self, tenant: str) -> TenantSigners:
        return self.tenants.get(tenant, TenantSigners())

    def pinned_key(self, tenant: str, wanted_key_id: str) -> PinnedKey | None:
        return self.of(tenant).key(wanted_key_id)


def _text(entry: Mapping[str, Any], name: str, where: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value.strip():
        raise TrustedSignersError(f"{where}.{name}: required, a non-empty string")
    return value.strip()


def _pinned_key(entry: Mapping[str, Any], where: str, read: Callable[[str], bytes]) -> PinnedKey:
    name = _text(entry, "name", where)
    if "publicKey" in entry:
        pem = _text(entry, "publicKey", where).encode()
    else:
        path = _text(entry, "publicKeyPath", where)
        try:
            pem = read(path)
        except OSError as error:
            raise TrustedSignersError(f"{where}.publicKeyPath: cannot read {path}: {error.strerror}") from error
    try:
        loaded = serialization.load_pem_public_key(pem)
    except ValueError as error:
        raise TrustedSignersError(f"{where}: not a PEM public key ({error})") from error
    if not isinstance(loaded, ec.EllipticCurvePublicKey) or not isinstance(loaded.curve, ec.SECP256R1):
        raise TrustedSignersError(f"{where}: the key must be ECDSA P-256 (what cosign and ig-evidence sign with)")
    found = key_id(loaded)
    pinned = entry.get("keyId")
    if pinned is not None and pinned != found:
        raise TrustedSignersError(f"{where}.keyId: {pinned!r} but the key's id is {found}")
    return PinnedKey(name, found, loaded)


def _identity(entry: Mapping[str, Any], where: str) -> KeylessIdentity:
    keyless = entry.get("keyless")
    if not isinstance(keyless, Mapping):
        raise TrustedSignersError(f"{where}.keyless: a mapping with issuer and subjectRegexp")
    pattern = _text(keyless, "subjectRegexp", f"{where}.keyless")
    try:
        re.compile(pattern)
    except re.error as error:
        raise TrustedSignersError(f"{where}.keyless.subjectRegexp: {error}") from error
    return KeylessIdentity(_text(entry, "name", where), _text(keyless, "issuer", f"{where}.keyless"), pattern)


def parse_trusted_signers(document: object, read: Callable[[str], bytes]) -> TrustedSigners:
    """The ``tenants:`` document (see the evidence README); ``read`` fetches a ``publicKeyPath``'s bytes."""
    if not isinstance(document, Mapping) or not isinstance(document.get("tenants"), Mapping):
        raise TrustedSignersError("tenants: required, a mapping of tenant -> list of signers")
    tenants: dict[str, TenantSigners] = {}
    any_keyless = False
    for tenant, entries in document["tenants"].items():
        where = f"tenants.{tenant}"
        if not isinstance(tenant, str) or not TENANT.fullmatch(tenant):
            raise TrustedSignersError(f"{where}: not a tenant name")
        if not isinstance(entries, list) or not entries:
            raise TrustedSignersError(f"{where}: a non-empty list of signers")
        keys: list[PinnedKey] = []
        identities: list[KeylessIdentity] = []
        for index, entry in enumerate(entries):
            at = f"{where}[{index}]"
            if not isinstance(entry, Mapping):
                raise TrustedSignersError(f"{at}: a mapping")
            if "keyless" in entry:
                identities.append(_identity(entry, at))
            else:
                keys.append(_pinned_key(entry, at, read))
        any_keyless = any_keyless or bool(identities)
        tenants[tenant] = TenantSigners(tuple(keys), tuple(identities))
    root = document.get("keylessTrustedRoot")
    if root is not None and not isinstance(root, str):
        raise TrustedSignersError("keylessTrustedRoot: a file path")
    if any_keyless and not root:
        raise TrustedSignersError("keylessTrustedRoot: required when a tenant trusts a keyless identity")
    return TrustedSigners(tenants, root)
