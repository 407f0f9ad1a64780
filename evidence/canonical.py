"""RFC 8785 (JCS) bytes of an event, fast for the shapes events have, ``rfc8785`` for everything else.

The ``rfc8785`` package is the reference and stays the authority; it is pure Python and costs ~70 µs for a
typical 1.4 KB event, which alone would cap the consumer below 15k events/s. Events hold strings,
integers, a few floats, booleans, null, arrays and objects with ASCII member names. For those values the JCS
serialization equals the standard library's C encoder with sorted keys, no spaces and ``ensure_ascii=False``:
- member order: JCS sorts by UTF-16 code units; for ASCII names that is plain string order;
- strings: both escape only ``"``, ``\\``, and control characters (``\\b \\t \\n \\f \\r`` by name, the rest
  as lowercase ``\\u00xx``), and leave every other character, U+2028/2029 and DEL included, as UTF-8;
- integers: JCS writes them as IEEE-754 doubles in ECMAScript form, which is the decimal integer as long as
  its magnitude is below 2^53 (the reference refuses larger ones);
- non-integral floats of magnitude in [1e-4, 1e16) (durations in milliseconds): Python's ``repr`` and
  ECMAScript's Number-to-String pick the same shortest round-trip digits and both write them positionally.
Anything else (other floats, a non-ASCII member name, a big integer, a lone surrogate) goes to ``rfc8785``.
``tests/unit/test_canonical.py`` checks both agree on generated values.
"""

from __future__ import annotations

import json
from typing import Any, Final

import rfc8785

__all__ = ["JsonRefusedError", "canonical_json", "loads_checked"]

_MAX_EXACT: Final = 2**53
_encode = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False).encode


def _fast_path_applies(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if kind is int:
            if -_MAX_EXACT < item < _MAX_EXACT:
                continue
            return False
        if kind is float:
            # repr's shortest round-trip digits equal ECMAScript's, and both write them positionally,
            # for non-integral magnitudes in [1e-4, 1e16); integral ones ECMAScript writes without ".0"
            if 1e-4 <= abs(item) < 1e16 and not item.is_integer():
                continue
            return False
        if kind is dict:
            for key in item:
                if type(key) is not str or not key.isascii():
                    return False
            stack.extend(item.values())
            continue
        if kind is list:
            stack.extend(item)
            continue
        return False  # floats, tuples, subclasses: the reference decides
    return True


class JsonRefusedError(ValueError):
    """JSON text the ledger will not take as an event (the message names the rule, never a value)."""


def loads_checked(text: bytes | str) -> tuple[Any, bool]:
    """Decode JSON text, refusing duplicate member names and NaN/Infinity, and tell whether the value
    fits the fast path — found out while decoding, for nearly nothing, instead of by a second walk."""
    fits = True

    def members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal fits
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                raise JsonRefusedError("a JSON object has a duplicate member name")
            if fits and not key.isascii():
                fits = False
            obj[key] = value
        return obj

    def number(token: str) -> float:
        nonlocal fits
        value = float(token)
        if fits and not (1e-4 <= abs(value) < 1e16 and not value.is_integer()):
            fits = False
        return value

    def integer(token: str) -> int:
        nonlocal fits
        value = int(token)
        if fits and not -_MAX_EXACT < value < _MAX_EXACT:
            fits = False
        return value

    def constant(_: str) -> Any:
        raise JsonRefusedError("NaN or Infinity is not JSON")

    value = json.loads(
        text, object_pairs_hook=members, parse_float=number, parse_int=integer, parse_constant=constant
    )
    return value, fits


def canonical_json(value: Any, *, fits: bool = False) -> bytes:
    """The RFC 8785 serialization of ``value``; raises what ``rfc8785.dumps`` raises for what has none.

    ``fits=True`` passes on what :func:`loads_checked` found, sparing the shape check.
    """
    if fits or _fast_path_applies(value):
        try:
            return _encode(value).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: let the reference refuse it with its own error
            pass
    return rfc8785.dumps(value)
