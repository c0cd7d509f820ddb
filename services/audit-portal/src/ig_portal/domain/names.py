"""What a release name and an artifact id may look like; everything else is refused before any lookup."""

from __future__ import annotations

import re

RELEASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
ARTIFACT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+@=-]{0,199}")


class InvalidName(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


def check_release(value: str) -> str:
    if not RELEASE.fullmatch(value) or ".." in value:
        raise InvalidName("release", "must be 1-64 letters, digits or . _ + - and start with a letter or digit")
    return value


def check_artifact_id(value: str) -> str:
    # ".." and separators never reach the evidence service: ids are opaque keys, never paths.
    if not ARTIFACT_ID.fullmatch(value) or ".." in value:
        raise InvalidName("artifactId", "must be 1-200 letters, digits or . _ : + @ = - without '..'")
    return value
