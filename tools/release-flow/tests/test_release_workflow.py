"""The release workflow's shape: what it downloads some job of it uploads, and its one command is a valid
`ig-release job` call (the job itself runs for real in e2e/test_release_flow.py)."""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from ig_release.cli import parser
from ig_release.publish import GitHubPublisher
from ig_release.release_job import JobOptions

REPO = Path(__file__).resolve().parents[3]
WORKFLOW = REPO / ".github/workflows/release.yml"


def workflow() -> dict[Any, Any]:
    return dict(yaml.safe_load(WORKFLOW.read_text()))


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(action)]


def upstream(jobs: dict[str, Any], name: str) -> set[str]:
    """Every job ``name`` waits for, directly or not (its artifacts exist when ``name`` starts)."""
    needs = jobs[name].get("needs", [])
    direct = {needs} if isinstance(needs, str) else set(needs)
    return direct.union(*(upstream(jobs, n) for n in direct)) if direct else set()


def undelivered_downloads(definition: dict[str, Any]) -> list[str]:
    jobs = definition["jobs"]
    problems = []
    for name, job in jobs.items():
        uploaded = [s["with"]["name"] for j in upstream(jobs, name)
                    for s in steps_using(jobs[j], "actions/upload-artifact")]
        for step in steps_using(job, "actions/download-artifact"):
            wanted = step["with"].get("pattern") or step["with"].get("name")
            if not any(fnmatch.fnmatchcase(u, wanted) for u in uploaded):
                problems.append(f"{name} downloads {wanted!r}, which no job it needs uploads")
    return problems


def test_a_tag_triggers_it() -> None:
    definition = workflow()
    triggers: dict[str, Any] = definition["on"] if "on" in definition else definition[True]  # YAML 1.1: on = true
    assert triggers["push"]["tags"] == ["v*.*.*"]


