"""Names checked with a `^...$` pattern and `re.match` accepted a trailing newline (`$` matches before one): the
security review's "re.match with $" finding. Each validator takes the name and refuses it with a newline after."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from ig_evidence.domain.manifest import validate_artifact_name, validate_release
from ig_evidence.domain.tiles import parse_tile_path

VALIDATORS: list[tuple[str, Callable[[str], object], str]] = [
    ("release", validate_release, "v1.2.1"),
    ("artifact name", validate_artifact_name, "sbom.cdx.json"),
    ("tile path", parse_tile_path, "0/x001/234"),
]


@pytest.mark.parametrize(("what", "validate", "good"), VALIDATORS, ids=[v[0] for v in VALIDATORS])
def test_a_name_followed_by_a_newline_is_refused(what: str, validate: Callable[[str], object], good: str) -> None:
    validate(good)
    for suffix in ("\n", "\r\n", " "):
        with pytest.raises(ValueError):
            validate(good + suffix)
