"""Schemathesis against the portal's published OpenAPI document: whatever it generates, no 5xx and every
response matches the documented status codes and content types."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services" / "audit-portal" / "testing"))
from portal_stack import Stack, shared_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(infra: Any, database_url: str, kafka_bootstrap: str) -> Iterator[Stack]:
    yield shared_stack(database_url, kafka_bootstrap)


@pytest.fixture(scope="module")
def portal(stack: Stack) -> str:
    return stack.portal("portal-schemathesis", rate_requests_per_minute="100000",
                        rate_downloads_per_minute="100000")[1]


@pytest.fixture(scope="module")
def admin_token(stack: Stack) -> str:
    return stack.token("alpha-admin")


def test_schemathesis_finds_no_server_errors(portal: str, admin_token: str, tmp_path: Path) -> None:
    """The schemathesis CLI (its pytest plugin does not load under --import-mode=importlib) over every operation."""
    cli = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [str(cli), "run", f"{portal}/openapi.json", "--header", f"Authorization: Bearer {admin_token}",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance",
         "--max-examples", "15", "--phases", "examples,fuzzing", "--seed", "1",
         "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=400)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    report = ElementTree.parse(next(tmp_path.glob("junit-*.xml"))).getroot()
    operations = {case.get("name") for case in report.iter("testcase")}
    assert operations == {f"GET {path}" for path in (
        "/audit/releases", "/audit/artifacts", "/audit/download/{artifactId}", "/audit/files/{artifactId}",
        "/audit/access-logs", "/audit/access-log", "/audit/access-log/export", "/audit/manifest/{release}/{file}",
        "/audit/kit/{release}")}
    assert report.get("failures") == "0" and report.get("errors") == "0"
