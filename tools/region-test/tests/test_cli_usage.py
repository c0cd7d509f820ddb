"""Bad or missing thresholds are a usage error (exit 2) before anything is built."""

from __future__ import annotations

import pytest
from ig_region_test.cli import main

CASES = [
    ([], "nothing to do"),
    (["--simulate-failover"], "--assert-rpo is required"),
    (["--simulate-failover", "--assert-rpo", "300"], "--assert-rto is required"),
    (["--simulate-failover", "--assert-rpo", "five", "--assert-rto", "1800"], "--assert-rpo must be a number"),
    (["--simulate-failover", "--assert-rpo", "300", "--assert-rto", "-3"], "--assert-rto must be a finite"),
    (["--simulate-failover", "--assert-rpo", "300", "--assert-rto", "10", "--time-limit", "x"], "--time-limit"),
    (["--simulate-failover", "--assert-rpo", "1", "--assert-rto", "1", "--replication", "semi"], "invalid choice"),
    (["--simulate-failover", "--assert-rpo", "1", "--assert-rto", "1", "--warmup", "-1"], "--warmup"),
]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(c[0]) or "no-args" for c in CASES])
def test_usage_errors_exit_2_and_say_why(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    stderr = capsys.readouterr().err
    assert message in stderr
    assert "usage: region-test" in stderr
