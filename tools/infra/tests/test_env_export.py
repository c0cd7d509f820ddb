"""`eval "$(ig-infra env)"` hands a shell every value whole (a DSN with its TLS parameters has '&' in it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ig_infra.cli import infra_components
from ig_infra.paths import Paths


def test_eval_of_env_gives_the_shell_each_value_unchanged() -> None:
    expected = {key: value for component in infra_components(Paths.from_environment())
                for key, value in component.env().items()}
    assert any("&" in value for value in expected.values()), "no value here needs quoting: the test proves nothing"
    ig_infra = Path(sys.executable).parent / "ig-infra"
    script = f'eval "$({ig_infra} env)" && env -0'
    done = subprocess.run(["bash", "-c", script], capture_output=True, timeout=60, check=True)
    seen = dict(item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)
    assert {key: seen.get(key) for key in expected} == expected
