"""What the charts need to really run (issue #22 item 3), checked on the rendered manifests: every path a service
writes is a volume (the root filesystem is read-only), the evidence blobs live on one claim every replica mounts,
the portal's replicas share one link key and name real addresses, and the migration orchestrator gets an API
token and a Role only with its Service-selector switch on. Missing values fail at render time with a message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml
from ig_infra.paths import REPO_ROOT
from ig_infra.process import InfraError
from ig_k8s.helm import Helm
from ig_k8s.suite import CHARTS_DIR, REGIONS, SERVICES

Render = Callable[..., list[dict[str, Any]]]

# The settings that name a directory or file the service writes (the rest of its paths are read-only mounts).
WRITTEN_PATHS = {"evidence": ["IG_BLOB_STORE_PATH"], "migration": ["IG_MIGRATION_ARTIFACTS_DIR"]}


def kind(objects: list[dict[str, Any]], wanted: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == wanted]


def named(objects: list[dict[str, Any]], wanted: str, name: str) -> dict[str, Any]:
    [found] = [o for o in kind(objects, wanted) if o["metadata"]["name"] == name]
    return found


def pod_spec(objects: list[dict[str, Any]], release: str) -> dict[str, Any]:
    spec: dict[str, Any] = named(objects, "Deployment", release)["spec"]["template"]["spec"]
    return spec


def settings(objects: list[dict[str, Any]], release: str) -> dict[str, str]:
    data: dict[str, str] = named(objects, "ConfigMap", f"{release}-settings")["data"]
    return data


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("chart", [s.name for s in SERVICES])
def test_every_written_path_is_a_writable_volume_on_a_read_only_root(render: Render, chart: str,
                                                                     region: str) -> None:
    objects = render(chart, region)
    pod = pod_spec(objects, chart)
    volumes = {v["name"]: v for v in pod["volumes"]}
    for container in pod["containers"]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, container["name"]
    main = next(c for c in pod["containers"] if c["name"] == chart)
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    for key in ["TMPDIR-/tmp", *WRITTEN_PATHS.get(chart, [])]:
        path = "/tmp" if key.startswith("TMPDIR") else settings(objects, chart)[key]
        mount = mounts.get(path)
        assert mount is not None, f"{chart}: {key}={path} is on the read-only root filesystem"
        assert not mount.get("readOnly", False), f"{chart}: {path} is mounted read-only"
        volume = volumes[mount["name"]]
        assert "emptyDir" in volume or "persistentVolumeClaim" in volume, f"{chart}: {path} on {volume}"


def test_evidence_blobs_are_on_one_claim_that_every_replica_mounts(render: Render) -> None:
    objects = render("evidence", "region-a")
    [claim] = kind(objects, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    pod = pod_spec(objects, "evidence")
    blobs = next(v for v in pod["volumes"] if v["name"] == "blobs")
    assert blobs["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    # One pod template for every replica: they all mount that one claim (not a per-pod volumeClaimTemplate).
    assert named(objects, "HorizontalPodAutoscaler", "evidence")["spec"]["minReplicas"] >= 2


@pytest.mark.parametrize(("sets", "message"), [
    (("persistence.accessModes={ReadWriteOnce}",), r"cannot follow replicas onto other nodes"),
    (("persistence.enabled=false",), r"lost on restart and unseen by the other replicas"),
    (("persistence.enabled=false", "autoscaling.enabled=false", "replicaCount=3"), r"lost on restart"),
])
def test_evidence_refuses_blobs_its_replicas_cannot_share(helm: Helm, sets: tuple[str, ...], message: str) -> None:
    with pytest.raises(InfraError, match=message):
        helm.template(CHARTS_DIR / "evidence", "region-a", release="evidence", sets=sets)


def test_a_single_evidence_replica_may_use_a_read_write_once_claim(render: Render) -> None:
    objects = render("evidence", "region-a", ("persistence.accessModes={ReadWriteOnce}", "autoscaling.enabled=false",
                                              "replicaCount=1"))
    assert kind(objects, "PersistentVolumeClaim")[0]["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_portal_replicas_share_one_link_key_from_a_secret(render: Render) -> None:
    objects = render("audit-portal", "region-a")
    main = next(c for c in pod_spec(objects, "audit-portal")["containers"] if c["name"] == "audit-portal")
    link = next(e for e in main["env"] if e["name"] == "IG_LINK_SECRET")["valueFrom"]["secretKeyRef"]
    secret = named(objects, "Secret", link["name"])
    assert len(secret["data"][link["key"]]) >= 48  # base64 of 48 random characters
    assert "IG_LINK_SECRET" not in settings(objects, "audit-portal")  # never in a ConfigMap

    given = render("audit-portal", "region-a", ("linkSecret.existingSecret=portal-links", "linkSecret.key=hmac"))
    main = next(c for c in pod_spec(given, "audit-portal")["containers"] if c["name"] == "audit-portal")
    link = next(e for e in main["env"] if e["name"] == "IG_LINK_SECRET")["valueFrom"]["secretKeyRef"]
    assert link == {"name": "portal-links", "key": "hmac"}
    assert [s["metadata"]["name"] for s in kind(given, "Secret")] == ["audit-portal-database"]


@pytest.mark.parametrize("region", REGIONS)
def test_portal_names_the_evidence_service_and_the_issuer_it_uses(render: Render, region: str) -> None:
    values = settings(render("audit-portal", region), "audit-portal")
    assert values["IG_EVIDENCE_TARGET"] == "evidence.ig.svc.cluster.local:50052"
    assert values["IG_OIDC_ISSUER"] == "https://dex.ig-data.svc.cluster.local:5556/dex"
    assert "127.0.0.1" not in values["IG_EVIDENCE_TARGET"] + values["IG_OIDC_ISSUER"]


def test_portal_feeds_its_access_log_from_the_tenants_the_table_lets_it_read(render: Render) -> None:
    """Unset, the feed reads nothing (the access log would miss every other portal replica's and region's entries):
    the chart names the table's `ledger_readers` row for the portal's identity, and `settings` can narrow it."""
    assert settings(render("audit-portal", "region-a"), "audit-portal")["IG_ACCESS_LOG_FEED_TENANTS"] == \
        "alpha,beta,gamma"
    narrowed = render("audit-portal", "region-a", ("settings.IG_ACCESS_LOG_FEED_TENANTS=beta",))
    assert settings(narrowed, "audit-portal")["IG_ACCESS_LOG_FEED_TENANTS"] == "beta"
    other = render("audit-portal", "region-a", ("serviceAccount.name=evidence",))
    assert "IG_ACCESS_LOG_FEED_TENANTS" not in settings(other, "audit-portal")


@pytest.mark.parametrize(("sets", "message"), [
    (("global.oidc.issuer=",), r"oidc\.issuer \(or global\.oidc\.issuer\) is required"),
    (("global.oidc.issuer=dex:5556",), r"is not an http\(s\):// URL"),
])
def test_portal_without_an_issuer_fails_at_render_time(helm: Helm, sets: tuple[str, ...], message: str) -> None:
    with pytest.raises(InfraError, match=message):
        helm.template(CHARTS_DIR / "audit-portal", "region-a", release="audit-portal", sets=sets)


def test_migration_gets_no_api_token_or_role_unless_its_switch_is_on(render: Render) -> None:
    off = render("migration", "region-a")
    assert kind(off, "Role") == [] and kind(off, "RoleBinding") == []
    assert pod_spec(off, "migration")["automountServiceAccountToken"] is False
    assert named(off, "ServiceAccount", "migration")["automountServiceAccountToken"] is False
    assert "IG_KUBERNETES_SWITCH" not in settings(off, "migration")

    on = render("migration", "region-a", ("kubernetesSwitch.enabled=true",))
    assert len(kind(on, "Role")) == 1 and len(kind(on, "RoleBinding")) == 1
    assert pod_spec(on, "migration")["automountServiceAccountToken"] is True
    assert settings(on, "migration")["IG_KUBERNETES_SWITCH"] == "true"


def test_the_release_set_turns_the_migration_switch_on() -> None:
    from ig_k8s.releases import load_release_set

    _, releases = load_release_set()
    assert next(r for r in releases if r.name == "migration").sets == ("kubernetesSwitch.enabled=true",)


@pytest.mark.parametrize(("chart", "url", "method"), [
    ("burn", "http://burn.ig.svc.cluster.local:8013/ofrep/v1/evaluate/flags", "POST"),
    ("audit-portal", "http://audit-portal.ig.svc.cluster.local:8085/healthz", "GET"),
])
def test_helm_test_hook_calls_the_service_through_its_service_dns_name(render: Render, chart: str, url: str,
                                                                        method: str) -> None:
    [hook] = [p for p in kind(render(chart, "region-a"), "Pod")
              if p["metadata"]["annotations"].get("helm.sh/hook") == "test"]
    assert hook["spec"]["restartPolicy"] == "Never"
    env = {e["name"]: e["value"] for e in hook["spec"]["containers"][0]["env"]}
    assert (env["IG_TEST_URL"], env["IG_TEST_METHOD"]) == (url, method)
    assert hook["spec"]["nodeSelector"] == {"topology.kubernetes.io/region": "region-a"}
    assert hook["spec"]["automountServiceAccountToken"] is False
    assert "IG_TEST_GRPC_METHOD" not in env and all(v["name"] != "tls" for v in hook["spec"]["volumes"])


@pytest.mark.parametrize(("chart", "target", "method", "code"), [
    ("policy", "policy.ig.svc.cluster.local:50051", "/ig.policy.v1.PolicyService/Decide", "OK"),
    ("evidence", "evidence.ig.svc.cluster.local:50052", "/ig.evidence.v1.EvidenceService/ListReleases", "OK"),
    ("migration", "migration.ig.svc.cluster.local:50054", "/ig.migration.v1.MigrationService/Status", "NOT_FOUND"),
])
def test_a_grpc_hook_calls_its_method_over_mtls_as_the_helm_test_identity(render: Render, chart: str, target: str,
                                                                         method: str, code: str) -> None:
    objects = render(chart, "region-b")
    [hook] = [p for p in kind(objects, "Pod") if p["metadata"]["annotations"].get("helm.sh/hook") == "test"]
    env = {e["name"]: e["value"] for e in hook["spec"]["containers"][0]["env"]}
    assert (env["IG_TEST_URL"], env["IG_TEST_GRPC_METHOD"], env["IG_TEST_GRPC_CODE"]) == (target, method, code)
    assert hook["metadata"]["annotations"]["ig.maestro/identity"] == "helm-test"
    [tls] = [v for v in hook["spec"]["volumes"] if v["name"] == "tls"]
    # its own certificate, not the service's: the table grants helm-test one read-only call (grpc_methods_test.rego)
    assert tls["secret"]["secretName"] == f"{chart}-helm-test-tls"
    assert "@region" not in env["IG_TEST_BODY"] and ("region-b" in env["IG_TEST_BODY"]) == (chart == "policy")
    identity = yaml.safe_load((REPO_ROOT / "policies" / "authz" / "grpc-methods.yaml").read_text())
    assert "helm-test" in identity["methods"][method]


def test_cert_manager_issues_the_grpc_hooks_client_certificate(render: Render) -> None:
    objects = render("policy", "region-a", ("tls.certManager.issuerRef.name=ig-ca",))
    [hook] = [c for c in kind(objects, "Certificate") if c["metadata"]["name"] == "policy-helm-test"]
    assert hook["spec"]["secretName"] == "policy-helm-test-tls" and hook["spec"]["commonName"] == "helm-test"
    assert hook["spec"]["uris"] == ["spiffe://maestro.local/ns/ig/sa/helm-test"]
    assert hook["spec"]["usages"] == ["digital signature", "client auth"] and "dnsNames" not in hook["spec"]


def test_a_hook_switched_off_renders_no_test_pod(render: Render) -> None:
    assert kind(render("audit-portal", "region-a", ("helmTest.enabled=false",)), "Pod") == []

