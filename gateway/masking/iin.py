"""Which card brand an issuer identification number (IIN, the leading digits of a PAN) belongs to.

Content detection only calls a digit run a PAN when it passes Luhn *and* falls in a brand's published IIN
range with a length that brand issues: Luhn alone accepts one random digit string in ten.

Ranges and lengths: ISO/IEC 7812-1 and the brands' published IIN tables as summarised in
https://en.wikipedia.org/wiki/Payment_card_number#Issuer_identification_number_(IIN) (Maestro as the
commonly published "50, 56-69"). Where ranges overlap (Discover 622126-622925 and 65 inside UnionPay 62 and
Maestro 56-69), the longest prefix whose lengths fit the number wins, so a number is named by its most
specific range and is still a PAN when only a broader range allows its length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["IIN_RANGES", "IinRange", "brand_of", "range_of"]


@dataclass(frozen=True, slots=True)
class IinRange:
    """Prefixes ``low``..``high`` (same number of digits, inclusive) and the PAN lengths issued there."""

    brand: str
    low: str
    high: str
    lengths: frozenset[int]


def _lengths(low: int, high: int) -> frozenset[int]:
    return frozenset(range(low, high + 1))


IIN_RANGES: Final[tuple[IinRange, ...]] = (
    IinRange("visa", "4", "4", frozenset({13, 16, 19})),
    IinRange("mastercard", "51", "55", frozenset({16})),
    IinRange("mastercard", "2221", "2720", frozenset({16})),
    IinRange("amex", "34", "34", frozenset({15})),
    IinRange("amex", "37", "37", frozenset({15})),
    IinRange("discover", "6011", "6011", _lengths(16, 19)),
    IinRange("discover", "644", "649", _lengths(16, 19)),
    IinRange("discover", "65", "65", _lengths(16, 19)),
    IinRange("discover", "622126", "622925", _lengths(16, 19)),
    IinRange("jcb", "3528", "3589", _lengths(16, 19)),
    IinRange("diners", "300", "305", _lengths(14, 19)),
    IinRange("diners", "36", "36", _lengths(14, 19)),
    IinRange("diners", "38", "39", _lengths(14, 19)),
    IinRange("unionpay", "62", "62", _lengths(14, 19)),
    IinRange("maestro", "50", "50", _lengths(12, 19)),
    IinRange("maestro", "56", "69", _lengths(12, 19)),
    IinRange("mir", "2200", "2204", _lengths(16, 19)),
)

_MAX_PREFIX: Final = max(len(r.low) for r in IIN_RANGES)


def _index(ranges: tuple[IinRange, ...]) -> dict[str, tuple[IinRange, ...]]:
    """Every prefix of every range, expanded: a lookup is then at most six dict probes (about 1,500 keys
    in all, the widest being Discover's 800 six-digit prefixes). Ranges sharing a prefix (UnionPay and
    Maestro on 62) keep table order."""
    table: dict[str, tuple[IinRange, ...]] = {}
    for r in ranges:
        if len(r.low) != len(r.high) or r.low > r.high:
            raise ValueError(f"bad IIN range {r.low}-{r.high}")
        for n in range(int(r.low), int(r.high) + 1):
            key = str(n).zfill(len(r.low))
            table[key] = (*table.get(key, ()), r)
    return table


_BY_PREFIX: Final = _index(IIN_RANGES)


def range_of(digits: str) -> IinRange | None:
    """The most specific range holding ``digits`` (ASCII digits, no separators) with its length allowed."""
    size = len(digits)
    for n in range(min(_MAX_PREFIX, size), 0, -1):
        for r in _BY_PREFIX.get(digits[:n], ()):
            if size in r.lengths:
                return r
    return None


def brand_of(digits: str) -> str | None:
    """The brand of a PAN-shaped digit string, or None when no known range issues that number and length."""
    r = range_of(digits)
    return None if r is None else r.brand
