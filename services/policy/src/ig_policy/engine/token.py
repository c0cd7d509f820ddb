"""The bearer token that OPA's locked API (policies/opa-system/authz.rego) demands of the policy service."""

from __future__ import annotations

import re
from pathlib import Path

# secrets.token_urlsafe(32) makes 43 characters; anything shorter is not a secret worth the name.
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{32,512}")


def read_opa_token(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace ignored); ValueError naming what is wrong with it."""
    try:
        token = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {path}: {error}") from error
    if not _TOKEN.fullmatch(token):
        raise ValueError(f"{path} does not hold a token (32 to 512 characters of base64url or base64)")
    return token
