"""ig-infra's decision-log secrets: made once per run dir, private files 0600, kept across restarts."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from ig_infra.decision_log_keys import decision_log_env, decision_log_keys_exist, ensure_decision_log_keys


def test_the_pepper_and_key_pair_are_made_once_and_kept(tmp_path: Path) -> None:
    assert not decision_log_keys_exist(tmp_path)
    ensure_decision_log_keys(tmp_path)
    assert decision_log_keys_exist(tmp_path)
    env = {name: Path(value) for name, value in decision_log_env(tmp_path).items()}
    pepper, public, private = (env["IG_DECISION_LOG_PEPPER_FILE"], env["IG_DECISION_LOG_INPUT_KEY_FILE"],
                               env["IG_DECISION_LOG_REPLAY_KEY_FILE"])
    assert stat.S_IMODE(pepper.stat().st_mode) == 0o600 and stat.S_IMODE(private.stat().st_mode) == 0o600
    assert len(pepper.read_bytes()) >= 32
    private_key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    public_key = serialization.load_pem_public_key(public.read_bytes())
    assert isinstance(private_key, X25519PrivateKey) and isinstance(public_key, X25519PublicKey)
    assert private_key.public_key().public_bytes_raw() == public_key.public_bytes_raw(), "one pair"
    before = {path: path.read_bytes() for path in (pepper, public, private)}
    ensure_decision_log_keys(tmp_path)
    assert {path: path.read_bytes() for path in before} == before, "a restart keeps them (old records stay readable)"
