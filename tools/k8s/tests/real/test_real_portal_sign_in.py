"""A user of the dev directory signs in at a region's portal pod through that region's own Dex (pod_infra.py).

The test plays the browser: it asks a portal pod for its home page as the portal's public URL (the chart's default,
the Service's name: ``http://audit-portal.<namespace>.svc.cluster.local:8080``), follows the redirect to the issuer the
region values name (``https://dex.ig-data.svc.cluster.local:5556/dex``), which it reaches at the region's node address
with that name as TLS server name and Host (as test_real_pod_infra.decide does), posts Dex's LDAP login form, and
follows back to the portal's /callback: there the portal POD exchanges the code with its region's Dex through the
Service name, verifying Dex's certificate with the bundle the chart mounted (``oidc.caBundle``), and checks the ID
token against Dex's keys. It must land on the catalog page showing the user and their tenant.

Users (tools/infra/dex/directory.ldif): ``auditor@alpha.example`` / ``alpha-auditor-pw`` in region-a (alpha is
pinned there) and ``auditor@beta.example`` / ``beta-auditor-pw`` in region-b (beta is pinned nowhere). Nothing skips:
a Dex that cannot start fails the package's set-up, and so every test here.
"""

from __future__ import annotations

import html
import re
import ssl
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
import pytest
from ig_infra.components.dex import Dex
from ig_infra.pki import DevCA, ca_directory
from ig_k8s.kube import api_client
from ig_k8s.real_charts import release_pods
from ig_k8s.real_suite import RealSuite
from ig_k8s.suite import REGIONS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

PORTAL_PORT = 8080  # the chart's ports.http
USERS = {"region-a": ("auditor@alpha.example", "alpha-auditor-pw", "alpha"),
         "region-b": ("auditor@beta.example", "beta-auditor-pw", "beta")}
REDIRECTS = (301, 302, 303, 307, 308)


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Browser:
    """Reaches each named origin where it is served here: requests keep the name's Host header (and, over TLS, its
    server name), follow redirects by hand and keep each origin's cookies, as a browser would."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[httpx.Client, str]] = {}
        self.visited: list[str] = []

    def route(self, name: str, where: str, verify: ssl.SSLContext | bool = True) -> None:
        host = urlsplit(name).hostname or ""
        self.routes[origin(name)] = (httpx.Client(base_url=where, verify=verify, timeout=30,
                                                  headers={"Host": urlsplit(name).netloc}), host)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        client, host = self.routes[origin(url)]  # any other origin: not where this sign-in may lead
        parts = urlsplit(url)
        self.visited.append(url)
        return client.request(method, urlunsplit(("", "", parts.path, parts.query, "")),
                              extensions={"sni_hostname": host}, **kwargs)

    def follow(self, method: str, url: str, **kwargs: Any) -> tuple[str, httpx.Response]:
        for _ in range(10):
            response = self.request(method, url, **kwargs)
            if response.status_code not in REDIRECTS:
                return url, response
            url, method, kwargs = urljoin(url, response.headers["location"]), "GET", {}
        raise AssertionError(f"more than 10 redirects: {self.visited}")

    def close(self) -> None:
        for client, _ in self.routes.values():
            client.close()


def public_url(suite: RealSuite, region: str) -> str:
    """IG_PUBLIC_URL as the installed release gave it to its pods."""
    from kubernetes import client

    core = client.CoreV1Api(api_client(suite.nodes[region].cluster.kubeconfig))
    settings = core.read_namespaced_config_map("audit-portal-settings", suite.namespace).data or {}
    return str(settings["IG_PUBLIC_URL"])


def suite_ca(suite: RealSuite) -> ssl.SSLContext:
    ca = DevCA.load_or_create(ca_directory(suite.paths.cache))
    return ssl.create_default_context(cadata=ca.cert_pem.decode())


def portal_pod(suite: RealSuite, region: str) -> str:
    pod = next(p for p in release_pods(suite.nodes[region], "audit-portal", suite.namespace) if p["ready"])
    return f"http://{pod['ip']}:{PORTAL_PORT}"


def browser_for(suite: RealSuite, region: str, dex: Dex) -> Browser:
    browser = Browser()
    browser.route(public_url(suite, region), portal_pod(suite, region))
    browser.route(dex.issuer, f"https://{dex.host}:{dex.port}", suite_ca(suite))
    return browser


def id_token(suite: RealSuite, dex: Dex, user: str, password: str) -> str:
    """An API client's token from ``dex`` (password grant, client audit-api), as a script takes one."""
    browser = Browser()
    browser.route(dex.issuer, f"https://{dex.host}:{dex.port}", suite_ca(suite))
    try:
        reply = browser.request("POST", f"{dex.issuer}/token", data={
            "grant_type": "password", "username": user, "password": password,
            "scope": "openid email profile groups", "client_id": "audit-api"})
    finally:
        browser.close()
    assert reply.status_code == 200, reply.text
    return str(reply.json()["id_token"])


@pytest.mark.parametrize("region", REGIONS)
def test_a_directory_user_signs_in_at_a_portal_pod_through_its_regions_dex(suite: RealSuite, region: str) -> None:
    user, password, tenant = USERS[region]
    dex = suite.infra[region].dex
    portal = public_url(suite, region)
    browser = browser_for(suite, region, dex)
    try:
        url, form = browser.follow("GET", f"{portal}/")
        assert form.status_code == 200 and url.startswith(f"{dex.issuer}/auth/ldap"), (url, form.text[:500])
        action = re.search(r'<form[^>]*action="([^"]+)"', form.text)
        assert action, form.text[:2000]
        url, page = browser.follow("POST", urljoin(url, html.unescape(action.group(1))),
                                   data={"login": user, "password": password})
    finally:
        browser.close()
    callbacks = [u for u in browser.visited if u.startswith(f"{portal}/callback?code=")]
    assert len(callbacks) == 1, browser.visited  # Dex sent the browser back with a code, exactly once
    assert (url, page.status_code) == (f"{portal}/", 200), (url, page.status_code, page.text[:1000])
    who = re.search(r'id="who">(.*?)</span>', page.text)
    assert who and user in who.group(1) and f"tenant <b>{tenant}</b>" in who.group(1), page.text[:2000]


def test_a_regions_portal_refuses_tokens_of_the_other_regions_dex(suite: RealSuite) -> None:
    """Both issuers are the same URL, each cluster's name leading to its own Dex with its own keys: a token of one
    region's Dex is refused by the other region's portal (its keys are unknown there), its own region's accepted.
    beta, pinned nowhere, may use both portals."""
    user, password, _ = USERS["region-b"]
    tokens = {region: id_token(suite, suite.infra[region].dex, user, password) for region in REGIONS}
    for region in REGIONS:
        portal = public_url(suite, region)
        with httpx.Client(base_url=portal_pod(suite, region), timeout=30,
                          headers={"Host": urlsplit(portal).netloc}) as client:
            answers = {issued_by: client.get("/audit/releases", headers={"Authorization": f"Bearer {token}"})
                       for issued_by, token in tokens.items()}
        own = answers[region]
        assert own.status_code == 200 and own.json()["tenant"] == "beta", (region, own.status_code, own.text)
        other = next(r for r in REGIONS if r != region)
        assert answers[other].status_code == 401, (region, answers[other].status_code, answers[other].text)

