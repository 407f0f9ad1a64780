"""The approval queue as the console shows it: pure state and its rendering (rich text), no I/O and no
Textual.

Fed with every request record the KV watch delivers (:meth:`Queue.update`) and ticked by a clock
(:meth:`Queue.expire`), it keeps the pending requests and, for a while, a trace of each one that left the
queue (decided, expired, withdrawn) so the approver sees what happened to it. ``rows`` gives the filtered,
sorted view. A pending record whose expiry has passed is expired here even when its gateway never writes
that (it may be gone).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from rich.text import Text

from schemas.approvals import Request

__all__ = [
    "HEADING",
    "SORTS",
    "Change",
    "Queue",
    "Trace",
    "duration",
    "entry",
    "one_line",
    "requester_label",
]

Change = Literal["new", "updated", "left", "unchanged"]
SortKey = Literal["expires", "age", "requester", "connection"]
SORTS: Final[tuple[SortKey, ...]] = ("expires", "age", "requester", "connection")
# Single-width symbols monospace fonts carry (emoji are double-width, and missing in many ssh terminals).
KIND_ICONS: Final = {"human": "☺", "agent": "⚙", "service": "▣"}


@dataclass(frozen=True, slots=True)
class Trace:
    """A request that left the queue: how, and when the console saw it."""

    request: Request
    state: str
    at: datetime


class Queue:
    """See the module docstring."""

    def __init__(self, *, trace_for: timedelta = timedelta(minutes=2), max_traces: int = 50) -> None:
        self._pending: dict[str, Request] = {}
        self._traces: OrderedDict[str, Trace] = OrderedDict()
        self._trace_for = trace_for
        self._max_traces = max_traces
        self.filter = ""
        self.sort: SortKey = "expires"

    def __len__(self) -> int:
        return len(self._pending)

    def get(self, request_id: str) -> Request | None:
        return self._pending.get(request_id)

    def update(self, request: Request, now: datetime) -> Change:
        """One record as written (the newest revision of its key)."""
        known = self._pending.get(request.id)
        if request.state == "pending" and now < request.expires:
            self._pending[request.id] = request
            if known is None:
                return "unchanged" if request.id in self._traces else "new"
            return "unchanged" if known == request else "updated"
        if known is None:
            return "unchanged"  # already gone (or never pending while we watched)
        del self._pending[request.id]
        self._trace(request, "expired" if request.state == "pending" else request.state, now)
        return "left"

    def expire(self, now: datetime) -> list[str]:
        """Pending requests past their expiry leave the queue; their ids."""
        gone = [r for r in self._pending.values() if now >= r.expires]
        for request in gone:
            del self._pending[request.id]
            self._trace(request, "expired", now)
        cutoff = now - self._trace_for
        while self._traces and next(iter(self._traces.values())).at < cutoff:
            self._traces.popitem(last=False)
        return [r.id for r in gone]

    def _trace(self, request: Request, state: str, now: datetime) -> None:
        self._traces.pop(request.id, None)
        self._traces[request.id] = Trace(request, state, now)
        while len(self._traces) > self._max_traces:
            self._traces.popitem(last=False)

    @property
    def traces(self) -> list[Trace]:
        """What left the queue lately, newest first."""
        return list(reversed(self._traces.values()))

    def rows(self) -> list[Request]:
        """The pending requests the filter matches, in the chosen order."""
        needle = self.filter.strip().lower()
        found = [r for r in self._pending.values() if not needle or needle in _haystack(r)]
        if self.sort == "expires":
            found.sort(key=lambda r: (r.expires, r.id))
        elif self.sort == "age":
            found.sort(key=lambda r: (r.created, r.id))
        elif self.sort == "requester":
            found.sort(key=lambda r: (r.requester.sub, r.created))
        else:
            found.sort(key=lambda r: (r.connection, r.created))
        return found

    def next_sort(self) -> SortKey:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        return self.sort


def _haystack(request: Request) -> str:
    r = request.requester
    return " ".join(
        x
        for x in (
            request.id,
            r.sub,
            r.name or "",
            r.kind,
            r.on_behalf_of or "",
            request.connection,
            request.rule,
            request.statement.text,
        )
    ).lower()


def duration(seconds: float) -> str:
    """Compact and fixed-width-friendly: ``42s``, ``4m05s``, ``2h07m``, ``3d04h``; negative as ``0s``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def one_line(text: str, width: int) -> str:
    """A statement on one line: whitespace runs collapsed, cut with an ellipsis to ``width`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: max(0, width - 1)] + "…"


def requester_label(request: Request) -> str:
    """``⚙ agent-7 → alice`` for an agent acting for a person, ``☺ alice`` for a person."""
    r = request.requester
    who = r.name or r.sub
    label = f"{KIND_ICONS.get(r.kind, '?')} {who}"
    return f"{label} → {r.on_behalf_of}" if r.on_behalf_of else label


def entry(request: Request, now: datetime, width: int) -> Text:
    """One request as two lines of the queue: time left, age, quorum, requester, connection and rule; then
    the masked statement, as much as ``width`` allows."""
    left = (request.expires - now).total_seconds()
    urgency = "bold red" if left < 60 else "yellow" if left < 300 else "green"
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{duration(left):<7}", style=urgency)
    text.append(f"{duration((now - request.created).total_seconds()):<7}", style="dim")
    text.append(f"{request.approved}/{request.quorum}  ", style="bold")
    text.append(requester_label(request))
    text.append(f"  {request.connection}", style="cyan")
    text.append(f"  {request.rule}", style="magenta")
    text.append("\n" + " " * 14 + one_line(request.statement.text, max(8, width - 14)))
    return text


HEADING: Final = "left   age    q    requester  connection  rule\n" + " " * 14 + "statement (masked)"
