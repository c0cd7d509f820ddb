"""Signed break-glass grants: the approvers file, verifying a request's grant, issuing one, making approver keys.

ES256 (ECDSA P-256), the suite's signing algorithm (workload tokens, release and plan signing): an approver's key
can then live where approvers' keys live, in a PIV smart card, a YubiKey or a cloud KMS, all of which sign P-256,
while Ed25519 is missing from several of them. The key is pinned per approver, so the token cannot choose its
algorithm: only ES256 is accepted.

The approvers file (IG_BREAKGLASS_APPROVERS_PATH, YAML)::

    tenants:
      alpha:
        maxGrantMinutes: 30            # exp - iat of a grant may not exceed it
        approvers:
          - name: carol                # the grant's iss
            keyId: 5f1c...             # hex SHA-256 of the public key's DER SubjectPublicKeyInfo (checked)
            publicKeyPath: carol.pub   # PEM, relative to this file; or publicKey: <PEM text>
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import Counter

from ig_policy.domain.breakglass import (
    ALGORITHM,
    GRANT_TYPE,
    MAX_GRANT_CHARS,
    NO_APPROVERS,
    SELF_ASSERTED,
    Approver,
    Rejection,
    TenantTrust,
    VerifiedGrant,
    bad_signature,
    check_claims,
    malformed,
    untrusted,
)
from ig_policy.domain.model import DecisionRequest, Result

BREAK_GLASS_USES = Counter(
    "ig_policy_break_glass_total",
    "Requests that asked for break-glass, by what the grant's verification found (verified or the failed check) "
    "and the decision's result", ["check", "result"])
MAX_GRANT_MINUTES = 24 * 60


def key_id_of(public_key: ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _p256_public_key(pem: bytes, where: str) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as error:
        raise ValueError(f"{where}: not a PEM public key ({error})") from error
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"{where}: must be an ECDSA P-256 key (grants are ES256)")
    return key


def _approver(entry: Any, where: str, base: Path) -> Approver:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: must be a mapping with name, keyId and publicKey or publicKeyPath")
    unknown = set(entry) - {"name", "keyId", "publicKey", "publicKeyPath"}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 128:
        raise ValueError(f"{where}: name is required (1 to 128 characters)")
    where = f"{where} ({name})"
    if ("publicKey" in entry) == ("publicKeyPath" in entry):
        raise ValueError(f"{where}: give exactly one of publicKey (PEM) or publicKeyPath")
    if "publicKey" in entry:
        if not isinstance(entry["publicKey"], str):
            raise ValueError(f"{where}: publicKey must be PEM text")
        pem = entry["publicKey"].encode()
    else:
        path = base / str(entry["publicKeyPath"])
        try:
            pem = path.read_bytes()
        except OSError as error:
            raise ValueError(f"{where}: publicKeyPath {path} cannot be read ({error.strerror})") from error
    key = _p256_public_key(pem, where)
    actual = key_id_of(key)
    key_id = entry.get("keyId")
    if not isinstance(key_id, str) or key_id.lower() != actual:
        raise ValueError(f"{where}: keyId {key_id!r} does not match the key (its SHA-256 of the SPKI is {actual})")
    return Approver(name.strip(), actual, key.public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo))


def parse_approvers(document: Any, base: Path) -> dict[str, TenantTrust]:
    """Every tenant's approvers; a malformed entry is a ValueError naming it (``tenants.alpha.approvers[1]``)."""
    if document is None:
        return {}
    if not isinstance(document, dict) or set(document) != {"tenants"} or not isinstance(document["tenants"], dict):
        raise ValueError("the file must hold one mapping, tenants: {<tenant>: {maxGrantMinutes, approvers}}")
    trust: dict[str, TenantTrust] = {}
    for tenant, entry in document["tenants"].items():
        where = f"tenants.{tenant}"
        if not isinstance(entry, dict) or set(entry) - {"maxGrantMinutes", "approvers"}:
            raise ValueError(f"{where}: must be a mapping of maxGrantMinutes and approvers")
        minutes = entry.get("maxGrantMinutes")
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_GRANT_MINUTES:
            raise ValueError(f"{where}.maxGrantMinutes: must be a whole number of minutes, 1 to {MAX_GRANT_MINUTES}")
        listed = entry.get("approvers")
        if not isinstance(listed, list) or not listed:
            raise ValueError(f"{where}.approvers: must list at least one approver")
        approvers = tuple(_approver(item, f"{where}.approvers[{index}]", base) for index, item in enumerate(listed))
        if len({a.key_id for a in approvers}) != len(approvers):
            raise ValueError(f"{where}.approvers: a key is listed twice")
        trust[str(tenant)] = TenantTrust(minutes, approvers)
    return trust


def load_approvers(path: Path) -> dict[str, TenantTrust]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror})") from error
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not YAML ({error})") from error
    try:
        return parse_approvers(document, path.parent)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error


@dataclass(frozen=True)
class BreakGlassCheck:
    """What the policy input carries under context.break_glass, and what the check found (for the metric)."""

    policy_facts: dict[str, Any]
    check: str
    grant: VerifiedGrant | None = None


