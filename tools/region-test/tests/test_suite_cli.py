"""`ig-infra failover|failback` before anything is touched: usage errors, no region-b, which addresses and which
processes of `make up`'s layout it would act on (no infrastructure: a run dir of pid files)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ig_infra.cli import main as ig_infra_main
from ig_infra.paths import Paths
from ig_region_test.suite_cli import main, region_a_processes, running_suite


@pytest.fixture
def sleeper() -> Iterator[int]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process.pid
    process.kill()
    process.wait()


@pytest.mark.parametrize(("args", "message"), [
    (["failover", "--max-rto", "ten"], "--max-rto must be a number of seconds"),
    (["failover", "--time-limit", "-1"], "--time-limit must be a finite number"),
    (["promote"], "invalid choice"),
])
def test_usage_errors_exit_2_naming_the_argument(args: list[str], message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_without_region_b_it_touches_nothing_and_exits_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("IG_RUN_DIR", str(tmp_path))
    assert ig_infra_main(["failover"]) == 3  # through ig-infra, as `make failover` calls it
    assert "region-b of the suite is not running here" in capsys.readouterr().err
    assert not (tmp_path / "failover").exists()


def test_it_acts_on_make_up_regions_b_addresses(tmp_path: Path) -> None:
    suite = running_suite(Paths(cache=tmp_path / "cache", run=tmp_path / "run"))
    assert (suite.policy_b, suite.evidence_b, suite.portal_b) == \
        ("127.0.0.1:50251", "127.0.0.1:50252", "http://127.0.0.1:8280")
    assert suite.primary.replica_of is None and suite.replica.replica_of is not None
    assert suite.primary.dir == tmp_path / "run" / "postgres-global"
    assert suite.replica.dir == tmp_path / "run" / "region-b" / "postgres-global"
    assert suite.signing_key_b.is_relative_to(tmp_path / "run" / "region-b")
    assert suite.state_dir == tmp_path / "run" / "failover"


def test_the_partition_freezes_region_a_own_processes_only(tmp_path: Path, sleeper: int) -> None:
    paths = Paths(cache=tmp_path / "cache", run=tmp_path / "run")
    for pid_file in ("kafka/kafka.pid", "opa/opa.pid", "services/policy.pid", "services/audit-portal.pid",
                     "services/witness-region-a.pid", "dex/dex.pid", "prometheus/prometheus.pid",
                     "region-b/services/policy.pid"):
        (paths.run / pid_file).parent.mkdir(parents=True, exist_ok=True)
        (paths.run / pid_file).write_text(str(sleeper))
    (paths.run / "postgres" / "data").mkdir(parents=True)
    (paths.run / "postgres" / "data" / "postmaster.pid").write_text(f"{sleeper}\n/var/tmp/x\n")
    found = region_a_processes(paths)
    # Shared by both regions (Dex, Prometheus, the witnesses) and region-b's own: never frozen.
    assert sorted(found) == ["audit-portal", "kafka", "opa", "policy", "postgres"]
    assert set(found.values()) == {sleeper}


def test_status_says_while_region_a_is_partitioned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("IG_RUN_DIR", str(tmp_path))
    ig_infra_main(["status"])
    assert "partitioned" not in capsys.readouterr().out
    suite = running_suite(Paths(cache=tmp_path / "cache", run=tmp_path))
    suite.state_dir.mkdir()
    (suite.state_dir / "state.json").write_text('{"frozen": []}')
    ig_infra_main(["status"])
    assert "region-a is partitioned by `ig-infra failover`" in capsys.readouterr().out
