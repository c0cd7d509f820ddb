"""Where the service's time comes from: the system clock, or, in tests only, a file naming a fixed instant."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import structlog

from ig_policy.domain.clock import Clock

log = structlog.get_logger(__name__)
# An RFC 3339 instant is ~35 bytes; anything longer is not one (parse_instant then names the file).
_MAX_CLOCK_BYTES = 256


def system_clock() -> datetime:
    return datetime.now(UTC)


def parse_instant(text: str, source: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as error:
        raise ValueError(f"{source}: not an RFC 3339 time: {text.strip()[:40]!r}") from error
    if moment.tzinfo is None:
        raise ValueError(f"{source}: an RFC 3339 time needs its offset (Z or +hh:mm)")
    return moment.astimezone(UTC)


class FileClock:
    """Test-only: the instant written in ``path``, read again on every call (a test moves it between requests).

    It exists so that golden cases and the benchmark judge fixed moments through the service's own clock, never
    through the request; production never sets it. The file is still read on every call, but with bare ``os``
    calls and parsed only when its text changed: ``Path.read_text`` and the parse cost the benchmark's service
    ~5 % of its CPU per decision (py-spy), which raw OPA, given the time in its input, does not pay."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._text = b""
        self._moment = parse_instant(path.read_text(encoding="utf-8"), str(path))  # a bad file stops start-up

    def __call__(self) -> datetime:
        fd = os.open(self._path, os.O_RDONLY)
        try:
            text = os.read(fd, _MAX_CLOCK_BYTES)
        finally:
            os.close(fd)
        if text != self._text:
            self._moment = parse_instant(text.decode("utf-8", errors="replace"), str(self._path))
            self._text = text
        return self._moment


def clock_from(test_clock_file: Path | None) -> Clock:
    if test_clock_file is None:
        return system_clock
    log.warning("test_clock_in_use", file=str(test_clock_file),
                note="decisions are judged at the instant in this file, not the real time (tests only)")
    return FileClock(test_clock_file)
