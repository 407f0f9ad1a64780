"""Card data in arbitrary bytes: PANs (PCI DSS 3.4.1) and track data (3.3.1), found and masked in place.

Pure functions over whole buffers, so the gateway can run them on received protocol buffers before any
per-field decoding. The common case — no 13 near-consecutive digits anywhere — costs one compiled
multi-pattern scan (hyperscan; a compiled ``re`` when hyperscan cannot be imported) and nothing else.

A PAN is a run of 13 to 19 ASCII digits, optionally with single spaces or dashes between digits, that passes
Luhn and lies in a known IIN range with a length that range issues (:mod:`gateway.masking.iin`). A
separated run is cut into its groups and every window of whole groups holding 13 to 19 digits is checked
(as :mod:`gateway.sqlmask` does), so a list of card numbers is caught; digits glued to a run without a
separator make it a different, longer number, never a PAN on a substring.

Masking keeps the buffer's length and every separator, so protocol field lengths stay valid. Spans never
show their digits in ``repr``: no clear card number may reach a log.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from gateway.masking.iin import brand_of

try:
    import hyperscan
except ImportError:  # pragma: no cover - exercised only where the wheel is missing
    hyperscan = None  # type: ignore[assignment]

__all__ = [
    "MAX_GROUPS",
    "HyperscanPrefilter",
    "Masked",
    "Prefilter",
    "RePrefilter",
    "Span",
    "find_card_data",
    "find_pans",
    "find_track_data",
    "has_candidate",
    "luhn_valid",
    "mask",
    "mask_card_data",
    "prefilter",
]

log = logging.getLogger(__name__)

Kind = Literal["pan", "track1", "track2"]


@dataclass(frozen=True, slots=True)
class Span:
    """``data[start:end]`` is card data: a PAN (digits and separators) or a whole track."""

    start: int
    end: int
    kind: Kind
    digits: str = field(repr=False)  # the PAN without separators; never logged
    brand: str | None = None


# -------------------------------------------------------------------------------------------- prefilter

# The candidate: 13 digits with at most one space or dash between two digits. Every PAN and every track
# (whose PAN has 13+ digits) contains one; the track markers are listed too, so the prefilter alone can
# decide that a buffer holds nothing of either kind.
_DIGITS13: Final = rb"[0-9](?:[ -]?[0-9]){12}"
_TRACK1_MARK: Final = rb"%B"
_TRACK2_MARK: Final = rb";[0-9]{1,19}="
_ANY: Final = (_DIGITS13, _TRACK1_MARK, _TRACK2_MARK)
_LOOSE13: Final = rb"[0-9][0-9 -]{12}"
# hs_scan takes an unsigned 32-bit length; larger buffers are scanned in overlapping pieces.
_HS_CHUNK: Final = 1 << 30
_OVERLAP: Final = 64


class Prefilter(Protocol):
    """Where the first candidate ends: the scan every buffer pays, so it must be one compiled pass."""

    name: str

    def first_end(self, data: bytes | memoryview, pos: int = 0, *, digits_only: bool = False) -> int | None:
        """End offset of a first candidate in ``data[pos:]``, None when there is none.

        With ``digits_only`` (track markers ignored) every engine returns the same offset: the end of the
        first 13-digit window, from which :func:`_runs` walks back to the start of its run."""
        ...


class RePrefilter:
    """The same patterns through ``re``: correct everywhere, several times slower than hyperscan."""

    name = "re"

    def __init__(self) -> None:
        self._digits = re.compile(_DIGITS13)
        # Alternation finds the leftmost start, hyperscan the earliest end; both are None on the same input.
        self._any = re.compile(b"|".join(_ANY))
        # Supersets that re scans several times faster: every exact match starts where one of these does.
        self._loose_digits = re.compile(_LOOSE13)
        self._loose_any = re.compile(b"|".join((_LOOSE13, *_ANY[1:])))

    def first_end(self, data: bytes | memoryview, pos: int = 0, *, digits_only: bool = False) -> int | None:
        loose, exact = (self._loose_digits, self._digits) if digits_only else (self._loose_any, self._any)
        while (m := loose.search(data, pos)) is not None:
            hit = exact.match(data, m.start())
            if hit is not None:
                return hit.end()
            pos = m.start() + 1
        return None


class HyperscanPrefilter:
    """Two block-mode databases (digits only, digits or track markers), scratch space per thread."""

    name = "hyperscan"

    def __init__(self) -> None:
        assert hyperscan is not None
        self._digits = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._digits.compile(expressions=[_DIGITS13], ids=[0], flags=hyperscan.HS_FLAG_SINGLEMATCH)
        self._any = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._any.compile(
            expressions=list(_ANY), ids=list(range(len(_ANY))), flags=hyperscan.HS_FLAG_SINGLEMATCH
        )
        self._local = threading.local()

    def _scratch(self, digits_only: bool) -> hyperscan.Scratch:
        """A scratch region may serve one scan at a time: each thread gets its own per database."""
        key = "digits" if digits_only else "any"
        scratch: hyperscan.Scratch | None = getattr(self._local, key, None)
        if scratch is None:
            scratch = hyperscan.Scratch(self._digits if digits_only else self._any)
            setattr(self._local, key, scratch)
        return scratch

    def first_end(self, data: bytes | memoryview, pos: int = 0, *, digits_only: bool = False) -> int | None:
        db = self._digits if digits_only else self._any
        scratch = self._scratch(digits_only)
        view = memoryview(data)
        found: list[int] = []

        def on_match(_id: int, _start: int, end: int, _flags: int, _ctx: object) -> bool:
            found.append(end)
            return True  # stop: only the earliest end is wanted

        while pos < len(view):
            piece = view[pos : pos + _HS_CHUNK]
            with contextlib.suppress(hyperscan.ScanTerminated):
                # A memoryview slice is a buffer like bytes, without copying the rest of the buffer.
                db.scan(piece, match_event_handler=on_match, scratch=scratch)  # type: ignore[type-var]
            if found:
                return pos + found[0]
            if pos + len(piece) >= len(view):
                return None
            pos += len(piece) - _OVERLAP
        return None


def _make_prefilter() -> Prefilter:
    if hyperscan is None:
        log.warning("hyperscan is not installed: card-data prefilter falls back to re (slower)")
        return RePrefilter()
    try:
        return HyperscanPrefilter()
    except hyperscan.error as exc:  # e.g. a CPU without the instructions the wheel needs
        log.warning(
            "hyperscan unusable (%s): card-data prefilter falls back to re (slower)", type(exc).__name__
        )
        return RePrefilter()


_PREFILTER: Final = _make_prefilter()


def prefilter() -> Prefilter:
    """The process's prefilter (hyperscan, or the ``re`` fallback logged once at import)."""
    return _PREFILTER


