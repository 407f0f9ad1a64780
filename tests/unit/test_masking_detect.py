"""Content detectors of card data: every Luhn-valid PAN in a known range is found and masked wherever it sits,
ordinary numbers are not, track data is found whole, and the prefilter never says "nothing here" wrongly.

Only the brands' published test numbers and generated numbers are used, never real cards."""

from __future__ import annotations

import re
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.masking import detect as det
from gateway.masking.detect import RePrefilter, Span, find_pans, find_track_data, has_candidate, mask
from gateway.masking.iin import IIN_RANGES, brand_of
from pcigate.devstack.testcards import TEST_PANS
from pcigate.devstack.testcards import luhn_valid as reference_luhn

PUBLISHED = {
    "4111111111111111": "visa",
    "4012888888881881": "visa",
    "5555555555554444": "mastercard",
    "2223003122003222": "mastercard",
    "378282246310005": "amex",
    "6011111111111117": "discover",
    "3530111333300000": "jcb",
    "30569309025904": "diners",
}
ALL_TEST_PANS = sorted({p for pans in TEST_PANS.values() for p in pans} | set(PUBLISHED))
NOT_DIGIT_START = re.compile(r"^[^0-9]")


def with_check_digit(body: str) -> str:
    for d in "0123456789":
        if reference_luhn(body + d):
            return body + d
    raise AssertionError("unreachable")


@st.composite
def pans(draw: st.DrawFn) -> str:
    """A Luhn-valid PAN of an allowed length inside a known IIN range."""
    r = draw(st.sampled_from(IIN_RANGES))
    length = draw(st.sampled_from(sorted(n for n in r.lengths if n >= 13)))
    prefix = str(draw(st.integers(int(r.low), int(r.high)))).zfill(len(r.low))
    body = prefix + "".join(
        draw(
            st.lists(
                st.sampled_from("0123456789"),
                min_size=length - len(prefix) - 1,
                max_size=length - len(prefix) - 1,
            )
        )
    )
    return with_check_digit(body)


@st.composite
def separated(draw: st.DrawFn, pan: str) -> str:
    """``pan`` with any mix of single spaces and dashes (or nothing) between its digits."""
    out = pan[0]
    for ch in pan[1:]:
        out += draw(st.sampled_from(["", "", " ", "-"])) + ch
    return out


# Text around a PAN: anything but a digit glued to it, which would make it another number.
TEXT = st.text(st.characters(codec="utf-8"), max_size=40)


def visible_digits(masked: bytes, span: Span) -> str:
    return re.sub(rb"[ -]", b"", masked[span.start : span.end]).decode()


# ---------------------------------------------------------------------------------------------- IIN table


@pytest.mark.parametrize(("pan", "brand"), PUBLISHED.items())
def test_published_test_numbers_have_their_brand(pan: str, brand: str) -> None:
    assert brand_of(pan) == brand
    spans = find_pans(f"card: {pan}.".encode())
    assert [(s.digits, s.brand) for s in spans] == [(pan, brand)]


@pytest.mark.parametrize("pan", ALL_TEST_PANS)
def test_every_published_test_number_is_found(pan: str) -> None:
    assert [s.digits for s in find_pans(pan.encode())] == [pan]


@pytest.mark.parametrize(
    "digits",
    [
        "1234567890123452",  # Luhn-valid, IIN 1: no brand
        "9999999999999995",  # Luhn-valid, IIN 9
        "7000000000000005",  # Luhn-valid, IIN 7
        "4111111111111",  # Visa prefix, 13 digits but Luhn-invalid
        "411111111111116",  # Luhn-valid Visa prefix, but 15 digits is no Visa length
        "37828224631003",  # Luhn-valid Amex prefix, 14 digits
        "5555555555554443",  # Luhn-invalid
    ],
)
def test_out_of_range_or_luhn_invalid_is_not_a_pan(digits: str) -> None:
    assert brand_of(digits) is None or not reference_luhn(digits)
    assert find_pans(f"x {digits} y".encode()) == []


