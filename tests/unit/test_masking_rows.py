"""Masking result rows and COPY data on the wire: column actions, content detection, binary numbers.

Pure: messages are built with the codec, masked, and decoded again; no sockets.
"""

from __future__ import annotations

import struct
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.masking.copyout import CopyMasker
from gateway.masking.rows import ColumnMask, ResultPlan, Tally
from gateway.masking.values import mask_by_action, mask_content, mask_text
from gateway.pgwire import messages as m
from gateway.pgwire.messages import FieldDesc
from pcigate.devstack.testcards import TEST_PANS
from tests.pgframes import frames

PANS = [p for group in TEST_PANS.values() for p in group]
VISA = "4111111111111111"
AMEX = "378282246310005"
TEXT, INT8, NUMERIC, BYTEA, JSONB, INT4 = 25, 20, 1700, 17, 3802, 23


def rows_of(*rows: list[bytes | None]) -> tuple[bytearray, list[tuple[int, int]]]:
    return frames(m.data_row(r) for r in rows)


def decoded(
    buf: bytearray, spans: list[tuple[int, int]], out: list[bytes | None] | None
) -> list[list[bytes | None]]:
    msgs = [buf[s:e] if out is None or out[k] is None else out[k] for k, (s, e) in enumerate(spans)]
    result = []
    for msg in msgs:
        assert struct.unpack_from("!i", msg, 1)[0] == len(msg) - 1  # the length word stays right
        result.append(m.parse_data_row(msg[5:]))
    return result


FIELDS = [FieldDesc("card_id", type_oid=INT8), FieldDesc("pan"), FieldDesc("cvv"), FieldDesc("note")]


def test_column_actions_mask_pan_and_null_cvv() -> None:
    plan = ResultPlan(
        FIELDS,
        [ColumnMask(1, "bin_last4", "column_policy"), ColumnMask(2, "null", "column_policy")],
        content=True,
        sad=frozenset({2}),
    )
    buf, spans = rows_of([b"1", VISA.encode(), b"123", b"hello"], [b"2", None, b"456", None])
    tally = Tally()
    out = plan.mask_rows(buf, spans, tally)
    assert decoded(buf, spans, out) == [
        [b"1", b"411111******1111", None, b"hello"],
        [b"2", None, None, None],
    ]
    assert tally.locations == {(1, "column_policy", "first6_last4"): 1, (2, "column_policy", "null"): 2}
    assert tally.sad_columns == {2: 2}


def test_content_detection_finds_pans_in_any_text_column() -> None:
    plan = ResultPlan(FIELDS, [], content=True)
    note = f"refund to card {AMEX[:4]} {AMEX[4:10]} {AMEX[10:]} ok".encode()
    buf, spans = rows_of([b"1", b"x", b"y", b"no digits"], [b"2", b"x", b"y", note])
    tally = Tally()
    out = plan.mask_rows(buf, spans, tally)
    assert out is not None and out[0] is None
    assert decoded(buf, spans, out)[1][3] == b"refund to card 3782 82**** *0005 ok"
    assert tally.pans == 1


def test_nothing_to_mask_returns_none_without_touching_rows() -> None:
    plan = ResultPlan(FIELDS, [], content=True)
    buf, spans = rows_of(*([b"1", b"x", b"2026-01-01 12:00:00", b"order 12345678"] for _ in range(50)))
    before = bytes(buf)
    assert plan.mask_rows(buf, spans, Tally()) is None
    assert buf == before


def test_binary_int8_and_numeric_pans_become_null() -> None:
    fields = [
        FieldDesc("a", type_oid=INT8, format=1),
        FieldDesc("b", type_oid=INT8, format=1),
        FieldDesc("c", type_oid=NUMERIC, format=1),
    ]
    plan = ResultPlan(fields, [], content=True)
    pan_numeric = _numeric_binary(Decimal(VISA))
    buf, spans = rows_of([struct.pack("!q", 42), struct.pack("!q", int(VISA)), pan_numeric])
    out = plan.mask_rows(buf, spans, Tally())
    assert decoded(buf, spans, out) == [[struct.pack("!q", 42), None, None]]


def test_text_numeric_pan_becomes_null_not_stars() -> None:
    result = mask_content(VISA.encode(), NUMERIC, 0, 6)
    assert result.value is None and result.pans == 1
    assert mask_content(b"1234567890123", NUMERIC, 0, 6).value == b"1234567890123"  # not Luhn: a number


def test_bytea_hex_is_decoded_and_masked_in_place() -> None:
    value = b"\\x" + VISA.encode().hex().encode()
    result = mask_content(value, BYTEA, 0, 6)
    assert result.value is not None and len(result.value) == len(value)
    assert bytes.fromhex(result.value[2:].decode()) == b"411111******1111"


def test_jsonb_binary_keeps_its_version_byte() -> None:
    assert mask_by_action(b"\x01" + VISA.encode(), "bin_last4", JSONB, 1, 6) == b"\x01411111******1111"
    assert mask_by_action(VISA.encode(), "bin_last4", INT8, 0, 6) is None  # a number has no masked form


@pytest.mark.parametrize(
    ("value", "action", "expected"),
    [
        (b"4111-1111-1111-1111", "bin_last4", b"4111-11**-****-1111"),
        (b"4111111111111111", "last4", b"************1111"),
        (b"4111111111111111", "full", b"****************"),
        (b"12345", "bin_last4", b"*****"),  # too short to be a PAN: nothing kept
        (b"card: 4111 1111 1111 1111", "bin_last4", b"****: 4111 11** **** 1111"),
    ],
)
def test_mask_text_actions(value: bytes, action: str, expected: bytes) -> None:
    assert mask_text(value, action, 6) == expected  # type: ignore[arg-type]


