"""Event ids and timestamps in the one form the envelope accepts.

Ids are UUIDv7 (RFC 9562 §5.7) so they sort by creation time, which keeps NATS de-duplication ids,
ledger order and SIEM indexes aligned. Within a process they are strictly increasing, even when the
wall clock stands still or steps back (RFC 9562 §6.2, method 1: a 12-bit counter in ``rand_a``).
"""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import UTC, datetime
from typing import Final

__all__ = ["TIME_PATTERN", "format_utc", "new_event_id", "parse_utc", "utc_now"]

TIME_PATTERN: Final = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{6}Z$"
)
"""The envelope's timestamp form, as in the schema files; calendar validity is checked separately."""

_TIME_RE = re.compile(TIME_PATTERN.removesuffix("$") + r"\Z")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_COUNTER_MAX = 0xFFF
_COUNTER_SEED_BITS = 11  # seed below half the counter range so a millisecond has room to count up

_lock = threading.Lock()
_last_ms = -1
_counter = 0
# Random bits come from os.urandom in 4 KiB draws (one getrandom call per ~500 ids instead of two per id);
# a forked child drops the parent's pool, or both would hand out the same ids.
_POOL_BYTES = 4096
_pool = b""
_pool_at = 0


def _drop_pool() -> None:
    global _pool, _pool_at
    _pool, _pool_at = b"", 0


os.register_at_fork(after_in_child=_drop_pool)


def _random64() -> int:
    """64 bits from the CSPRNG; call with ``_lock`` held."""
    global _pool, _pool_at  # noqa: PLW0603 - see above
    if _pool_at + 8 > len(_pool):
        _pool, _pool_at = os.urandom(_POOL_BYTES), 0
    value = int.from_bytes(_pool[_pool_at : _pool_at + 8], "big")
    _pool_at += 8
    return value


def _next_timestamp_and_counter() -> tuple[int, int, int]:
    """Return (unix_ms, counter) strictly greater than the previous pair in this process, and 62 random
    bits."""
    global _last_ms, _counter  # noqa: PLW0603 - process-wide monotonic state is the point
    now_ms = time.time_ns() // 1_000_000
    with _lock:
        if now_ms > _last_ms:
            _last_ms, _counter = now_ms, _random64() >> (64 - _COUNTER_SEED_BITS)
        elif _counter < _COUNTER_MAX:
            _counter += 1
        else:
            # Counter exhausted (or clock went back): borrow the next millisecond, as RFC 9562 allows.
            _last_ms, _counter = _last_ms + 1, _random64() >> (64 - _COUNTER_SEED_BITS)
        return _last_ms, _counter, _random64() >> 2


def new_event_id() -> str:
    """Return a new UUIDv7 in lowercase canonical form, e.g. ``0193f1c2-7a3b-7c4d-9e5f-0123456789ab``.

    Layout (RFC 9562 §5.7): 48-bit unix milliseconds, version 7, 12-bit counter, variant ``10``,
    62 random bits.
    """
    unix_ms, counter, rand = _next_timestamp_and_counter()
    value = (unix_ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76
    value |= counter << 64
    value |= 0b10 << 62
    value |= rand
    hex32 = f"{value:032x}"
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


def format_utc(moment: datetime) -> str:
    """Format an aware datetime as the envelope's timestamp form (UTC, microseconds, ``Z``).

    Naive datetimes are refused: guessing their zone would put a wrong time into evidence.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("naive datetime: attach a timezone before formatting")
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def utc_now() -> str:
    """Return the current time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (RFC 3339, UTC, microseconds)."""
    return format_utc(datetime.now(UTC))


def parse_utc(value: str) -> datetime:
    """Parse the envelope's timestamp form into an aware UTC datetime.

    Raises ValueError for any other form and for impossible dates (February 30); the message never
    quotes the input.
    """
    if not isinstance(value, str) or _TIME_RE.match(value) is None:
        raise ValueError("not of the form YYYY-MM-DDTHH:MM:SS.ffffffZ")
    try:
        # the pattern above fixed the form; fromisoformat (C, ~15x strptime) checks the calendar
        return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)
    except ValueError:
        pass
    raise ValueError("not a calendar date and time")
