"""Masking the CopyData of COPY ... TO STDOUT in text, CSV and binary format.

COPY sends no RowDescription: which columns to mask comes from the statement's lineage (by position), and
content detection covers the rest. PostgreSQL sends one row per CopyData message (the binary header and
trailer in messages of their own or in front of the first row); this module does not rely on it for
correctness of content masking, but a row split across messages can only be masked by content.

Messages come in runs, as the session received them. In text format the column actions run natively over
the whole run, in place (:func:`gateway.masking.rowwalk.mask_copy_text`); the lines it cannot take (a NULL
action on a value, another field count, a partial line), CSV and binary go through the Python code here,
message by message. Content detection is one prefilter scan over the run.
"""

from __future__ import annotations

import bisect
import re
import struct
from collections.abc import Iterable, Sequence
from typing import Final

from gateway.masking import rowwalk
from gateway.masking.detect import Masked, has_candidate, mask_card_data, prefilter
from gateway.masking.rows import Tally, text_op
from gateway.masking.values import Action, mask_text, method_of
from gateway.pgwire import messages as m

__all__ = ["CopyMasker"]

_SIGNATURE: Final = b"PGCOPY\n\xff\r\n\x00"
_I16: Final = struct.Struct("!h")
_I32: Final = struct.Struct("!i")
_II: Final = struct.Struct("!ii")


