"""Card numbers the card brands and major processors publish for testing — never real cards.

The demo database only ever holds these; tests check each is Luhn-valid and of its brand's length.
"""

from __future__ import annotations

TEST_PANS: dict[str, tuple[str, ...]] = {
    "visa": (
        "4111111111111111",
        "4012888888881881",
        "4242424242424242",
        "4000056655665556",
        "4222222222222",
        "4917610000000000",
        "4000000000000002",
        "4005519200000004",
        "4009348888881881",
    ),
    "mastercard": (
        "5555555555554444",
        "5105105105105100",
        "5200828282828210",
        "5454545454545454",
        "2223003122003222",
        "2222400070000005",
        "5431111111111111",
    ),
    "amex": ("378282246310005", "371449635398431", "378734493671000", "370000000000002"),
    "discover": (
        "6011111111111117",
        "6011000990139424",
        "6011000400000000",
        "6011981111111113",
        "6445644564456445",
    ),
}


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0
