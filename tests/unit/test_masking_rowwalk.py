"""The native row walk (C) against its pure-Python reference, byte for byte, on generated rows.

Both must mask the same bytes, count the same, flag the same rows and refuse the same malformed input with
the same message; and the in-place text masking must equal values.mask_text, the definition of the format.
"""

from __future__ import annotations

import math
import random
import struct
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.masking import rowwalk
from gateway.masking.rowwalk import (
    OP_BIN6,
    OP_BIN8,
    OP_FLAG,
    OP_FLOAT8,
    OP_FULL,
    OP_INT8,
    OP_LAST4,
    OP_NUMERIC,
    mask_columns_py,
)
from gateway.masking.values import Action, mask_text
from gateway.pgwire import messages as m
from tests.pgframes import frames

TEXT_OPS: dict[int, tuple[Action, int]] = {
    OP_FULL: ("full", 6),
    OP_LAST4: ("last4", 6),
    OP_BIN6: ("bin_last4", 6),
    OP_BIN8: ("bin_last4", 8),
}
ALL_OPS = (OP_FULL, OP_LAST4, OP_BIN6, OP_BIN8, OP_INT8, OP_FLAG, OP_NUMERIC, OP_FLOAT8)


def native() -> rowwalk.MaskColumns:
    if not rowwalk.NATIVE:
        pytest.fail(
            "the C row walk (gateway/masking/_rowwalk.c) is not built: `make venv` builds it "
            "(pip install -e . needs a C compiler and the Python headers)"
        )
    return rowwalk.mask_columns


def frame_rows(rows: list[list[bytes | None]]) -> tuple[bytearray, list[tuple[int, int]]]:
    return frames((m.data_row(row) for row in rows), b"junk")


def both(
    buf: bytearray, spans: list[tuple[int, int]], ops: list[tuple[int, int]]
) -> tuple[tuple[bytes, object], tuple[bytes, object]]:
    """Run each implementation on its own copy; (final buffer, result or error message) of each."""
    outcomes = []
    for impl in (native(), mask_columns_py):
        copy = bytearray(buf)
        try:
            result: object = impl(copy, spans, ops)
        except ValueError as exc:
            result = ("ValueError", str(exc))
        outcomes.append((bytes(copy), result))
    return outcomes[0], outcomes[1]


values = st.one_of(
    st.none(),
    st.binary(max_size=24),
    st.from_regex(rb"\A[0-9 -]{0,24}\Z"),
    st.sampled_from(
        [b"4111111111111111", b"4111 1111 1111 1111", b"378282246310005", b"6011-1111-1111-1117"]
    ),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: struct.pack("!q", i)),
    st.floats(allow_nan=True).map(lambda f: struct.pack("!d", f)),
)


@st.composite
def results(draw: st.DrawFn) -> tuple[list[list[bytes | None]], list[tuple[int, int]]]:
    ncols = draw(st.integers(1, 8))
    rows = draw(st.lists(st.lists(values, min_size=ncols, max_size=ncols), min_size=1, max_size=6))
    columns = draw(st.lists(st.integers(0, ncols - 1), unique=True, max_size=ncols))
    ops = [(c, draw(st.sampled_from(ALL_OPS))) for c in sorted(columns)]
    return rows, ops


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(results())
def test_native_equals_reference(case: tuple[list[list[bytes | None]], list[tuple[int, int]]]) -> None:
    rows, ops = case
    buf, spans = frame_rows(rows)
    got, want = both(buf, spans, ops)
    assert got == want


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(results(), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4))
def test_native_equals_reference_on_corrupted_rows(
    case: tuple[list[list[bytes | None]], list[tuple[int, int]]], flips: list[tuple[int, int]]
) -> None:
    """Length words and column counts overwritten at random: same bytes out or the same refusal, and
    never a read outside the row (the reference raises where C would have overrun)."""
    rows, ops = case
    buf, spans = frame_rows(rows)
    for where, byte in flips:
        buf[where % len(buf)] = byte
    got, want = both(buf, spans, ops)
    assert got == want


