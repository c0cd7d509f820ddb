"""The audit-portal chart's sign-in settings: the public URL (the redirect URI an OIDC provider must register is it +
/callback) and the issuer's CA bundle (IG_OIDC_CA_FILE, mounted from a ConfigMap). Pure renders (helm template)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ig_infra.pki import DevCA
from ig_infra.process import InfraError
from ig_k8s.helm import Helm, manifests
from ig_k8s.suite import CHARTS_DIR, REGIONS

Render = Callable[..., list[dict[str, Any]]]
CHART = CHARTS_DIR / "audit-portal"


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def settings(objects: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = named(objects, "ConfigMap", "audit-portal-settings")["data"]
    return data


def pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    template: dict[str, Any] = named(objects, "Deployment", "audit-portal")["spec"]["template"]
    return template


def with_file(helm: Helm, namespace: str, *args: str) -> list[dict[str, Any]]:
    """A render with arguments ``helm.template`` does not take (--set-file)."""
    helm.dependency_build(CHART)
    return manifests(helm.run("template", "audit-portal", str(CHART), "--namespace", namespace, "--kube-version",
                              "1.37.0", "-f", str(CHARTS_DIR / "values-region-a.yaml"), *args))


@pytest.mark.parametrize("region", REGIONS)
def test_the_public_url_defaults_to_the_services_own_name_in_the_release_namespace(
        render: Render, helm: Helm, region: str) -> None:
    assert settings(render("audit-portal", region))["IG_PUBLIC_URL"] == "http://audit-portal.ig.svc.cluster.local:8080"
    assert settings(with_file(helm, "ig-real"))["IG_PUBLIC_URL"] == \
        "http://audit-portal.ig-real.svc.cluster.local:8080"
    given = ("publicUrl=https://audit.example.com",)
    assert settings(render("audit-portal", region, given))["IG_PUBLIC_URL"] == "https://audit.example.com"


@pytest.mark.parametrize("url", ["https://audit.example.com/portal", "audit.example.com", "ftp://audit.example.com"])
def test_a_public_url_that_is_not_scheme_host_port_fails_the_render(helm: Helm, url: str) -> None:
    with pytest.raises(InfraError, match=r"publicUrl: .* is not scheme://host"):
        helm.template(CHART, "region-a", release="audit-portal", sets=(f"publicUrl={url}",))


def test_the_issuers_ca_bundle_is_mounted_read_only_and_named_by_ig_oidc_ca_file(helm: Helm, tmp_path: Path) -> None:
    ca = DevCA.load_or_create(tmp_path / "ca")
    objects = with_file(helm, "ig", "--set-file", f"oidc.caBundle.pem={ca.directory / 'ca.crt'}")
    assert named(objects, "ConfigMap", "audit-portal-oidc-ca")["data"] == {"ca.crt": ca.cert_pem.decode()}
    assert settings(objects)["IG_OIDC_CA_FILE"] == "/etc/ig/oidc-ca/ca.crt"
    template = pod(objects)
    volume = next(v for v in template["spec"]["volumes"] if v["name"] == "oidc-ca")
    assert volume["configMap"] == {"name": "audit-portal-oidc-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    container = next(c for c in template["spec"]["containers"] if c["name"] == "audit-portal")
    assert {"name": "oidc-ca", "mountPath": "/etc/ig/oidc-ca", "readOnly": True} in container["volumeMounts"]
    # The portal reads the bundle at start-up: another bundle rolls the pods.
    assert template["metadata"]["annotations"]["checksum/oidc-ca"] == \
        hashlib.sha256(ca.cert_pem).hexdigest()


def test_an_existing_config_map_holds_the_bundle_instead_and_none_means_the_system_roots(render: Render) -> None:
    objects = render("audit-portal", "region-b", ("oidc.caBundle.existingConfigMap=corporate-roots",
                                                  "oidc.caBundle.key=roots.pem"))
    assert settings(objects)["IG_OIDC_CA_FILE"] == "/etc/ig/oidc-ca/roots.pem"
    volume = next(v for v in pod(objects)["spec"]["volumes"] if v["name"] == "oidc-ca")
    assert volume["configMap"]["name"] == "corporate-roots"
    assert not [o for o in objects if o["metadata"]["name"] == "audit-portal-oidc-ca"]
    plain = render("audit-portal", "region-b")
    assert "IG_OIDC_CA_FILE" not in settings(plain)
    assert not [v for v in pod(plain)["spec"]["volumes"] if v["name"] == "oidc-ca"]


def test_a_bundle_without_a_certificate_fails_the_render(helm: Helm) -> None:
    with pytest.raises(InfraError, match=r"oidc\.caBundle\.pem holds no PEM certificate"):
        helm.template(CHART, "region-a", release="audit-portal", sets=("oidc.caBundle.pem=not-a-certificate",))
