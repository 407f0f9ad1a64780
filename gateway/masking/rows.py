"""Masking the DataRow messages of one result set, a received buffer at a time.

A :class:`ResultPlan` is compiled once per result (from its RowDescription, the column rules and the
statement's lineage) and then applied to runs of whole DataRow messages as they sit in the received buffer:

- text values of columns with an action are masked in place, same length, by one native walk over the
  run's length words (:mod:`gateway.masking.rowwalk`);
- the same walk flags the rare rows that need Python: a NULL action or a number column with an action
  (the value becomes NULL, so the row changes length), and binary numbers large enough to be a card number
  (int8, numeric, float8 in binary format, where a byte scan cannot see one);
- everything else is left to one compiled prefilter scan over the whole run; only a row the scan flags is
  decoded and content-masked. A result with no masked column and no candidate costs that scan.

Rows whose length changes come back as replacement messages (None: unchanged, perhaps masked in place),
so the session can splice them into its output.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from gateway.hooks import reframe
from gateway.masking import rowwalk
from gateway.masking.detect import prefilter
from gateway.masking.values import (
    BYTEA,
    FLOAT8,
    INT8,
    JSONB,
    NUMERIC,
    NUMERIC_OIDS,
    TEXT_OIDS,
    Action,
    mask_by_action,
    mask_content,
    method_of,
)
from gateway.pgwire import messages as m
from gateway.pgwire.messages import FieldDesc

__all__ = ["ColumnMask", "ResultPlan", "Tally", "text_op"]

Detector = Literal["column_policy", "lineage", "pan_luhn", "track_format"]

_I32: Final = struct.Struct("!i")
_HEAD: Final = struct.Struct("!Bi")
_BINARY_NUMBERS: Final = frozenset({INT8, NUMERIC, FLOAT8})
_NUMBER_CHECK: Final = {INT8: rowwalk.OP_INT8, NUMERIC: rowwalk.OP_NUMERIC, FLOAT8: rowwalk.OP_FLOAT8}
_FLAGGING: Final = frozenset({rowwalk.OP_FLAG, *_NUMBER_CHECK.values()})
_TEXT_OP: Final = {"full": rowwalk.OP_FULL, "last4": rowwalk.OP_LAST4}
# An int8 below 2^39 * ... : the top three bytes zero and the fourth below 0xE8 means < 10^12, too few
# digits for a PAN; most ids and counters are, so the row walk skips them without decoding.
_SMALL_INT8_TOP: Final = 0xE8


@dataclass(frozen=True, slots=True)
class ColumnMask:
    """What to do with one result column (``index`` is zero-based)."""

    index: int
    action: Action
    detector: Literal["column_policy", "lineage", "custom_rule"]


@dataclass(slots=True)
class Tally:
    """What one statement's masking hid: counts per (ordinal, detector, method), never values."""

    locations: dict[tuple[int | None, str, str], int] = field(default_factory=dict)
    pans: int = 0
    tracks: int = 0  # of which track1 are track 1 layouts (the rest track 2)
    track1: int = 0
    sad_columns: dict[int, int] = field(default_factory=dict)  # ordinal -> values of a SAD column hidden

    def add(self, ordinal: int | None, detector: str, method: str, count: int = 1) -> None:
        key = (ordinal, detector, method)
        self.locations[key] = self.locations.get(key, 0) + count

    def add_masked(  # noqa: PLR0917 - the native walk's counts, as they come
        self, ordinal: int, detector: str, action: Action, keep_bin: int, counts: Sequence[int], i: int
    ) -> None:
        """Op ``i``'s counts from a native walk: ``counts[2i]`` values masked in place by ``action``, of
        which ``counts[2i+1]`` kept an eight-digit BIN."""
        masked, keep8 = counts[2 * i], counts[2 * i + 1]
        if action != "bin_last4":
            self.add(ordinal, detector, method_of(action, keep_bin=keep_bin), masked)
            return
        if keep8:
            self.add(ordinal, detector, "first8_last4", keep8)
        if masked > keep8:
            self.add(ordinal, detector, "first6_last4", masked - keep8)

    @property
    def total(self) -> int:
        return sum(self.locations.values())


