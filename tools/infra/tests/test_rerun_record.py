"""A rerun that passes must not hide why the first attempt failed."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

FLAKY_ONCE = """
from pathlib import Path

def test_flaky(tmp_path_factory):
    marker = Path(__file__).with_name("attempted")
    if not marker.exists():
        marker.write_text("1")
        print("the first attempt's own output")
        assert 1 + 1 == 3, "first attempt fails on purpose"

def test_steady():
    pass
"""


def run_flaky_session(pytester: pytest.Pytester) -> tuple[pytest.RunResult, Path]:
    pytester.makepyfile(test_flaky=FLAKY_ONCE)
    junit = pytester.path / "out" / "junit.xml"
    result = pytester.runpytest_subprocess("-p", "ig_infra.rerun_record", "--reruns", "1", "-rR",
                                           f"--junitxml={junit}")
    return result, junit.with_name("junit-reruns.txt")


def test_a_failed_attempt_is_kept_with_its_failure_and_output(pytester: pytest.Pytester) -> None:
    result, record = run_flaky_session(pytester)
    assert result.parseoutcomes() == {"passed": 2, "rerun": 1}
    text = record.read_text()
    assert "test_flaky.py::test_flaky (call, attempt 1" in text
    assert "first attempt fails on purpose" in text
    assert "the first attempt's own output" in text
    assert "test_steady" not in text


def test_the_summary_names_each_failed_attempt(pytester: pytest.Pytester) -> None:
    result, record = run_flaky_session(pytester)
    result.stdout.fnmatch_lines([
        "*failed attempts that were rerun: 1*",
        "test_flaky.py::test_flaky (call): E * first attempt fails on purpose*",
        f"each attempt's report and output: {record}",
    ])


def test_a_session_without_reruns_leaves_an_empty_record(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fine="def test_fine():\n    pass\n")
    junit = pytester.path / "junit.xml"
    stale = junit.with_name("junit-reruns.txt")
    stale.write_text("=== an earlier session's attempt\n")
    result = pytester.runpytest_subprocess("-p", "ig_infra.rerun_record", "--reruns", "1", f"--junitxml={junit}")
    result.assert_outcomes(passed=1)
    assert stale.read_text() == ""
    assert "failed attempts that were rerun" not in result.stdout.str()
