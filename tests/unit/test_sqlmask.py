"""Card data never leaves the gateway in audit text or bind parameters: PANs masked first-6/last-4,
track data removed, whatever the text looks like around them."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sqlmask import TRACK_MARK, audit_text, luhn_valid, mask_parameter, mask_text, sanitize
from pcigate.devstack.testcards import TEST_PANS
from pcigate.devstack.testcards import luhn_valid as reference_luhn

ALL_TEST_PANS = [p for pans in TEST_PANS.values() for p in pans]
SCHEMA_TEXT = re.compile(r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")
RUN = re.compile(r"[0-9](?:[ -]?[0-9])*")
# The plainest reading of "a 13-19 digit run": bounded by non-digits, single separators allowed.
NAIVE = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])")


def surviving_pans(text: str) -> list[str]:
    """Every Luhn-valid 13-19 digit window of whole separator-delimited groups, in every digit run."""
    found = []
    for m in RUN.finditer(text):
        groups = re.split("[ -]", m.group())
        for a in range(len(groups)):
            digits = ""
            for g in groups[a:]:
                digits += g
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and reference_luhn(digits):
                    found.append(digits)
    for m in NAIVE.finditer(text):
        digits = re.sub("[ -]", "", m.group())
        if reference_luhn(digits):
            found.append(digits)
    return found


def with_check_digit(body: str) -> str:
    for d in "0123456789":
        if reference_luhn(body + d):
            return body + d
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------- luhn


@pytest.mark.parametrize("pan", ALL_TEST_PANS)
def test_luhn_accepts_published_test_pans(pan: str) -> None:
    assert luhn_valid(pan)


@given(st.text(alphabet="0123456789", min_size=1, max_size=25))
def test_luhn_agrees_with_reference(digits: str) -> None:
    assert luhn_valid(digits) == reference_luhn(digits)


# ------------------------------------------------------------------------------------------- mask_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4111111111111111", "411111******1111"),
        ("'4111111111111111'", "'411111******1111'"),
        ("4111-1111-1111-1111", "4111-11**-****-1111"),
        ("4111 1111 1111 1111", "4111 11** **** 1111"),
        ("378282246310005", "378282*****0005"),  # amex, 15
        ("3782 822463 10005", "3782 82**** *0005"),
        ("4222222222222", "422222***2222"),  # 13
        ("4000056655665556", "400005******5556"),
        ("6011111111111117", "601111******1117"),
    ],
)
def test_pan_is_masked_first6_last4_keeping_separators(text: str, expected: str) -> None:
    assert mask_text(text) == (expected, 1)


def test_a_19_digit_pan_is_masked() -> None:
    pan = with_check_digit("401288888888188" + "123")
    assert len(pan) == 19
    masked, count = mask_text(f"x={pan};")
    assert masked == f"x={pan[:6]}{'*' * 9}{pan[-4:]};" and count == 1


@pytest.mark.parametrize(
    "text",
    [
        "SELECT * FROM t WHERE id = 4111111111111112",  # not Luhn-valid
        "SELECT 411111111111",  # 12 digits
        "SELECT 41111111111111111111",  # 20 digits, no separator: a different number
        "4111--1111--1111--1111",  # double separators break the run
        "4111_1111_1111_1111",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
        "",
    ],
)
def test_non_pans_are_left_alone(text: str) -> None:
    assert mask_text(text) == (text, 0)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM cards WHERE pan = '{pan}'",
        "SELECT * FROM cards WHERE pan = {pan}",
        "SELECT 1 /* customer card {pan} */",
        "SELECT 1 -- {pan}\n",
        'SELECT "col_{pan}" FROM t',
        "SELECT E'\\\\x{pan}'",
        "SELECT $$card:{pan}$$",
        "INSERT INTO t VALUES ('{pan}', '{pan}')",
    ],
)
@pytest.mark.parametrize("pan", ["4111111111111111", "5555-5555-5555-4444", "3782 822463 10005"])
def test_a_pan_anywhere_in_the_statement_is_masked(sql: str, pan: str) -> None:
    text = sql.format(pan=pan)
    masked, count = mask_text(text)
    assert count == text.count(pan)
    assert pan not in masked
    assert surviving_pans(masked) == []


def test_a_list_of_pans_separated_by_spaces_is_masked_whole() -> None:
    masked, count = mask_text("4111111111111111 5555555555554444 378282246310005")
    assert masked == "411111******1111 555555******4444 378282*****0005"
    assert count == 3


def test_masking_exposes_no_new_window() -> None:
    # After the amex is masked its last group starts mid-group (*0005); the digits after it must not form
    # a Luhn-valid window with it.
    text = "3782 822463 10005 " + " ".join("1234")
    masked, _ = mask_text(text)
    assert surviving_pans(masked) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("%B4111111111111111^DOE/JOHN^2512101000000000000000000?", TRACK_MARK),
        ("'%B4111111111111111^DOE/JOHN^25121010000', 'x'", f"'{TRACK_MARK}', 'x'"),
        (";4111111111111111=25121010000000000000?", TRACK_MARK),
        ("'4111111111111111=2512101123456'", f"'{TRACK_MARK}'"),  # no sentinels, Luhn-valid PAN
        ("B4111111111111111^DOE/JOHN^2512101", TRACK_MARK),
    ],
)
def test_track_data_is_removed_entirely(text: str, expected: str) -> None:
    masked, count = mask_text(text)
    assert masked == expected
    assert count == 1


def test_track_shaped_without_sentinel_needs_a_valid_pan() -> None:
    # 13+ digits then '=' and four digits, but not a card: kept as the number it is.
    assert mask_text("1234567890123=2512") == ("1234567890123=2512", 0)


def test_masked_count_adds_tracks_and_pans() -> None:
    text = "SELECT ';4111111111111111=2512101?', '5555555555554444', 'x'"
    masked, count = mask_text(text)
    assert count == 2
    assert masked == f"SELECT '{TRACK_MARK}', '555555******4444', 'x'"


# --------------------------------------------------------------------------------- properties: mask


def luhn_numbers(min_size: int = 13, max_size: int = 19) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=min_size - 1, max_size=max_size - 1).map(with_check_digit)


@st.composite
def formatted_pans(draw: st.DrawFn) -> str:
    digits = draw(st.one_of(luhn_numbers(), st.sampled_from(ALL_TEST_PANS)))
    out = []
    for i, ch in enumerate(digits):
        if i and draw(st.integers(0, 5)) == 0:
            out.append(draw(st.sampled_from([" ", "-"])))
        out.append(ch)
    return "".join(out)


FILLER = st.text(alphabet="0123456789 -'\"=^%;?Bx,()\n\t*é", max_size=12)
TEXTS = st.lists(st.one_of(formatted_pans(), FILLER, luhn_numbers(1, 30)), max_size=12).map("".join)


@settings(max_examples=400)
@given(TEXTS)
def test_no_luhn_valid_run_survives_mask_text(text: str) -> None:
    masked, count = mask_text(text)
    assert surviving_pans(masked) == []
    if surviving_pans(text):
        assert count > 0


@settings(max_examples=200)
@given(TEXTS)
def test_mask_text_is_idempotent(text: str) -> None:
    masked, _ = mask_text(text)
    assert mask_text(masked) == (masked, 0)


@settings(max_examples=200)
@given(st.text(alphabet="0123456789 -abc'", max_size=60))
def test_pan_masking_keeps_length_and_non_digits(text: str) -> None:
    masked, _ = mask_text(text)  # no '^' or '=': no track data, so only digits can change
    assert len(masked) == len(text)
    assert all(a == b or (a.isdigit() and b == "*") for a, b in zip(text, masked, strict=True))


@settings(max_examples=300)
@given(TEXTS, st.integers(min_value=1, max_value=80))
def test_no_luhn_valid_run_survives_audit_text(text: str, max_chars: int) -> None:
    out, truncated, _ = audit_text(text, max_chars)
    assert len(out) <= max_chars
    assert truncated == (len(mask_text(text)[0]) > max_chars) or truncated
    assert surviving_pans(out) == []
    assert SCHEMA_TEXT.match(out)


@settings(max_examples=300)
@given(TEXTS, st.integers(min_value=1, max_value=80), st.booleans())
def test_no_luhn_valid_run_survives_mask_parameter(text: str, max_chars: int, garbage: bool) -> None:
    raw = text.encode() + (b"\xff\xfe" if garbage else b"")
    value, _, _ = mask_parameter(raw, binary=False, max_chars=max_chars)
    assert value is not None
    assert len(value) <= max_chars
    assert surviving_pans(value) == []
    assert SCHEMA_TEXT.match(value)


# ------------------------------------------------------------------------------------------ audit_text


def test_audit_text_replaces_forbidden_characters_and_keeps_tab_newline() -> None:
    text = "SELECT\t1\r\n\x00\x01\x08\x0b\x0c\x0e\x1f\x7f'x'"
    out, truncated, count = audit_text(text)
    assert out == "SELECT\t1\r\n" + "\ufffd" * 8 + "'x'"
    assert (truncated, count) == (False, 0)
    assert SCHEMA_TEXT.match(out)


def test_audit_text_replaces_lone_surrogates() -> None:
    out, _, _ = audit_text("SELECT '\udc80'")
    assert out == "SELECT '\ufffd'"
    out.encode("utf-8")


def test_audit_text_cuts_to_max_chars() -> None:
    out, truncated, _ = audit_text("SELECT " + "x" * 20000)
    assert len(out) == 16384 and truncated
    out, truncated, _ = audit_text("SELECT 1", 8)
    assert out == "SELECT 1" and not truncated


def test_a_pan_straddling_the_cut_is_never_half_visible() -> None:
    for offset in range(1, 16):
        text = "x" * (16384 - offset) + "4111111111111111 tail"
        out, truncated, count = audit_text(text)
        assert truncated and count == 1
        assert len(out) <= 16384
        tail = out[16384 - offset :]
        assert not re.search(r"[0-9]{7}", tail), tail  # at most the first six digits, never more
        expected = "411111******1111"[: len(tail)]
        assert all(c in (e, "*") for c, e in zip(tail, expected, strict=True)), tail


def test_a_long_number_cut_to_a_luhn_valid_prefix_is_dropped() -> None:
    # 25 digits are no PAN, but cutting them could leave a Luhn-valid 16-digit prefix.
    text = "x" * (100 - 16) + "4111111111111111" + "123456789"
    out, truncated, count = audit_text(text, 100)
    assert truncated and count == 0
    assert surviving_pans(out) == []


def test_audit_text_of_a_huge_statement_is_bounded() -> None:
    text = "SELECT '" + "4111111111111111 " * 200_000 + "'"
    out, truncated, count = audit_text(text)
    assert truncated and len(out) <= 16384
    assert count > 0
    assert surviving_pans(out) == []


def test_an_adversarial_run_of_separated_digits_is_hidden_wholesale() -> None:
    # thousands of single-digit groups: checking every window would cost tens of milliseconds
    text = "SELECT '" + " ".join("4111111111111111" * 300) + "'"
    out, truncated, count = audit_text(text)
    assert not truncated and count >= 1
    assert len(out) == len(text) and not re.search("[0-9]", out)
    assert surviving_pans(out) == []


def test_sanitize() -> None:
    assert sanitize("a\tb\nc\rd") == "a\tb\nc\rd"
    assert sanitize("a\x00b\x7f") == "a\ufffdb\ufffd"


# -------------------------------------------------------------------------------------- mask_parameter


def test_null_parameter() -> None:
    assert mask_parameter(None, binary=False) == (None, False, 0)
    assert mask_parameter(None, binary=True) == (None, False, 0)


def test_binary_parameter_records_only_its_size() -> None:
    assert mask_parameter(b"4111111111111111", binary=True) == ("<binary 16 bytes>", False, 0)
    assert mask_parameter(b"\x00\x00\x00\x2a", binary=True) == ("<binary 4 bytes>", False, 0)


def test_text_parameter() -> None:
    assert mask_parameter(b"48213", binary=False) == ("48213", False, 0)
    assert mask_parameter(b"4111111111111111", binary=False) == ("411111******1111", False, 1)
    assert mask_parameter(b"\xff\x00ok\tfine", binary=False) == ("\ufffd\ufffdok\tfine", False, 0)
    assert mask_parameter(b";4111111111111111=2512101?", binary=False) == (TRACK_MARK, False, 1)


def test_text_parameter_is_cut() -> None:
    value, truncated, _ = mask_parameter(b"a" * 2000, binary=False)
    assert value == "a" * 1024 and truncated
    value, truncated, _ = mask_parameter("é".encode() * 10, binary=False, max_chars=4)
    assert value == "éééé" and truncated


def test_huge_parameter_is_cut_before_decoding_and_masked() -> None:
    raw = b"5555 5555 5555 4444 " * 100_000
    value, truncated, count = mask_parameter(raw, binary=False)
    assert value is not None and truncated and len(value) <= 1024
    assert count > 0
    assert surviving_pans(value) == []
    # a multi-byte character split by the byte cut is replaced, not an error
    value, truncated, _ = mask_parameter("é".encode() * 10_000, binary=False)
    assert truncated and value is not None and set(value) <= {"é", "\ufffd"}
