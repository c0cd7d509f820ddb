"""The policy decision log's secrets for the local suite: the pseudonym pepper and the replay key pair.

The service gets the pepper (IG_DECISION_LOG_PEPPER_FILE) and the replay key's public half
(IG_DECISION_LOG_INPUT_KEY_FILE), to which it seals every logged input; the private half
(IG_DECISION_LOG_REPLAY_KEY_FILE) is for `ig-policy replay` only. Made once per run dir and kept (0600 for the
secrets): a new pepper would give every subject new pseudonyms, and a new key pair would leave earlier records
unreadable to replay.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ig_infra.pki import _write_private, _write_public, identities_directory


def decision_log_pepper(run: Path) -> Path:
    return identities_directory(run) / "policy-decision-log" / "pepper"


def decision_log_input_key(run: Path) -> Path:
    return identities_directory(run) / "policy-decision-log" / "input-key.pub"


def decision_log_replay_key(run: Path) -> Path:
    return identities_directory(run) / "policy-replay" / "replay.key"


def ensure_decision_log_keys(run: Path) -> None:
    pepper, public, private = decision_log_pepper(run), decision_log_input_key(run), decision_log_replay_key(run)
    if not pepper.exists():
        _write_private(pepper, secrets.token_urlsafe(32).encode())
    if not private.exists() or not public.exists():
        key = X25519PrivateKey.generate()
        public.parent.mkdir(parents=True, exist_ok=True)
        _write_private(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
        _write_public(public, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo))


def decision_log_keys_exist(run: Path) -> bool:
    return all(path.exists() for path in (decision_log_pepper(run), decision_log_input_key(run),
                                          decision_log_replay_key(run)))


def decision_log_env(run: Path) -> dict[str, str]:
    return {"IG_DECISION_LOG_PEPPER_FILE": str(decision_log_pepper(run)),
            "IG_DECISION_LOG_INPUT_KEY_FILE": str(decision_log_input_key(run)),
            "IG_DECISION_LOG_REPLAY_KEY_FILE": str(decision_log_replay_key(run))}
