"""Server-side sessions and pending logins in the portal schema."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from ig_portal.domain.identity import Principal, Role


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class PendingLogin:
    code_verifier: str
    nonce: str
    return_to: str


class SessionStore:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.schema = schema

    async def create(self, token: str, principal: Principal, csrf_token: str, lifetime: timedelta) -> None:
        await self.pool.execute(
            f"""INSERT INTO {self.schema}.sessions (token_sha256, subject, tenant, role, email, csrf_token, expires_at)
                VALUES ($1, $2, $3, $4, $5, $6, now() + $7::interval)""",
            token_digest(token), principal.user, principal.tenant, principal.role.value, principal.email,
            csrf_token, lifetime)

    async def find(self, token: str) -> Session | None:
        row = await self.pool.fetchrow(
            f"""SELECT subject, tenant, role, email, csrf_token, expires_at FROM {self.schema}.sessions
                WHERE token_sha256 = $1 AND expires_at > now()""", token_digest(token))
        if row is None:
            return None
        principal = Principal(user=row["subject"], tenant=row["tenant"], role=Role(row["role"]), email=row["email"])
        return Session(principal, row["csrf_token"], row["expires_at"])

    async def delete(self, token: str) -> None:
        await self.pool.execute(f"DELETE FROM {self.schema}.sessions WHERE token_sha256 = $1", token_digest(token))

    async def begin_login(self, state: str, login: PendingLogin) -> None:
        await self.pool.execute(
            f"""DELETE FROM {self.schema}.login_attempts WHERE created_at < now() - interval '15 minutes'""")
        await self.pool.execute(
            f"""INSERT INTO {self.schema}.login_attempts (state, code_verifier, nonce, return_to)
                VALUES ($1, $2, $3, $4)""", state, login.code_verifier, login.nonce, login.return_to)

    async def finish_login(self, state: str) -> PendingLogin | None:
        """Take (and forget) the pending login for ``state``: a state is good for one callback only."""
        row = await self.pool.fetchrow(
            f"""DELETE FROM {self.schema}.login_attempts
                WHERE state = $1 AND created_at > now() - interval '15 minutes'
                RETURNING code_verifier, nonce, return_to""", state)
        if row is None:
            return None
        return PendingLogin(row["code_verifier"], row["nonce"], row["return_to"])