def has_candidate(data: bytes | memoryview) -> bool:
    """Whether ``data`` could hold a PAN or track data; False means no other detector needs to run."""
    return _PREFILTER.first_end(data) is not None


# ------------------------------------------------------------------------------------------------- PANs

_RUN: Final = re.compile(rb"[0-9](?:[ -]?[0-9]){12,}")
_SEP: Final = re.compile(rb"[ -]")
_DIGIT: Final = frozenset(b"0123456789")
_SEPS: Final = frozenset(b" -")
_DOUBLE: Final = str.maketrans("0123456789", "0246813579")  # Luhn: digit sum of 2*d


def luhn_valid(digits: str) -> bool:
    """Luhn check of an ASCII digit string (no separators)."""
    s = digits[-1::-2] + digits[-2::-2].translate(_DOUBLE)
    return (sum(s.encode("ascii")) - 48 * len(s)) % 10 == 0


def _run_start(data: bytes, i: int) -> int:
    """Start of the digit run holding ``data[i]`` (a digit): walk back over digits and single separators."""
    while i > 0:
        if data[i - 1] in _DIGIT:
            i -= 1
        elif i > 1 and data[i - 1] in _SEPS and data[i - 2] in _DIGIT:
            i -= 2
        else:
            break
    return i


def _runs(data: bytes) -> Iterator[tuple[int, int]]:
    """Every maximal run of 13+ digits (single separators allowed) as (start, end).

    The prefilter jumps to the next candidate, so a buffer is walked by compiled code, and Python runs only
    where a run is."""
    pos = 0
    while (end := _PREFILTER.first_end(data, pos, digits_only=True)) is not None:
        m = _RUN.match(data, _run_start(data, end - 1))
        if m is None:  # cannot happen: the prefilter matched 13 digits there
            pos = end
            continue
        yield m.start(), m.end()
        pos = m.end()


# A separated run of more groups than this is masked whole instead of searched window by window: the search
# costs ~19 steps per group in Python, and a megabyte of "1 1 1 ..." must not stall a session.
MAX_GROUPS: Final = 256


def _pans_in_run(data: bytes, start: int, end: int) -> Iterator[Span]:
    run = data[start:end]
    if run.count(b" ") + run.count(b"-") >= MAX_GROUPS:
        yield Span(start, end, "pan", "", None)  # over-masking is safe; no digits kept in the span
        return
    if b" " not in run and b"-" not in run:
        if len(run) <= 19:
            digits = run.decode("ascii")
            if luhn_valid(digits) and (brand := brand_of(digits)) is not None:
                yield Span(start, end, "pan", digits, brand)
        return
    groups = _SEP.split(run)
    offsets = [start]  # where each group starts in data
    for g in groups[:-1]:
        offsets.append(offsets[-1] + len(g) + 1)
    texts = [g.decode("ascii") for g in groups]
    for a in range(len(groups)):
        digits = ""
        for b in range(a, len(groups)):
            digits += texts[b]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn_valid(digits) and (brand := brand_of(digits)) is not None:
                yield Span(offsets[a], offsets[b] + len(groups[b]), "pan", digits, brand)


def find_pans(data: bytes) -> list[Span]:
    """Every PAN in ``data``, in order of start (windows of one separated run may overlap)."""
    return [span for start, end in _runs(data) for span in _pans_in_run(data, start, end)]


# ------------------------------------------------------------------------------------------- track data

