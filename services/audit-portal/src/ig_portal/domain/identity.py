"""Who is asking: a principal built from verified token claims (groups -> role, tenant claim or tenant group)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
TENANT_GROUP_PREFIX = "tenant:"
ROLE_GROUP_PREFIX = "role:"


class Role(StrEnum):
    AUDITOR = "auditor"
    ADMIN = "admin"


class NotAuthorized(Exception):
    """The token is genuine but does not grant access to the portal (no tenant, no role, ambiguous tenant)."""


@dataclass(frozen=True)
class Principal:
    user: str
    tenant: str
    role: Role
    email: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


def principal_from_claims(claims: Mapping[str, object], *, groups_claim: str = "groups",
                          tenant_claim: str = "tenant") -> Principal:
    """Map verified claims to a principal; anything ambiguous is refused rather than guessed."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise NotAuthorized("token has no subject")
    groups = _string_list(claims.get(groups_claim))
    tenant = _tenant(claims.get(tenant_claim), groups)
    roles = {g.removeprefix(ROLE_GROUP_PREFIX) for g in groups if g.startswith(ROLE_GROUP_PREFIX)}
    if Role.ADMIN.value in roles:
        role = Role.ADMIN
    elif Role.AUDITOR.value in roles:
        role = Role.AUDITOR
    else:
        raise NotAuthorized("no portal role (role:auditor or role:admin) among the token's groups")
    email = claims.get("email")
    return Principal(user=subject, tenant=tenant, role=role, email=email if isinstance(email, str) else "")


def _tenant(claimed: object, groups: list[str]) -> str:
    from_groups = {g.removeprefix(TENANT_GROUP_PREFIX) for g in groups if g.startswith(TENANT_GROUP_PREFIX)}
    candidates = {claimed} if isinstance(claimed, str) and claimed else from_groups
    if len(candidates) != 1:
        raise NotAuthorized("the token must name exactly one tenant")
    tenant = next(iter(candidates))
    if not isinstance(tenant, str) or not TENANT_NAME.fullmatch(tenant):
        raise NotAuthorized("the token's tenant is not a valid tenant name")
    return tenant


def _string_list(value: object) -> list[str]:
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []
