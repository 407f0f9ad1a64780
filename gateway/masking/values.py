"""Masking one result value, by the column's action or by what its content holds.

A masked value must still be a value the client can decode as the column's type, or NULL: a text value
keeps its length and punctuation with digits and letters replaced by ``*``; a number has no masked form
(``411111******1111`` is not a bigint), so a card number in a numeric column becomes NULL. Binary formats are
decoded where a card number can hide in them (int8, numeric, bytea); any other binary value with card data
in its bytes becomes NULL.
"""

from __future__ import annotations

import binascii
import math
import struct
from dataclasses import dataclass
from typing import Final, Literal

from gateway.masking.detect import has_candidate, luhn_valid, mask_card_data
from gateway.masking.iin import brand_of

__all__ = [
    "NUMERIC_OIDS",
    "TEXT_OIDS",
    "Action",
    "ContentResult",
    "mask_by_action",
    "mask_content",
    "mask_text",
    "method_of",
]

Action = Literal["clear", "bin_last4", "last4", "full", "null"]
Method = Literal["first6_last4", "first8_last4", "last4", "redact", "null"]

# Types whose text and binary forms are the same characters (jsonb binary adds a version byte first).
TEXT_OIDS: Final = frozenset({25, 1043, 1042, 19, 18, 705, 114, 3802, 142})
JSONB: Final = 3802
BYTEA: Final = 17
INT8: Final = 20
NUMERIC: Final = 1700
FLOAT8: Final = 701
# Types a card number can be stored in as a number: it has no masked form there.
NUMERIC_OIDS: Final = frozenset({20, 21, 23, 26, 700, 701, 790, 1700})

_STAR: Final = ord("*")
_SEPS: Final = frozenset(b" -")
_ALNUM: Final = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_DIGITS: Final = frozenset(b"0123456789")
_HIDE_ALNUM: Final = bytes(_STAR if i in _ALNUM else i for i in range(256))
_PAN_MIN: Final = 13


def method_of(action: Action, *, keep_bin: int, digits: int = 16) -> Method:
    """The ``masking.applied`` method name of an action (what the evidence says was done)."""
    if action == "bin_last4":
        return "first8_last4" if keep_bin == 8 and digits == 16 else "first6_last4"
    if action == "last4":
        return "last4"
    if action == "full":
        return "redact"
    return "null"


def mask_text(value: bytes, action: Action, keep_bin: int) -> bytes:
    """Same length: keep the BIN and/or last four digits of a PAN-length value, hide every other letter
    and digit. Values too short to be a PAN keep nothing."""
    if action == "bin_last4" and len(value) >= _PAN_MIN and value.isdigit():  # the common case, fast
        keep = 8 if keep_bin == 8 and len(value) == 16 else 6
        return value[:keep] + b"*" * (len(value) - keep - 4) + value[-4:]
    hidden = value.translate(_HIDE_ALNUM)
    if action == "full":
        return hidden
    positions = [i for i, b in enumerate(value) if b in _DIGITS]
    if len(positions) < _PAN_MIN:
        return hidden
    keep_head = 0 if action == "last4" else (8 if keep_bin == 8 and len(positions) == 16 else 6)
    out = bytearray(hidden)
    for i in (*positions[:keep_head], *positions[-4:]):
        out[i] = value[i]
    return bytes(out)


def mask_by_action(value: bytes, action: Action, oid: int, fmt: int, keep_bin: int) -> bytes | None:
    """A column rule's (or lineage's) action on one non-NULL value; None means NULL."""
    if action == "null":
        return None
    if action == "clear":
        return value
    if fmt == 0 and oid not in NUMERIC_OIDS and oid != BYTEA:
        return mask_text(value, action, keep_bin)
    if fmt == 1 and oid in TEXT_OIDS:
        if oid == JSONB and value[:1] == b"\x01":
            return b"\x01" + mask_text(value[1:], action, keep_bin)
        if oid != JSONB:
            return mask_text(value, action, keep_bin)
    return None  # numbers, bytea, binary arrays and records: no masked form that still decodes


