"""Shared fixtures of the Kubernetes delivery tests: the helm binary and rendered charts, cached per session."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ig_infra.process import InfraError
from ig_k8s.helm import Helm, manifests


@pytest.fixture(scope="session")
def helm() -> Helm:
    try:
        return Helm.create()
    except InfraError as error:  # helm is built from the Go module proxy; without Go it cannot exist
        pytest.fail(f"helm could not be built: {error}")


@pytest.fixture(scope="session")
def render(helm: Helm) -> Callable[..., list[dict[str, Any]]]:
    cache: dict[tuple[str, str, tuple[str, ...]], list[dict[str, Any]]] = {}

    def rendered(chart: str, region: str, sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        from ig_k8s.suite import CHARTS_DIR

        key = (chart, region, sets)
        if key not in cache:
            cache[key] = manifests(helm.template(CHARTS_DIR / chart, region, release=chart, sets=sets))
        return cache[key]

    return rendered

