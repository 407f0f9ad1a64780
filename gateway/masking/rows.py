"""Masking the DataRow messages of one result set, a received buffer at a time.

A :class:`ResultPlan` is compiled once per result (from its RowDescription, the column rules and the
statement's lineage) and then applied to runs of whole DataRow messages as they sit in the received buffer:

- columns with an action are found by walking each row's length words, up to the last such column only;
- binary numbers (int8, numeric, float8), where a card number is invisible to a byte scan, are decoded;
- everything else is left to one compiled prefilter scan over the whole run of rows; only a row the scan
  flags is decoded and content-masked. A result with no masked column and no candidate costs that scan.

Rows come back as replacement messages (None: unchanged), so the session can splice them into its output.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from gateway.hooks import reframe
from gateway.masking.detect import prefilter
from gateway.masking.values import FLOAT8, INT8, NUMERIC, Action, mask_by_action, mask_content, method_of
from gateway.pgwire import messages as m
from gateway.pgwire.messages import FieldDesc

__all__ = ["ColumnMask", "ResultPlan", "Tally"]

Detector = Literal["column_policy", "lineage", "pan_luhn", "track_format"]

_I32: Final = struct.Struct("!i")
_HEAD: Final = struct.Struct("!Bi")
_BINARY_NUMBERS: Final = frozenset({INT8, NUMERIC, FLOAT8})
# An int8 below 2^39 * ... : the top three bytes zero and the fourth below 0xE8 means < 10^12, too few
# digits for a PAN; most ids and counters are, so the row walk skips them without decoding.
_SMALL_INT8_TOP: Final = 0xE8


@dataclass(frozen=True, slots=True)
class ColumnMask:
    """What to do with one result column (``index`` is zero-based)."""

    index: int
    action: Action
    detector: Literal["column_policy", "lineage"]


@dataclass(slots=True)
class Tally:
    """What one statement's masking hid: counts per (ordinal, detector, method), never values."""

    locations: dict[tuple[int | None, str, str], int] = field(default_factory=dict)
    pans: int = 0
    tracks: int = 0
    sad_columns: dict[int, int] = field(default_factory=dict)  # ordinal -> values of a SAD column hidden

    def add(self, ordinal: int | None, detector: str, method: str, count: int = 1) -> None:
        key = (ordinal, detector, method)
        self.locations[key] = self.locations.get(key, 0) + count

    @property
    def total(self) -> int:
        return sum(self.locations.values())


