"""Durations as people write them in YAML (``30s``, ``15m``, ``2h``, ``7d``) or as integer seconds.

One unit per value keeps the grammar obvious; everything is stored as :class:`datetime.timedelta` so no
component ever has to guess whether a bare number meant seconds or minutes.
"""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["UNITS", "format_duration", "parse_duration"]

UNITS: dict[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86400}
"""Seconds per unit suffix, largest last so :func:`format_duration` can pick the coarsest exact unit."""

_DURATION = re.compile(r"(?P<n>[0-9]+)\s*(?P<unit>[smhd])")
_MAX_SECONDS = 100 * 365 * 86400  # a century: larger values are typos, and timedelta has limits


def parse_duration(value: object) -> timedelta:
    """Parse ``<int><s|m|h|d>`` or a non-negative integer number of seconds.

    Raises ``ValueError`` with a message that says what is allowed. Booleans and floats are rejected
    (YAML turns ``yes`` into ``True``, which is an ``int`` in Python).
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        if seconds < 0 or seconds != int(seconds):
            raise ValueError("must be a whole, non-negative number of seconds")
        return _checked(int(seconds))
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(_EXPECTED)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative; {_EXPECTED}")
        return _checked(value)
    match = _DURATION.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a duration; {_EXPECTED}")
    return _checked(int(match["n"]) * UNITS[match["unit"]])


def format_duration(value: timedelta) -> str:
    """Render a duration in the coarsest unit that represents it exactly (``90s``, ``15m``, ``7d``)."""
    seconds = value.total_seconds()
    if seconds < 0 or seconds != int(seconds):
        raise ValueError("only whole, non-negative seconds can be formatted")
    whole = int(seconds)
    for unit, size in sorted(UNITS.items(), key=lambda item: -item[1]):
        if whole % size == 0 and (whole or unit == "s"):
            return f"{whole // size}{unit}"
    raise AssertionError("unreachable: every whole number of seconds is a multiple of 1s")


_EXPECTED = "expected an integer number of seconds or a number with a unit: 30s, 15m, 2h, 7d"


def _checked(seconds: int) -> timedelta:
    if seconds > _MAX_SECONDS:
        raise ValueError("must be at most 36500d")
    return timedelta(seconds=seconds)