@given(st.lists(st.tuples(st.integers(-5, 300), st.integers(-5, 300)), max_size=4))
def test_spans_outside_the_buffer_are_refused(spans: list[tuple[int, int]]) -> None:
    buf, _ = frame_rows([[b"4111111111111111"]])
    got, want = both(buf, spans, [(0, OP_BIN6)])
    assert got == want


@settings(max_examples=300)
@given(
    st.one_of(
        st.from_regex(rb"\A[0-9 a-zA-Z-]{0,30}\Z"),
        st.binary(max_size=30),
        st.sampled_from([b"4111111111111111", b"5555 5555 5555 4444", b"3782-822463-10005"]),
    ),
    st.sampled_from(sorted(TEXT_OPS)),
)
def test_in_place_text_mask_is_mask_text(value: bytes, op: int) -> None:
    """The C masking is the format mask_text defines (same length, BIN and last four kept)."""
    action, keep_bin = TEXT_OPS[op]
    buf, spans = frame_rows([[value]])
    counts, flagged = native()(buf, spans, [(0, op)])
    assert m.parse_data_row(bytes(buf[spans[0][0] + 5 : spans[0][1]])) == [mask_text(value, action, keep_bin)]
    assert counts[0] == 1 and not flagged


def test_formats_and_counts() -> None:
    buf, spans = frame_rows(
        [
            [b"1", b"4111111111111111", b"secret", None],
            [b"2", b"4111 1111 1111 1111", None, b"123"],
            [b"3", b"378282246310005", b"x", b"9"],
        ]
    )
    counts, flagged = native()(buf, spans, [(1, OP_BIN8), (2, OP_FULL), (3, OP_LAST4)])
    assert [m.parse_data_row(bytes(buf[s + 5 : e])) for s, e in spans] == [
        [b"1", b"41111111****1111", b"******", None],
        [b"2", b"4111 1111 **** 1111", None, b"***"],
        [b"3", b"378282*****0005", b"*", b"*"],
    ]
    # per op: values masked, of which an eight-digit BIN kept (16-digit values only)
    assert counts == [3, 2, 2, 0, 2, 0]
    assert flagged == []


def _numeric(value: Decimal) -> bytes:
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int) and exponent == 0
    text = "".join(map(str, digits))
    text = "0" * (-len(text) % 4) + text
    groups = [int(text[i : i + 4]) for i in range(0, len(text), 4)]
    return struct.pack(f"!hhHh{len(groups)}h", len(groups), len(groups) - 1, 0x4000 * sign, 0, *groups)


@pytest.mark.parametrize(
    ("op", "value", "flag"),
    [
        (OP_INT8, struct.pack("!q", 42), False),
        (OP_INT8, struct.pack("!q", 999_999_999_999), False),
        (OP_INT8, struct.pack("!q", 10**12), True),
        (OP_INT8, struct.pack("!q", 4111111111111111), True),
        (OP_INT8, struct.pack("!q", -4111111111111111), False),
        (OP_INT8, b"\x00" * 4, True),  # not an int8: the Python path decides
        (OP_NUMERIC, _numeric(Decimal(12345)), False),
        (OP_NUMERIC, _numeric(Decimal(4111111111111111)), True),
        (OP_NUMERIC, _numeric(Decimal(-4111111111111111)), False),
        (OP_FLOAT8, struct.pack("!d", 1234.5), False),
        (OP_FLOAT8, struct.pack("!d", 4111111111111111.0), True),
        (OP_FLOAT8, struct.pack("!d", math.inf), False),
        (OP_FLOAT8, struct.pack("!d", math.nan), False),
        (OP_FLAG, b"", True),
    ],
)
def test_number_checks_flag_card_sized_values(op: int, value: bytes, flag: bool) -> None:
    buf, spans = frame_rows([[value], [None]])
    before = bytes(buf)
    got, want = both(buf, spans, [(0, op)])
    assert got == want
    assert got == (before, ([0, 0], [0] if flag else []))


def test_bad_ops_and_buffers_are_refused() -> None:
    buf, spans = frame_rows([[b"x"]])
    for impl in (native(), mask_columns_py):
        with pytest.raises(ValueError, match="increasing order"):
            impl(buf, spans, [(0, OP_FULL), (0, OP_LAST4)])
        with pytest.raises(ValueError, match="known op codes"):
            impl(buf, spans, [(0, 99)])
        with pytest.raises(TypeError):
            impl(bytes(buf), spans, [(0, OP_FULL)])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="fewer columns"):
            impl(buf, spans, [(1, OP_FULL)])


