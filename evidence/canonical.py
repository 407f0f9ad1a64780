"""RFC 8785 (JCS) bytes of an event, fast for the shapes events have, ``rfc8785`` for everything else.

The ``rfc8785`` package is the reference and stays the authority; it is pure Python and costs ~70 µs for a
typical 1.4 KB event, which alone would cap the consumer below 15k events/s. The fast route,
:func:`canonical_of_received` (jiter + orjson, ~12 µs), writes the text the consumer receives. Events hold
strings, integers, a few floats, booleans, null, arrays and objects with ASCII member names. For those
values JCS equals a sorted, compact, UTF-8 JSON encoding:
- member order: JCS sorts by UTF-16 code units; for ASCII names that is plain string order;
- strings: both escape only ``"``, ``\\``, and control characters (``\\b \\t \\n \\f \\r`` by name, the
  rest as lowercase ``\\u00xx``), and leave every other character, U+2028/2029 and DEL included, as UTF-8;
- integers: JCS writes them as IEEE-754 doubles in ECMAScript form, which is the decimal integer as long as
  its magnitude is below 2^53 (the reference refuses larger ones);
- non-integral floats of magnitude in [1e-4, 1e16) (durations in milliseconds): shortest round-trip digits,
  written positionally, which is what ECMAScript's Number-to-String writes too.
Anything else (other floats, a non-ASCII member name, a big integer, a lone surrogate) goes to ``rfc8785``.
``tests/unit/test_canonical.py`` checks that it agrees with the reference on generated values.
"""

from __future__ import annotations

from typing import Any, Final

import jiter
import orjson
import rfc8785

__all__ = ["JsonRefusedError", "canonical_of_received", "parse_received"]

_ORJSON_OPTIONS: Final = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER


class JsonRefusedError(ValueError):
    """JSON text the ledger will not take as an event (the message names the rule, never a value)."""


class _NotExactError(Exception):
    pass


def parse_received(text: bytes) -> Any:
    """Decode received JSON text, refusing duplicate member names, NaN and Infinity (JsonRefusedError).

    Floats stay ``jiter.LosslessFloat`` so that none is rounded before :func:`canonical_of_received`
    decides how to write it.
    """
    try:
        return jiter.from_json(
            text, catch_duplicate_keys=True, float_mode="lossless-float", allow_inf_nan=False
        )
    except ValueError as exc:  # jiter's message quotes the duplicate name: keep only the rule
        if "duplicate key" in str(exc):
            raise JsonRefusedError("a JSON object has a duplicate member name") from None
        raise JsonRefusedError("the payload is not UTF-8 JSON (or holds NaN or Infinity)") from None


def _exact_float(value: Any) -> float:
    """orjson's hook for jiter's lossless floats: the ones both writers agree on, or the slow path."""
    if type(value) is jiter.LosslessFloat:
        number = float(value)
        if 1e-4 <= abs(number) < 1e16 and not number.is_integer():
            return number
    raise _NotExactError


def canonical_of_received(value: Any, text: bytes, *, ascii_names: bool) -> bytes:
    """The RFC 8785 bytes of ``value`` = :func:`parse_received` (``text``).

    orjson is used where its output is JCS: floats only where shortest round-trip digits are what
    ECMAScript writes too, integers only below 2^53 (``OPT_STRICT_INTEGER``), and only when every member
    name is ASCII (``ascii_names``: the caller knows, e.g. because the value passed a closed schema), since
    orjson sorts names by code point and JCS by UTF-16 unit. Anything else is written by ``rfc8785``,
    which raises (a ValueError) for values without an RFC 8785 form.
    """
    if ascii_names:
        try:
            return orjson.dumps(value, default=_exact_float, option=_ORJSON_OPTIONS)
        except (_NotExactError, TypeError):
            pass
    return rfc8785.dumps(jiter.from_json(text, float_mode="float"))
