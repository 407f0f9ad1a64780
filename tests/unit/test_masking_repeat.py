"""mask_card_data: masking until nothing is found, and bounded work on adversarial runs."""

from __future__ import annotations

import random
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.masking import find_card_data, find_pans, mask, mask_card_data
from gateway.masking.detect import MAX_GROUPS

# The brands' published test numbers.
TEST_PANS = (
    "4111111111111111",
    "4012888888881881",
    "5555555555554444",
    "2223003122003222",
    "378282246310005",
    "6011111111111117",
    "3530111333300000",
    "30569309025904",
)

_group = st.text(alphabet="0123456789", min_size=1, max_size=5)
_piece = st.one_of(st.sampled_from(TEST_PANS), _group, st.sampled_from(["x", "; ", "\n", "abc"]))
_sep = st.sampled_from([" ", "-", ""])


@settings(max_examples=1500)
@given(st.lists(st.tuples(_piece, _sep), max_size=12))
def test_nothing_valid_survives_masking(parts: list[tuple[str, str]]) -> None:
    text = "".join(p + s for p, s in parts).encode()
    masked = mask_card_data(text)
    assert len(masked.data) == len(text)
    assert find_card_data(masked.data) == []
    for pan in TEST_PANS:  # delimited: glued to more digits it is a longer number, not a PAN
        if re.search(rb"(?<![0-9])" + pan.encode() + rb"(?![0-9])", text):
            assert not re.search(rb"(?<![0-9])" + pan.encode() + rb"(?![0-9])", masked.data)


def _one_pass_leaves_a_pan(rng: random.Random) -> bytes | None:
    """A text where masking what one pass finds exposes a new valid window (searched, seeded)."""
    pan = rng.choice(TEST_PANS)
    groups = [pan] + ["".join(rng.choice("0123456789") for _ in range(rng.randint(2, 6))) for _ in range(4)]
    text = " ".join(groups).encode()
    once = mask(text, find_card_data(text))
    return text if find_pans(once) else None


def test_a_second_pass_catches_what_the_first_exposed() -> None:
    rng = random.Random(7)
    found = [t for t in (_one_pass_leaves_a_pan(rng) for _ in range(20000)) if t is not None]
    assert found, "no case where one pass exposes a PAN: the search space changed"
    for text in found[:50]:
        assert find_card_data(mask_card_data(text).data) == []


def test_a_huge_separated_run_is_masked_whole() -> None:
    text = b"x " + b"1 " * (MAX_GROUPS * 50) + b"y"
    masked = mask_card_data(text).data
    digits = [c for c in masked if chr(c).isdigit()]
    assert len(digits) == 10  # first six and last four of the run, nothing searched window by window
    assert masked.startswith(b"x 1 1 1 1 1 1 * ") and masked.endswith(b"* 1 1 1 1 y")


def test_counts_never_values() -> None:
    masked = mask_card_data(b"card 4111 1111 1111 1111 and ;4111111111111111=2512101?")
    assert (masked.pans, masked.tracks) == (1, 1)
    assert b"4111 11** **** 1111" in masked.data
    assert "4111111111111111" not in repr(masked)