def test_bin8_only_for_16_digits() -> None:
    assert mask_text(VISA.encode(), "bin_last4", 8) == b"41111111****1111"
    assert mask_text(AMEX.encode(), "bin_last4", 8) == b"378282*****0005"


@given(
    pan=st.sampled_from(PANS),
    before=st.text(alphabet="abc xyz,;:", max_size=20),
    after=st.text(alphabet="abc xyz,;:", max_size=20),
    column=st.integers(0, 3),
)
def test_any_pan_in_any_text_column_is_masked(pan: str, before: str, after: str, column: int) -> None:
    plan = ResultPlan(FIELDS, [], content=True)
    row: list[bytes | None] = [b"1", b"x", b"y", b"z"]
    row[column] = f"{before}{pan}{after}".encode()
    buf, spans = rows_of(row)
    out = plan.mask_rows(buf, spans, Tally())
    values = decoded(buf, spans, out)[0]
    assert pan.encode() not in b"".join(v or b"" for v in values)


def test_a_pan_after_masked_columns_is_still_found() -> None:
    plan = ResultPlan(FIELDS, [ColumnMask(1, "bin_last4", "column_policy")], content=True)
    buf, spans = rows_of([b"1", VISA.encode(), b"1", f"x{PANS[3]}".encode()])
    values = decoded(buf, spans, plan.mask_rows(buf, spans, Tally()))[0]
    assert PANS[3].encode() not in values[3]  # type: ignore[operator]


# --- COPY ---------------------------------------------------------------------------------------------


def copy_run(masker: CopyMasker, *payloads: bytes, tally: Tally | None = None) -> list[bytes]:
    """The payloads as a client receives them after one ``mask_run`` over their CopyData messages."""
    buf, spans = frames((m.frame(m.COPY_DATA, p) for p in payloads), b"xx")
    out = masker.mask_run(buf, spans, tally if tally is not None else Tally())
    msgs = [bytes(buf[s:e]) if out is None or out[k] is None else out[k] for k, (s, e) in enumerate(spans)]
    for msg in msgs:
        assert msg[0] == m.COPY_DATA and struct.unpack_from("!i", msg, 1)[0] == len(msg) - 1
    return [msg[5:] for msg in msgs]  # type: ignore[index]


def test_copy_text_columns_by_position() -> None:
    masker = CopyMasker(
        binary=False, csv=False, actions=["clear", "bin_last4", "null"], content=True, keep_bin=6
    )
    tally = Tally()
    out = copy_run(
        masker,
        f"7\t{VISA}\t123\n".encode(),  # the NULL action changes the length: the Python path
        f"8\t{VISA}\t\\N\n".encode(),  # in place, natively
        b"9\t\\N\t\\N\n",
        f"10\t{PANS[1]}\n".encode(),  # another field count: hidden whole
        tally=tally,
    )
    assert out == [
        b"7\t411111******1111\t\\N\n",
        b"8\t411111******1111\t\\N\n",
        b"9\t\\N\t\\N\n",
        b"**\t" + b"*" * len(PANS[1]) + b"\n",
    ]
    assert tally.locations[(1, "column_policy", "first6_last4")] == 2
    assert tally.locations[(2, "column_policy", "null")] == 1


def test_copy_text_content_in_other_columns() -> None:
    masker = CopyMasker(
        binary=False, csv=False, actions=["clear", "bin_last4", "clear"], content=True, keep_bin=6
    )
    tally = Tally()
    rows = [f"{i}\t{VISA}\tnote\n".encode() for i in range(50)] + [f"50\t{VISA}\tpaid with {AMEX}\n".encode()]
    out = copy_run(masker, *rows, tally=tally)
    assert out[0] == b"0\t411111******1111\tnote\n"
    assert out[50] == b"50\t411111******1111\tpaid with 378282*****0005\n"
    assert tally.pans == 1 and tally.locations[(1, "column_policy", "first6_last4")] == 51


def test_copy_csv_quoted_fields() -> None:
    masker = CopyMasker(
        binary=False, csv=True, actions=["clear", "bin_last4", "clear"], content=True, keep_bin=6
    )
    assert copy_run(masker, f'"a,b","{VISA}",x\n'.encode()) == [b'"a,b","411111******1111",x\n']


def test_copy_unknown_columns_content_only() -> None:
    masker = CopyMasker(binary=False, csv=False, actions=None, content=True, keep_bin=6)
    assert copy_run(masker, f"7\tnote {VISA}\n".encode(), b"8\tnothing\n") == [
        b"7\tnote 411111******1111\n",
        b"8\tnothing\n",
    ]


def test_copy_binary_masked_column_is_null() -> None:
    masker = CopyMasker(binary=True, csv=False, actions=["clear", "bin_last4"], content=True, keep_bin=6)
    header = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
    tuple_ = struct.pack("!h", 2) + struct.pack("!i", 1) + b"7" + struct.pack("!i", 16) + VISA.encode()
    trailer = struct.pack("!h", -1)
    assert copy_run(masker, header, tuple_, trailer) == [
        header,
        struct.pack("!h", 2) + struct.pack("!i", 1) + b"7" + struct.pack("!i", -1),
        trailer,
    ]


def _numeric_binary(value: Decimal) -> bytes:
    digits = str(value)
    digits = "0" * (-len(digits) % 4) + digits
    groups = [int(digits[i : i + 4]) for i in range(0, len(digits), 4)]
    return struct.pack(f"!hhhh{len(groups)}h", len(groups), len(groups) - 1, 0, 0, *groups)
