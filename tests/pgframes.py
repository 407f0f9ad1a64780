"""Whole protocol messages laid out in one writable buffer, as the session hands runs of them to handlers."""

from __future__ import annotations

from collections.abc import Iterable


def frames(messages: Iterable[bytes], prefix: bytes = b"") -> tuple[bytearray, list[tuple[int, int]]]:
    """The messages after ``prefix`` (runs need not start at 0) and the ``(start, end)`` of each."""
    buf = bytearray(prefix)
    spans = []
    for msg in messages:
        spans.append((len(buf), len(buf) + len(msg)))
        buf += msg
    return buf, spans
