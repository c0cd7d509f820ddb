"""The gauge the EvidenceMissingArtifact alert reads, without tenant or release names in it.

/metrics answers anyone who can reach the health port, so its labels must not carry a tenant's or a release's name
(the security review of 2026-12-05). Each release's latest bundle is named by the first 16 hex digits of its
manifest SHA-256 instead: enough to find it (the portal's release page and ListReleases show the hash; the service
logs `release_missing_artifacts` with the release and tenant, for those who may read its logs), nothing to read a
customer off. A release's earlier manifests leave the gauge when a newer bundle replaces them, so an amended release
stops the alert.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import structlog
from prometheus_client import Gauge

from ig_evidence.store.bundles import BundleRow

log = structlog.get_logger(__name__)
MANIFEST_LABEL_HEX = 16
RELEASE_MISSING = Gauge("ig_evidence_release_missing_artifacts",
                        "Required evidence items missing from a release's latest bundle, by the bundle's manifest "
                        "(first 16 hex digits of its SHA-256)", ["manifest"])


class MissingEvidenceGauge:
    def __init__(self) -> None:
        self._exported: dict[tuple[str, str], str] = {}  # (tenant, release) -> the label of its latest bundle

    def report(self, rows: Iterable[BundleRow]) -> None:
        for row in rows:
            label = row.manifest_sha256[:MANIFEST_LABEL_HEX]
            previous = self._exported.get((row.tenant, row.release))
            self._exported[(row.tenant, row.release)] = label
            # Two tenants may hold the same manifest: its series stays while any release's latest bundle is it.
            if previous is not None and previous != label and previous not in self._exported.values():
                with contextlib.suppress(KeyError):
                    RELEASE_MISSING.remove(previous)
            RELEASE_MISSING.labels(label).set(len(row.missing))
            if row.missing:
                log.warning("release_missing_artifacts", release=row.release, tenant=row.tenant, manifest=label,
                            missing=row.missing)
