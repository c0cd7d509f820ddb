"""Artifacts: results JSON, JUnit XML, timeline JSON and residency proofs, in one folder the release bundle reads;
the figures also as Prometheus gauges (a textfile beside them, and pushed to a Pushgateway when one is given)."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

# Laid out as <evidence type>/<file>, the input layout of `ig-evidence build` (policies/evidence/release-contract).
RESULTS = "multi-region/multi-region-results.json"
JUNIT = "multi-region/multi-region-junit.xml"
TIMELINE = "multi-region/multi-region-timeline.json"
METRICS = "multi-region/multi-region-metrics.prom"
LOGS = "multi-region/logs"
PROOFS = "residency-proof/residency-proofs.json"
# The Pushgateway job of these figures; each push replaces its group (job + replication + failure), so a phase that
# an earlier run of the same kind had and this one lacks does not linger.
PUSH_JOB = "region-test"


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)


def junit(cases: list[dict[str, Any]], duration: float) -> str:
    """One testcase per verdict; ``pending`` becomes skipped (with its reason), never a pass."""
    failures = sum(1 for c in cases if c["status"] == "failed")
    skipped = sum(1 for c in cases if c["status"] in ("pending", "skipped"))
    suite = ET.Element("testsuite", name="region-test", tests=str(len(cases)), failures=str(failures),
                       errors="0", skipped=str(skipped), time=f"{duration:.3f}")
    for case in cases:
        element = ET.SubElement(suite, "testcase", classname=f"region-test.{case['group']}", name=case["name"],
                                time=f"{case.get('time', 0.0):.3f}")
        if case["status"] == "failed":
            ET.SubElement(element, "failure", message=case["message"][:500]).text = case["message"]
        elif case["status"] in ("pending", "skipped"):
            ET.SubElement(element, "skipped", message=case["message"][:500])
        ET.SubElement(element, "system-out").text = case["message"]
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def write_all(directory: Path, results: dict[str, Any], timeline: list[dict[str, Any]], proofs: dict[str, Any],
              cases: list[dict[str, Any]], duration: float) -> list[Path]:
    for ours in {Path(name).parts[0] for name in (RESULTS, PROOFS)}:
        shutil.rmtree(directory / ours, ignore_errors=True)  # nothing stale from an earlier run
    (directory / JUNIT).parent.mkdir(parents=True, exist_ok=True)
    write_json(directory / RESULTS, results)
    write_json(directory / TIMELINE, {"events": timeline})
    write_json(directory / PROOFS, proofs)
    (directory / JUNIT).write_text(junit(cases, duration))
    write_metrics(directory / METRICS, results)
    return [directory / name for name in (RESULTS, JUNIT, TIMELINE, PROOFS, METRICS)]


def write_metrics(path: Path, results: dict[str, Any]) -> None:
    """The figures in Prometheus text format (for the evidence bundle, or a node-exporter textfile collector)."""
    write_to_textfile(str(path), metrics_registry(results))


def replication_mode(results: dict[str, Any]) -> str:
    return str(results["replication"]["synchronous_commit"]).split()[0]


def push_grouping_key(results: dict[str, Any]) -> dict[str, str]:
    return {"replication": replication_mode(results), "failure": str(results["failure"])}


def pushgateway_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a Pushgateway address, or None when it can (http(s)://host[:port][/prefix])."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # out-of-range or non-numeric ports raise here
        usable = parts.scheme in ("http", "https") and bool(parts.hostname) and not (parts.query or parts.fragment)
    except ValueError:
        usable = False
    return None if usable else f"{url!r} is not an http(s)://host:port URL"


def push_metrics(url: str, results: dict[str, Any], *, timeout: float = 10.0) -> dict[str, str]:
    """PUT the figures to the Pushgateway at ``url`` (replacing this kind of run's last push); returns the group."""
    grouping = push_grouping_key(results)
    push_to_gateway(url, job=PUSH_JOB, registry=metrics_registry(results), grouping_key=grouping, timeout=timeout)
    return {"job": PUSH_JOB, **grouping}


def metrics_registry(results: dict[str, Any]) -> CollectorRegistry:
    """The figures as gauges: failover RTO/RPO per phase, and whether every residency probe passed."""
    registry = CollectorRegistry()
    labels = ["phase", "replication", "failure"]
    rto = Gauge("ig_region_failover_rto_seconds", "Failure to first write acknowledged by the new primary",
                labels, registry=registry)
    lost = Gauge("ig_region_failover_rpo_lost_writes", "Acknowledged writes missing in the new primary", labels,
                 registry=registry)
    lost_seconds = Gauge("ig_region_failover_rpo_seconds", "Newest acknowledged minus newest surviving write",
                         labels, registry=registry)
    residency = Gauge("ig_region_residency_passed", "1 when every residency probe passed", registry=registry)
    mode = replication_mode(results)
    for phase in results["phases"]:
        values = (phase["phase"], mode, str(results["failure"]))
        rto.labels(*values).set(phase["rto_seconds"] if phase["rto_seconds"] is not None else float("inf"))
        if phase["rpo_lost_writes"] is not None:
            lost.labels(*values).set(phase["rpo_lost_writes"])
            lost_seconds.labels(*values).set(phase["rpo_lost_seconds"])
    residency.set(1 if results["residency"]["passed"] else 0)
    return registry


def copy_logs(run_dir: Path, target: Path) -> None:
    """The processes' logs (PostgreSQL, Kafka, OPA, policy) next to the results, before the run dir goes away."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)
    for log in sorted(run_dir.glob("*.log")):
        shutil.copyfile(log, target / f"region-test-{log.name}")