class ResultPlan:
    """How to mask the rows of one result set; see the module docstring."""

    __slots__ = ("_fields", "_keep_bin", "_names", "_sad", "_walk", "content", "masks")

    def __init__(
        self,
        fields: Sequence[FieldDesc],
        masks: Sequence[ColumnMask],
        *,
        content: bool,
        keep_bin: int = 6,
        sad: frozenset[int] = frozenset(),
    ) -> None:
        self._fields = tuple(fields)
        self.masks = {mk.index: mk for mk in masks if mk.action != "clear" and mk.index < len(fields)}
        self.content = content
        self._keep_bin = keep_bin
        self._sad = sad  # ordinals of columns holding sensitive authentication data (CVV, tracks, PIN)
        walk = set(self.masks)
        if content:
            walk.update(i for i, f in enumerate(fields) if f.format == 1 and f.type_oid in _BINARY_NUMBERS)
        self._walk = sorted(walk)
        self._names = tuple(f.name for f in fields)

    @property
    def active(self) -> bool:
        """Whether any row of this result may need work."""
        return bool(self._walk) or self.content

    def field(self, index: int) -> FieldDesc:
        return self._fields[index]

    # ---------------------------------------------------------------------------------------------

    def mask_rows(
        self, buf: bytes, spans: Sequence[tuple[int, int]], tally: Tally
    ) -> list[bytes | None] | None:
        """Replacement messages for ``buf[s:e]`` of each span (None: unchanged), or None if none changed."""
        out: list[bytes | None] | None = None
        if self._walk:
            walk = self._walk_row
            out = [walk(buf, s, e, tally) for s, e in spans]
            if not any(r is not None for r in out):
                out = None
        if not self.content:
            return out
        if out is None:
            found = self._content_pass(buf, spans, tally)
            if not found:
                return None
            return [found.get(k) for k in range(len(spans))]
        joined, bounds = reframe(buf, spans, out)
        for k, row in self._content_pass(joined, bounds, tally).items():
            out[k] = row
        return out

    def _walk_row(self, buf: bytes, s: int, e: int, tally: Tally) -> bytes | None:
        """Apply the column actions (and binary-number checks) to one row; the new message or None."""
        unpack = _I32.unpack_from
        pos = s + 7  # type byte, length, column count
        col = 0
        pieces: list[bytes] | None = None
        last = s + 5  # start of the body: the header is rebuilt when anything changed
        masks = self.masks
        for target in self._walk:
            while col < target:
                n = unpack(buf, pos)[0]
                pos += 4 + (n if n > 0 else 0)
                col += 1
            n = unpack(buf, pos)[0]
            if n < 0:  # NULL stays NULL
                pos += 4
                col += 1
                continue
            start = pos + 4
            value = buf[start : start + n]
            f = self._fields[target]
            mk = masks.get(target)
            if mk is not None:
                new = mask_by_action(value, mk.action, f.type_oid, f.format, self._keep_bin)
                done: Action = mk.action if new is not None else "null"
                method = method_of(done, keep_bin=self._keep_bin, digits=n)
                tally.add(target, mk.detector, method)
                if target in self._sad:
                    tally.sad_columns[target] = tally.sad_columns.get(target, 0) + 1
            else:
                if (
                    f.type_oid == INT8
                    and n == 8
                    and buf[start] == 0
                    and buf[start + 1] == 0
                    and buf[start + 2] == 0
                    and buf[start + 3] < _SMALL_INT8_TOP
                ):
                    pos = start + n
                    col += 1
                    continue
                result = mask_content(value, f.type_oid, f.format, self._keep_bin)
                new = result.value
                if result.pans == 0 and result.tracks == 0:
                    pos = start + n
                    col += 1
                    continue
                tally.pans += result.pans
                tally.tracks += result.tracks
                tally.add(target, "pan_luhn", "null", result.pans + result.tracks)
            if new == value:
                pos = start + n
                col += 1
                continue
            if pieces is None:
                pieces = []
            pieces.append(buf[last:pos])
            if new is None:
                pieces.append(b"\xff\xff\xff\xff")
            else:
                pieces.append(_I32.pack(len(new)) + new if len(new) != n else buf[pos:start] + new)
            pos = last = start + n
            col += 1
        if pieces is None:
            return None
        pieces.append(buf[last:e])
        body = b"".join(pieces)
        return _HEAD.pack(m.DATA_ROW, len(body) + 4) + body

    def _content_pass(self, data: bytes, bounds: Sequence[tuple[int, int]], tally: Tally) -> dict[int, bytes]:
        """Rows of ``data`` the prefilter flags, content-masked; key: index into ``bounds``."""
        first_end = prefilter().first_end
        begin, finish = bounds[0][0], bounds[-1][1]
        view = memoryview(data)[:finish]
        starts = [b[0] for b in bounds]
        changed: dict[int, bytes] = {}
        pos = begin
        while pos < finish and (end := first_end(view, pos)) is not None:
            k = bisect.bisect_right(starts, end - 1) - 1
            s, e = bounds[k]
            new = self._content_row(data, s, e, tally)
            if new is not None:
                changed[k] = new
            pos = e
        return changed

    def _content_row(self, data: bytes, s: int, e: int, tally: Tally) -> bytes | None:
        values = m.parse_data_row(memoryview(data)[s + 5 : e])
        hit = False
        for i, value in enumerate(values):
            if value is None or i in self.masks or i >= len(self._fields):
                continue
            f = self._fields[i]
            result = mask_content(value, f.type_oid, f.format, self._keep_bin)
            if result.pans or result.tracks or result.value != value:
                values[i] = result.value
                hit = True
                tally.pans += result.pans
                tally.tracks += result.tracks
                if result.pans:
                    tally.add(i, "pan_luhn", "null" if result.value is None else "first6_last4", result.pans)
                if result.tracks:
                    tally.add(i, "track_format", "null" if result.value is None else "redact", result.tracks)
        return m.data_row(values) if hit else None
