"""The activity feed as the console shows it: every audit event (``pcigate.audit.>``) as one line, the
latest few thousand kept, filtered by category and text. Pure: parsing and rendering, no I/O, no Textual.

Events carry no clear card data (the gateway masks statements and parameters before it records them), so
a line shows what the event shows.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from rich.text import Text

from tui.queue import one_line

__all__ = ["CATEGORIES", "Activity", "Line", "summarize"]

# category -> event type prefixes
CATEGORIES: Final[dict[str, tuple[str, ...]]] = {
    "all": ("",),
    "sessions": ("session.", "auth.", "access."),
    "commands": ("command.executed",),
    "blocks": ("command.blocked", "auth.failed", "sad.detected"),
    "masking": ("masking.", "sad."),
    "approvals": ("approval.",),
    "ledger": ("ledger.", "audit.gap", "config."),
}
_STYLES: Final = {"failure": "red", "blocked": "bold red", "pending": "yellow"}


@dataclass(frozen=True, slots=True)
class Line:
    """One event, reduced to what a person scanning the feed needs."""

    time: str  # HH:MM:SS (UTC)
    type: str
    actor: str
    connection: str
    result: str
    summary: str

    @property
    def haystack(self) -> str:
        return f"{self.type} {self.actor} {self.connection} {self.result} {self.summary}".lower()

    def render(self, width: int) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"{self.time} ", style="dim")
        text.append(f"{self.type:<18} ", style=_STYLES.get(self.result, "cyan"))
        text.append(f"{one_line(self.actor, 24)} ")
        if self.connection:
            text.append(f"{self.connection} ", style="magenta")
        room = width - len(text.plain)
        if room > 1:
            text.append(one_line(self.summary, room), style=_STYLES.get(self.result, ""))
        return text


def summarize(raw: bytes | Mapping[str, Any]) -> Line | None:
    """An event's line; None for a message that is not an event."""
    try:
        event = json.loads(raw) if isinstance(raw, bytes) else raw
        etype = str(event["type"])
        actor = event.get("actor") or {}
        outcome = event.get("outcome") or {}
        data = event.get("data") or {}
        target = event.get("target") or {}
        when = str(event.get("time", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    who = str(actor.get("sub", "?"))
    if actor.get("on_behalf_of"):
        who += f"→{actor['on_behalf_of']}"
    result = str(outcome.get("result", ""))
    return Line(
        time=when[11:19],
        type=etype,
        actor=who,
        connection=str(target.get("connection") or ""),
        result=result,
        summary=_summary(etype, data, outcome, event.get("policy") or {}),
    )


def _summary(
    etype: str, data: Mapping[str, Any], outcome: Mapping[str, Any], policy: Mapping[str, Any]
) -> str:
    statement = data.get("statement") or {}
    text = str(statement.get("text", "")) if isinstance(statement, Mapping) else ""
    code = outcome.get("code")
    rule = policy.get("rule")
    if etype == "command.executed":
        tag = data.get("command_tag") or outcome.get("result", "")
        rows = f", {data['rows']} rows" if data.get("rows") else ""
        return f"{tag}{rows}: {text}" + (f" [{code}]" if code else "")
    if etype == "command.blocked":
        return f"{data.get('reason', '')} ({rule or data.get('limit') or '-'}): {text}"
    if etype.startswith("approval."):
        return (
            f"{data.get('decision', '')} {data.get('request_id', '')} {data.get('reason', '')} {text}".strip()
        )
    if etype == "masking.applied":
        return f"{data.get('total_values', 0)} values masked ({data.get('surface', '')})"
    if etype == "session.closed":
        return f"{data.get('reason', '')}: {data.get('statements', 0)} statements, {data.get('rows', 0)} rows"
    if etype == "auth.failed":
        return f"{data.get('reason', '')}: {outcome.get('message') or ''}"
    if etype.startswith("access."):
        return f"{data.get('reason') or data.get('mechanism', '')} until {data.get('valid_until', '-')}"
    message = outcome.get("message")
    return str(message or data.get("reason") or rule or "")


class Activity:
    """The latest ``keep`` lines; a category and a text filter choose which are shown."""

    def __init__(self, keep: int = 5000) -> None:
        self._lines: deque[Line] = deque(maxlen=keep)
        self.category = "all"
        self.filter = ""
        self.total = 0

    def add(self, line: Line) -> bool:
        """Keep ``line``; whether it is shown under the current filters."""
        self._lines.append(line)
        self.total += 1
        return self.shows(line)

    def shows(self, line: Line) -> bool:
        prefixes = CATEGORIES[self.category]
        if not any(line.type.startswith(p) for p in prefixes):
            return False
        needle = self.filter.strip().lower()
        return not needle or needle in line.haystack

    def lines(self) -> Iterable[Line]:
        return (line for line in self._lines if self.shows(line))

    def next_category(self) -> str:
        names = list(CATEGORIES)
        self.category = names[(names.index(self.category) + 1) % len(names)]
        return self.category
