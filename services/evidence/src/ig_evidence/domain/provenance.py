"""in-toto Statement v1 carrying SLSA provenance v1 for the release's built artifacts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ig_evidence.domain.manifest import ArtifactRecord

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://maestro-conductor.dev/ig-evidence/build/v1"


def provenance_statement(*, release: str, subjects: Sequence[ArtifactRecord], builder_id: str, started_on: str,
                         source: Mapping[str, str], contract_version: str) -> dict[str, Any]:
    """Subjects are the artifacts; resolvedDependencies names the source revision they were built from."""
    dependencies = [{"uri": source["uri"], "digest": {"gitCommit": source["commit"]}}] if source.get("commit") else []
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": s.name, "digest": {"sha256": s.sha256}} for s in sorted(subjects, key=lambda s: s.name)],
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
