"""Names checked with a `^...$` pattern and `re.match` accepted a trailing newline (`$` matches before one): the
security review's "re.match with $" finding. Each validator takes the name and refuses it with a newline after."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from ig_burn.domain.flags import check_flag_key

VALIDATORS: list[tuple[str, Callable[[str], object], str]] = [
    ("flag key", check_flag_key, "subs.optimizedBuffer"),
]


@pytest.mark.parametrize(("what", "validate", "good"), VALIDATORS, ids=[v[0] for v in VALIDATORS])
def test_a_name_followed_by_a_newline_is_refused(what: str, validate: Callable[[str], object], good: str) -> None:
    validate(good)
    with pytest.raises(ValueError):
        validate(good + "\n")
