"""`ig-infra up` restarts a running Dex whose configuration differs from the tree's (Dex reads it once), and leaves
one with the same configuration alone. Runs a Dex of its own on free ports (never the shared one)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from ig_infra.components import Dex
from ig_infra.paths import Paths
from ig_infra.process import free_port, read_pid

pytestmark = pytest.mark.integration


@pytest.fixture
def private_dex(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Dex, Path]]:
    shared = Paths.from_environment()
    run = Path(tempfile.mkdtemp(prefix="ig-dex-reload-", dir="/var/tmp"))
    config_dir = run / "config"
    shutil.copytree(shared.repo / "tools" / "infra" / "dex", config_dir)
    monkeypatch.setenv("IG_DEX_CONFIG_DIR", str(config_dir))
    dex = Dex(Paths(cache=shared.cache, run=run), port=free_port(), ldap_port=free_port(), telemetry_port=free_port())
    dex.install()
    try:
        yield dex, config_dir
    finally:
        dex.stop()
        shutil.rmtree(run, ignore_errors=True)


def test_a_changed_configuration_restarts_dex_and_an_unchanged_one_does_not(private_dex: tuple[Dex, Path]) -> None:
    dex, config_dir = private_dex
    dex.start()
    first = read_pid(dex.pid_file)
    dex.start()
    assert read_pid(dex.pid_file) == first  # same configuration: left running
    with open(config_dir / "config.yaml", "a") as config:
        config.write("# a client was added here\n")
    dex.start()
    second = read_pid(dex.pid_file)
    assert second is not None and second != first and dex.healthy()
    assert first is not None and not os.path.exists(f"/proc/{first}")
