"""Chart READMEs list every value with its default (generated from values.yaml; stale tables fail here)."""

from __future__ import annotations

import pytest
import yaml
from ig_k8s import values_docs
from ig_k8s.suite import SERVICES, ServiceImage

VALUES = """\
# -- Image settings as one value.
image:
  repository: ig/x
  tag: ""
ports:
  # -- HTTP port.
  http: 8080
  grpc: 0
# -- Extra labels.
labels: {}
"""


def test_documented_values_carry_their_path_description_and_default() -> None:
    found = {v.path: (v.description, v.default, v.type_name) for v in values_docs.documented_values(VALUES)}
    assert found == {
        "image": ("Image settings as one value.", {"repository": "ig/x", "tag": ""}, "object"),
        "ports.http": ("HTTP port.", 8080, "number"),
        "labels": ("Extra labels.", {}, "object"),
    }


def test_leaves_without_a_description_are_reported() -> None:
    assert values_docs.undocumented_leaves(VALUES) == ["ports.grpc"]


@pytest.mark.parametrize(("existing", "kept"), [
    ("# x\n\nIntro.\n", "Intro."),
    (f"# x\n\nIntro.\n\n## Values\n\n{values_docs.BEGIN}\nold table\n{values_docs.END}\n\nAfter.\n", "After."),
])
def test_render_replaces_only_the_generated_block(existing: str, kept: str) -> None:
    rendered = values_docs.render_readme(existing, VALUES)
    assert kept in rendered and "old table" not in rendered
    assert "| `ports.http` | number | `8080` | HTTP port. |" in rendered
    assert values_docs.render_readme(rendered, VALUES) == rendered


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_every_chart_value_is_documented_with_its_default(service: ServiceImage) -> None:
    text = (service.chart_dir / "values.yaml").read_text()
    assert values_docs.undocumented_leaves(text) == []
    readme = (service.chart_dir / "README.md").read_text()
    assert values_docs.stale_readmes([service.chart_dir]) == [], "run `uv run ig-k8s docs`"
    for leaf in values_docs.leaf_paths(yaml.safe_load(text)):
        documented = [v.path for v in values_docs.documented_values(text)
                      if leaf == v.path or leaf.startswith(v.path + ".")]
        assert documented and f"| `{documented[0]}` |" in readme
