"""The console's Sessions tab and replay, without Textual and without I/O: a recorded session as one line
of the list, and a session's chunks turned into what the replay screen shows.

The rows come from ``pcigate.recordings.list_sessions`` and the chunks from ``attested_chunks`` /
``stored_chunks`` (the app reads them); every line shown is ``pcigate.replay``'s, the same as ``pcigate
replay ID --no-timing`` prints, so the console and the CLI cannot disagree about a recording.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Final

from rich.text import Text

from pcigate.replay import ChunkProblemError, lines, verified_chunks
from tui.queue import KIND_ICONS, duration

if TYPE_CHECKING:
    from pcigate.recordings import SessionRow
    from pcigate.replay import Attested
    from schemas.recording import Chunk

__all__ = [
    "MOST",
    "NOT_FINAL",
    "SINCE",
    "Replayed",
    "heading",
    "identity_label",
    "play",
    "replay_banner",
    "replay_facts",
    "replay_title",
    "session_entry",
]

SINCE: Final = timedelta(days=7)
MOST: Final = 300  # rows listed at most: the newest; older ones are `pcigate replay --list --since`'s
MOST_LINES: Final = 10_000  # lines kept for the log; every chunk is still verified
NOT_FINAL: Final = "⚠"  # single width; the tab's status line says what it means
_STARTED: Final = 14  # "12-05 01:50:02"
_CONNECTION: Final = 10
_DURATION: Final = 8
_STATEMENTS: Final = 5
_CHUNKS: Final = 6
_FIXED: Final = _STARTED + _CONNECTION + _DURATION + _STATEMENTS + _CHUNKS + 2 + 5 * 2  # mark, gaps
HEADINGS: Final = ("started (UTC)", "identity", "connection", "duration", "stmts", "chunks")
_STYLES: Final = ("dim", "", "cyan", "", "", "")


def identity_label(row: SessionRow) -> str:
    """``☺ alice`` for a person, ``⚙ agent-7 for alice`` for an agent acting for one."""
    label = f"{KIND_ICONS.get(row.kind or '', '?')} {row.sub or '?'}"
    return f"{label} for {row.on_behalf_of}" if row.on_behalf_of else label


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _duration(ms: float | None) -> str:
    if ms is None:
        return "open"
    return f"{ms / 1000:.1f}s" if ms < 60_000 else duration(ms / 1000)


def _cells(values: tuple[str, str, str, str, str, str], width: int) -> list[str]:
    started, who, connection, took, statements, chunks = values
    room = max(8, width - _FIXED)  # the identity takes what the fixed columns leave
    return [
        f"{started:<{_STARTED}}",
        f"{_cut(who, room):<{room}}",
        f"{_cut(connection, _CONNECTION):<{_CONNECTION}}",
        f"{took:>{_DURATION}}",
        f"{statements:>{_STATEMENTS}}",
        f"{chunks:>{_CHUNKS}}",
    ]


def heading(width: int) -> str:
    return "  ".join(_cells(HEADINGS, width))


def session_entry(row: SessionRow, width: int) -> Text:
    """One session as one line of ``width``: started (UTC), identity, connection, duration, statements,
    chunks, and :data:`NOT_FINAL` while the ledger holds no final chunk of its recording."""
    started = "-" if row.started is None else row.started.astimezone(UTC).strftime("%m-%d %H:%M:%S")
    statements = "-" if row.statements is None else str(row.statements)
    values = (started, identity_label(row), row.connection or "-", _duration(row.duration_ms), statements,
              str(row.chunks))  # fmt: skip
    cells = _cells(values, width)
    text = Text(no_wrap=True, overflow="ellipsis")
    for i, (cell, style) in enumerate(zip(cells, _STYLES, strict=True)):
        text.append("  " if i else "")
        text.append(cell, style=style)
    if not row.final:
        text.append(f" {NOT_FINAL}", style="yellow")
    return text


@dataclass(frozen=True, slots=True)
class Replayed:
    """What the replay screen shows of one session.

    ``problem``: a chunk is missing, changed or not in the ledger (the lines are those verified before it);
    ``unavailable``: the ledger or NATS could not be read, so nothing was checked.
    """

    lines: tuple[str, ...] = ()
    verified: int = 0
    final: bool = False
    problem: str | None = None
    unavailable: str | None = None
    cut: int = 0  # lines not kept (past MOST_LINES)


def play(
    session_id: str, attested: Sequence[Attested], stored: Mapping[int, bytes], *, most: int = MOST_LINES
) -> Replayed:
    """Verify every chunk against the ledger and render the session, psql-style, stopping at the first
    chunk that fails (what came before it is kept: it was verified)."""
    verified = 0

    def counted() -> Iterator[Chunk]:
        nonlocal verified
        for chunk in verified_chunks(session_id, attested, stored):
            verified += 1
            yield chunk

    shown: list[str] = []
    cut = 0
    problem: str | None = None
    try:
        for line in lines(counted()):
            if len(shown) < most:
                shown.append(line.text)
            else:
                cut += 1
    except ChunkProblemError as exc:
        problem = str(exc)
    final = any(a.final for a in attested)
    return Replayed(tuple(shown), verified, final, problem, cut=cut)


def replay_title(row: SessionRow) -> str:
    started = "" if row.started is None else f", {row.started.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    return f"replay: {identity_label(row)} on {row.connection or '?'}{started}"


def replay_facts(session_id: str, replayed: Replayed | None) -> Text:
    """The header under the title: the session, and how much of its recording the ledger vouches for."""
    text = Text(f"session {session_id}\n", style="dim")
    if replayed is None:
        text.append("reading the chunks' hashes from the ledger and the chunks from NATS…", style="dim")
        return text
    if replayed.unavailable is not None:
        text.append(f"⚠ {replayed.unavailable}", style="yellow")
        return text
    if not replayed.verified and replayed.problem is None:
        text.append("no recording of this session in the ledger or the recordings stream", style="yellow")
        return text
    plural = "" if replayed.verified == 1 else "s"
    text.append(f"{replayed.verified} chunk{plural} verified against the ledger", style="green")
    if replayed.problem is None and not replayed.final:
        text.append("; no final chunk yet: the session is open, or its gateway stopped", style="yellow")
    if replayed.cut:
        text.append(f"; the first {len(replayed.lines):,} lines are shown (pcigate replay shows all)")
    return text


def replay_banner(replayed: Replayed) -> Text | None:
    """The red banner of a replay stopped by a chunk that fails its check; None when all passed."""
    if replayed.problem is None:
        return None
    text = Text(f"⚠ replay stopped: {replayed.problem}", style="bold")
    n = replayed.verified
    text.append(
        f"\nthe lines below are from the {n} chunk{'' if n == 1 else 's'} verified before it"
        if n
        else "\nno chunk before it: nothing verified to show"
    )
    return text
