"""Card data out of everything the gateway writes about a statement (PCI DSS 3.3.1, 3.4.1).

A PAN is masked wherever it appears — string or numeric literal, comment, identifier, bind parameter,
error text — because a PAN anywhere is a PAN. Track data is sensitive authentication data that may never be
stored, so it is removed outright rather than masked.

What counts as a PAN: a run of 13 to 19 ASCII digits, optionally with single spaces or dashes between
digits, that passes the Luhn check. A longer run is cut into its separator-delimited groups and every
window of whole groups holding 13 to 19 digits is checked, so a space-separated list of card numbers is
caught too; a PAN glued to further digits without a separator is a different number and stays. Masking
keeps the first six and last four digits and the separators; every other digit becomes ``*``. Masking is
repeated until a pass finds nothing, so no Luhn-valid run survives in the output by any of those rules.

The common case — text without 13 near-consecutive digits — costs one compiled-regex scan.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "TRACK_MARK",
    "audit_text",
    "luhn_valid",
    "mask_parameter",
    "mask_text",
    "sanitize",
]

TRACK_MARK: Final = "[TRACK DATA REMOVED]"

# 13+ digits with at most one space or dash between two digits: the candidate.
_RUN: Final = re.compile(r"[0-9](?:[ -]?[0-9]){12,}")
# Necessary for a candidate and about three times cheaper to look for: the common case stops here.
_PREFILTER: Final = re.compile(r"[0-9][0-9 -]{12}")
_SEP: Final = re.compile(r"[ -]")
# Track 1: %B<PAN>^<NAME>^<YYMM|^><service code, discretionary data>? ; Track 2: ;<PAN>=<YYMM|=><digits>?
# Without the start sentinel the PAN must pass Luhn (see _remove_tracks), which keeps false hits rare.
_TRACK: Final = re.compile(
    r"(?:(?P<s1>%)|(?<![A-Za-z0-9]))B(?P<p1>[0-9]{13,19})\^[^\^\x00-\x1f]{2,26}\^[^?\x00-\x1f'\"]{0,79}\??"
    r"|(?:(?P<s2>;)|(?<![0-9]))(?P<p2>[0-9]{13,19})=(?:[0-9]{4}|=)[0-9]{0,40}\??"
)
# What the audit schema forbids in text (C0 controls but TAB/LF/CR, DEL), plus lone surrogates, which no
# UTF-8 encoder accepts.
_FORBIDDEN: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_RUN_CHARS: Final = "0123456789 -"
_RUN_CHARS_MASKED: Final = "0123456789 -*"
_RUN_BYTES: Final = frozenset(b"0123456789 -")
_WINDOW_CHARS: Final = 37  # 19 digits, 18 single separators
_STAR: Final = str.maketrans("0123456789", "**********")
_DOUBLE: Final = str.maketrans("0123456789", "0246813579")  # Luhn: digit sum of 2*d
_DOUBLED: Final = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)
_MAX_PASSES: Final = 4  # then the fallback below: adversarial input must not cost much time
_GROUP_BUDGET: Final = 2000  # separated digit groups examined per mask_text call (see _mask_run)
# Input kept beyond the cut so that a PAN or track straddling it is still seen whole before we cut.
_SLACK: Final = 256


def luhn_valid(digits: str) -> bool:
    """Luhn check of an ASCII digit string (no separators)."""
    s = digits[-1::-2] + digits[-2::-2].translate(_DOUBLE)
    return (sum(s.encode("ascii")) - 48 * len(s)) % 10 == 0


def _mask_digits(digits: str) -> str:
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


def _mask_run(run: str, budget: list[int]) -> tuple[str, int]:
    """Mask one candidate run; returns it unchanged with 0 when nothing in it is a PAN.

    ``budget`` bounds the windows one call of :func:`mask_text` checks (a few per PAN in real text): an
    adversarial statement of digits and single spaces would otherwise cost tens of milliseconds on the
    event loop. Past it, every digit of a separated run is hidden."""
    if " " not in run and "-" not in run:
        if len(run) <= 19 and luhn_valid(run):
            return _mask_digits(run), 1
        return run, 0
    groups = _SEP.split(run)
    budget[0] -= len(groups)
    if budget[0] < 0:
        return run.translate(_STAR), 1
    digits = "".join(groups)
    bounds = [0]
    for g in groups:
        bounds.append(bounds[-1] + len(g))
    # Luhn sums of every window from prefix sums: a digit is doubled when its distance to the window's
    # last digit is odd, so sums[p][i] adds digits 0..i-1 weighted for windows whose last index has parity p.
    values = [ord(c) - 48 for c in digits]
    doubled = [_DOUBLED[v] for v in values]
    sums = ([0], [0])
    for j, (v, d) in enumerate(zip(values, doubled, strict=True)):
        odd = j & 1
        sums[0].append(sums[0][-1] + (d if odd else v))
        sums[1].append(sums[1][-1] + (v if odd else d))
    hidden = bytearray(len(digits))
    found = 0
    covered = 0
    for a in range(len(groups)):
        start = bounds[a]
        for b in range(a + 1, len(bounds)):
            end = bounds[b]
            size = end - start
            if size > 19:
                break
            prefix = sums[(end - 1) & 1]
            if size >= 13 and (prefix[end] - prefix[start]) % 10 == 0:
                hidden[start + 6 : end - 4] = b"\x01" * (size - 10)
                if start >= covered:  # count overlapping windows once
                    found += 1
                    covered = end
    if not found:
        return run, 0
    out: list[str] = []
    k = 0
    for ch in run:
        if ch in " -":
            out.append(ch)
        else:
            out.append("*" if hidden[k] else ch)
            k += 1
    return "".join(out), found


def _mask_pass(text: str, budget: list[int]) -> tuple[str, int]:
    count = 0

    def repl(m: re.Match[str]) -> str:
        nonlocal count
        masked, n = _mask_run(m.group(), budget)
        count += n
        return masked

    return _RUN.sub(repl, text), count


def _remove_tracks(text: str) -> tuple[str, int]:
    if "^" not in text and "=" not in text:
        return text, 0
    count = 0

    def repl(m: re.Match[str]) -> str:
        nonlocal count
        pan = m.group("p1") or m.group("p2")
        sentinel = m.group("s1") or m.group("s2")
        if sentinel is None and not luhn_valid(pan):
            return m.group()
        count += 1
        return TRACK_MARK

    return _TRACK.sub(repl, text), count


def mask_text(sql: str) -> tuple[str, int]:
    """``sql`` with every PAN masked and all track data removed; and how many were."""
    if _PREFILTER.search(sql) is None:
        return sql, 0
    text, count = _remove_tracks(sql)
    budget = [_GROUP_BUDGET]
    for _ in range(_MAX_PASSES):
        text, n = _mask_pass(text, budget)
        if not n:
            return text, count
        count += n
    # Pathological input (masking keeps exposing new windows): hide every remaining candidate digit.
    return _RUN.sub(lambda m: re.sub("[0-9]", "*", m.group()), text), count + 1


def sanitize(text: str) -> str:
    """Replace the characters the audit schema forbids (and lone surrogates) with U+FFFD."""
    if _FORBIDDEN.search(text) is None:
        return text
    return _FORBIDDEN.sub("\ufffd", text)


def _hide_tail(text: str) -> str:
    """Star the digits at the end of ``text``, which a cut has separated from the rest of their run: the
    visible part of a PAN the cut went through (at most 19 digits and 18 separators)."""
    k = len(text)
    while k > 0 and len(text) - k < _WINDOW_CHARS and text[k - 1] in _RUN_CHARS_MASKED:
        k -= 1
    return text[:k] + text[k:].translate(_STAR)


def _cut(text: str, limit: int) -> str:
    cut = text[:limit]
    if limit < len(text) and text[limit] in _RUN_CHARS and cut and cut[-1] in _RUN_CHARS_MASKED:
        cut = _hide_tail(cut)
    return cut


def _audit_form(text: str, max_chars: int, truncated: bool = False) -> tuple[str, bool, int]:
    if len(text) > max_chars + _SLACK:
        text = _cut(text, max_chars + _SLACK)
        truncated = True
    masked, count = mask_text(text)
    masked = sanitize(masked)
    if len(masked) > max_chars:
        # Mask again: the cut may end a digit run where a new Luhn-valid window now ends.
        masked = mask_text(_cut(masked, max_chars))[0]
        truncated = True
    return masked, truncated, count


def audit_text(sql: str, max_chars: int = 16384) -> tuple[str, bool, int]:
    """The statement text as the audit record may hold it: (text, truncated, masked_count).

    Masks before cutting, so a PAN straddling the cut is never half-visible. Callers never audit empty or
    whitespace-only statements.
    """
    return _audit_form(sql, max_chars)


def mask_parameter(
    value: bytes | None, *, binary: bool, max_chars: int = 1024
) -> tuple[str | None, bool, int]:
    """The audit form of one bind parameter: (value, truncated, masked_count); None for SQL NULL.

    Binary values are opaque to us (the type is not known here), so only their size is recorded.
    """
    if value is None:
        return None, False, 0
    if binary:
        return f"<binary {len(value)} bytes>", False, 0
    # Decode only what can survive the cut (UTF-8 is at most 4 bytes a character).
    limit = (max_chars + _SLACK) * 4
    if len(value) <= limit:
        return _audit_form(value.decode("utf-8", errors="replace"), max_chars)
    text = value[:limit].decode("utf-8", errors="replace")
    if value[limit] in _RUN_BYTES:
        text = _hide_tail(text)
    return _audit_form(text, max_chars, truncated=True)
