"""The worker count cannot change under logged decisions: a WAL directory another worker count wrote, still holding
decisions not yet in the decision log, stops start-up naming IG_POLICY_WORKERS (no writer would ever read it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ig_common.settings import load_settings
from ig_policy.domain.wal_format import frame_batch
from ig_policy.settings import Settings
from ig_policy.store.wal import ACKNOWLEDGED, segment_path
from ig_policy.workers import check_wal_layout

REQUIRED = {"IG_DATABASE_URL": "postgresql://ig@127.0.0.1:1/ig", "IG_KAFKA_BOOTSTRAP": "127.0.0.1:1"}


def settings_for(monkeypatch: pytest.MonkeyPatch, base: Path, workers: int) -> Settings:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("IG_DECISION_LOG_WAL_DIR", str(base))
    monkeypatch.setenv("IG_POLICY_WORKERS", str(workers))
    return load_settings(Settings)


def write_segment(directory: Path, *, acknowledged: bool) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    data = frame_batch([b'{"decision": 1}'])
    segment_path(directory, 1).write_bytes(data)
    if acknowledged:
        (directory / ACKNOWLEDGED).write_text(f"1 {len(data)}")


def test_fewer_workers_than_wrote_the_wal_stop_start_up_naming_the_setting(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    write_segment(tmp_path / "worker-1", acknowledged=False)
    with pytest.raises(SystemExit) as stopped:
        check_wal_layout(settings_for(monkeypatch, tmp_path, 1))
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "invalid setting IG_POLICY_WORKERS" in error and "worker-1" in error
    check_wal_layout(settings_for(monkeypatch, tmp_path, 2))  # the count that wrote it reads it


def test_workers_after_a_single_process_stop_start_up_while_its_wal_holds_decisions(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_segment(tmp_path, acknowledged=False)
    with pytest.raises(SystemExit):
        check_wal_layout(settings_for(monkeypatch, tmp_path, 2))
    check_wal_layout(settings_for(monkeypatch, tmp_path, 1))


def test_any_worker_count_starts_once_every_wal_is_acknowledged(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_segment(tmp_path, acknowledged=True)
    write_segment(tmp_path / "worker-3", acknowledged=True)
    for workers in (1, 2, 4):
        check_wal_layout(settings_for(monkeypatch, tmp_path, workers))
