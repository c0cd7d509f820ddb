import socket
from pathlib import Path

import pytest
from ig_infra.cli import main
from ig_infra.components.base import env_port
from ig_infra.prereqs import require
from ig_infra.process import InfraError, ensure_port_free


def test_a_port_taken_by_someone_else_is_reported_with_the_variable_to_change() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(InfraError, match=rf"127.0.0.1:{port} for PostgreSQL .*IG_PG_PORT"):
            ensure_port_free("127.0.0.1", port, "PostgreSQL", "IG_PG_PORT")


def test_missing_prerequisite_names_it_and_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(InfraError) as raised:
        require("java", "mvn")
    assert "java: install Java 17" in str(raised.value)
    assert "mvn: install Maven" in str(raised.value)


def test_bad_port_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IG_PG_PORT", "99999")
    with pytest.raises(ValueError, match="invalid setting IG_PG_PORT"):
        env_port("IG_PG_PORT", 55432)


def test_unknown_component_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IG_RUN_DIR", str(tmp_path))
    assert main(["up", "zookeeper"]) == 1
    assert "unknown component(s): zookeeper" in capsys.readouterr().err


def test_tool_prints_only_the_path_on_stdout_even_while_building_it(capsys: pytest.CaptureFixture[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Makefile recipes run "$(ig-infra tool buf)": on a cold machine the first call builds the tool and announces it.
    def build_then_locate(cache: Path, name: str) -> Path:
        print(f"  building {name} with go install (first time only) ...", flush=True)
        return cache / f"{name}-v1" / "bin" / name

    monkeypatch.setattr("ig_infra.cli.tool_path", build_then_locate)
    monkeypatch.setenv("IG_CACHE_DIR", "/var/tmp/some-cache")
    assert main(["tool", "buf"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "/var/tmp/some-cache/buf-v1/bin/buf\n"
    assert "building buf" in captured.err
