"""Keeps what each rerun attempt failed with.

`make test` reruns a failed test up to twice (`PYTEST_RERUNS`), and a rerun that passes hides the first failure:
`-rR` prints only the test's name and the JUnit file keeps no trace of the attempt. Every rerun is a bug to find,
so each failed attempt's report and captured output are written beside the JUnit file (`junit.xml` ->
`junit-reruns.txt`; without one, `$ARTIFACTS/reruns.txt`), and the terminal summary names each attempt with the first
line of its failure.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class FailedAttempt:
    nodeid: str
    phase: str
    attempt: int
    text: str

    @property
    def headline(self) -> str:
        lines = [line for line in self.text.splitlines() if line.startswith("E ")]
        return (lines[0] if lines else (self.text.strip().splitlines() or [""])[-1])[:200]


class RerunRecorder:
    def __init__(self, record: Path | None) -> None:
        self.record = record
        self.attempts: list[FailedAttempt] = []
        if record is not None:
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text("")  # this session's attempts only

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if str(report.outcome) != "rerun":  # pytest-rerunfailures' outcome, outside pytest's own Literal
            return
        attempt = FailedAttempt(report.nodeid, report.when or "?", getattr(report, "rerun", 0) + 1,
                                report.longreprtext)
        self.attempts.append(attempt)
        if self.record is not None:
            with self.record.open("a") as out:
                out.write(f"=== {time.strftime('%Y-%m-%dT%H:%M:%S%z')} {attempt.nodeid} "
                          f"({attempt.phase}, attempt {attempt.attempt}, {report.duration:.1f} s)\n")
                out.write(attempt.text.rstrip() + "\n")
                for title, content in report.sections:  # captured output: what the attempt printed
                    out.write(f"--- {title}\n{content[-20000:].rstrip()}\n")
                out.write("\n")

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.attempts:
            return
        terminalreporter.section(f"failed attempts that were rerun: {len(self.attempts)}")
        for attempt in self.attempts:
            terminalreporter.line(f"{attempt.nodeid} ({attempt.phase}): {attempt.headline}")
        if self.record is not None:
            terminalreporter.line(f"each attempt's report and output: {self.record}")


def _record_path(config: pytest.Config) -> Path | None:
    junit = getattr(config.option, "xmlpath", None)
    if junit:
        junit_path = Path(junit).resolve()
        return junit_path.with_name(f"{junit_path.stem}-reruns.txt")
    artifacts = os.environ.get("ARTIFACTS")
    return Path(artifacts) / "reruns.txt" if artifacts else None


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("rerunfailures"):
        config.pluginmanager.register(RerunRecorder(_record_path(config)), "ig-rerun-record")
