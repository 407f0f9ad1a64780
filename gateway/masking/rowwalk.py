"""The per-row hot loop of result masking: walk DataRows to the planned columns, mask text in place.

``mask_columns(buf, spans, ops)`` takes a writable buffer, the ``(start, end)`` of each whole DataRow message
in it and ``(column, op)`` pairs in increasing column order. Text values of ``OP_FULL``/``OP_LAST4``/
``OP_BIN6``/``OP_BIN8`` columns are masked in place (same length: letters and digits become ``*``, keeping the
BIN and/or last four digits of a value with 13 or more digits). The other ops only flag a row for the
slower Python path: ``OP_INT8``/``OP_NUMERIC``/``OP_FLOAT8`` when a binary number is large enough to be a
card number (13+ integer digits), ``OP_FLAG`` for any non-NULL value. It returns
``(counts, flagged)``: per op, values masked and how many of them kept an eight-digit BIN; the indices of
flagged rows. A row that does not parse raises ValueError.

``mask_copy_text(buf, spans, ops, delimiter, ncols)`` does the same for the CopyData messages of a COPY TO
in text format, one line each (as PostgreSQL sends them): fields split by the delimiter byte, ``\\N`` is
NULL. A message that is not one whole line of ``ncols`` fields, or has a non-NULL value for a flagging op,
is flagged (untouched) for the Python path.

The C extension ``_rowwalk`` does these ~30x faster; this module's Python versions are their reference and
the fallback where the extension could not be built (``NATIVE`` says which runs).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from typing import Final

__all__ = [
    "NATIVE",
    "OP_BIN6",
    "OP_BIN8",
    "OP_FLAG",
    "OP_FLOAT8",
    "OP_FULL",
    "OP_INT8",
    "OP_LAST4",
    "OP_NUMERIC",
    "mask_columns",
    "mask_columns_py",
    "mask_copy_text",
    "mask_copy_text_py",
]

OP_FULL: Final = 1
OP_LAST4: Final = 2
OP_BIN6: Final = 3
OP_BIN8: Final = 4
OP_INT8: Final = 5
OP_FLAG: Final = 6
OP_NUMERIC: Final = 7
OP_FLOAT8: Final = 8
_OPS: Final = frozenset(range(OP_FULL, OP_FLOAT8 + 1))

_PAN_MIN: Final = 13
_INT8_PAN_MIN: Final = 10**12
_I32: Final = struct.Struct("!i")
_Q: Final = struct.Struct("!q")
_D: Final = struct.Struct("!d")
_NUMERIC_HEAD: Final = struct.Struct("!hhH")
_DIGITS: Final = frozenset(b"0123456789")
_ALNUM: Final = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_HIDE: Final = bytes(ord("*") if i in _ALNUM else i for i in range(256))

MaskCopyText = Callable[
    [bytearray, Sequence[tuple[int, int]], Sequence[tuple[int, int]], int, int], tuple[list[int], list[int]]
]
MaskColumns = Callable[
    [bytearray, Sequence[tuple[int, int]], Sequence[tuple[int, int]]], tuple[list[int], list[int]]
]


def _mask_text(value: bytearray, op: int) -> int:
    """Mask in place; 1 when an eight-digit BIN was kept."""
    digits = sum(1 for b in value if b in _DIGITS) if op != OP_FULL else 0
    if op == OP_FULL or digits < _PAN_MIN:
        value[:] = value.translate(_HIDE)
        return 0
    keep_head = 0 if op == OP_LAST4 else (8 if op == OP_BIN8 and digits == 16 else 6)
    j = 0
    for i, b in enumerate(value):
        if b in _DIGITS:
            if keep_head <= j < digits - 4:
                value[i] = 0x2A
            j += 1
        elif b in _ALNUM:
            value[i] = 0x2A
    return 1 if keep_head == 8 else 0


def _check_ops(ops: Sequence[tuple[int, int]]) -> None:
    previous = -1
    for column, op in ops:
        if not previous < column <= 0xFFFF or op not in _OPS:
            raise ValueError("ops: columns 0..65535 in increasing order, known op codes")
        previous = column


def mask_columns_py(
    buf: bytearray, spans: Sequence[tuple[int, int]], ops: Sequence[tuple[int, int]]
) -> tuple[list[int], list[int]]:
    """The reference implementation; see the module docstring."""
    _check_ops(ops)
    data = memoryview(buf).cast("B")
    if data.readonly:
        raise TypeError("mask_columns needs a writable buffer")
    counts = [0] * (2 * len(ops))
    flagged: list[int] = []
    for k, (s, e) in enumerate(spans):
        if s < 0 or e < s or e > len(data):
            raise ValueError(f"DataRow {k}: span outside the buffer")
        if e - s < 7:
            raise ValueError(f"DataRow {k}: shorter than its header")
        ncols = (data[s + 5] << 8) | data[s + 6]
        pos, col, flag = s + 7, 0, False
        for i, (column, op) in enumerate(ops):
            if column >= ncols:
                raise ValueError(f"DataRow {k}: fewer columns than its RowDescription")
            while col <= column:
                if pos + 4 > e:
                    raise ValueError(f"DataRow {k}: a length word past the end of the message")
                n = _I32.unpack_from(data, pos)[0]
                pos += 4
                if n < -1 or n > e - pos:
                    raise ValueError(f"DataRow {k}: a value length outside the message")
                if col == column and n >= 0:
                    if op == OP_INT8:
                        flag = flag or n != 8 or _Q.unpack_from(data, pos)[0] >= _INT8_PAN_MIN
                    elif op == OP_NUMERIC:
                        if n < 8:
                            flag = True
                        else:
                            _, weight, sign = _NUMERIC_HEAD.unpack_from(data, pos)
                            flag = flag or (sign == 0 and weight >= 3)
                    elif op == OP_FLOAT8:
                        number = _D.unpack_from(data, pos)[0] if n == 8 else math.inf
                        flag = flag or n != 8 or (math.isfinite(number) and number >= 1e12)
                    elif op == OP_FLAG:
                        flag = True
                    else:
                        value = bytearray(data[pos : pos + n])
                        counts[2 * i + 1] += _mask_text(value, op)
                        counts[2 * i] += 1
                        data[pos : pos + n] = value
                pos += max(n, 0)
                col += 1
        if flag:
            flagged.append(k)
    return counts, flagged


def mask_copy_text_py(
    buf: bytearray,
    spans: Sequence[tuple[int, int]],
    ops: Sequence[tuple[int, int]],
    delimiter: int,
    ncols: int,
) -> tuple[list[int], list[int]]:
    """The reference implementation of :func:`mask_copy_text`."""
    _check_ops(ops)
    if not 0 <= delimiter <= 255 or delimiter in (0x0A, 0x5C):
        raise ValueError("delimiter must be one byte, not newline or backslash")
    if ops and ops[-1][0] >= ncols:
        raise ValueError("ops name a column past ncols")
    counts = [0] * (2 * len(ops))
    flagged: list[int] = []
    sep = bytes([delimiter])
    for k, (s, e) in enumerate(spans):
        if s < 0 or e < s + 5 or e > len(buf):
            raise ValueError(f"CopyData {k}: span outside the buffer")
        line = bytes(buf[s + 5 : e])
        if not line.endswith(b"\n") or b"\n" in line[:-1]:
            flagged.append(k)
            continue
        fields = line[:-1].split(sep)
        if len(fields) != ncols or any(op > OP_BIN8 and fields[c] != b"\\N" for c, op in ops):
            flagged.append(k)
            continue
        starts = [s + 5]
        for f in fields[:-1]:
            starts.append(starts[-1] + len(f) + 1)
        for i, (column, op) in enumerate(ops):
            value = bytearray(fields[column])
            if value == b"\\N":
                continue
            counts[2 * i + 1] += _mask_text(value, op)
            counts[2 * i] += 1
            buf[starts[column] : starts[column] + len(value)] = value
    return counts, flagged


try:
    from gateway.masking._rowwalk import mask_columns as _native
    from gateway.masking._rowwalk import mask_copy_text as _native_copy
except ImportError:  # the extension was not built (no compiler): the Python version, slower, same result
    mask_columns: MaskColumns = mask_columns_py
    mask_copy_text: MaskCopyText = mask_copy_text_py
    NATIVE = False
else:
    mask_columns = _native
    mask_copy_text = _native_copy
    NATIVE = True
