"""The demo data holds only published test card numbers, each Luhn-valid and of its brand's shape."""

from __future__ import annotations

import re

import pytest

from pcigate.devstack.testcards import TEST_PANS, luhn_valid

BRAND_SHAPE = {
    "visa": re.compile(r"^4(\d{12}|\d{15}|\d{18})$"),
    "mastercard": re.compile(r"^(5[1-5]\d{14}|2(22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)\d{12})$"),
    "amex": re.compile(r"^3[47]\d{13}$"),
    "discover": re.compile(r"^(6011\d{12}|64[4-9]\d{13}|65\d{14})$"),
}


@pytest.mark.parametrize(("brand", "pan"), [(b, p) for b, ps in TEST_PANS.items() for p in ps])
def test_published_test_pan_is_valid(brand: str, pan: str) -> None:
    assert luhn_valid(pan)
    assert BRAND_SHAPE[brand].match(pan), f"{pan} is not shaped like a {brand} number"


def test_all_four_brands_present() -> None:
    assert set(TEST_PANS) == {"visa", "mastercard", "amex", "discover"}


@pytest.mark.parametrize("bad", ["4111111111111112", "378282246310006", "6011111111111110"])
def test_luhn_rejects_altered_numbers(bad: str) -> None:
    assert not luhn_valid(bad)
