"""SPDX 2.3 JSON document for a set of installed packages (the project's Python environment)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import rfc8785

SPDX_VERSION = "SPDX-2.3"
NOASSERTION = "NOASSERTION"


@dataclass(frozen=True)
class PackageInfo:
    name: str
    version: str
    license: str
    homepage: str


def _spdx_id(name: str, version: str) -> str:
    return "SPDXRef-Package-" + re.sub(r"[^A-Za-z0-9.-]", "-", f"{name}-{version}")


def _license(value: str) -> str:
    # A free-text licence field is not a valid SPDX expression; declared stays NOASSERTION, the text is a comment.
    return value or NOASSERTION


def spdx_document(*, product: str, release: str, created: str, packages: Sequence[PackageInfo]) -> dict[str, Any]:
    ordered = sorted({(p.name.lower(), p.version): p for p in packages}.values(),
                     key=lambda p: (p.name.lower(), p.version))
    digest = hashlib.sha256(rfc8785.dumps([[p.name, p.version] for p in ordered])).hexdigest()
    root_id = "SPDXRef-Package-" + re.sub(r"[^A-Za-z0-9.-]", "-", product)
    spdx_packages: list[dict[str, Any]] = [{
        "SPDXID": root_id, "name": product, "versionInfo": release, "downloadLocation": NOASSERTION,
        "filesAnalyzed": False, "licenseConcluded": NOASSERTION, "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION, "primaryPackagePurpose": "APPLICATION",
    }]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": root_id}]
    for package in ordered:
        package_id = _spdx_id(package.name, package.version)
        entry: dict[str, Any] = {
            "SPDXID": package_id, "name": package.name, "versionInfo": package.version,
            "downloadLocation": NOASSERTION, "filesAnalyzed": False, "licenseConcluded": NOASSERTION,
            "licenseDeclared": NOASSERTION, "copyrightText": NOASSERTION,
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": f"pkg:pypi/{package.name.lower().replace('_', '-')}@"
                                                  f"{package.version}"}],
        }
        if package.license:
            entry["comment"] = f"license metadata: {_license(package.license)[:200]}"
        if package.homepage:
            entry["homepage"] = package.homepage
        spdx_packages.append(entry)
        relationships.append({"spdxElementId": root_id, "relationshipType": "DEPENDS_ON",
                              "relatedSpdxElement": package_id})
    return {
        "spdxVersion": SPDX_VERSION,
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{product}-{release}-python-environment",
        "documentNamespace": f"https://maestro-conductor.dev/spdx/{product}/{release}/{digest}",
        "creationInfo": {"created": created, "creators": ["Tool: ig-evidence"]},
        "packages": spdx_packages,
        "relationships": relationships,
    }
