"""The end user the portal acts for, as the evidence service must see it: a short-lived token signed with the
portal's own workload key, sent with every call made for that user (the callee takes the tenant from it)."""

from __future__ import annotations

import time

from ig_common.authz import USER_TOKEN_METADATA, ForwardedUser, sign_user_token
from ig_common.spiffe import SpiffeId
from ig_common.tls import WorkloadCertificate

from ig_portal.domain.identity import Principal

TOKEN_SECONDS = 30
# A token is reused while it has at least this long to live, so a page's burst of calls signs once.
REUSE_MARGIN_SECONDS = 10


class UserForwarding:
    def __init__(self, certificate: WorkloadCertificate, audience: SpiffeId, size: int = 4096) -> None:
        self._certificate = certificate
        self._audience = audience
        self._size = size
        self._tokens: dict[Principal, tuple[str, float]] = {}

    def metadata(self, principal: Principal) -> tuple[tuple[str, str], ...]:
        now = time.time()
        found = self._tokens.get(principal)
        if found is None or found[1] - now < REUSE_MARGIN_SECONDS:
            material = self._certificate.current()
            token = sign_user_token(material.key_pem, material.spiffe_id, self._audience,
                                    ForwardedUser(principal.user, principal.tenant, (principal.role.value,)),
                                    lifetime=TOKEN_SECONDS, now=now)
            if len(self._tokens) >= self._size:
                self._tokens.clear()
            found = self._tokens[principal] = (token, now + TOKEN_SECONDS)
        return ((USER_TOKEN_METADATA, found[0]),)