def test_brand_of_prefers_the_most_specific_range() -> None:
    assert brand_of(with_check_digit("622126" + "0" * 9)) == "discover"
    assert brand_of(with_check_digit("620000" + "0" * 9)) == "unionpay"
    assert brand_of(with_check_digit("650000" + "0" * 9)) == "discover"
    assert brand_of(with_check_digit("6700000" + "0" * 5)) == "maestro"  # 13 digits: Maestro only
    assert brand_of(with_check_digit("2200" + "0" * 11)) == "mir"
    assert brand_of("4111111111111111") == "visa"
    assert brand_of("411111") is None


# -------------------------------------------------------------------------------------------------- PANs


@settings(max_examples=400)
@given(st.data())
def test_any_pan_anywhere_with_any_separators_is_found_and_masked(data: st.DataObject) -> None:
    pan = data.draw(pans())
    shown = data.draw(separated(pan))
    before = data.draw(TEXT.filter(lambda t: not t[-1:].isascii() or not t[-1:].isdigit()))
    after = data.draw(TEXT.filter(lambda t: not t[:1].isascii() or not t[:1].isdigit()))
    buf = (before + shown + after).encode()
    start = len(before.encode())
    spans = [s for s in find_pans(buf) if s.start == start and s.end == start + len(shown)]
    assert [s.digits for s in spans] == [pan]
    assert spans[0].brand == brand_of(pan)

    masked = mask(buf, find_pans(buf))
    assert len(masked) == len(buf)
    region = masked[start : start + len(shown)]
    assert [i for i, c in enumerate(region) if c in b" -"] == [i for i, c in enumerate(shown) if c in " -"]
    digits = visible_digits(masked, spans[0])
    # Middle digits hidden; BIN and last four shown (unless another window over the same run hides them).
    assert digits[6:-4] == "*" * (len(pan) - 10)
    assert all(c in (p, "*") for c, p in zip(digits, pan, strict=True))
    assert pan not in re.sub(rb"[ -]", b"", masked).decode(errors="replace")


@given(pans(), st.sampled_from(["", " ", "-"]))
def test_keep_bin_8_only_for_16_digit_pans(pan: str, sep: str) -> None:
    buf = (pan[:4] + sep + pan[4:]).encode()
    spans = find_pans(buf)
    masked = mask(buf, spans, keep_bin=8)
    keep = 8 if len(pan) == 16 else 6
    assert visible_digits(masked, spans[0]) == pan[:keep] + "*" * (len(pan) - keep - 4) + pan[-4:]


def test_keep_bin_must_be_6_or_8() -> None:
    with pytest.raises(ValueError, match="keep_bin"):
        mask(b"4111111111111111", find_pans(b"4111111111111111"), keep_bin=7)


@pytest.mark.parametrize("pan", ["4111111111111111", "378282246310005"])
@pytest.mark.parametrize("glue", [("7", ""), ("", "7"), ("12", "34"), ("0", "0")])
def test_digits_glued_on_either_side_prevent_a_match(pan: str, glue: tuple[str, str]) -> None:
    assert find_pans(f"id {glue[0]}{pan}{glue[1]} end".encode()) == []


def test_a_luhn_valid_substring_of_a_longer_id_is_not_a_pan() -> None:
    # 4111111111111111 sits inside; the 20-digit whole is not a PAN.
    assert find_pans(b"order 41111111111111112222") == []


def test_every_window_of_whole_groups_is_checked() -> None:
    buf = b"cards 4111 1111 1111 1111 5555 5555 5555 4444 and 12 378282246310005 34"
    assert [s.digits for s in find_pans(buf)] == ["4111111111111111", "5555555555554444", "378282246310005"]
    masked = mask(buf, find_pans(buf))
    assert masked == b"cards 4111 11** **** 1111 5555 55** **** 4444 and 12 378282*****0005 34"


def test_letters_around_a_pan_do_not_hide_it() -> None:
    assert [s.digits for s in find_pans(b"PAN4111111111111111X")] == ["4111111111111111"]


def test_span_repr_never_shows_the_digits() -> None:
    (span,) = find_pans(b"4111111111111111")
    assert "4111111111111111" not in repr(span)
    assert "111111" not in repr(span)


# -------------------------------------------------------------------------------------------- track data