class CopyMasker:
    """One COPY OUT's masking; ``actions[i]`` for column ``i`` (None: unknown columns, content only)."""

    def __init__(
        self,
        *,
        binary: bool,
        csv: bool | None,
        actions: Sequence[Action] | None,
        content: bool,
        keep_bin: int,
        delimiter: bytes | None = None,
        quote: bytes = b'"',
    ) -> None:
        self.binary = binary
        self.csv = bool(csv)
        self.actions = tuple(actions) if actions is not None and any(a != "clear" for a in actions) else None
        self.content = content
        self.keep_bin = keep_bin
        self.delimiter = delimiter or (b"," if self.csv else b"\t")
        self.quote = quote
        self._header_left = len(_SIGNATURE) + 8 if binary else 0  # signature, flags, extension length
        # The native walk's (column, op) pairs: text format with a one-byte delimiter and column actions.
        self._ops: list[tuple[int, int]] | None = None
        if (
            not binary
            and not self.csv
            and self.actions is not None
            and len(self.delimiter) == 1
            and self.delimiter not in (b"\n", b"\\")
        ):
            self._ops = [
                (i, text_op(a, keep_bin) or rowwalk.OP_FLAG)
                for i, a in enumerate(self.actions)
                if a != "clear"
            ]
        self._csv_field = re.compile(
            rb"("
            + re.escape(quote)
            + rb"(?:[^"
            + re.escape(quote)
            + rb"]|"
            + re.escape(quote * 2)
            + rb")*"
            + re.escape(quote)
            + rb"|[^"
            + re.escape(self.delimiter)
            + rb"\n\r"
            + re.escape(quote)
            + rb"]*)"
        )

    def mask_run(
        self, buf: bytearray, spans: Sequence[tuple[int, int]], tally: Tally
    ) -> list[bytes | None] | None:
        """Mask a run of whole CopyData messages ``buf[s:e]``: in place where the length stays; replacement
        messages for the others (None: in place or unchanged), or None when there is none."""
        slow: Iterable[int] = ()
        if self._ops is not None:
            assert self.actions is not None
            counts, slow = rowwalk.mask_copy_text(buf, spans, self._ops, self.delimiter[0], len(self.actions))
            for i, (column, _) in enumerate(self._ops):
                if counts[2 * i]:
                    tally.add_masked(column, "column_policy", self.actions[column], self.keep_bin, counts, i)
        elif self.binary or self.actions is not None:
            slow = range(len(spans))
        out: list[bytes | None] | None = None
        for k in slow:
            s, e = spans[k]
            data = bytes(buf[s + 5 : e])
            new = self._mask_binary(data, tally) if self.binary else self._mask_lines(data, tally)
            if len(new) == len(data):
                buf[s + 5 : e] = new
                continue
            if self.content:
                new = self._content(new, tally)
            if out is None:
                out = [None] * len(spans)
            out[k] = m.frame(m.COPY_DATA, new)
        if self.content:
            self._content_pass(buf, spans, out, tally)
        return out

    def _content_pass(
        self,
        buf: bytearray,
        spans: Sequence[tuple[int, int]],
        replaced: list[bytes | None] | None,
        tally: Tally,
    ) -> None:
        """One prefilter scan over the run; the messages it flags are content-masked in place."""
        first_end = prefilter().first_end
        view = memoryview(buf)[: spans[-1][1]]
        starts: list[int] | None = None
        pos = spans[0][0]
        while (end := first_end(view, pos)) is not None:
            if starts is None:
                starts = [s for s, _ in spans]
            k = bisect.bisect_right(starts, end - 1) - 1
            s, e = spans[k]
            if replaced is None or replaced[k] is None:
                data = bytes(buf[s + 5 : e])
                new = self._content(data, tally)
                if new is not data:
                    buf[s + 5 : e] = new
            pos = e
            if pos >= len(view):
                break

    def _content(self, data: bytes, tally: Tally) -> bytes:
        if not has_candidate(data):
            return data
        masked: Masked = mask_card_data(data, self.keep_bin)
        if not (masked.pans or masked.tracks):
            return data
        tally.pans += masked.pans
        tally.tracks += masked.tracks
        tally.track1 += masked.track1
        tally.add(None, "pan_luhn", method_of("bin_last4", keep_bin=self.keep_bin), masked.pans or 1)
        return masked.data

    # --- text and CSV ---------------------------------------------------------------------------

    def _mask_lines(self, data: bytes, tally: Tally) -> bytes:
        if self.actions is None:
            return data
        lines = data.split(b"\n") if not self.csv else [data[:-1], b""] if data.endswith(b"\n") else [data]
        out = [self._mask_line(line, tally) if line else line for line in lines]
        return b"\n".join(out)

    def _mask_line(self, line: bytes, tally: Tally) -> bytes:
        assert self.actions is not None
        cr = line.endswith(b"\r")
        body = line[:-1] if cr else line
        fields = self._split(body)
        if len(fields) != len(self.actions):
            # not one whole row (split across messages, or an unexpected layout): hide what we cannot place
            tally.add(None, "lineage", "redact")
            return mask_text(line, "full", self.keep_bin)
        for i, action in enumerate(self.actions):
            value = fields[i]
            if action == "clear" or self._is_null(value):
                continue
            if action == "null":
                fields[i] = b"" if self.csv else b"\\N"
            elif self.csv and value.startswith(self.quote):
                fields[i] = self.quote + mask_text(value[1:-1], action, self.keep_bin) + self.quote
            else:
                fields[i] = mask_text(value, action, self.keep_bin)
            tally.add(i, "column_policy", method_of(action, keep_bin=self.keep_bin, digits=len(value)))
        return self.delimiter.join(fields) + (b"\r" if cr else b"")

    def _is_null(self, value: bytes) -> bool:
        return value == b"" if self.csv else value == b"\\N"

    def _split(self, body: bytes) -> list[bytes]:
        if not self.csv:
            return body.split(self.delimiter)
        fields: list[bytes] = []
        pos = 0
        while True:
            match = self._csv_field.match(body, pos)
            assert match is not None  # the pattern matches the empty string
            fields.append(match.group(1))
            pos = match.end()
            if pos >= len(body):
                return fields
            if body[pos : pos + len(self.delimiter)] != self.delimiter:
                return []  # not CSV as we read it: the caller hides the line
            pos += len(self.delimiter)

    # --- binary ---------------------------------------------------------------------------------

    def _mask_binary(self, data: bytes, tally: Tally) -> bytes:
        pos = 0
        if self._header_left:
            take = min(self._header_left, len(data))
            self._header_left -= take
            pos = take
            if self._header_left == 0 and take >= 4:
                ext = _I32.unpack_from(data, take - 4)[0]
                pos += max(ext, 0)  # header extension area (none is defined today)
        if self.actions is None:
            return data
        pieces: list[bytes] = []
        last = 0
        while pos + 2 <= len(data):
            count = _I16.unpack_from(data, pos)[0]
            pos += 2
            if count == -1:  # trailer
                break
            for i in range(count):
                if pos + 4 > len(data):
                    return data  # a fragment: content masking only
                n = _I32.unpack_from(data, pos)[0]
                start = pos + 4
                end = start + max(n, 0)
                if end > len(data):
                    return data
                action = self.actions[i] if i < len(self.actions) else "clear"
                if n >= 0 and action != "clear":
                    # Binary COPY names no types: a masked text would be a corrupt number, so NULL.
                    pieces += [data[last:pos], b"\xff\xff\xff\xff"]
                    last = end
                    tally.add(i, "column_policy", "null")
                pos = end
        if not pieces:
            return data
        pieces.append(data[last:])
        return b"".join(pieces)
