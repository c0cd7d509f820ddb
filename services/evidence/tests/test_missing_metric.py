"""The EvidenceMissingArtifact gauge: named by manifest, never by tenant or release; a newer bundle of a release
replaces its older manifest's series, so an amended release stops the alert."""

from __future__ import annotations

from ig_evidence.api.missing_metric import RELEASE_MISSING, MissingEvidenceGauge
from ig_evidence.store.bundles import BundleRow
from prometheus_client import generate_latest

OLD, NEW = "a" * 64, "b" * 64


def row(tenant: str, release: str, manifest: str, missing: list[str]) -> BundleRow:
    return BundleRow(manifest, release, tenant, not missing, missing, "1.0.0", 1)


def exported() -> dict[str, float]:
    return {labels["manifest"]: value for metric in RELEASE_MISSING.collect() for _, labels, value, *_ in
            metric.samples}


def test_the_gauge_names_no_tenant_or_release() -> None:
    MissingEvidenceGauge().report([row("alpha-secret-customer", "v9.9.9-secret", OLD, ["slo-report"])])
    text = generate_latest().decode()
    assert "alpha-secret-customer" not in text and "v9.9.9-secret" not in text
    assert exported()[OLD[:16]] == 1


def test_an_amended_release_drops_its_old_manifest_so_the_alert_resolves() -> None:
    gauge = MissingEvidenceGauge()
    gauge.report([row("alpha", "v1.2.1", OLD, ["slo-report", "dr-log"])])
    gauge.report([row("alpha", "v1.2.1", NEW, [])])
    assert OLD[:16] not in exported()
    assert exported()[NEW[:16]] == 0


def test_a_manifest_another_tenant_still_holds_keeps_its_series() -> None:
    gauge = MissingEvidenceGauge()
    gauge.report([row("alpha", "v1.2.1", OLD, ["dr-log"]), row("beta", "v1.2.1", OLD, ["dr-log"])])
    gauge.report([row("alpha", "v1.2.1", NEW, [])])
    assert exported()[OLD[:16]] == 1  # beta's latest bundle still lacks it
