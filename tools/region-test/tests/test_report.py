"""JUnit XML: a failure is a <failure>, a pending policy probe is <skipped>, never a pass. The Prometheus gauges:
one per phase and a residency verdict, the same in the textfile and in a push; each kind of run its own push group."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from ig_region_test.report import (
    junit,
    metrics_registry,
    push_grouping_key,
    pushgateway_url_problem,
    write_metrics,
)
from prometheus_client import CollectorRegistry, generate_latest


def test_junit_marks_failures_and_pending_probes() -> None:
    xml = junit([
        {"group": "failover", "name": "failover.rto", "status": "passed", "message": "RTO 2.5s"},
        {"group": "failover", "name": "failover.rpo", "status": "failed", "message": "RPO 3 writes"},
        {"group": "residency-policy", "name": "alpha:policy-service", "status": "pending", "message": "pending"},
    ], duration=12.5)
    suite = ET.fromstring(xml.split("\n", 1)[1])
    assert {k: suite.attrib[k] for k in ("tests", "failures", "skipped")} == {"tests": "3", "failures": "1",
                                                                               "skipped": "1"}
    cases = {c.attrib["name"]: c for c in suite.iter("testcase")}
    assert cases["failover.rto"].find("failure") is None and cases["failover.rto"].find("skipped") is None
    assert cases["failover.rpo"].find("failure") is not None
    assert cases["alpha:policy-service"].find("skipped") is not None


def results(*, passed: bool = True, phases: tuple[str, ...] = ("failover", "failback"),
            synchronous: bool = True, failure: str = "partition") -> dict[str, Any]:
    """The slice of multi-region-results.json the gauges are made of."""
    figures = {"failover": (2.5, 0, 0.0), "failback": (None, None, None)}
    return {"replication": {"synchronous_commit": "remote_apply" if synchronous else "local (asynchronous)"},
            "failure": failure, "residency": {"passed": passed},
            "phases": [{"phase": name, "rto_seconds": figures[name][0], "rpo_lost_writes": figures[name][1],
                        "rpo_lost_seconds": figures[name][2]} for name in phases]}


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in registry.collect() for s in m.samples}


def test_the_gauges_carry_each_phase_and_the_residency_verdict() -> None:
    found = samples(metrics_registry(results(passed=False)))
    failover = (("failure", "partition"), ("phase", "failover"), ("replication", "remote_apply"))
    failback = (("failure", "partition"), ("phase", "failback"), ("replication", "remote_apply"))
    assert found[("ig_region_failover_rto_seconds", failover)] == 2.5
    assert found[("ig_region_failover_rto_seconds", failback)] == math.inf  # not reached: over any RTO goal
    assert found[("ig_region_failover_rpo_lost_writes", failover)] == 0
    assert ("ig_region_failover_rpo_lost_writes", failback) not in found  # unmeasured, not zero
    assert found[("ig_region_residency_passed", ())] == 0
    assert samples(metrics_registry(results()))[("ig_region_residency_passed", ())] == 1


def test_the_textfile_holds_the_same_gauges(tmp_path: Path) -> None:
    path = tmp_path / "metrics.prom"
    write_metrics(path, results())
    assert path.read_bytes() == generate_latest(metrics_registry(results()))


@pytest.mark.parametrize(("synchronous", "failure", "expected"), [
    (True, "partition", {"replication": "remote_apply", "failure": "partition"}),
    (False, "kill", {"replication": "local", "failure": "kill"}),
])
def test_each_kind_of_run_pushes_to_its_own_group(synchronous: bool, failure: str, expected: dict[str, str]) -> None:
    assert push_grouping_key(results(synchronous=synchronous, failure=failure)) == expected


@pytest.mark.parametrize(("url", "usable"), [
    ("http://127.0.0.1:9091", True),
    ("https://push.example:443/prefix", True),
    ("http://localhost", True),
    ("127.0.0.1:9091", False),
    ("ftp://127.0.0.1:9091", False),
    ("http://127.0.0.1:99999", False),
    ("http://127.0.0.1:port", False),
    ("http://:9091", False),
    ("http://127.0.0.1:9091/?job=x", False),
    ("", False),
])
def test_pushgateway_urls_are_checked(url: str, usable: bool) -> None:
    problem = pushgateway_url_problem(url)
    assert (problem is None) is usable
    if not usable:
        assert repr(url) in str(problem)