def test_a_large_run_matches() -> None:
    rng = random.Random(7)
    pans = [b"4111111111111111", b"5555555555554444", b"378282246310005", b"6011111111111117"]
    rows: list[list[bytes | None]] = [
        [str(i).encode(), b"Grace Hopper", rng.choice(pans), None if i % 7 == 0 else b"visa"]
        for i in range(5000)
    ]
    buf, spans = frame_rows(rows)
    got, want = both(buf, spans, [(2, OP_BIN6), (3, OP_FULL)])
    assert got == want
    assert b"4111111111111111" not in got[0]


# ------------------------------------------------------------------------------- COPY TO, text format

copy_values = st.one_of(
    st.just(b"\\N"),
    st.from_regex(rb"\A[0-9a-z ,\\-]{0,20}\Z"),
    st.sampled_from([b"4111111111111111", b"4111 1111 1111 1111", b"378282246310005", b"\\\\N"]),
)


def frame_copy(lines: list[bytes]) -> tuple[bytearray, list[tuple[int, int]]]:
    return frames((m.frame(m.COPY_DATA, line) for line in lines), b"junk")


def both_copy(
    buf: bytearray, spans: list[tuple[int, int]], ops: list[tuple[int, int]], delimiter: int, ncols: int
) -> tuple[tuple[bytes, object], tuple[bytes, object]]:
    if not rowwalk.NATIVE:
        native()
    outcomes = []
    for impl in (rowwalk.mask_copy_text, rowwalk.mask_copy_text_py):
        copy = bytearray(buf)
        try:
            result: object = impl(copy, spans, ops, delimiter, ncols)
        except ValueError as exc:
            result = ("ValueError", str(exc))
        outcomes.append((bytes(copy), result))
    return outcomes[0], outcomes[1]


@st.composite
def copy_results(draw: st.DrawFn) -> tuple[list[bytes], list[tuple[int, int]], int, int]:
    ncols = draw(st.integers(1, 6))
    delimiter = draw(st.sampled_from([b"\t", b",", b"|"]))
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        width = draw(st.sampled_from([ncols, ncols, ncols, ncols - 1, ncols + 1]))
        fields = [draw(copy_values) for _ in range(max(width, 1))]
        line = delimiter.join(fields) + draw(st.sampled_from([b"\n", b"\n", b"", b"\nx\n"]))
        lines.append(line)
    columns = draw(st.lists(st.integers(0, ncols - 1), unique=True, max_size=ncols))
    ops = [
        (c, draw(st.sampled_from((OP_FULL, OP_LAST4, OP_BIN6, OP_BIN8, OP_FLAG)))) for c in sorted(columns)
    ]
    return lines, ops, delimiter[0], ncols


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(copy_results())
def test_copy_text_native_equals_reference(case: tuple[list[bytes], list[tuple[int, int]], int, int]) -> None:
    lines, ops, delimiter, ncols = case
    buf, spans = frame_copy(lines)
    got, want = both_copy(buf, spans, ops, delimiter, ncols)
    assert got == want


def test_copy_text_masks_in_place_and_flags_what_it_cannot() -> None:
    buf, spans = frame_copy(
        [
            b"1\t4111111111111111\t\\N\n",  # masked in place; the NULL of the flagging column is fine
            b"2\t5555555555554444\t123\n",  # a value where the action is NULL: the Python path
            b"3\t378282246310005\n",  # another field count
            b"4\t6011111111111117\t\\N",  # no newline: not one whole line
        ]
    )
    counts, flagged = rowwalk.mask_copy_text(buf, spans, [(1, OP_BIN6), (2, OP_FLAG)], 9, 3)
    lines = [bytes(buf[s + 5 : e]) for s, e in spans]
    assert lines[0] == b"1\t411111******1111\t\\N\n"
    assert lines[1:] == [b"2\t5555555555554444\t123\n", b"3\t378282246310005\n", b"4\t6011111111111117\t\\N"]
    assert counts == [1, 0, 0, 0] and flagged == [1, 2, 3]
