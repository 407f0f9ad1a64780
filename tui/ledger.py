"""The console's ledger panel, drawn: the latest signed checkpoint, whether it verifies and extends what
the console saw before, and the latest audit gaps (:class:`LedgerStatus`). The reading is
:mod:`tui.ledger_source`'s, kept apart so the console starts without importing the ledger reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from evidence.api import CheckpointRecord

__all__ = ["LedgerStatus", "render"]


@dataclass(frozen=True, slots=True)
class LedgerStatus:
    """One refresh of the panel."""

    read_at: datetime
    checkpoint: CheckpointRecord | None = None
    signature: str = ""  # what the signature check says
    consistency: str = ""  # against the checkpoint seen at the previous refresh
    healthy: bool = False
    gaps: tuple[tuple[str, str], ...] = ()  # (time, what) of the latest audit.gap events
    problem: str | None = None  # the ledger could not be read
    notes: tuple[str, ...] = field(default=())


class FullHash:
    """A hash in hex, never cut with an ellipsis: on one line where it fits, else in two halves (an
    approver compares it with another copy, so every digit must show)."""

    def __init__(self, hexdigest: str) -> None:
        self.hexdigest = hexdigest

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        h = self.hexdigest
        if options.max_width >= len(h):
            yield Text(h)
        else:
            half = (len(h) + 1) // 2
            yield Text(f"{h[:half]}\n{h[half:]}", overflow="fold")  # fold: even narrower, nothing is cut

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement((len(self.hexdigest) + 1) // 2, len(self.hexdigest))


def render(status: LedgerStatus | None, origin: str) -> RenderableType:
    """The panel's content."""
    if status is None:
        return Text("press r to read the ledger's status (each read is recorded as ledger.read)")
    if status.problem is not None:
        return Text(f"⚠ {status.problem}", style="bold red")
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("log", origin)
    cp = status.checkpoint
    if cp is not None:
        facts.add_row("checkpoint", f"size {cp.size:,}, signed {cp.created_at:%Y-%m-%d %H:%M:%S} UTC")
        facts.add_row("root", FullHash(cp.root.hex()))
        facts.add_row("key", f"{cp.key_name} (id {cp.key_id:08x})")
    ok_style = "green" if status.healthy else "bold red"
    facts.add_row("signature", Text(status.signature, style="green" if cp and cp.trusted_by else "yellow"))
    if status.consistency:
        facts.add_row("consistency", status.consistency)
    facts.add_row("gaps (7 days)", Text(str(len(status.gaps)) if status.gaps else "none", style=ok_style))
    parts: list[RenderableType] = [facts]
    for when, what in status.gaps:
        parts.append(Text(f"  {when}  {what}", style="red"))
    verdict = "ledger verified" if status.healthy else "ledger needs attention"
    parts.append(Text(f"\n{verdict}; read at {status.read_at:%H:%M:%S} UTC (r refreshes)", style=ok_style))
    return Group(*parts)
