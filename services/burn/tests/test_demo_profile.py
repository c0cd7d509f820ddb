"""The demo profile (ig_burn.devtools.demo): its SLO directory loads, its demo SLOs are the suite's own, its scale is
exported as a metric. No infrastructure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ig_burn.config_loader import load_config
from ig_burn.devtools.demo import DEMO_SETTINGS, DemoNames, main, write_slo_dir
from ig_burn.domain.burn import WindowScale
from ig_burn.engine import BurnEngine
from ig_burn.settings import DEFAULT_CONFIG
from prometheus_client import REGISTRY


def test_the_demo_slo_dir_holds_the_packaged_slos_and_the_suites_two(tmp_path: Path) -> None:
    names = DemoNames("region-b")
    config = load_config(write_slo_dir(names, tmp_path / "slos"))
    packaged = {s.name for s in load_config(DEFAULT_CONFIG).slos}
    assert {s.name for s in config.slos} == packaged | {"release-synthetic-region-b", "assets-api-region-b"}
    by_name = {s.name: s for s in config.slos}
    # Both read the suite's own exporter job only: another suite's exporter on the shared Prometheus is not summed.
    for name in (names.slo, names.assets_slo):
        assert 'job="release-synthetic-region-b"' in by_name[name].indicator.total
    assert by_name[names.assets_slo].service == "assets-api"
    assert [p.slo for p in config.policies if p.slo == names.slo] == [names.slo]


def test_a_suite_without_the_measured_services_declares_the_demo_slos_only(tmp_path: Path) -> None:
    config = load_config(write_slo_dir(DemoNames("suite-1"), tmp_path / "slos", packaged=False))
    assert {s.name for s in config.slos} == {"release-synthetic-suite-1", "assets-api-suite-1"}


def test_suite_ids_are_checked_before_they_name_anything() -> None:
    for bad in ("", "Region-A", "a" * 33, "a_b", "-a", 'a"}'):
        with pytest.raises(ValueError, match="suite id"):
            DemoNames(bad)


def test_the_cli_prints_the_demo_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--suite-id", "region-a", "--slo-dir", str(tmp_path / "slos")])
    settings = json.loads(capsys.readouterr().out)
    assert settings == {**DEMO_SETTINGS, "IG_SLO_DIR": str(tmp_path / "slos")}
    assert settings["IG_WINDOW_SCALE"] == "86400" and settings["IG_RECORDING_RULES_MAX_AGE_SECONDS"] == "0"
    assert (tmp_path / "slos" / "release-synthetic.yaml").is_file()


@pytest.mark.parametrize("divisor", [1.0, 86400.0])
def test_the_window_scale_is_exported_as_a_metric(divisor: float) -> None:
    config = load_config(DEFAULT_CONFIG)
    unused: Any = None  # the constructor keeps the clients; nothing here queries or writes
    BurnEngine(config, unused, unused, "burn", scale=WindowScale(divisor, 15), batch_size=250,
               external_url="http://x")
    assert REGISTRY.get_sample_value("ig_burn_window_scale") == divisor