@dataclass
class BreakGlassVerifier:
    """Verifies a request's grant for the request's tenant; no approvers configured means no grant is accepted."""

    trust: Mapping[str, TenantTrust] = field(default_factory=dict)
    # Parsed once: PyJWT given PEM bytes parses them again on every call (about half of a verification's CPU).
    _keys: dict[str, ec.EllipticCurvePublicKey] = field(default_factory=dict, init=False, repr=False)
    # Grants whose signature verified, by (token, approver key id): a gateway sends the same grant with every
    # request of an incident, and an ES256 check costs ~0.1 ms. Only the signature is remembered; what the claims
    # say (tenant, subject, scope, times at the server's clock) is judged again on every request. Keys are fixed
    # for the life of the process, so a remembered verification stays true. Pure functions of the token, bounded.
    _verified: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict, init=False, repr=False)
    _headers: dict[str, Mapping[str, Any]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for tenant in self.trust.values():
            for approver in tenant.approvers:
                self._keys[approver.key_id] = _p256_public_key(approver.public_key_pem, approver.name)

    def check(self, request: DecisionRequest, now: datetime) -> BreakGlassCheck | None:
        asked = request.context.break_glass
        if asked is None:
            return None
        if not asked.grant:
            return BreakGlassCheck({}, SELF_ASSERTED.check)
        outcome = self._verify(asked.grant, request, now)
        if isinstance(outcome, Rejection):
            return BreakGlassCheck({"rejection": outcome.message}, outcome.check)
        return BreakGlassCheck({"verified": outcome.facts()}, "verified", outcome)

    def _verify(self, token: str, request: DecisionRequest, now: datetime) -> VerifiedGrant | Rejection:
        if not self.trust:
            return NO_APPROVERS
        header = self._headers.get(token)
        if header is None:
            try:
                header = jwt.get_unverified_header(token)
            except jwt.PyJWTError:
                return malformed("not a compact JWS")
            _remember(self._headers, token, header)
        if header.get("typ") != GRANT_TYPE or header.get("alg") != ALGORITHM:
            return malformed(f"its header must say typ {GRANT_TYPE} and alg {ALGORITHM}")
        tenant = request.resource.tenant
        trust = self.trust.get(tenant)
        key_id = header.get("kid")
        approver = trust.approver_with(key_id) if trust is not None and isinstance(key_id, str) else None
        if trust is None or approver is None:
            return untrusted(tenant, key_id if isinstance(key_id, str) else "")
        claims = self._verified.get((token, approver.key_id))
        if claims is None:
            try:
                # Times are judged below against the service's clock, never the machine's (PyJWT's own checks).
                claims = jwt.decode(token, self._keys[approver.key_id], algorithms=[ALGORITHM],
                                    options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                                             "verify_aud": False, "verify_iss": False})
            except jwt.InvalidSignatureError:
                return bad_signature(approver.name)
            except jwt.PyJWTError as error:
                return malformed(str(error).rstrip("."))
            _remember(self._verified, (token, approver.key_id), claims)
        return check_claims(claims, approver, trust, request, now)


_REMEMBERED = 4096


def _remember(memory: dict[Any, Any], key: Any, value: Any) -> None:
    if len(memory) >= _REMEMBERED:
        memory.clear()
    memory[key] = value


def count_use(check: BreakGlassCheck, result: Result) -> None:
    BREAK_GLASS_USES.labels(check.check, result.value).inc()


# Issuing (the `ig-policy break-glass` command) and approver keys (`ig-policy approver-key`).

def issue_grant(private_key: ec.EllipticCurvePrivateKey, *, approver: str, subject: str, tenant: str,
                scope: Mapping[str, str], justification: str, ttl: timedelta, now: datetime) -> str:
    if not isinstance(private_key.curve, ec.SECP256R1):
        raise ValueError("the approver key must be ECDSA P-256 (grants are ES256)")
    issued = int(now.timestamp())
    claims = {"iss": approver, "sub": subject, "tenant": tenant, "scope": dict(scope),
              "justification": justification, "iat": issued, "exp": issued + int(ttl.total_seconds()),
              "jti": secrets.token_hex(16)}
    token = jwt.encode(claims, private_key, algorithm=ALGORITHM,
                       headers={"typ": GRANT_TYPE, "kid": key_id_of(private_key.public_key())})
    if len(token) > MAX_GRANT_CHARS:
        raise ValueError(f"the grant would be {len(token)} characters (at most {MAX_GRANT_CHARS})")
    return token


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"{path}: not an ECDSA P-256 private key")
    return key


def write_approver_key(private_path: Path, key: ec.EllipticCurvePrivateKey | None = None) -> dict[str, str]:
    """A new P-256 key pair: the private key 0600 at ``private_path``, the public one beside it (``.pub``);
    returns the approvers-file entry fields (keyId, publicKeyPath)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    private_path.parent.mkdir(parents=True, exist_ok=True)
    scratch = private_path.with_name(private_path.name + ".tmp")
    scratch.touch(mode=0o600)
    scratch.chmod(0o600)
    scratch.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    scratch.replace(private_path)
    public_path = private_path.with_suffix(".pub")
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return {"keyId": key_id_of(key.public_key()), "publicKeyPath": str(public_path)}


def unverified_claims(token: str) -> dict[str, Any]:
    """For showing an issued grant (the CLI prints what it signed); never used to decide."""
    decoded: dict[str, Any] = json.loads(jwt.api_jws.decode_complete(token, options={"verify_signature": False})
                                         ["payload"])
    return decoded
