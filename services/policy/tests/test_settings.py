"""Settings: defaults, and bad IG_* values stop start-up naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from ig_common.settings import SettingsError, load_settings
from ig_policy.settings import Settings

REQUIRED = {"IG_DATABASE_URL": "postgresql://ig@127.0.0.1:1/ig", "IG_KAFKA_BOOTSTRAP": "127.0.0.1:1"}


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(Settings)
    assert settings.opa_timeout_ms == 50
    assert settings.grpc_port == 50051 and settings.http_port == 8081
    assert settings.decision_log_mask == ["/input/actor/id"] and settings.decision_log_drop == []


def test_rules_come_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("IG_DECISION_LOG_DROP", '[{"result": "allow"}]')
    monkeypatch.setenv("IG_DECISION_LOG_MASK", '["/input/context/region"]')
    settings = load_settings(Settings)
    assert settings.decision_log_drop == [{"result": "allow"}]
    assert settings.decision_log_mask == ["/input/context/region"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("IG_OPA_TIMEOUT_MS", "0"),
        ("IG_OPA_URL", "opa:8181"),
        ("IG_DECISION_LOG_MASK", '["input/actor"]'),
        ("IG_DECISION_LOG_DROP", '[{"colour": "red"}]'),
        ("IG_DECISION_LOG_QUEUE_SIZE", "0"),
        ("IG_DECISION_LOG_WAL_MAX_MB", "0"),
        ("IG_DECISION_LOG_WAL_FSYNC", "sometimes"),
        ("IG_POLICY_WORKERS", "0"),
        ("IG_POLICY_WORKERS", "two"),
        ("IG_POLICY_WORKERS", "65"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str
) -> None:
    for name, required in REQUIRED.items():
        monkeypatch.setenv(name, required)
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as stopped:
        load_settings(Settings)
    assert stopped.value.code == 2
    assert f"invalid setting {variable}" in capsys.readouterr().err


@pytest.mark.parametrize("content", [None, "", "short-token", "a token with spaces in it, long enough to pass"])
def test_an_unusable_opa_token_file_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str | None
) -> None:
    for name, required in REQUIRED.items():
        monkeypatch.setenv(name, required)
    token_file = tmp_path / "opa-token"
    if content is not None:
        token_file.write_text(content)
    monkeypatch.setenv("IG_OPA_TOKEN_FILE", str(token_file))
    with pytest.raises(SettingsError):
        load_settings(Settings)
    assert "invalid setting IG_OPA_TOKEN_FILE" in capsys.readouterr().err


def test_the_wal_directory_must_be_a_writable_directory(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for name, required in REQUIRED.items():
        monkeypatch.setenv(name, required)
    monkeypatch.setenv("IG_GRPC_PORT", "50999")
    assert load_settings(Settings).wal_directory.name == "ig-policy-wal-50999", "unset: one per service port"
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("IG_DECISION_LOG_WAL_DIR", str(tmp_path / "a-file"))
    with pytest.raises(SettingsError):
        load_settings(Settings)
    assert "invalid setting IG_DECISION_LOG_WAL_DIR" in capsys.readouterr().err
    monkeypatch.setenv("IG_DECISION_LOG_WAL_DIR", str(tmp_path / "not-yet"))
    assert load_settings(Settings).wal_directory == tmp_path / "not-yet", "made at start when missing"


@pytest.mark.parametrize("bundle", ["missing", "not a bundle", "a bundle without policy.wasm"])
def test_an_unusable_wasm_bundle_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, bundle: str
) -> None:
    import io
    import tarfile

    for name, required in REQUIRED.items():
        monkeypatch.setenv(name, required)
    path = tmp_path / "policy.tar.gz"
    if bundle == "not a bundle":
        path.write_bytes(b"policy")
    elif bundle == "a bundle without policy.wasm":
        with tarfile.open(path, "w:gz") as archive:
            member = tarfile.TarInfo("/data.json")
            member.size = 2
            archive.addfile(member, io.BytesIO(b"{}"))
    monkeypatch.setenv("IG_POLICY_WASM_BUNDLE", str(path))
    with pytest.raises(SettingsError) as stopped:
        load_settings(Settings)
    assert stopped.value.code == 2
    assert "invalid setting IG_POLICY_WASM_BUNDLE" in capsys.readouterr().err


def test_each_worker_has_a_wal_directory_of_its_own(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, required in REQUIRED.items():
        monkeypatch.setenv(name, required)
    monkeypatch.setenv("IG_DECISION_LOG_WAL_DIR", str(tmp_path))
    monkeypatch.setenv("IG_POLICY_WORKERS", "3")
    assert load_settings(Settings).wal_directory == tmp_path, "the supervisor's (and a single process's) base"
    monkeypatch.setenv("IG_POLICY_WORKER_INDEX", "2")
    assert load_settings(Settings).wal_directory == tmp_path / "worker-2"
    monkeypatch.setenv("IG_POLICY_WORKER_INDEX", "3")
    with pytest.raises(SettingsError):
        load_settings(Settings)
