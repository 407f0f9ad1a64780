"""evidence.canonical must produce exactly what the rfc8785 reference produces."""

from __future__ import annotations

import json
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from evidence.canonical import JsonRefusedError, canonical_of_received, parse_received
from tests.unit.test_schemas import examples

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False)
)
_names = st.text(max_size=8) | st.sampled_from(["id", "a", "B", "\u00e9", "\U0001f600", "\ue000", "~", ""])
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_names, inner, max_size=4),
    max_leaves=20,
)


def _reference(value: Any) -> bytes | type[Exception]:
    try:
        return rfc8785.dumps(value)
    except Exception as exc:
        return type(exc)


def _received(text: str) -> bytes | type[Exception]:
    """The consumer's route: the text as received, then its canonical bytes."""
    raw = text.encode("utf-8", "surrogatepass")
    try:
        value = parse_received(raw)
    except JsonRefusedError as exc:
        return type(exc)
    ascii_names = _names_ascii(value)
    try:
        return canonical_of_received(value, raw, ascii_names=ascii_names)
    except Exception as exc:
        return type(exc)


def _names_ascii(value: Any) -> bool:
    if isinstance(value, dict):
        return all(k.isascii() and _names_ascii(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_names_ascii(v) for v in value)
    return True


def _ours(value: Any) -> bytes | type[Exception]:
    """The consumer's route for the JSON text ``value`` would arrive as, ASCII-escaped or not (both must
    agree). A lone surrogate is refused by the parser rather than by the writer: when the reference refuses
    it too, that counts as the reference's own refusal."""
    texts = [json.dumps(value), json.dumps(value, ensure_ascii=False)]
    got = [_received(text) for text in texts]
    assert got[0] == got[1], texts
    reference = _reference(value)
    if got[0] is JsonRefusedError and "\\ud" in texts[0].lower() and not isinstance(reference, bytes):
        return reference
    return got[0]


@settings(max_examples=3000)
@given(_values)
def test_matches_the_reference_on_any_json_value(value: Any) -> None:
    assert _ours(value) == _reference(value)


@pytest.mark.parametrize(
    "text",
    [
        "\x00\x01\x1f\x7f",
        '"\\/\b\f\n\r\t',
        "\u2028\u2029",
        "caf\u00e9 \U0001f600",
        "\ud800",  # a lone surrogate has no UTF-8 form
    ],
)
def test_strings_with_every_escape_class(text: str) -> None:
    assert _ours({"s": text, "l": [text]}) == _reference({"s": text, "l": [text]})


@pytest.mark.parametrize("number", [2**53, -(2**53), 2**53 + 1, -(2**53) - 1, 0, -1, 10**15])
def test_integers_at_the_exact_double_limit(number: int) -> None:
    assert _ours({"n": number}) == _reference({"n": number})


@pytest.mark.parametrize(
    "number",
    [2.314, 0.0001, 0.00011, 1e-5, 9999999999999998.0, 1e16, 2.0, -0.0, 0.1 + 0.2, 123456.789, -5e-4],
)
def test_floats_on_both_sides_of_the_fast_range(number: float) -> None:
    assert _ours({"n": number}) == _reference({"n": number})


@pytest.mark.parametrize(
    "text",
    [
        '{"n": 2.0}',
        '{"n":1E3}',
        '{"n":[1e-7]}',
        '{"n": -0.0}',
        '{"n":0.00001}',
        '{"n":10000000000000000}',
        '{"n":1.5e2}',
        '{"\\u00e9":1}',
        '{"s":"\\ud800"}',
        '{"n":0.0001,"m":123.25}',
    ],
)
def test_json_text_with_numbers_or_escapes_the_fast_path_cannot_write(text: str) -> None:
    value = json.loads(text)
    reference = _reference(value)
    assert _ours(value) == reference
    got = _received(text)
    assert got == reference or (got is JsonRefusedError and reference is not bytes)


def test_every_example_event_as_received_from_json() -> None:
    for event in examples().values():
        text = json.dumps(event).encode()
        assert canonical_of_received(parse_received(text), text, ascii_names=True) == rfc8785.dumps(event)


@pytest.mark.parametrize(
    ("text", "reason"),
    [('{"a":1,"a":2}', "duplicate member name"), ('{"a":NaN}', "NaN"), ("[-Infinity]", "NaN")],
)
def test_refuses_duplicate_names_and_non_numbers(text: str, reason: str) -> None:
    with pytest.raises(JsonRefusedError, match=reason) as refused:
        parse_received(text.encode())
    assert '"a"' not in str(refused.value), "the reason must not quote the document"
