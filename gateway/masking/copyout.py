"""Masking the CopyData of COPY ... TO STDOUT in text, CSV and binary format.

COPY sends no RowDescription: which columns to mask comes from the statement's lineage (by position), and
content detection covers the rest. PostgreSQL sends one row per CopyData message (the binary header and
trailer in messages of their own or in front of the first row); this module does not rely on it for
correctness of content masking, but a row split across messages can only be masked by content.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from typing import Final

from gateway.masking.detect import has_candidate, mask_card_data
from gateway.masking.rows import Tally
from gateway.masking.values import Action, mask_text, method_of

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

    def mask(self, data: bytes, tally: Tally) -> bytes | None:
        """The masked message payload, or None when nothing changed."""
        out = self._mask_binary(data, tally) if self.binary else self._mask_lines(data, tally)
        if self.content and has_candidate(out):
            masked = mask_card_data(out, self.keep_bin)
            if masked.pans or masked.tracks:
                tally.pans += masked.pans
                tally.tracks += masked.tracks
                tally.track1 += masked.track1
                tally.add(None, "pan_luhn", method_of("bin_last4", keep_bin=self.keep_bin), masked.pans or 1)
                out = masked.data
        return None if out == data else out

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