class ResultPlan:
    """How to mask the rows of one result set; see the module docstring."""

    __slots__ = ("_fields", "_keep_bin", "_ops", "_sad", "_walk", "content", "masks")

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
        ops: dict[int, int] = {}
        for index, mk in self.masks.items():
            ops[index] = text_op(mk.action, keep_bin, fields[index]) or rowwalk.OP_FLAG
        if content:
            for index, f in enumerate(fields):
                if f.format == 1 and f.type_oid in _NUMBER_CHECK and index not in ops:
                    ops[index] = _NUMBER_CHECK[f.type_oid]
        self._ops = sorted(ops.items())  # the native walk: masks text in place, flags the rest
        # The rows it flags are walked again in Python over these columns only (never the masked text).
        self._walk = [index for index, op in self._ops if op in _FLAGGING]

    @property
    def active(self) -> bool:
        """Whether any row of this result may need work."""
        return bool(self._ops) or self.content

    def field(self, index: int) -> FieldDesc:
        return self._fields[index]

    # ---------------------------------------------------------------------------------------------

    def mask_rows(
        self, buf: bytearray, spans: Sequence[tuple[int, int]], tally: Tally
    ) -> list[bytes | None] | None:
        """Mask ``buf[s:e]`` of each span in place where lengths stay; replacement messages for the rows
        whose length changes (None: in place or unchanged), or None if there are none."""
        out: list[bytes | None] | None = None
        if self._ops:
            try:
                counts, flagged = rowwalk.mask_columns(buf, spans, self._ops)
            except ValueError as exc:
                raise m.ProtocolError(f"malformed DataRow from upstream: {exc}") from None
            self._count(counts, tally)
            if flagged:
                walk = self._walk_row
                for k in flagged:
                    row = walk(buf, *spans[k], tally)
                    if row is not None:
                        if out is None:
                            out = [None] * len(spans)
                        out[k] = row
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

    def _count(self, counts: Sequence[int], tally: Tally) -> None:
        """Fold the native walk's per-column counts into the statement's tally."""
        for i, (index, op) in enumerate(self._ops):
            masked = counts[2 * i]
            if not masked or op in _FLAGGING:
                continue
            mk = self.masks[index]
            tally.add_masked(index, mk.detector, mk.action, self._keep_bin, counts, i)
            if index in self._sad:
                tally.sad_columns[index] = tally.sad_columns.get(index, 0) + masked

    def _walk_row(self, buf: bytearray, s: int, e: int, tally: Tally) -> bytes | None:
        """Apply the flagged columns' actions and binary-number checks to one row (its length words were
        checked by the native walk); the new message or None."""
        unpack = _I32.unpack_from
        pos = s + 7  # type byte, length, column count
        col = 0
        pieces: list[bytes | bytearray] | None = None
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
            value = bytes(buf[start : start + n])
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
                tally.track1 += result.track1
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

    def _content_pass(
        self, data: bytes | bytearray, bounds: Sequence[tuple[int, int]], tally: Tally
    ) -> dict[int, bytes]:
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

    def _content_row(self, data: bytes | bytearray, s: int, e: int, tally: Tally) -> bytes | None:
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
                tally.track1 += result.track1
                if result.pans:
                    tally.add(i, "pan_luhn", "null" if result.value is None else "first6_last4", result.pans)
                if result.tracks:
                    tally.add(i, "track_format", "null" if result.value is None else "redact", result.tracks)
        return m.data_row(values) if hit else None


def text_op(action: Action, keep_bin: int, f: FieldDesc | None = None) -> int | None:
    """The native walks' in-place operation for an action on a column (of a result: ``f``; of a text
    COPY: no field), or None when the value has no same-length masked form (see :func:`mask_by_action`):
    NULL actions, numbers, bytea, binary jsonb."""
    if action in ("clear", "null"):
        return None
    textual = f is None or (
        (f.format == 0 and f.type_oid not in NUMERIC_OIDS and f.type_oid != BYTEA)
        or (f.format == 1 and f.type_oid in TEXT_OIDS and f.type_oid != JSONB)
    )
    if not textual:
        return None
    if action == "bin_last4":
        return rowwalk.OP_BIN8 if keep_bin == 8 else rowwalk.OP_BIN6
    return _TEXT_OP[action]
