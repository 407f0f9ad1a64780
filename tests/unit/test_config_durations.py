"""Durations: ``30s``/``15m``/``2h``/``7d`` or integer seconds, stored as timedelta."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcigate.config import format_duration, parse_duration
from pcigate.config.durations import UNITS


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("2h", 7200),
        ("7d", 604800),
        ("0s", 0),
        (" 10m ", 600),
        (45, 45),
        (0, 0),
        (timedelta(minutes=2), 120),
    ],
)
def test_parse(text: object, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "30",
        "1.5h",
        "-5s",
        "10ms",
        "1w",
        "1h30m",
        "h",
        "30 sec",
        True,
        False,
        1.5,
        None,
        [],
        -1,
        timedelta(seconds=-1),
        timedelta(milliseconds=1500),
    ],
)
def test_reject(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_reject_message_says_what_is_allowed() -> None:
    with pytest.raises(ValueError, match=r"^'5x' is not a duration; expected .* 30s, 15m, 2h, 7d$"):
        parse_duration("5x")


def test_upper_bound() -> None:
    assert parse_duration("36500d") == timedelta(days=36500)
    with pytest.raises(ValueError, match="at most 36500d"):
        parse_duration("36501d")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (60, "1m"), (90, "90s"), (3600, "1h"), (86400, "1d"), (90000, "25h")],
)
def test_format(seconds: int, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(sorted(UNITS)))
def test_unit_arithmetic(n: int, unit: str) -> None:
    seconds = n * UNITS[unit]
    if seconds <= 36500 * 86400:
        assert parse_duration(f"{n}{unit}") == timedelta(seconds=seconds)
    else:
        with pytest.raises(ValueError, match="at most 36500d"):
            parse_duration(f"{n}{unit}")


@given(st.integers(min_value=0, max_value=36500 * 86400))
def test_round_trip(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    text = format_duration(value)
    assert parse_duration(text) == value
    assert parse_duration(seconds) == value
    # The coarsest exact unit is chosen: the next larger unit would not divide evenly.
    number, unit = int(text[:-1]), text[-1]
    larger = [u for u, size in UNITS.items() if size > UNITS[unit]]
    assert all(seconds % UNITS[u] != 0 for u in larger) or seconds == 0
    assert number * UNITS[unit] == seconds
