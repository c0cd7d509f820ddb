"""Bad edge settings stop start-up, naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from ig_portal.settings import Settings
from pydantic import ValidationError

REPO = Path(__file__).resolve().parents[3]
REQUIRED = {"database_url": "postgresql://portal@127.0.0.1/x", "kafka_bootstrap": "127.0.0.1:9092",
            "tenant_residency_file": str(REPO / "policies" / "rego" / "ig" / "config" / "data.json")}


def test_the_sign_in_client_cannot_be_an_api_client() -> None:
    with pytest.raises(ValidationError, match="IG_OIDC_API_CLIENTS must not name the sign-in client 'audit-portal'"):
        Settings(**REQUIRED, oidc_api_clients="audit-api,audit-portal")


@pytest.mark.parametrize("value", ["*", "127.0.0.1;rm", "proxy.example"])
def test_trusted_proxies_are_addresses_or_networks_never_everyone(value: str) -> None:
    with pytest.raises(ValidationError, match="forwarded_allow_ips"):
        Settings(**REQUIRED, forwarded_allow_ips=value)


def test_the_defaults_trust_no_proxy_serve_no_docs_and_accept_only_the_api_client() -> None:
    settings = Settings(**REQUIRED)
    assert settings.forwarded_allow_ips == "" and not settings.docs_enabled
    assert settings.api_clients == ("audit-api",)
    assert Settings(**REQUIRED, forwarded_allow_ips="10.0.0.0/8, 192.168.1.7").forwarded_allow_ips


@pytest.mark.parametrize(("setting", "value", "named"), [
    ("evidence_contracts", "/nonexistent/contract.yaml", "evidence_contracts"),
    ("evidence_contracts", str(REPO / "pyproject.toml"), "evidence_contracts"),  # not YAML
    ("evidence_contracts", str(REPO / "policies" / "authz" / "grpc-methods.yaml"), "evidence_contracts"),
    ("witness_keys", "witness+00+notbase64!", "witness_keys"),
    ("ledger_verifier_key", "ledger+1234+AAAA", "ledger_verifier_key"),
])
def test_bad_verification_settings_stop_start_up_naming_them(setting: str, value: str, named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        Settings(**REQUIRED, **{setting: value})


def test_the_repository_contract_and_real_keys_are_accepted() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from ig_evidence.domain import note
    from ig_evidence.domain.cosignature import Cosigner

    contract = REPO / "policies" / "evidence" / "release-contract.v1.yaml"
    witness = Cosigner("witness.example/a", Ed25519PrivateKey.generate().public_key())
    settings = Settings(**REQUIRED, evidence_contracts=str(contract), witness_keys=witness.verifier_key,
                        ledger_verifier_key=note.verifier_key("log.example", Ed25519PrivateKey.generate().public_key()))
    assert settings.contract_paths == (contract,) and [w.name for w in settings.witnesses] == ["witness.example/a"]


def test_the_feed_reads_only_the_tenants_this_region_serves_and_refuses_a_malformed_list() -> None:
    named = "alpha,beta,gamma"  # data.json: alpha pinned to region-a, gamma to region-b, beta global
    assert Settings(**REQUIRED, region="region-a", access_log_feed_tenants=named).feed_tenants == ("alpha", "beta")
    assert Settings(**REQUIRED, region="region-b", access_log_feed_tenants=named).feed_tenants == ("beta", "gamma")
    assert Settings(**REQUIRED).feed_tenants == ()
    for bad in ("alpha,", "Alpha", "alpha beta", "*"):
        with pytest.raises(ValidationError, match="access_log_feed_tenants"):
            Settings(**REQUIRED, access_log_feed_tenants=bad)


def test_a_missing_or_empty_issuer_ca_bundle_stops_start_up_naming_the_setting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from ig_common.settings import SettingsError, load_settings

    for name, value in REQUIRED.items():
        monkeypatch.setenv(f"IG_{name.upper()}", value)
    (tmp_path / "not-pem.crt").write_text("not a certificate\n")
    for bundle in (tmp_path / "missing.crt", tmp_path / "not-pem.crt", tmp_path):
        monkeypatch.setenv("IG_OIDC_CA_FILE", str(bundle))
        with pytest.raises(SettingsError):
            load_settings(Settings)
        assert f"invalid setting IG_OIDC_CA_FILE: Value error, {bundle}" in capsys.readouterr().err


def test_the_issuer_is_trusted_through_the_ca_bundle_and_only_it(tmp_path: Path) -> None:
    """A client built from IG_OIDC_CA_FILE reaches an issuer whose certificate that CA issued (host name checked);
    without the setting (system roots) or with another CA's bundle it is refused."""
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import httpx
    from ig_infra.pki import DevCA

    ca, other = DevCA.load_or_create(tmp_path / "ca"), DevCA.load_or_create(tmp_path / "other-ca")
    served = ca.issue("dex", tmp_path / "dex", dns_names=("localhost",), ip_addresses=())

    class Discovery(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"issuer": "https://localhost/dex"}')

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Discovery)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(served.cert, served.key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://localhost:{server.server_address[1]}/dex/.well-known/openid-configuration"
    try:
        trusted = Settings(**REQUIRED, oidc_ca_file=ca.directory / "ca.crt").oidc_verify()
        assert httpx.get(url, verify=trusted).json()["issuer"] == "https://localhost/dex"
        for refused in (Settings(**REQUIRED).oidc_verify(),
                        Settings(**REQUIRED, oidc_ca_file=other.directory / "ca.crt").oidc_verify()):
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                httpx.get(url, verify=refused)
        # The host name is checked too: the certificate names localhost, not the address.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(url.replace("localhost", "127.0.0.1"), verify=trusted)
    finally:
        server.shutdown()