def test_every_artifact_it_downloads_is_uploaded_by_a_job_it_needs() -> None:
    assert undelivered_downloads(workflow()) == []
    # The check catches what the old workflow did: download evidence-* that no job of it produced.
    orphan = workflow()
    orphan["jobs"]["tests"]["steps"] = [s for s in orphan["jobs"]["tests"]["steps"]
                                        if not str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert undelivered_downloads(orphan) == ["evidence downloads 'evidence-*', which no job it needs uploads"]


def job_command() -> list[str]:
    """The evidence job's `ig-release job` call, with the workflow's variables as the runner would expand them."""
    scripts = [s["run"] for s in workflow()["jobs"]["evidence"]["steps"] if "ig-release job" in s.get("run", "")]
    assert len(scripts) == 1, "the evidence job calls `ig-release job` exactly once"
    line = re.search(r"ig-release job.*?(?<!\\)$", scripts[0].replace("\\\n", " "), re.M | re.S)
    assert line is not None
    expanded = line.group(0).replace('"$RUNNER_TEMP/cosign.pub"', str(WORKFLOW))  # an existing file stands in
    expanded = expanded.replace('"$VERSION"', "v1.2.1").replace('"$KEYLESS_IDENTITY"', "https://github.com/o/r")
    return shlex.split(expanded)[1:]


def test_its_one_command_is_a_valid_release_job_that_publishes_to_github_with_the_pinned_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = job_command()
    monkeypatch.chdir(tmp_path)  # the checkout, where download-artifact put the collected evidence
    (tmp_path / "artifacts" / "collected").mkdir(parents=True)
    args = parser().parse_args(argv)
    options = JobOptions.from_arguments(args)
    assert args.command == "job" and args.start_suite
    assert isinstance(options.publisher, GitHubPublisher)
    assert options.key == "env://COSIGN_PRIVATE_KEY" and options.public_key is not None
    assert options.produce and options.collected is not None and options.collected.name == "collected"
    assert options.keyless_identity == "https://github.com/o/r"


@pytest.mark.parametrize(("argv", "message"), [
    (["--key", "env://K"], "--key and --public-key go together"),
    (["--no-produce"], "--no-produce needs --collected"),
    (["--collected", "/nonexistent/collected"], "no such folder"),
])
def test_bad_job_options_are_named(argv: list[str], message: str) -> None:
    args = parser().parse_args(["job", "--version", "v1.2.1", "--publish", "dir:/tmp/x", *argv])
    with pytest.raises(ValueError, match=message):
        JobOptions.from_arguments(args)


def test_the_workflow_job_runs_the_flows_producing_stages_between_collect_and_the_bundle(tmp_path: Path,
                                                                                         monkeypatch: pytest.MonkeyPatch
                                                                                         ) -> None:
    # The e2e test (e2e/test_release_flow.py) produces once, through `ig-release run`, and hands the job what that
    # produced with --no-produce: this is what makes the job CI runs produce the same way.
    from ig_release.flow import STAGES
    from ig_release.release_job import job_stages

    monkeypatch.chdir(tmp_path)
    (tmp_path / "artifacts" / "collected").mkdir(parents=True)
    options = JobOptions.from_arguments(parser().parse_args(job_command()))
    stages = job_stages(options)
    assert [s.name for s in stages] == ["collect", "policy", "burn", "migration", "region", "previous", "evidence",
                                        "keyless", "portal", "publish"]
    flow = {s.name: s for s in STAGES}
    assert all(s is flow[s.name] for s in stages if s.name in ("policy", "burn", "migration", "region", "evidence",
                                                               "portal"))
    no_produce = parser().parse_args(["job", "--version", "v1.2.1", "--publish", "dir:/tmp/x", "--no-produce",
                                      "--collected", str(tmp_path / "artifacts" / "collected")])
    assert [s.name for s in job_stages(JobOptions.from_arguments(no_produce))] == [
        "collect", "previous", "evidence", "portal", "publish"]


SETUP_SUITE = REPO / ".github/actions/setup-suite/action.yml"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
# Never restored from a cache in the job that signs: what signs (cosign), what the signing code is installed from
# (uv's cache) and the CA the job's suite trusts.
SIGNING_TOOLCHAIN = ("~/.cache/ig-mc/cosign-", "~/.cache/ig-mc/dev-ca-", "~/.cache/uv")


def remote_actions() -> list[str]:
    definitions = [workflow(), dict(yaml.safe_load(SETUP_SUITE.read_text()))]
    steps = [s for w in definitions for job in w.get("jobs", {}).values() for s in job["steps"]]
    steps += [s for w in definitions for s in w.get("runs", {}).get("steps", [])]
    return [str(s["uses"]) for s in steps if "uses" in s and not str(s["uses"]).startswith("./")]


def test_every_action_is_pinned_to_a_commit_not_a_tag_that_can_move() -> None:
    uses = remote_actions()
    assert uses and [u for u in uses if not PINNED.match(u)] == []


def restored_path_sets(signing: bool) -> list[list[str]]:
    """The paths of each cache step of setup-suite that runs with `signing` as the job passes it."""
    steps = dict(yaml.safe_load(SETUP_SUITE.read_text()))["runs"]["steps"]
    found: list[list[str]] = []
    for step in steps:
        if not str(step.get("uses", "")).startswith("actions/cache"):
            continue
        condition = step.get("if")
        assert condition in (None, "inputs.signing != 'true'"), f"an `if` this test cannot judge: {condition}"
        if condition is not None and signing:
            continue
        found.append([p.strip() for p in step["with"]["path"].splitlines() if p.strip()])
    return found


def restores_any_of(path_sets: list[list[str]], wanted: tuple[str, ...]) -> list[str]:
    """Which of the wanted path prefixes some cache step restores (its `!` exclusions apply to that step only)."""
    found = []
    for prefix in wanted:
        for paths in path_sets:
            excluded = [p[1:] for p in paths if p.startswith("!")]
            covering = [p for p in paths if not p.startswith("!") and (prefix.startswith(p.rstrip("*"))
                                                                        or p.startswith(prefix))]
            if covering and not any(e.startswith(prefix) for e in excluded):
                found.append(prefix)
                break
    return found


def test_the_signing_job_restores_no_part_of_its_signing_toolchain_from_a_cache() -> None:
    evidence = workflow()["jobs"]["evidence"]
    setup = steps_using(evidence, "./.github/actions/setup-suite")
    assert len(setup) == 1 and setup[0].get("with", {}).get("signing") == "true"
    assert restores_any_of(restored_path_sets(signing=True), SIGNING_TOOLCHAIN) == []
    # The tests job keeps its caches (nothing it builds is signed), so the check above is not vacuous.
    assert restores_any_of(restored_path_sets(signing=False), SIGNING_TOOLCHAIN) == list(SIGNING_TOOLCHAIN)