@dataclass(frozen=True, slots=True)
class ContentResult:
    """A value after content detection: ``value`` (None = NULL) and what was found in it."""

    value: bytes | None
    pans: int
    tracks: int  # of which ``track1`` are track 1 layouts (the rest track 2)
    track1: int = 0


_I64: Final = struct.Struct("!q")
_F64: Final = struct.Struct("!d")
_NUMERIC_HEAD: Final = struct.Struct("!hhhh")


def _numeric_digits(value: bytes) -> str | None:
    """The integer digits of a binary numeric (base-10000 digit groups), None when it is not a plain
    non-negative integer of PAN size."""
    if len(value) < 8:
        return None
    ndigits, weight, sign, _dscale = _NUMERIC_HEAD.unpack_from(value)
    if sign != 0 or ndigits <= 0 or len(value) != 8 + 2 * ndigits:
        return None
    groups = struct.unpack_from(f"!{ndigits}h", value, 8)
    text = "".join(f"{g:04d}" for g in groups).lstrip("0") or "0"
    # weight: the power of 10000 of the first group; digits after the point are not an integer PAN
    integer_groups = weight + 1
    if integer_groups > ndigits:
        text += "0000" * (integer_groups - ndigits)
    elif integer_groups < ndigits:
        return None
    return text


def _number_is_pan(digits: str | None) -> bool:
    if digits is None or not digits.isdigit() or not 13 <= len(digits) <= 19:
        return False
    return luhn_valid(digits) and brand_of(digits) is not None


def mask_content(value: bytes, oid: int, fmt: int, keep_bin: int) -> ContentResult:
    """Mask PANs and track data found in one non-NULL value, keeping its type decodable.

    Callers run this only on values the prefilter flagged, or on binary numbers (which the byte-level
    prefilter cannot see)."""
    if fmt == 1 and oid == INT8 and len(value) == 8:
        digits = str(_I64.unpack(value)[0])
        return ContentResult(None, 1, 0) if _number_is_pan(digits) else ContentResult(value, 0, 0)
    if fmt == 1 and oid == NUMERIC:
        hit = _number_is_pan(_numeric_digits(value))
        return ContentResult(None, 1, 0) if hit else ContentResult(value, 0, 0)
    if fmt == 1 and oid == FLOAT8 and len(value) == 8:
        number = _F64.unpack(value)[0]
        hit = math.isfinite(number) and number.is_integer() and _number_is_pan(str(int(number)))
        return ContentResult(None, 1, 0) if hit else ContentResult(value, 0, 0)
    if oid == BYTEA:
        return _mask_bytea(value, fmt, keep_bin)
    if not has_candidate(value):
        return ContentResult(value, 0, 0)
    masked = mask_card_data(value, keep_bin)
    if masked.pans == 0 and masked.tracks == 0 and masked.data == value:
        return ContentResult(value, 0, 0)
    if oid in NUMERIC_OIDS or (fmt == 1 and oid not in TEXT_OIDS):
        return ContentResult(None, masked.pans, masked.tracks, masked.track1)  # no masked form of a number
    return ContentResult(masked.data, masked.pans, masked.tracks, masked.track1)


def _mask_bytea(value: bytes, fmt: int, keep_bin: int) -> ContentResult:
    """bytea in text form is ``\\x`` and hex: decode, mask the bytes, encode again (same length)."""
    if fmt == 1:
        raw = value
    elif value.startswith(b"\\x"):
        try:
            raw = binascii.unhexlify(value[2:])
        except binascii.Error:
            return ContentResult(value, 0, 0)
    else:  # the old escape output format: printable bytes stay themselves
        raw = value
    if not has_candidate(raw):
        return ContentResult(value, 0, 0)
    masked = mask_card_data(raw, keep_bin)
    if masked.data == raw:
        return ContentResult(value, 0, 0)
    if fmt == 0 and value.startswith(b"\\x"):
        hexed = b"\\x" + binascii.hexlify(masked.data)
        return ContentResult(hexed, masked.pans, masked.tracks, masked.track1)
    return ContentResult(masked.data, masked.pans, masked.tracks, masked.track1)
