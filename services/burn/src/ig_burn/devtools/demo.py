"""The burn service's demo profile: scaled windows and the release flow's demo SLOs, for a suite people watch.

`make up` (tools/infra) and the release flow's own test suite (ig_release.suite) start the suite's burn service with
these settings; production windows stay the default everywhere else. Every window is divided by 86400 (30 d lasts
30 s), so a burst of seconds moves the monthly budget; `/get-burn` (`windowScale`), the `/burn` page's banner and
the `ig_burn_window_scale` gauge say so. The scale applies to every SLO the service computes, the suite's own ones
too.

Besides the packaged SLOs the profile declares two on the synthetic exporter the release flow's burn stage starts
and registers with the shared Prometheus: ``release-synthetic-<id>`` (series s0000, the throttle policy the burst
engages) and ``assets-api-<id>`` (series s0001, healthy: the migration's SLO-headroom gate asks for service
assets-api). The shared Prometheus serves every suite on the machine, so the exporter's job and the SLO names carry
the suite's id: two suites never sum each other's series nor see each other's alerts.

``python -m ig_burn.devtools.demo --suite-id ID --slo-dir DIR`` writes the SLO directory and prints the settings
as JSON (how tools/infra, which does not import the services, gets them).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ig_burn.devtools.harness import synthetic_slo_yaml, throttle_policy_yaml
from ig_burn.settings import DEFAULT_CONFIG

WINDOW_SCALE = 86400
# The shared Prometheus scrapes the services every 5 s: a rate needs two samples in its window, so no scaled window
# is shorter than three scrapes (7 d and every alert window become 15 s; the month stays 30 s).
MIN_WINDOW_SECONDS = 15
DEMO_SETTINGS = {
    "IG_WINDOW_SCALE": str(WINDOW_SCALE),
    "IG_MIN_WINDOW_SECONDS": str(MIN_WINDOW_SECONDS),
    "IG_EVALUATION_INTERVAL_SECONDS": "1",
    # The recording rules Prometheus loads compute production windows: a scaled service must not read them.
    "IG_RECORDING_RULES_MAX_AGE_SECONDS": "0",
}
_SUITE_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


@dataclass(frozen=True)
class DemoNames:
    """The names one suite's demo workload goes by in the shared Prometheus and in its burn service."""

    suite_id: str

    def __post_init__(self) -> None:
        if not _SUITE_ID.fullmatch(self.suite_id):
            raise ValueError(f"suite id {self.suite_id!r}: lower-case letters, digits and '-', at most 32")

    @property
    def synthetic_job(self) -> str:
        """The job label the shared Prometheus gives the synthetic exporter (file_sd target)."""
        return f"release-synthetic-{self.suite_id}"

    @property
    def slo(self) -> str:
        """The SLO the burst burns; its throttle policy flips the suite's flags, BurnThrottleEngaged names it."""
        return f"release-synthetic-{self.suite_id}"

    @property
    def assets_slo(self) -> str:
        return f"assets-api-{self.suite_id}"

    @property
    def burn_metrics_job(self) -> str:
        """The job of a burn service's /metrics registered as a file_sd target (a suite not scraped by name)."""
        return f"burn-{self.suite_id}"


def write_slo_dir(names: DemoNames, directory: Path, *, packaged: bool = True) -> Path:
    """The demo workload's two SLOs in ``directory`` (replaced), beside the packaged ones unless ``packaged`` is
    False (a suite that does not run the services they measure, whose jobs are `make up`'s)."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for document in sorted(DEFAULT_CONFIG.glob("*.yaml")) if packaged else []:
        shutil.copyfile(document, directory / document.name)
    # minDwell 2 s: the burst and its rollback each last seconds in the demo.
    (directory / "release-synthetic.yaml").write_text(
        synthetic_slo_yaml(names.slo, series="s0000", job=names.synthetic_job) + "---\n"
        + throttle_policy_yaml(names.slo, min_dwell="2s"), encoding="utf-8")
    (directory / "assets-api.yaml").write_text(
        synthetic_slo_yaml(names.assets_slo, series="s0001", job=names.synthetic_job)
        .replace("service: synthetic", "service: assets-api"), encoding="utf-8")
    return directory


def demo_settings(names: DemoNames, directory: Path, *, packaged: bool = True) -> dict[str, str]:
    """The IG_* settings of the demo profile, after writing its SLO directory."""
    return {**DEMO_SETTINGS, "IG_SLO_DIR": str(write_slo_dir(names, directory, packaged=packaged))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite-id", required=True, help="e.g. region-a: names the demo SLOs and exporter job")
    parser.add_argument("--slo-dir", required=True, type=Path, help="where to write the SLO files (replaced)")
    args = parser.parse_args(argv)
    try:
        names = DemoNames(args.suite_id)
    except ValueError as error:
        parser.error(str(error))
    print(json.dumps(demo_settings(names, args.slo_dir)))


if __name__ == "__main__":
    main()
