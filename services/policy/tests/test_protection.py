"""What protects the decision log: keyed pseudonyms, inputs only the replay key opens, key settings that stop
start-up naming the file."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ig_common.settings import SettingsError, load_settings
from ig_policy.cli import main as ig_policy
from ig_policy.domain import protection as protection_module
from ig_policy.domain.protection import InputOpener, Pseudonymizer, SealedInputError
from ig_policy.protection_keys import load_opener, load_record_protection
from ig_policy.settings import Settings
from ig_policy.testing import golden_cases, new_record_protection

REQUIRED = {"IG_DATABASE_URL": "postgresql://ig@127.0.0.1:1/ig", "IG_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
INPUT = golden_cases()[0].input


def test_a_pseudonym_is_stable_for_one_pepper_and_differs_per_pepper() -> None:
    one, same, other = Pseudonymizer(b"p" * 32), Pseudonymizer(b"p" * 32), Pseudonymizer(b"q" * 32)
    assert one("alpha/u-alice") == same("alpha/u-alice")
    assert one("alpha/u-alice") != other("alpha/u-alice")
    assert one("alpha/u-alice") != one("alpha/u-bob")
    # A dictionary of bare hashes (what the log held before) does not find it.
    assert hashlib.sha256(b"alpha/u-alice").hexdigest() not in one("alpha/u-alice")
    assert one("alpha/u-alice").startswith("hmac-sha256:") and len(one("alpha/u-alice")) == 12 + 64


def test_a_sealed_input_opens_only_with_the_private_key_and_only_for_its_decision() -> None:
    protection, opener = new_record_protection()
    sealed = protection.sealer.seal(INPUT, "dec_1")
    assert opener.open(sealed, "dec_1") == INPUT
    for text in (INPUT["actor"]["id"], INPUT["resource"]["id"], json.dumps(INPUT)[:20]):
        assert text not in sealed
    _, stranger = new_record_protection()
    with pytest.raises(SealedInputError, match="sealed to key"):
        stranger.open(sealed, "dec_1")
    # Another key pair that claims the same key id still cannot open it (the KEM, not the label, decides).
    impostor = InputOpener(stranger.private_key)
    relabelled = sealed.replace(opener.key_id, impostor.key_id)
    with pytest.raises(SealedInputError, match="does not open"):
        impostor.open(relabelled, "dec_1")
    with pytest.raises(SealedInputError, match="does not open"):
        opener.open(sealed, "dec_2")  # moved to another record
    body = sealed.rsplit(".", 1)
    flipped = body[0] + "." + body[1][:-2] + ("A" if body[1][-2] != "A" else "B") + body[1][-1]
    with pytest.raises(SealedInputError):
        opener.open(flipped, "dec_1")


def test_each_record_is_sealed_afresh() -> None:
    protection, _ = new_record_protection()
    assert protection.sealer.seal(INPUT, "dec_1") != protection.sealer.seal(INPUT, "dec_1")


def key_files(tmp_path: Path) -> dict[str, Path]:
    assert ig_policy(["keygen", "--out", str(tmp_path / "keys")]) == 0
    return {"pepper": tmp_path / "keys" / "pepper", "public": tmp_path / "keys" / "input-key.pub",
            "private": tmp_path / "keys" / "replay.key"}


def test_keygen_writes_a_working_set_with_the_secrets_private(tmp_path: Path) -> None:
    files = key_files(tmp_path)
    assert stat.S_IMODE(files["pepper"].stat().st_mode) == 0o600
    assert stat.S_IMODE(files["private"].stat().st_mode) == 0o600
    protection = load_record_protection(files["pepper"], files["public"])
    assert load_opener(files["private"]).open(protection.sealer.seal(INPUT, "dec_9"), "dec_9") == INPUT
    assert b"PRIVATE" not in files["public"].read_bytes()
    assert ig_policy(["keygen", "--out", str(tmp_path / "keys")]) == 2, "never overwrites a key"


def start_up(monkeypatch: pytest.MonkeyPatch, **files: Path | None) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    for name, path in files.items():
        if path is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(path))
    load_settings(Settings)


def test_the_service_starts_with_the_pepper_and_public_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    files = key_files(tmp_path)
    start_up(monkeypatch, IG_DECISION_LOG_PEPPER_FILE=files["pepper"], IG_DECISION_LOG_INPUT_KEY_FILE=files["public"])


@pytest.mark.parametrize(("variable", "problem"), [
    ("IG_DECISION_LOG_PEPPER_FILE", "unset"),
    ("IG_DECISION_LOG_PEPPER_FILE", "short"),
    ("IG_DECISION_LOG_PEPPER_FILE", "absent"),
    ("IG_DECISION_LOG_INPUT_KEY_FILE", "unset"),
    ("IG_DECISION_LOG_INPUT_KEY_FILE", "absent"),
    ("IG_DECISION_LOG_INPUT_KEY_FILE", "garbage"),
    ("IG_DECISION_LOG_INPUT_KEY_FILE", "private"),
    ("IG_DECISION_LOG_INPUT_KEY_FILE", "ed25519"),
])
def test_a_missing_or_bad_key_setting_stops_start_up_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, variable: str, problem: str
) -> None:
    files = key_files(tmp_path)
    chosen = {"IG_DECISION_LOG_PEPPER_FILE": files["pepper"], "IG_DECISION_LOG_INPUT_KEY_FILE": files["public"]}
    bad: Path | None = tmp_path / "bad"
    assert bad is not None
    if problem == "unset":
        bad = None
    elif problem == "short":
        bad.write_text("too-short")
    elif problem == "garbage":
        bad.write_text("-----BEGIN PUBLIC KEY-----\nnope\n")
    elif problem == "private":
        bad = files["private"]  # the private half is not what the service may hold
    elif problem == "ed25519":
        bad.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    chosen[variable] = bad  # type: ignore[assignment]
    with pytest.raises(SettingsError):
        start_up(monkeypatch, **chosen)  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert f"invalid setting {variable}" in err
    if bad is not None and problem != "private":
        assert str(bad) in err


class CountingSuite:
    """The HPKE suite, counting its key encapsulations (one X25519 key agreement each)."""

    def __init__(self, suite: Any) -> None:
        self._suite, self.encryptions = suite, 0

    def encrypt(self, *args: Any, **kwargs: Any) -> bytes:
        self.encryptions += 1
        return bytes(self._suite.encrypt(*args, **kwargs))

    def decrypt(self, *args: Any, **kwargs: Any) -> bytes:
        return bytes(self._suite.decrypt(*args, **kwargs))


def test_a_batch_pays_one_key_agreement_and_each_of_its_records_opens_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    suite = CountingSuite(protection_module._SUITE)
    monkeypatch.setattr(protection_module, "_SUITE", suite)
    protection, opener = new_record_protection()
    first = [protection.sealer.seal({**INPUT, "n": n}, f"dec_{n}") for n in range(100)]
    protection.sealer.new_key()
    second = protection.sealer.seal(INPUT, "dec_100")
    assert suite.encryptions == 2
    for n, sealed in reversed(list(enumerate(first))):
        assert InputOpener(opener.private_key).open(sealed, f"dec_{n}") == {**INPUT, "n": n}
    assert opener.open(second, "dec_100") == INPUT
    # The batches' data keys differ: a record given the other batch's sealed key does not open.
    other_key = second.split(".")[3]
    parts = first[0].split(".")
    with pytest.raises(SealedInputError, match="does not open"):
        opener.open(".".join([*parts[:3], other_key, parts[4]]), "dec_0")


def test_records_sealed_one_key_agreement_each_by_the_previous_format_still_open() -> None:
    protection, opener = new_record_protection()
    blob = protection_module._SUITE.encrypt(json.dumps(INPUT).encode(), protection.sealer.public_key,
                                            info=b"ig-policy decision-log input v1 dec_1")
    v1 = f"hpke-x25519-a256gcm.v1.{opener.key_id}.{base64.urlsafe_b64encode(blob).decode().rstrip('=')}"
    assert opener.open(v1, "dec_1") == INPUT
    with pytest.raises(SealedInputError, match="does not open"):
        opener.open(v1, "dec_2")
