"""The OPA server (1.x), built with ``go install`` into the versioned cache, serving the repo's policies.

OPA's API is locked (``--authentication=token --authorization=basic``): ``policies/opa-system/authz.rego``
(``data.system.authz``) lets only the bearer of the policy service's token ask for decisions and read the loaded
policies, and opens ``/health``; nobody may change policies or data through the API. Policies come from files only
(``--watch`` reloads them). The token is a random secret in the run dir (0600) that the policy service reads
(``IG_OPA_TOKEN_FILE``); OPA holds only its SHA-256 (``data.system.opa_token.sha256``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ig_infra.components.base import Component, env_port
from ig_infra.go_tools import tool_path
from ig_infra.paths import REPO_ROOT
from ig_infra.process import spawn, terminate, wait_until

SYSTEM_POLICIES = REPO_ROOT / "policies" / "opa-system"
# Where OPA finds the token's digest in its data (see authz.rego).
TOKEN_DIGEST_PATH = "system.opa_token"


def opa_binary(cache: Path) -> Path:
    return tool_path(cache, "opa")


@dataclass(frozen=True)
class OpaToken:
    """The policy service's secret (``token_file``, raw text) and the digest file OPA loads (``digest_file``)."""

    token_file: Path
    digest_file: Path

    @property
    def value(self) -> str:
        return self.token_file.read_text(encoding="ascii").strip()

    def header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.value}"}


def opa_token_in(directory: Path) -> OpaToken:
    return OpaToken(directory / "opa-token", directory / "opa-token-digest.json")


def ensure_opa_token(directory: Path) -> OpaToken:
    """Create the token once (kept across restarts, like the run dir) and (re)write its digest beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    token = opa_token_in(directory)
    if not token.token_file.is_file() or not token.value:
        _write_private(token.token_file, secrets.token_urlsafe(32) + "\n")
    digest = hashlib.sha256(token.value.encode("ascii")).hexdigest()
    _write_private(token.digest_file, json.dumps({"sha256": digest}) + "\n")
    return token


def _write_private(path: Path, text: str) -> None:
    """Owner read/write only, from the first byte (no window in which another user could open it)."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(text)


def locked_opa_arguments(token: OpaToken, *paths: Path) -> list[str]:
    """``opa run`` arguments that lock the API and load the guard policy, its token digest and ``paths``."""
    return ["--authentication=token", "--authorization=basic", *(str(path) for path in paths),
            str(SYSTEM_POLICIES), f"{TOKEN_DIGEST_PATH}:{token.digest_file}"]


def api_locked(url: str) -> bool:
    """True when a query without the token is refused (an OPA started before the lock-down is not)."""
    try:
        with urllib.request.urlopen(f"{url}/v1/data/ig", timeout=2):
            return False
    except urllib.error.HTTPError as error:
        return error.code in (401, 403)


class Opa(Component):
    name = "opa"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.host = "127.0.0.1"
        self.port = env_port("IG_OPA_PORT", 8181)
        self.policies = Path(os.environ.get("IG_OPA_POLICIES", self.paths.repo / "policies" / "rego"))

    @property
    def token(self) -> OpaToken:
        return opa_token_in(self.dir)

    def install(self) -> None:
        opa_binary(self.paths.cache)

    def start(self) -> None:
        if self.running() and self.healthy():
            return
        if self.running() and self._serving():
            terminate(self.pid_file)  # an open OPA started before the lock-down: replace it
        self.ensure_free(self.host, self.port, "IG_OPA_PORT")
        self.policies.mkdir(parents=True, exist_ok=True)
        token = ensure_opa_token(self.dir)
        spawn(
            self.in_region([str(opa_binary(self.paths.cache)), "run", "--server", "--addr", f"{self.host}:{self.port}",
                            "--log-level", "error", "--watch", *locked_opa_arguments(token, self.policies)]),
            log_file=self.log_file, pid_file=self.pid_file,
        )
        wait_until(self.healthy, timeout=30, what="OPA", log_file=self.log_file, alive=self.running)

    def healthy(self) -> bool:
        return self._serving() and api_locked(self.address())

    def _serving(self) -> bool:
        if not self.listening(self.host, self.port):
            return False
        with urllib.request.urlopen(f"http://{self.host}:{self.port}/health", timeout=2) as response:
            return bool(response.status == 200)

    def address(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return {"IG_OPA_URL": self.address(), "IG_OPA_TOKEN_FILE": str(self.token.token_file)}

    def version(self) -> str:
        return subprocess.run([str(opa_binary(self.paths.cache)), "version"], capture_output=True,
                              text=True).stdout.splitlines()[0]
