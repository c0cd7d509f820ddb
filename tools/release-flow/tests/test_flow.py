"""The flow's own mechanics, without the suite: usage errors, preflight, stage failure reporting, evidence layout."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest
from ig_common.ports import free_port
from ig_release.cli import main
from ig_release.context import ReleaseContext, StageFailed
from ig_release.flow import Stage, prerequisites, run_flow, select
from ig_release.settings import PROFILES, Endpoints
from rich.console import Console


@pytest.mark.parametrize("argv", [["run", "--version", "1.2.1"], ["run", "--version", "v1.2.1", "--stage", "nope"],
                                  ["run", "--version", "v1.2.1", "--image-subjects", "/nonexistent/subjects.json"]])
def test_usage_errors_exit_2(argv: list[str], tmp_path: Path) -> None:
    assert main([*argv, "--artifacts", str(tmp_path)]) == 2


def test_preflight_names_what_is_not_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("IG_POLICY_GRPC", f"127.0.0.1:{free_port()}")
    assert main(["run", "--version", "v1.2.1", "--profile", "ci", "--stage", "policy",
                 "--artifacts", str(tmp_path)]) == 1
    # The console wraps a long line (more is unreachable when the infrastructure is down too): compare words.
    assert "policy service (IG_POLICY_GRPC)" in " ".join(capsys.readouterr().out.split())


def test_the_migration_stage_needs_the_suites_migration_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # The stage goes through MigrationService: without it the flow stops before starting, naming it.
    monkeypatch.setenv("IG_MIGRATION_GRPC", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("IG_DATABASE_URL", f"postgresql://ig@127.0.0.1:{_listening()}/ig")
    monkeypatch.setenv("IG_KAFKA_BOOTSTRAP", f"127.0.0.1:{_listening()}")
    assert main(["run", "--version", "v1.2.1", "--profile", "ci", "--stage", "migration",
                 "--artifacts", str(tmp_path)]) == 1
    assert "migration service (IG_MIGRATION_GRPC)" in capsys.readouterr().out


def test_the_burn_stage_needs_the_suites_burn_service_and_prometheus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # The stage drives the suite's own burn service and the shared Prometheus: without them it never starts.
    monkeypatch.setenv("IG_BURN_API", f"https://127.0.0.1:{free_port()}")
    monkeypatch.setenv("IG_PROMETHEUS_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("IG_DATABASE_URL", f"postgresql://ig@127.0.0.1:{_listening()}/ig")
    monkeypatch.setenv("IG_KAFKA_BOOTSTRAP", f"127.0.0.1:{_listening()}")
    assert main(["run", "--version", "v1.2.1", "--profile", "ci", "--stage", "burn",
                 "--artifacts", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "burn service (IG_BURN_API)" in out and "Prometheus (IG_PROMETHEUS_URL)" in out


def test_endpoints_default_to_the_make_up_ports_and_follow_ig_variables() -> None:
    defaults = Endpoints.from_environment({})
    assert (defaults.policy_grpc, defaults.portal_url) == ("127.0.0.1:50051", "http://127.0.0.1:8080")
    moved = Endpoints.from_environment({"IG_EVIDENCE_GRPC": "127.0.0.1:6000",
                                        "IG_DATABASE_URL": "postgresql://ig@db:5432/ig?sslmode=disable"})
    assert moved.evidence_grpc == "127.0.0.1:6000"
    assert moved.database("ig_release_assets") == "postgresql://ig@db:5432/ig_release_assets?sslmode=disable"


def context(tmp_path: Path) -> ReleaseContext:
    endpoints = Endpoints.from_environment({"IG_DATABASE_URL": f"postgresql://ig@127.0.0.1:{_listening()}/ig",
                                            "IG_KAFKA_BOOTSTRAP": f"127.0.0.1:{_listening()}"})
    return ReleaseContext("v1.2.1", PROFILES["ci"], tmp_path, endpoints)


_LISTENERS: list[socket.socket] = []


def _listening() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    _LISTENERS.append(sock)
    return int(sock.getsockname()[1])


def test_a_failing_stage_stops_the_flow_naming_the_stage_and_its_log(tmp_path: Path) -> None:
    ran: list[str] = []

    def ok(ctx: ReleaseContext, _: ExitStack) -> str:
        ran.append("first")
        return "fine"

    def broken(ctx: ReleaseContext, _: ExitStack) -> str:
        raise StageFailed("the thing broke", ctx.logs / "broken.log")

    def never(ctx: ReleaseContext, _: ExitStack) -> str:
        ran.append("never")
        return "unreachable"

    console = Console(record=True, width=200)
    ctx = context(tmp_path)
    stages = [Stage("first", "ok", ok), Stage("second", "breaks", broken), Stage("third", "not run", never)]
    assert run_flow(ctx, stages, console) == 1
    assert ran == ["first"]
    text = console.export_text()
    assert "stage second failed" in text and "the thing broke" in text and str(ctx.logs / "broken.log") in text
    record = json.loads((tmp_path / "release-flow.json").read_text())
    assert [(s["stage"], s["state"]) for s in record["stages"]] == [("first", "passed"), ("second", "failed")]


def test_independent_stages_run_at_the_same_time_and_a_stage_waits_for_what_it_needs(tmp_path: Path) -> None:
    both_running = threading.Barrier(2, timeout=10)  # broken (and the stage failed) unless the two overlap
    finished: dict[str, float] = {}
    started: dict[str, float] = {}

    def meet(name: str) -> Callable[[ReleaseContext, ExitStack], str]:
        def run(ctx: ReleaseContext, _: ExitStack) -> str:
            started[name] = time.monotonic()
            try:
                both_running.wait()
            except threading.BrokenBarrierError as error:
                raise StageFailed(f"{name} ran alone") from error
            time.sleep(0.2 if name == "a" else 0)
            finished[name] = time.monotonic()
            return name
        return run

    def after_a(ctx: ReleaseContext, _: ExitStack) -> str:
        started["c"] = time.monotonic()
        return "c"

    stages = [Stage("a", "", meet("a"), after=()), Stage("b", "", meet("b"), after=()),
              Stage("c", "", after_a, after=("a",)), Stage("d", "", lambda c, _: "d")]
    assert run_flow(context(tmp_path), stages, Console(record=True, width=200)) == 0
    assert started["c"] >= finished["a"]
    record = json.loads((tmp_path / "release-flow.json").read_text())
    assert [s["stage"] for s in record["stages"]][-1] == "d"  # after=None: every stage listed before it


def test_after_a_failure_no_stage_starts_and_the_running_ones_finish(tmp_path: Path) -> None:
    ran: list[str] = []
    slow_started = threading.Event()

    def slow(ctx: ReleaseContext, _: ExitStack) -> str:
        slow_started.set()
        # Still running when the flow handles the failure: it finishes only once the failure is on record (a fixed
        # sleep let a loaded machine see both stages finished at once).
        record = ctx.artifacts / "release-flow.json"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (record.exists() and '"failed"' in record.read_text()):
            time.sleep(0.01)
        ran.append("slow")
        return "slow"

    def broken(ctx: ReleaseContext, _: ExitStack) -> str:
        slow_started.wait(10)
        raise StageFailed("broke")

    def dependent(ctx: ReleaseContext, _: ExitStack) -> str:
        ran.append("dependent")
        return "dependent"

    stages = [Stage("slow", "", slow, after=()), Stage("broken", "", broken, after=()),
              Stage("dependent", "", dependent, after=("slow",))]
    console = Console(record=True, width=200)
    assert run_flow(context(tmp_path), stages, console) == 1
    assert ran == ["slow"]
    assert "waiting for the stages still running: slow" in console.export_text()
    record = json.loads((tmp_path / "release-flow.json").read_text())
    assert [(s["stage"], s["state"]) for s in record["stages"]] == [("broken", "failed"), ("slow", "passed")]


def test_the_flow_runs_policy_burn_and_region_side_by_side_and_the_bundle_last() -> None:
    needs = prerequisites(select(None))
    assert needs["policy"] == needs["burn"] == needs["region"] == set()
    assert needs["migration"] == {"burn"}
    assert needs["failover"] == {"policy", "burn", "migration", "region"}  # it freezes region-a: alone
    assert needs["evidence"] == {"policy", "burn", "migration", "region", "failover"}
    assert needs["portal"] == {"policy", "burn", "migration", "region", "failover", "evidence"}
    assert prerequisites(select(["migration"]))["migration"] == set()  # burn not selected: nothing to wait for


def test_warm_ups_run_before_the_first_stage_and_a_failed_one_stops_the_flow(tmp_path: Path) -> None:
    ran: list[str] = []

    def stage(name: str) -> Stage:
        def run(ctx: ReleaseContext, _: ExitStack) -> str:
            ran.append(name)
            return "ok"
        return Stage(name, name, run)

    def warm(ctx: ReleaseContext, resources: ExitStack) -> None:
        ran.append("warm second")
        resources.callback(ran.append, "cooled second")  # kept until the flow ends

    def cold(ctx: ReleaseContext, _: ExitStack) -> None:
        raise StageFailed("no exporter")

    first, second = stage("first"), stage("second")
    second = Stage(second.name, second.title, second.run, warm_up=warm)
    assert run_flow(context(tmp_path), [first, second], Console(record=True, width=200)) == 0
    assert ran == ["warm second", "first", "second", "cooled second"]
    ran.clear()
    console = Console(record=True, width=200)
    assert run_flow(context(tmp_path), [first, Stage("second", "x", second.run, warm_up=cold)], console) == 1
    text = console.export_text()
    assert ran == [] and "stage second failed warming up: no exporter" in text


def test_evidence_inputs_are_laid_out_by_type_and_clashing_names_refused(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "report.json").write_text(folder)
    ctx.add_evidence("slo-report", tmp_path / "a" / "report.json")
    inputs = ctx.write_evidence_inputs(tmp_path / "inputs")
    assert (inputs / "slo-report" / "report.json").read_text() == "a"
    ctx.add_evidence("slo-report", tmp_path / "b" / "report.json")
    with pytest.raises(StageFailed, match=r"both named report\.json"):
        ctx.write_evidence_inputs(tmp_path / "inputs")
    with pytest.raises(StageFailed, match="was not written"):
        ctx.add_evidence("dr-log", tmp_path / "missing.json")


def test_stage_selection_keeps_the_flow_order() -> None:
    assert [s.name for s in select(["portal", "policy"])] == ["policy", "portal"]
    assert len(select(None)) == 7
