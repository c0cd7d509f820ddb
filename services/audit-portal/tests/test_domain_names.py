"""Release names and artifact ids: traversal, separators and absurd ids are refused before any lookup."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ig_portal.domain.names import ARTIFACT_ID, InvalidName, check_artifact_id, check_release


@pytest.mark.parametrize("value", ["sha256:" + "a" * 64, "art_01HZX", "v1.2.1-sbom.spdx.json", "a"])
def test_plausible_artifact_ids_pass(value: str) -> None:
    assert check_artifact_id(value) == value


@pytest.mark.parametrize("value", ["", "..", "../etc/passwd", "a/../b", "a/b", "..%2f..", "a\\b", "x" * 201,
                                   "%00", "a\x00b", ".hidden", "-rf", "a b", "é"])
def test_absurd_artifact_ids_are_refused(value: str) -> None:
    with pytest.raises(InvalidName, match="artifactId"):
        check_artifact_id(value)


@pytest.mark.parametrize("value", ["v1.2.1", "1.0.0", "v2.0.0-rc.1+build.5"])
def test_release_names_pass(value: str) -> None:
    assert check_release(value) == value


@pytest.mark.parametrize("value", ["", "../v1", "v1/x", "v" * 65, " v1", "v1..2"])
def test_bad_release_names_are_refused(value: str) -> None:
    with pytest.raises(InvalidName, match="release"):
        check_release(value)


@given(st.text(max_size=300))
def test_accepted_ids_never_contain_separators_or_dotdot(value: str) -> None:
    try:
        check_artifact_id(value)
    except InvalidName:
        return
    assert "/" not in value and "\\" not in value and ".." not in value and ARTIFACT_ID.match(value)


@pytest.mark.parametrize("value", ["v1.2.1\n", "v1.2.1\r\n"])
def test_a_trailing_newline_is_refused_in_a_release_name(value: str) -> None:
    # re.match with "$" accepts a string ending in "\n"; names are matched whole (fullmatch).
    with pytest.raises(InvalidName, match="release"):
        check_release(value)


def test_a_trailing_newline_is_refused_in_an_artifact_id() -> None:
    with pytest.raises(InvalidName, match="artifactId"):
        check_artifact_id("art_01HZX\n")
