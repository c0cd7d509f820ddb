"""Schemathesis against the portal's published OpenAPI document, which names every route the portal answers (the
JSON API under /audit, the HTML pages, sign-in, grants and NDA): whatever it generates, no 5xx, and every response
matches the documented status codes and content types.

Two runs: the demo auditor over every operation, then an admin over the operations that answer admins otherwise
(exports, the per-release log, grants, `ttl` on download links). 20 examples per operation and run: the module
runs inside `make test`, whose budget is tight (the README's Tests section says what the two runs cost).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services" / "audit-portal" / "testing"))
from portal_stack import RELEASE, Stack, shared_stack

pytestmark = pytest.mark.e2e


# Every route the portal answers on its browser port, as "METHOD path". A route missing from the published document
# (or a new one not listed here) fails the test: the document, and so this test, must cover them all.
EVERY_OPERATION = {
    "GET /audit/releases", "GET /audit/artifacts", "GET /audit/download/{artifactId}", "GET /audit/files/{artifactId}",
    "GET /audit/access-logs", "GET /audit/access-log", "GET /audit/access-log/export",
    "GET /audit/manifest/{release}/{file}", "GET /audit/kit/{release}",
    "GET /", "GET /releases/{release}", "GET /releases/{release}/artifacts/{artifact_id}",
    "GET /releases/{release}/access-log", "GET /access-log",
    "GET /admin/grants", "POST /admin/grants", "POST /admin/grants/{grant_id}/revoke",
    "GET /releases/{release}/nda", "POST /releases/{release}/nda",
    "GET /login", "GET /callback", "POST /logout", "GET /signed-out",
}
# Routes not in the document, with the reason: /openapi.json is the document itself; /docs and /redoc are off by
# default (IG_DOCS_ENABLED); /healthz and /metrics are served on the health port, not here.
NOT_DOCUMENTED = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
ADMIN_OPERATIONS = (r"^/(audit/access-logs?|audit/access-log/export|audit/download/.*|admin/.*"
                    r"|releases/\{release\}/access-log)$")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance"


@pytest.fixture(scope="module")
def stack(infra: Any, database_url: str, kafka_bootstrap: str) -> Iterator[Stack]:
    yield shared_stack(database_url, kafka_bootstrap)


@pytest.fixture(scope="module")
def portal(stack: Stack) -> str:
    return stack.portal("portal-schemathesis", rate_requests_per_minute="100000",
                        rate_downloads_per_minute="100000")[1]


def get_json(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def real_names(portal: str, token: str, report_dir: Path) -> Path:
    """A schemathesis configuration that puts the tenant's real release and artifact ids in about half the
    generated requests: random names alone end in 404 before the pages' and downloads' own code runs."""
    artifacts = [a["id"] for a in get_json(f"{portal}/audit/artifacts?release={RELEASE}", token)["artifacts"]]
    assert artifacts
    config = report_dir / "schemathesis.toml"
    bindings = {f"{where}.{name}": dictionary for where, name, dictionary in (
        ("path", "release", "releases"), ("query", "release", "releases"),
        ("path", "artifactId", "artifacts"), ("path", "artifact_id", "artifacts"))}
    config.write_text(
        f"[dictionaries.releases]\nvalues = [{json.dumps(RELEASE)}]\n"
        f"[dictionaries.artifacts]\nvalues = {json.dumps(artifacts)}\n[parameters]\n"
        + "".join(f'"{key}" = {{ dictionary = "{name}", probability = 0.5 }}\n' for key, name in bindings.items()))
    return config


def schemathesis(portal: str, token: str, report_dir: Path, *extra: str) -> ElementTree.Element:
    """The schemathesis CLI (its pytest plugin does not load under --import-mode=importlib); redirects are not
    followed, so a 303 is checked as the documented answer it is."""
    cli = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [str(cli), "--config-file", str(real_names(portal, token, report_dir)), "run", f"{portal}/openapi.json",
         "--header", f"Authorization: Bearer {token}",
         "--checks", CHECKS, "--max-examples", "20", "--phases", "fuzzing", "--seed", "1",
         "--max-redirects", "0", "--workers", "2", "--report", "junit", "--report-dir", str(report_dir), *extra],
        capture_output=True, text=True, timeout=400)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    report = ElementTree.parse(next(report_dir.glob("junit-*.xml"))).getroot()
    assert (report.get("failures"), report.get("errors"), report.get("skipped")) == ("0", "0", "0"), output[-6000:]
    return report


def operations(report: ElementTree.Element) -> set[str | None]:
    return {case.get("name") for case in report.iter("testcase")}


def test_the_document_names_every_route(portal: str) -> None:
    with urllib.request.urlopen(f"{portal}/openapi.json", timeout=10) as response:
        document = json.load(response)
    documented = {f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item}
    assert documented == EVERY_OPERATION
    assert not NOT_DOCUMENTED & set(document["paths"])


def test_schemathesis_finds_no_server_errors_as_auditor(stack: Stack, portal: str, tmp_path: Path) -> None:
    report = schemathesis(portal, stack.token("alpha-auditor"), tmp_path)
    assert operations(report) == EVERY_OPERATION


def test_schemathesis_finds_no_server_errors_as_admin(stack: Stack, portal: str, tmp_path: Path) -> None:
    report = schemathesis(portal, stack.token("alpha-admin"), tmp_path, "--include-path-regex", ADMIN_OPERATIONS)
    assert operations(report) == {
        "GET /audit/access-logs", "GET /audit/access-log", "GET /audit/access-log/export",
        "GET /audit/download/{artifactId}", "GET /admin/grants", "POST /admin/grants",
        "POST /admin/grants/{grant_id}/revoke", "GET /releases/{release}/access-log"}
