"""in-toto Statement v1 carrying SLSA provenance v1 for the release's built artifacts.

Its subjects are the bundle's artifacts and, beside them, what the release ships without the bundle holding it:
the container images, named with their manifest digests (``name`` as the image reference without its digest,
``digest.sha256`` as the registry or containerd records it). They are signed with the rest, so the digest a node
runs can be checked against the release's own provenance (``ig-evidence verify --subject``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ig_evidence.domain.manifest import ArtifactRecord

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://maestro-conductor.dev/ig-evidence/build/v1"
_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_SUBJECT_NAME = 512


class SubjectError(ValueError):
    """A subject that cannot be attested: the message names the entry and the field."""


@dataclass(frozen=True, order=True)
class Subject:
    """Something the release ships that the bundle does not hold, by name and sha256 (hex, no algorithm prefix)."""

    name: str
    sha256: str

    def __str__(self) -> str:
        return f"{self.name}@sha256:{self.sha256}"


def subject(name: str, digest: str, where: str = "subject") -> Subject:
    """A checked subject; ``digest`` is ``sha256:<hex>`` or bare hex; ``where`` names it in errors."""
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise SubjectError(f"{where}.name: must be a non-empty string without surrounding spaces, got {name!r}")
    if len(name) > MAX_SUBJECT_NAME or any(ord(c) < 0x20 for c in name):
        raise SubjectError(f"{where}.name: at most {MAX_SUBJECT_NAME} printable characters")
    hexdigest = digest.removeprefix("sha256:") if isinstance(digest, str) else ""
    if not _SHA256.fullmatch(hexdigest):
        raise SubjectError(f"{where}.digest.sha256: 64 lowercase hex digits expected, got {digest!r}")
    return Subject(name, hexdigest)


def parse_reference(text: str) -> Subject:
    """``NAME@sha256:HEX``, as a pinned image reference is written."""
    name, at, digest = text.rpartition("@")
    if not at:
        raise SubjectError(f"subject {text!r}: expected NAME@sha256:HEX")
    return subject(name, digest, where=f"subject {text!r}")


def descriptor(name: str, sha256: str) -> dict[str, Any]:
    """An in-toto ResourceDescriptor naming one subject by its sha256: the form a statement's ``subject`` takes."""
    return {"name": name, "digest": {"sha256": sha256}}


def parse_subjects(document: Any) -> list[Subject]:
    """A JSON list of in-toto ResourceDescriptors, ``[{"name": ..., "digest": {"sha256": ...}}, ...]``: the form an
    in-toto Statement's ``subject`` takes (``ig-k8s images --subjects`` writes one)."""
    if not isinstance(document, list):
        raise SubjectError("subjects: a JSON list of {\"name\", \"digest\": {\"sha256\"}} objects expected")
    found: list[Subject] = []
    for index, entry in enumerate(document):
        where = f"subjects[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("digest"), dict):
            raise SubjectError(f"{where}: an object with \"name\" and \"digest\": {{\"sha256\": ...}} expected")
        found.append(subject(entry.get("name"), entry["digest"].get("sha256"), where))  # type: ignore[arg-type]
    return merge_subjects(found)


def merge_subjects(*groups: Iterable[Subject]) -> list[Subject]:
    """One list, sorted by name; a name given twice must carry the same digest."""
    merged: dict[str, Subject] = {}
    for group in groups:
        for item in group:
            known = merged.setdefault(item.name, item)
            if known != item:
                raise SubjectError(f"subject {item.name!r}: given with two digests ({known.sha256[:12]}…, "
                                   f"{item.sha256[:12]}…)")
    return sorted(merged.values())


def statement_subjects(statement: Mapping[str, Any]) -> dict[str, str]:
    """name -> sha256 of every subject of a statement; malformed entries are left out (verify reports what is
    missing from it, which is what matters)."""
    subjects: dict[str, str] = {}
    for entry in statement.get("subject") or []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("digest"), dict):
            digest = entry["digest"].get("sha256")
            if isinstance(digest, str):
                subjects[entry["name"]] = digest
    return subjects


def unattested(attested: Mapping[str, str], required: Iterable[Subject]) -> list[str]:
    """A problem for each of ``required`` (an image about to run, say) that ``attested`` (name -> sha256, what a
    verified provenance names beyond the bundle's artifacts) does not name with that very digest."""
    problems = []
    for wanted in required:
        found = attested.get(wanted.name)
        if found != wanted.sha256:
            why = f"it attests sha256:{found}" if found else "it names no such subject"
            problems.append(f"subject {wanted}: not attested by the provenance ({why})")
    return problems


def provenance_statement(*, release: str, subjects: Sequence[ArtifactRecord], builder_id: str, started_on: str,
                         source: Mapping[str, str], contract_version: str,
                         shipped: Sequence[Subject] = ()) -> dict[str, Any]:
    """Subjects are the artifacts and what is ``shipped`` beside the bundle (images); resolvedDependencies names
    the source revision they were built from."""
    clashes = sorted({s.name for s in subjects} & {s.name for s in shipped})
    if clashes:
        raise SubjectError(f"subject {clashes[0]!r}: also the name of an artifact in the bundle")
    described = [descriptor(s.name, s.sha256) for s in subjects] + [descriptor(s.name, s.sha256) for s in shipped]
    dependencies = [{"uri": source["uri"], "digest": {"gitCommit": source["commit"]}}] if source.get("commit") else []
    return {
        "_type": STATEMENT_TYPE,
        "subject": sorted(described, key=lambda s: str(s["name"])),
        "predicateType": SLSA_PROVENANCE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"release": release, "contractVersion": contract_version},
                "internalParameters": {},
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": builder_id},
                "metadata": {"invocationId": f"{release}@{started_on}", "startedOn": started_on,
                             "finishedOn": started_on},
            },
        },
    }
