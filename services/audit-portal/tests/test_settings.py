"""Bad edge settings stop start-up, naming the setting."""

from __future__ import annotations

import pytest
from ig_portal.settings import Settings
from pydantic import ValidationError

REQUIRED = {"database_url": "postgresql://portal@127.0.0.1/x", "kafka_bootstrap": "127.0.0.1:9092"}


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
