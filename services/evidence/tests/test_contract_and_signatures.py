"""The evidence contract (shape and completeness) and cosign-compatible signatures."""

from __future__ import annotations

import base64
import copy
import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from ig_evidence.domain import contract as ct
from ig_evidence.domain import signatures

REPO = Path(__file__).resolve().parents[3]
CONTRACT = REPO / "policies/evidence/release-contract.v1.yaml"


def document() -> dict[str, Any]:
    return yaml.safe_load(CONTRACT.read_text())


def test_the_shipped_contract_parses_and_requires_the_briefs_evidence() -> None:
    parsed = ct.parse_contract(document())
    required = {t.name for t in parsed.types if t.required}
    assert {"sbom", "provenance", "schema-diff", "load-report", "chaos-report", "aca-report", "dr-log", "rtbf-log",
            "residency-proof", "slo-report"} <= required
    assert parsed.ledger_anchor_required


def _set(path: list[str | int], value: object) -> dict[str, Any]:
    doc = document()
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


@pytest.mark.parametrize(("doc", "message"), [
    (_set(["kind"], "Other"), "apiVersion/kind"),
    (_set(["spec", "typo"], 1), "unknown key"),
    (_set(["spec", "types", 0, "type"], "Bad_Name"), "lower-kebab-case"),
    (_set(["spec", "types", 0, "required"], "yes"), "required must be a boolean"),
    (_set(["spec", "types", 0, "source"], "magic"), "source"),
    (_set(["spec", "ledgerAnchor"], "sometimes"), "ledgerAnchor"),
    (_set(["metadata"], {"version": "1"}), "metadata.name"),
    ("just text", "mapping"),
])
def test_malformed_contracts_are_refused_naming_the_field(doc: object, message: str) -> None:
    with pytest.raises(ct.ContractError, match=message):
        ct.parse_contract(doc)


def test_a_type_declared_twice_is_refused() -> None:
    doc = document()
    doc["spec"]["types"].append(copy.deepcopy(doc["spec"]["types"][0]))
    with pytest.raises(ct.ContractError, match="twice"):
        ct.parse_contract(doc)


def test_missing_items_lists_each_unmet_requirement_in_contract_order() -> None:
    parsed = ct.parse_contract(document())
    counts = {t.name: t.min_items for t in parsed.types}
    assert ct.missing_items(parsed, counts, anchored=True) == []
    counts["chaos-report"] = 0
    counts["schema-diff"] = 1
    counts.pop("portal-access-log")  # optional: never missing
    missing = ct.missing_items(parsed, counts, anchored=False)
    assert [m.split(":")[0] for m in missing] == ["schema-diff", "chaos-report", "ledger-anchor"]


def test_signatures_are_deterministic_der_and_verify() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    data = b"manifest bytes"
    signature = signatures.sign(key, data)
    assert signature == signatures.sign(key, data)
    assert signature[0] == 0x30  # ASN.1 DER SEQUENCE
    signatures.verify(key.public_key(), signature, data)
    with pytest.raises(signatures.SignatureError):
        signatures.verify(key.public_key(), signature, data + b"!")


def test_other_curves_are_refused() -> None:
    with pytest.raises(signatures.SignatureError, match="P-256"):
        signatures.sign(ec.generate_private_key(ec.SECP384R1()), b"x")


def test_sigstore_bundle_carries_digest_signature_and_key_hint() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    data = b"{}"
    signature = signatures.sign(key, data)
    bundle = signatures.sigstore_bundle(key.public_key(), data, signature)
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert base64.b64decode(bundle["messageSignature"]["messageDigest"]["digest"]) == hashlib.sha256(data).digest()
    signatures.check_sigstore_bundle(bundle, key.public_key(), data)
    with pytest.raises(signatures.SignatureError, match="digest"):
        signatures.check_sigstore_bundle(bundle, key.public_key(), b"[]")


def test_dsse_envelope_round_trip_and_pae() -> None:
    assert signatures.pae("t", b"ab") == b"DSSEv1 1 t 2 ab"
    key = ec.generate_private_key(ec.SECP256R1())
    envelope = signatures.dsse_envelope(key, b'{"a":1}')
    assert signatures.open_dsse_envelope(envelope, key.public_key()) == b'{"a":1}'
    envelope["payload"] = base64.b64encode(b'{"a":2}').decode()
    with pytest.raises(signatures.SignatureError):
        signatures.open_dsse_envelope(envelope, key.public_key())