@pytest.mark.parametrize("pan", ["4111111111111111", "5555555555554444", "378282246310005"])
@pytest.mark.parametrize("sentinels", [True, False])
def test_track1_and_track2_are_found_whole(pan: str, sentinels: bool) -> None:
    t1 = f"B{pan}^DOE/JANE^2512101000000000000000"
    t2 = f"{pan}=25121010000012345678"
    if sentinels:
        t1, t2 = f"%{t1}?", f";{t2}?"
    buf = f"swipe: {t1} then {t2}, done".encode()
    spans = find_track_data(buf)
    assert [buf[s.start : s.end].decode() for s in spans] == [t1, t2]
    assert [s.kind for s in spans] == ["track1", "track2"]
    assert all(s.digits == pan for s in spans)
    masked = mask(buf, det.find_card_data(buf))
    assert masked == f"swipe: {'*' * len(t1)} then {'*' * len(t2)}, done".encode()
    counted = det.mask_card_data(buf)  # the evidence tells the kinds apart (sad.detected track1 / track2)
    assert (counted.data, counted.pans, counted.tracks, counted.track1) == (masked, 0, 2, 1)


def test_track_without_sentinel_needs_a_luhn_valid_pan() -> None:
    assert find_track_data(b"4111111111111112=25121010000012345678") == []
    assert find_track_data(b"B4111111111111112^DOE/JANE^2512101") == []
    assert len(find_track_data(b";4111111111111112=25121010000012345678?")) == 1


def test_track1_without_sentinel_must_not_be_inside_a_word() -> None:
    assert find_track_data(b"XB4111111111111111^DOE/JANE^2512101") == []


def test_track2_after_a_separated_number_is_found() -> None:
    (span,) = find_track_data(b"n 1 4111111111111111=2512101?")
    assert span.kind == "track2"
    assert span.start == 4


# ---------------------------------------------------------------------------------------------- prefilter


@given(st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Nd")), max_size=200))
def test_no_candidate_in_text_without_digit_runs(text: str) -> None:
    assert not has_candidate(text.encode())
    assert find_pans(text.encode()) == []
    assert find_track_data(text.encode()) == []


def test_short_digit_runs_are_no_candidate() -> None:
    assert not has_candidate(b"2024-01-05,Jane Doe,123.45,EUR,+49 30 1234\n" * 100)
    assert has_candidate(b"x" * 1000 + b"4111 1111 1111 1")
    assert has_candidate(b"%B") and has_candidate(b";12=")


CANDIDATE_TEXT = st.text(st.sampled_from("0123456789 -%B;=^?xA,\n"), max_size=120)


@settings(max_examples=500)
@given(CANDIDATE_TEXT, st.integers(0, 20))
def test_fallback_prefilter_agrees_with_the_process_prefilter(text: str, pos: int) -> None:
    buf = text.encode()
    fallback = RePrefilter()
    process = det.prefilter()
    for digits_only in (False, True):
        a = fallback.first_end(buf, pos, digits_only=digits_only)
        b = process.first_end(buf, pos, digits_only=digits_only)
        assert (a is None) == (b is None)
        if digits_only:  # one fixed-size pattern: leftmost start and earliest end are the same match
            assert a == b


@settings(max_examples=200)
@given(CANDIDATE_TEXT)
def test_detectors_agree_under_the_fallback_prefilter(text: str) -> None:
    buf = text.encode()
    expected = find_pans(buf), find_track_data(buf)
    saved = det._PREFILTER
    try:
        det._PREFILTER = RePrefilter()  # type: ignore[misc]
        assert (find_pans(buf), find_track_data(buf)) == expected
    finally:
        det._PREFILTER = saved  # type: ignore[misc]


def test_hyperscan_is_the_process_prefilter() -> None:
    assert det.prefilter().name == "hyperscan"


def test_hyperscan_scratch_is_per_thread() -> None:
    pf = det.prefilter()
    buf = b"a" * 10_000 + b"4111111111111111"
    results: list[int | None] = []

    def work() -> None:
        for _ in range(200):
            results.append(pf.first_end(buf))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) == {10_013}
