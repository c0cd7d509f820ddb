"""region-test's figures reach Prometheus: pushed to a real Pushgateway, scraped by a real Prometheus with the scrape
job the local (`make up`) Prometheus uses, where the region alerts shipped with the evidence chart fire on them."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from ig_infra.process import free_port
from ig_region_test import cli
from ig_region_test.report import PUSH_JOB, push_metrics

REPO = Path(__file__).resolve().parents[3]
REGION_RULES = REPO / "charts" / "evidence" / "rules" / "region.rules.yml"
GOOD = ["--simulate-failover", "--assert-rpo", "300", "--assert-rto", "1800"]



def results(*, passed: bool, phases: dict[str, float]) -> dict[str, Any]:
    return {"replication": {"synchronous_commit": "remote_apply"}, "failure": "partition",
            "residency": {"passed": passed},
            "phases": [{"phase": name, "rto_seconds": rto, "rpo_lost_writes": 0, "rpo_lost_seconds": 0.0}
                       for name, rto in phases.items()]}


@pytest.mark.parametrize(("args", "env", "message"), [
    ([*GOOD, "--pushgateway", "ftp://127.0.0.1:9091"], "", "invalid setting --pushgateway"),
    ([*GOOD, "--pushgateway", ""], "http://127.0.0.1:9091", "invalid setting --pushgateway"),
    (GOOD, "127.0.0.1:9091", "invalid setting IG_PUSHGATEWAY_URL"),
])
def test_a_bad_pushgateway_url_is_a_usage_error_naming_its_source(
        args: list[str], env: str, message: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("IG_PUSHGATEWAY_URL", env)
    with pytest.raises(SystemExit) as exited:
        cli.main(args)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_an_unreachable_pushgateway_is_reported_and_costs_the_run_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cli._push(url, results(passed=True, phases={"failover": 1.0}))
    assert f"could not push the figures to {url}" in capsys.readouterr().err


def local_pushgateway_job(run_dir: Path, port: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The pushgateway scrape job of the config ig-infra renders for the shared Prometheus, on ``port``."""
    from ig_infra.components.prometheus import Prometheus
    from ig_infra.paths import Paths

    monkeypatch.setenv("IG_RUN_DIR", str(run_dir))
    monkeypatch.setenv("IG_PUSHGATEWAY_PORT", str(port))
    config = yaml.safe_load(Prometheus(Paths.from_environment()).render_config().read_text())
    job: dict[str, Any] = next(j for j in config["scrape_configs"] if j["job_name"] == "pushgateway")
    return job


def test_the_local_prometheus_scrapes_the_pushgateway_keeping_pushed_labels(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    job = local_pushgateway_job(tmp_path, 19191, monkeypatch)
    assert job["honor_labels"] is True
    assert job["static_configs"] == [{"targets": ["127.0.0.1:19191"]}]


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=5) as response:
        result: list[dict[str, Any]] = json.loads(response.read())["data"]["result"]
    return result


def wait_for(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what}: not seen within {timeout:.0f}s")


def firing(prometheus: str) -> set[str]:
    with urllib.request.urlopen(f"{prometheus}/api/v1/alerts", timeout=5) as response:
        alerts = json.loads(response.read())["data"]["alerts"]
    return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}


@pytest.mark.integration
def test_pushed_figures_are_scraped_and_fire_the_region_alerts(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from ig_infra.components.prometheus import PrivatePrometheus
    from ig_infra.components.pushgateway import PrivatePushgateway
    from ig_infra.paths import Paths

    cache = Paths.from_environment().cache
    gateway_port = free_port()
    job = local_pushgateway_job(tmp_path / "shared", gateway_port, monkeypatch)
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": [str(REGION_RULES)],
              "scrape_configs": [job]}
    with PrivatePushgateway(cache, tmp_path / "pushgateway", gateway_port) as gateway, \
            PrivatePrometheus(cache, tmp_path / "prometheus", yaml.safe_dump(config), free_port()) as prometheus:
        group = push_metrics(gateway.url, results(passed=True, phases={"failover": 2.5, "failback": 3.0}))
        assert group == {"job": PUSH_JOB, "replication": "remote_apply", "failure": "partition"}
        series = wait_for("both phases in Prometheus", lambda: (
            found if len(found := query(prometheus.url, "ig_region_failover_rto_seconds")) == 2 else None))
        for item in series:  # the pushed labels, not the gateway's job/instance
            assert {k: item["metric"][k] for k in ("job", "replication", "failure")} == {
                "job": "region-test", "replication": "remote_apply", "failure": "partition"}
        assert {s["metric"]["phase"]: float(s["value"][1]) for s in series} == {"failover": 2.5, "failback": 3.0}
        assert [float(s["value"][1]) for s in query(prometheus.url, "ig_region_residency_passed")] == [1.0]
        assert firing(prometheus.url) == set()

        # The next run of the same kind replaces the group: its failed residency fires, its slow failover too,
        # and the failback phase it did not reach no longer shows.
        push_metrics(gateway.url, results(passed=False, phases={"failover": 12.0}))
        wait_for("the region alerts", lambda: firing(prometheus.url) == {"ResidencyProbeFailed",
                                                                         "FailoverRtoOverBudget"})
        assert [s["metric"]["phase"] for s in query(prometheus.url, "ig_region_failover_rto_seconds")] == ["failover"]
