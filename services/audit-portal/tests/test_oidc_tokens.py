"""Bearer token verification against a JWKS: signature, iss, aud, exp, nbf, iat, skew bound, key rotation.

The provider here is a test double (httpx MockTransport serving discovery and JWKS) so every claim can be bent;
the e2e tests repeat the essential refusals against the real Dex.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from ig_portal.api.oidc import Provider, TokenRejected, cache_max_age, pkce_pair

ISSUER = "https://idp.test/dex"


class FakeIdP:
    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {"k1": rsa.generate_private_key(public_exponent=65537, key_size=2048)}
        self.jwks_fetches = 0
        self.cache_control: str | None = None

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": f"{ISSUER}/keys",
                                             "authorization_endpoint": f"{ISSUER}/auth",
                                             "token_endpoint": f"{ISSUER}/token"})
        if request.url.path.endswith("/keys"):
            self.jwks_fetches += 1
            keys = []
            for kid, key in self.keys.items():
                jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
                keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
            headers = {"Cache-Control": self.cache_control} if self.cache_control else {}
            return httpx.Response(200, json={"keys": keys}, headers=headers)
        return httpx.Response(404)

    def token(self, kid: str = "k1", key: rsa.RSAPrivateKey | None = None, **overrides: Any) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": "audit-api", "sub": "u1", "iat": now, "exp": now + 300,
                  "groups": ["tenant:alpha", "role:auditor"], **overrides}
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, key or self.keys[kid], algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def idp() -> FakeIdP:
    return FakeIdP()


def provider(idp: FakeIdP, refetch: float = 0.0) -> Provider:
    return Provider(issuer=ISSUER, client_id="audit-portal", client_secret="", api_clients=("audit-api",),
                    skew_seconds=30, jwks_refetch_seconds=refetch,
                    http=httpx.AsyncClient(transport=httpx.MockTransport(idp.handler)))


async def test_genuine_token_is_accepted(idp: FakeIdP) -> None:
    claims = await provider(idp).verify(idp.token())
    assert claims["sub"] == "u1"


# Times are offsets from the moment the test runs (not from collection: a long suite would turn "future" into past).
@pytest.mark.parametrize(("overrides", "why"), [
    ({"aud": "other-app"}, "(?i)audience"),
    ({"iss": "https://evil.test/dex"}, "issuer"),
    ({"exp": -31}, "expired"),
    ({"nbf": 120}, "not yet valid"),
    ({"iat": 120}, "future|not yet valid"),
    ({"exp": None}, "exp"),
    ({"aud": None}, "aud"),
    ({"sub": None}, "sub"),
])
async def test_bent_claims_are_refused(idp: FakeIdP, overrides: dict[str, Any], why: str) -> None:
    now = int(time.time())
    claims = {name: now + value if name in ("exp", "nbf", "iat") and isinstance(value, int) else value
              for name, value in overrides.items()}
    with pytest.raises(TokenRejected, match=why):
        await provider(idp).verify(idp.token(**claims))


async def test_skew_within_the_bound_is_tolerated(idp: FakeIdP) -> None:
    await provider(idp).verify(idp.token(exp=int(time.time()) - 10, nbf=int(time.time()) + 10))


async def test_forged_signature_and_alg_none_are_refused(idp: FakeIdP) -> None:
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(TokenRejected, match="Signature"):
        await provider(idp).verify(idp.token(key=forger))
    unsigned = jwt.encode({"iss": ISSUER, "aud": "audit-portal", "sub": "u", "iat": 1, "exp": 2**40}, None,
                          algorithm="none", headers={"kid": "k1"})
    with pytest.raises(TokenRejected, match="algorithm"):
        await provider(idp).verify(unsigned)
    with pytest.raises(TokenRejected, match="malformed"):
        await provider(idp).verify("not.a.jwt")


async def test_rotated_key_is_fetched_once_and_unknown_kids_do_not_hammer_the_idp(idp: FakeIdP) -> None:
    portal = provider(idp, refetch=3600)
    await portal.verify(idp.token())
    assert idp.jwks_fetches == 1
    idp.keys["k2"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # Within the refetch bound a new kid is not looked up again (an attacker cannot make us hammer the IdP)...
    with pytest.raises(TokenRejected, match="unknown key id"):
        await portal.verify(idp.token(kid="k2"))
    assert idp.jwks_fetches == 1
    # ...and after it the rotated key is fetched and accepted.
    rotating = provider(idp, refetch=0)
    await rotating.verify(idp.token(kid="k2"))
    assert idp.jwks_fetches == 2
    idp.keys["k3"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    await rotating.verify(idp.token(kid="k3"))
    assert idp.jwks_fetches == 3
    with pytest.raises(TokenRejected, match="unknown key id"):
        await rotating.verify(idp.token(kid="k9", key=idp.keys["k3"]))


def test_pkce_pair_is_s256() -> None:
    import base64
    import hashlib

    verifier, challenge = pkce_pair()
    assert 43 <= len(verifier) <= 128
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == expected


async def test_a_verified_token_is_remembered_but_still_expires(idp: FakeIdP, monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[str] = []
    real_decode = jwt.decode

    def counting_decode(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return real_decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    portal = Provider(issuer=ISSUER, client_id="audit-portal", client_secret="", api_clients=("audit-api",),
                      skew_seconds=0, jwks_refetch_seconds=0,
                      http=httpx.AsyncClient(transport=httpx.MockTransport(idp.handler)))
    short = idp.token(exp=int(time.time()) + 2)
    first = await portal.verify(short)
    first["sub"] = "tampered by a caller"  # callers get copies: the remembered claims stay as verified
    assert (await portal.verify(short))["sub"] == "u1"
    assert len(decoded) == 1  # the second use skipped signature verification
    # A different token (even of the same user) is verified on its own.
    await portal.verify(idp.token(sub="u1", exp=int(time.time()) + 60))
    assert len(decoded) == 2
    await asyncio.sleep(2.1)
    with pytest.raises(TokenRejected, match="expired"):
        await portal.verify(short)


async def test_login_tokens_with_a_nonce_are_always_fully_verified(idp: FakeIdP) -> None:
    portal = provider(idp)
    token = idp.token(aud="audit-portal", nonce="n1")
    await portal.verify(token, nonce="n1")
    with pytest.raises(TokenRejected, match="nonce"):
        await portal.verify(token, nonce="other")


@pytest.mark.parametrize(("claims", "why"), [
    # The browser sign-in's ID token (Dex: aud = the client that asked, no azp).
    ({"aud": "audit-portal"}, "(?i)audience"),
    # Cross-client: the browser client asked for a token naming the API client too; azp names who asked.
    ({"aud": ["audit-api", "audit-portal"], "azp": "audit-portal"}, "issued to client 'audit-portal'"),
    # Several audiences and no azp: nobody can tell which client holds it.
    ({"aud": ["audit-api", "other-app"]}, "issued to client ''"),
])
async def test_an_id_token_of_the_browser_sign_in_is_no_api_credential(idp: FakeIdP, claims: dict[str, Any],
                                                                       why: str) -> None:
    with pytest.raises(TokenRejected, match=why):
        await provider(idp).verify(idp.token(**claims))


@pytest.mark.parametrize("claims", [{"aud": "audit-api"}, {"aud": ["audit-api"]},
                                    {"aud": ["audit-api", "audit-portal"], "azp": "audit-api"}])
async def test_tokens_of_an_api_client_are_bearer_credentials(idp: FakeIdP, claims: dict[str, Any]) -> None:
    assert (await provider(idp).verify(idp.token(**claims)))["sub"] == "u1"


async def test_an_api_token_does_not_sign_in_to_the_browser(idp: FakeIdP) -> None:
    with pytest.raises(TokenRejected, match=r"(?i)audience"):
        await provider(idp).verify(idp.token(aud="audit-api", nonce="n1"), nonce="n1")


async def test_the_jwks_is_refetched_when_its_max_age_runs_out(idp: FakeIdP) -> None:
    idp.cache_control = "public, max-age=1, must-revalidate"
    portal = provider(idp, refetch=0)
    remembered = idp.token()
    await portal.verify(remembered)
    await portal.verify(idp.token(sub="u2"))
    assert idp.jwks_fetches == 1  # within max-age the keys are reused
    # The provider withdraws k1 (rotation done): once max-age has run out the set is fetched again, and neither a
    # new token of k1 nor the remembered one is accepted any more.
    idp.keys = {"k2": rsa.generate_private_key(public_exponent=65537, key_size=2048)}
    await asyncio.sleep(1.1)
    with pytest.raises(TokenRejected, match="unknown key id"):
        await portal.verify(remembered)
    assert idp.jwks_fetches == 2
    await portal.verify(idp.token(kid="k2"))
    assert idp.jwks_fetches == 2


async def test_a_jwks_max_age_of_zero_does_not_make_every_request_fetch(idp: FakeIdP) -> None:
    idp.cache_control = "no-cache"
    portal = provider(idp, refetch=3600)
    for n in range(5):
        await portal.verify(idp.token(sub=f"u{n}"))
    assert idp.jwks_fetches == 1  # the refetch bound is the floor of the key set's lifetime


def test_cache_control_max_age_parsing() -> None:
    assert cache_max_age("public, max-age=21600, must-revalidate") == 21600
    assert cache_max_age('max-age="30"') == 30
    assert cache_max_age("no-store") == 0
    assert cache_max_age("public") is None and cache_max_age("max-age=soon") is None
