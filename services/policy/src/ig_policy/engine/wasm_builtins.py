"""The builtins the compiled policy leaves to its host, answering exactly as OPA's Go implementations do.

``opa build -t wasm`` compiles most builtins into the module; the ones that need Go's standard library (time zones,
RFC 3339 parsing, ``fmt.Sprintf``) are imported, and the host must provide them. Each one here covers the inputs
whose Go answer is certain and raises ``CannotAnswer`` for everything else (a verb or argument type ``fmt`` would
format differently, a time Go's parser might read otherwise, an unknown zone): the evaluation then goes to the OPA
sidecar, so an odd input costs a round trip, never a different answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class CannotAnswer(Exception):
    """The in-process engine cannot be sure of OPA's answer; the sidecar must decide."""


class Undefined(Exception):
    """The builtin certainly fails in OPA, which (outside strict mode) makes the calling expression undefined."""


# Go's time.Parse(time.RFC3339, s) fast path, restricted to what it certainly accepts: four-digit year, two-digit
# fields, an optional fraction of up to nine digits, 'Z' or a +hh:mm offset. Anything else goes to OPA.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:(Z)|([+-])(\d{2}):(\d{2}))\Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# OPA refuses years outside 1678..2261 for nanosecond conversion and UnixNano overflows near the ends of int64: far
# inside both, the answer is plain arithmetic.
_SAFE_YEARS = range(1700, 2200)


def parse_rfc3339_ns(text: Any) -> int:
    if not isinstance(text, str):
        raise CannotAnswer("time.parse_rfc3339_ns of a non-string")
    if text == "":  # what the service sends for a break-glass grant without an expiry; Go cannot parse it
        raise Undefined("time.parse_rfc3339_ns of an empty string")
    match = _RFC3339.match(text)
    if match is None:
        raise CannotAnswer("time.parse_rfc3339_ns of an unusual form")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    if year not in _SAFE_YEARS or not (0 <= hour <= 23 and 0 <= minute <= 59 and 0 <= second <= 59):
        raise CannotAnswer("time.parse_rfc3339_ns out of range")
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as error:  # day 31 of a 30-day month and the like: Go refuses them too, but say so via OPA
        raise CannotAnswer("time.parse_rfc3339_ns of an invalid date") from error
    if match.group(8) is None:
        offset_hours, offset_minutes = int(match.group(10)), int(match.group(11))
        if offset_hours > 23 or offset_minutes > 59:
            raise CannotAnswer("time.parse_rfc3339_ns with an invalid offset")
        offset = timedelta(hours=offset_hours, minutes=offset_minutes)
        moment -= offset if match.group(9) == "+" else -offset
    fraction = match.group(7) or ""
    delta = moment - _EPOCH
    seconds = delta.days * 86_400 + delta.seconds
    return seconds * 1_000_000_000 + int(fraction.ljust(9, "0") or 0)


@lru_cache(maxsize=64)
def _zone(name: str) -> tzinfo:
    if name in ("", "UTC"):
        return UTC
    if name == "Local" or name.startswith(("/", ".")) or ".." in name:
        raise CannotAnswer(f"time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise CannotAnswer(f"time zone {name!r}") from error


def _local(argument: Any) -> datetime:
    """``ns`` or ``[ns, zone]`` -> the moment in that zone (OPA's time.clock / time.weekday argument)."""
    if isinstance(argument, list) and len(argument) == 2 and isinstance(argument[1], str):
        nanos, zone = argument[0], _zone(argument[1])
    else:
        nanos, zone = argument, UTC
    if not isinstance(nanos, int) or isinstance(nanos, bool):
        raise CannotAnswer("a time that is not an integer of nanoseconds")
    moment = _EPOCH + timedelta(microseconds=nanos // 1000)
    if moment.year not in _SAFE_YEARS:
        raise CannotAnswer("a time out of range")
    return moment.astimezone(zone)


def clock(argument: Any) -> list[int]:
    local = _local(argument)
    return [local.hour, local.minute, local.second]


_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def weekday(argument: Any) -> str:
    return _WEEKDAYS[_local(argument).weekday()]


# Go fmt verbs this host formats as Go does for the argument types it accepts; flags only the zero-padded width.
_VERB = re.compile(r"%(?:(%)|(0?\d*)([svd]))")


def _formatted(verb: str, width: str, value: Any) -> str:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if verb == "s" and isinstance(value, str) and not width:
        return value
    if verb == "v" and not width and (isinstance(value, str) or is_int):
        return str(value)
    if verb == "d" and is_int:
        if not width:
            return str(value)
        if width.startswith("0") and value >= 0:
            return str(value).zfill(int(width))
    raise CannotAnswer(f"sprintf %{width}{verb} of {type(value).__name__}")


def sprintf(template: Any, arguments: Any) -> str:
    """Go's fmt.Sprintf as OPA calls it, for %s of strings, %v of strings and integers, %d and %0Nd of
    integers, and %%; any other verb, flag or argument type (floats, booleans, collections) is not answered here."""
    if not isinstance(template, str) or not isinstance(arguments, list):
        raise CannotAnswer("sprintf operands of the wrong type")
    pieces: list[str] = []
    position = used = 0
    for match in _VERB.finditer(template):
        pieces.append(_literal(template[position:match.start()]))
        position = match.end()
        if match.group(1):
            pieces.append("%")
            continue
        if used >= len(arguments):
            raise CannotAnswer("sprintf with missing arguments")
        pieces.append(_formatted(match.group(3), match.group(2), arguments[used]))
        used += 1
    if used != len(arguments):
        raise CannotAnswer("sprintf with extra arguments")  # Go appends %!(EXTRA ...)
    pieces.append(_literal(template[position:]))
    return "".join(pieces)


def _literal(text: str) -> str:
    """Text between verbs; a '%' left in it starts a verb or flag this host does not format."""
    if "%" in text:
        raise CannotAnswer("sprintf with a verb this host does not format")
    return text


BUILTINS: dict[str, Callable[..., Any]] = {
    "time.parse_rfc3339_ns": parse_rfc3339_ns,
    "time.clock": clock,
    "time.weekday": weekday,
    "sprintf": sprintf,
}
