"""JUnit XML: a failure is a <failure>, a pending policy probe is <skipped>, never a pass."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ig_region_test.report import junit


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
