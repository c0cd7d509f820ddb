"""skaffold.yaml and the Tiltfile agree with the release set: each chart and each image exactly once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from ig_infra.paths import REPO_ROOT
from ig_k8s.releases import load_release_set
from ig_k8s.suite import REGIONS

NAMESPACE, RELEASES = load_release_set()
CHARTS = {f"charts/{r.chart}" for r in RELEASES}
IMAGES = {r.image for r in RELEASES}


def skaffold() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((REPO_ROOT / "skaffold.yaml").read_text())
    return document


def run_tiltfile(region: str) -> dict[str, list[Any]]:
    """Evaluate the Tiltfile (Starlark is a Python subset) with recording stand-ins for Tilt's built-ins."""
    calls: dict[str, list[Any]] = {"docker_build": [], "helm": [], "k8s_yaml": [], "k8s_resource": []}

    def record(name: str) -> Any:
        def builtin(*args: Any, **kwargs: Any) -> Any:
            calls[name].append((args, kwargs))
            return ("helm-output", args[0]) if name == "helm" else None
        return builtin

    def fail(message: str) -> None:
        raise RuntimeError(message)

    config = SimpleNamespace(define_string=lambda *a, **k: None, parse=lambda: {"region": region})
    scope = {"config": config, "allow_k8s_contexts": lambda contexts: None, "fail": fail,
             "read_yaml": lambda path: yaml.safe_load((REPO_ROOT / path).read_text()),
             **{name: record(name) for name in calls}}
    exec(compile((REPO_ROOT / "Tiltfile").read_text(), "Tiltfile", "exec"), scope)
    return calls


def test_skaffold_builds_each_image_once_from_its_dockerfile() -> None:
    artifacts = skaffold()["build"]["artifacts"]
    counts = Counter(a["image"] for a in artifacts)
    assert set(counts) == IMAGES and set(counts.values()) == {1}
    for artifact in artifacts:
        name = artifact["image"].removeprefix("ig/")
        assert artifact["context"] == "."
        assert artifact["docker"]["dockerfile"] == f"services/{name}/Dockerfile"
        assert (REPO_ROOT / artifact["docker"]["dockerfile"]).is_file()


def test_skaffold_deploys_each_chart_once_with_its_own_image() -> None:
    releases = skaffold()["deploy"]["helm"]["releases"]
    counts = Counter(r["chartPath"] for r in releases)
    assert set(counts) == CHARTS and set(counts.values()) == {1}
    for release in releases:
        assert release["namespace"] == NAMESPACE
        assert (REPO_ROOT / release["chartPath"] / "Chart.yaml").is_file()
        variable = "ig_" + release["name"].replace("-", "_")
        assert release["setValueTemplates"]["image.repository"] == "{{.IMAGE_REPO_" + variable + "}}"
        assert release["setValueTemplates"]["image.tag"] == "{{.IMAGE_TAG_" + variable + "}}"


@pytest.mark.parametrize("region", REGIONS)
def test_skaffold_region_profile_adds_the_region_values_to_every_release(region: str) -> None:
    document = skaffold()
    profile = next(p for p in document["profiles"] if p["name"] == region)
    patched = {}
    for patch in profile["patches"]:
        if patch["path"] == "/deploy/kubeContext":
            assert patch["value"] == region
            continue
        index = int(patch["path"].split("/")[4])
        patched[document["deploy"]["helm"]["releases"][index]["name"]] = patch["value"]
    assert patched == {r.name: [f"charts/values-{region}.yaml"] for r in RELEASES}
    assert (REPO_ROOT / f"charts/values-{region}.yaml").is_file()


@pytest.mark.parametrize("region", REGIONS)
def test_tiltfile_builds_and_deploys_each_release_once(region: str) -> None:
    calls = run_tiltfile(region)
    images = Counter(args[0] for args, _ in calls["docker_build"])
    charts = Counter(args[0] for args, _ in calls["helm"])
    assert set(images) == IMAGES and set(images.values()) == {1}
    assert set(charts) == CHARTS and set(charts.values()) == {1}
    for args, kwargs in calls["docker_build"]:
        assert kwargs["dockerfile"] == f"services/{args[0].removeprefix('ig/')}/Dockerfile"
    for _, kwargs in calls["helm"]:
        assert kwargs["values"] == [f"charts/values-{region}.yaml"] and kwargs["namespace"] == NAMESPACE
    assert len(calls["k8s_yaml"]) == len(RELEASES)


def test_tiltfile_refuses_an_unknown_region() -> None:
    with pytest.raises(RuntimeError, match="unknown region"):
        run_tiltfile("region-z")


def test_skaffold_and_tilt_name_the_same_images_and_charts() -> None:
    tilt = run_tiltfile("region-a")
    assert {a[0] for a, _ in tilt["docker_build"]} == {a["image"] for a in skaffold()["build"]["artifacts"]}
    assert {a[0] for a, _ in tilt["helm"]} == {r["chartPath"] for r in skaffold()["deploy"]["helm"]["releases"]}
    assert Path(REPO_ROOT / "Tiltfile").read_text().count("docker_build(") == 1