# Track 1: %B<PAN>^<NAME>^<YYMM or ^><service code, discretionary data>?  (ISO/IEC 7813)
# Track 2: ;<PAN>=<YYMM or =><service code, discretionary data>?
# Matched at the PAN's run; the sentinels are optional, but without one the PAN must pass Luhn.
_TRACK1: Final = re.compile(
    rb"(%?)B([0-9]{13,19})\^[^^?\x00-\x1f\x7f]{2,26}\^[^?^\s\x00-\x1f\x7f'\",;]{0,79}\??"
)
_TRACK2: Final = re.compile(rb"(;?)([0-9]{13,19})=(?:[0-9]{4}|=)[0-9]{0,40}\??")
_ALNUM: Final = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _track_at(data: bytes, start: int, end: int) -> Span | None:
    """Track data whose PAN is the run ``data[start:end]``, if the bytes around it have a track's layout."""
    after = data[end] if end < len(data) else -1
    if after == ord("^") and start >= 1 and data[start - 1] == ord("B"):
        begin = start - 2 if start >= 2 and data[start - 2] == ord("%") else start - 1
        m = _TRACK1.match(data, begin)
        kind: Kind = "track1"
        if m is not None and not m.group(1) and begin > 0 and data[begin - 1] in _ALNUM:
            m = None  # "xB4111...^" is a word, not a track without its sentinel
    elif after == ord("="):
        begin = start - 1 if start >= 1 and data[start - 1] == ord(";") else start
        m = _TRACK2.match(data, begin)
        kind = "track2"
    else:
        return None
    if m is None or m.end(2) != end:
        return None
    pan = m.group(2).decode("ascii")
    if not m.group(1) and not luhn_valid(pan):
        return None
    return Span(m.start(), m.end(), kind, pan, brand_of(pan))


def _track_in_run(data: bytes, start: int, end: int) -> Span | None:
    """A track's PAN has no separators, so it can only be the run's last group."""
    cut = max(data.rfind(b" ", start, end), data.rfind(b"-", start, end))
    return _track_at(data, start if cut < 0 else cut + 1, end)


def find_track_data(data: bytes) -> list[Span]:
    """Track 1 and track 2 data (sensitive authentication data), whole tracks, in order of start."""
    return [span for start, end in _runs(data) if (span := _track_in_run(data, start, end)) is not None]


def find_card_data(data: bytes) -> list[Span]:
    """PANs and track data in one walk over ``data``, sorted by start."""
    found: list[Span] = []
    for start, end in _runs(data):
        found.extend(_pans_in_run(data, start, end))
        if (span := _track_in_run(data, start, end)) is not None:
            found.append(span)
    found.sort(key=lambda s: (s.start, s.end))
    return found


# --------------------------------------------------------------------------------------------- masking

_STAR: Final = ord("*")


@dataclass(frozen=True, slots=True)
class Masked:
    """A buffer after :func:`mask_card_data`, with what was hidden (counts only, never values)."""

    data: bytes
    pans: int
    tracks: int  # whole tracks, of which ``track1`` are track 1 layouts
    track1: int = 0


_MAX_PASSES: Final = 4


def mask_card_data(data: bytes, keep_bin: int = 6) -> Masked:
    """Find and mask until a pass finds nothing.

    One pass is not enough: the kept last four digits of a masked PAN and the groups after them can form a
    window that is itself a valid PAN. Each pass hides more digits, so this ends; if it has not after
    ``_MAX_PASSES``, every digit of every remaining candidate run is hidden (fail closed)."""
    pans = tracks = track1 = 0
    for _ in range(_MAX_PASSES):
        spans = find_card_data(data)
        if not spans:
            return Masked(data, pans, tracks, track1)
        track_spans = [s for s in spans if s.kind != "pan"]
        tracks += len(track_spans)
        track1 += sum(1 for s in track_spans if s.kind == "track1")
        pans += sum(  # a track's own PAN is counted with the track
            1
            for s in spans
            if s.kind == "pan" and not any(t.start <= s.start and s.end <= t.end for t in track_spans)
        )
        data = mask(data, spans, keep_bin)
    out = bytearray(data)
    for start, end in _runs(data):
        for i in range(start, end):
            if out[i] in _DIGIT:
                out[i] = _STAR
    return Masked(bytes(out), pans, tracks, track1)


def mask(data: bytes, spans: Iterable[Span], keep_bin: int = 6) -> bytes:
    """``data`` with each PAN masked to BIN and last four (separators kept) and each track all ``*``.

    Same length as ``data``. ``keep_bin=8`` keeps eight leading digits of 16-digit PANs only (PCI DSS
    3.4.1 allows the 8-digit BIN there); other lengths keep six. Overlapping spans hide the union."""
    if keep_bin not in (6, 8):
        raise ValueError("keep_bin must be 6 or 8")
    out = bytearray(data)
    for span in spans:
        if span.kind != "pan":
            out[span.start : span.end] = b"*" * (span.end - span.start)
            continue
        positions = [i for i in range(span.start, span.end) if data[i] in _DIGIT]
        keep = 8 if keep_bin == 8 and len(positions) == 16 else 6
        for i in positions[keep:-4]:
            out[i] = _STAR
    return bytes(out)
