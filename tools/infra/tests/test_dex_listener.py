"""The Dex component serves `make up`'s Dex unchanged without keywords, and with a listener, issuer, certificate and
redirect URIs of someone else's network (each Kubernetes region's, tools/k8s pod_infra.py) that Dex instead. The last
test runs a real Dex over TLS with a cluster issuer on free loopback ports (never the shared one)."""

from __future__ import annotations

import shutil
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from ig_infra.components import Dex
from ig_infra.paths import Paths
from ig_infra.pki import DevCA
from ig_infra.process import free_port

ISSUER = "https://dex.ig-data.svc.cluster.local:5556/dex"
REDIRECT = "http://audit-portal.ig.svc.cluster.local:8080/callback"


def clients(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {client["id"]: client for client in config["staticClients"]}


def test_without_keywords_it_is_make_ups_dex(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IG_DEX_PORT", "15556")
    monkeypatch.setenv("IG_DEX_LDAP_PORT", "15389")
    dex = Dex(Paths(cache=tmp_path / "cache", run=tmp_path / "run"))
    text = dex.rendered_config()
    assert text.startswith("# Dex for local runs and tests")  # the tree's file, comments and all
    config = yaml.safe_load(text)
    assert dex.issuer == config["issuer"] == "http://127.0.0.1:15556/dex"
    assert config["web"] == {"http": "127.0.0.1:15556"}
    assert config["connectors"][0]["config"]["host"] == "127.0.0.1:15389"
    assert "redirectURIs" not in clients(config)["audit-portal"]  # any http://localhost:<port> callback


def test_with_a_listener_issuer_and_certificate_it_serves_https_and_accepts_only_the_portals_redirect(
        tmp_path: Path) -> None:
    tls = DevCA.load_or_create(tmp_path / "ca").issue("dex", tmp_path / "tls", ip_addresses=("10.250.1.1",))
    dex = Dex(Paths(cache=tmp_path / "cache", run=tmp_path / "run"), host="10.250.1.1", port=25556, ldap_port=25389,
              telemetry_port=25558, issuer=ISSUER, tls=tls, redirect_uris=(REDIRECT,))
    config = yaml.safe_load(dex.rendered_config())
    assert config["issuer"] == dex.issuer == ISSUER
    assert config["web"] == {"https": "10.250.1.1:25556", "tlsCert": str(tls.cert), "tlsKey": str(tls.key)}
    assert dex.local_url == "https://10.250.1.1:25556/dex"
    # Its directory stays on loopback, whatever address Dex serves on.
    assert config["connectors"][0]["config"]["host"] == "127.0.0.1:25389"
    assert clients(config)["audit-portal"]["redirectURIs"] == [REDIRECT]
    assert clients(config)["other-app"]["redirectURIs"] == ["http://localhost:9/callback"]


@pytest.fixture
def tls_dex() -> Iterator[tuple[Dex, DevCA]]:
    shared = Paths.from_environment()
    run = Path(tempfile.mkdtemp(prefix="ig-dex-tls-", dir="/var/tmp"))
    ca = DevCA.load_or_create(run / "ca")
    tls = ca.issue("dex", run / "tls", dns_names=("dex.ig-data.svc.cluster.local",), ip_addresses=("127.0.0.1",))
    dex = Dex(Paths(cache=shared.cache, run=run), port=free_port(), ldap_port=free_port(),
              telemetry_port=free_port(), issuer=ISSUER, tls=tls, redirect_uris=(REDIRECT,))
    dex.install()
    try:
        yield dex, ca
    finally:
        dex.stop()
        shutil.rmtree(run, ignore_errors=True)


@pytest.mark.integration
def test_a_dex_with_a_cluster_issuer_serves_it_over_tls_and_signs_in_its_directorys_users(
        tls_dex: tuple[Dex, DevCA]) -> None:
    dex, ca = tls_dex
    dex.start()
    assert dex.healthy()
    base = f"https://127.0.0.1:{dex.port}/dex"
    # The certificate names the issuer's host: reached at the address with that name as SNI, as a pod's client is.
    with httpx.Client(verify=ssl.create_default_context(cafile=ca.directory / "ca.crt"), timeout=10) as client:
        named = {"sni_hostname": "dex.ig-data.svc.cluster.local"}
        discovery = client.get(f"{base}/.well-known/openid-configuration", extensions=named).json()
        assert discovery["issuer"] == ISSUER
        assert discovery["token_endpoint"] == f"{ISSUER}/token"
        token = client.post(f"{base}/token", extensions=named, data={
            "grant_type": "password", "username": "auditor@alpha.example", "password": "alpha-auditor-pw",
            "scope": "openid email groups", "client_id": "audit-api"})
        assert token.status_code == 200, token.text
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{base}/.well-known/openid-configuration")  # the system roots do not know the suite's CA
