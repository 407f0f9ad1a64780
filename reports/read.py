"""A pack's period read from the ledger, through ``evidence.api`` only: its events streamed page by page
into a :class:`~reports.summary.Summary` (bounded memory whatever the period), and the integrity evidence
for them: the signed checkpoint that first covers the period, the latest one, and the checked consistency
proof between the two. Every read is itself recorded (``ledger.read``, with the pack's purpose).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from evidence.api import (
    MAX_LIMIT,
    CheckpointRecord,
    ConsistencyProof,
    EventRecord,
    LedgerReader,
    ProofError,
    ReadError,
)
from reports.summary import Summary

__all__ = ["Integrity", "Period", "read_integrity", "read_period"]

PAGE: Final = MAX_LIMIT


@dataclass(frozen=True, slots=True)
class Period:
    """``since <= time < until``; ``connections`` empty: every connection. Events that belong to no
    connection (the ledger's own, configuration changes) are always in scope: they evidence the log."""

    since: datetime
    until: datetime
    connections: frozenset[str] = frozenset()

    def covers(self, record: EventRecord) -> bool:
        if not self.connections or record.event is None:
            return True
        target = record.event.get("target")
        connection = target.get("connection") if isinstance(target, Mapping) else None
        return connection is None or connection in self.connections


@dataclass(frozen=True, slots=True)
class Integrity:
    """What the pack proves about its events: ``first`` covers the period's first event, ``last`` is the
    newest signed checkpoint; ``consistency`` shows ``last`` extends ``first``."""

    first: CheckpointRecord | None
    last: CheckpointRecord | None
    consistency: ConsistencyProof | None
    first_index: int | None  # the period's first and last ledger index
    last_index: int | None
    problems: tuple[str, ...]

    @property
    def verified(self) -> bool:
        """Both checkpoints signed by a trusted key, consistent, and every event of the period covered."""
        return not self.problems and self.last is not None


async def read_period(
    reader: LedgerReader, period: Period, summary: Summary, progress: Callable[[int], None] = lambda _: None
) -> tuple[int | None, int | None]:
    """Fold the period's events into ``summary``; the first and last ledger index read."""
    first: int | None = None
    last: int | None = None
    after: int | None = None
    while True:
        page = await reader.events(since=period.since, until=period.until, after_index=after, limit=PAGE)
        for record in page:
            first = record.index if first is None else first
            last = record.index
            if period.covers(record):
                summary.add(record.index, record.type, record.time, record.pci, record.event)
        progress(len(page))
        if page.next_after is None:
            return first, last
        after = page.next_after


async def read_integrity(reader: LedgerReader, first_index: int | None, last_index: int | None) -> Integrity:
    """The checkpoints and the consistency proof for the period's ledger range."""
    problems: list[str] = []
    last = await reader.latest_checkpoint()
    first = await reader.checkpoint_covering(first_index + 1) if first_index is not None else last
    consistency: ConsistencyProof | None = None
    if last is None:
        problems.append("no checkpoint has been signed yet")
    else:
        for cp in {c.size: c for c in (first, last) if c is not None}.values():  # the same one: said once
            if not cp.trusted_by:
                problems.append(f"the checkpoint of size {cp.size} is not signed by a trusted key")
        if last_index is not None and last.size <= last_index:
            problems.append(
                f"events after index {last.size - 1} are not covered by a signed checkpoint yet; "
                "generate the pack again after the next checkpoint"
            )
        if first is not None and 0 < first.size < last.size:
            try:
                consistency = await reader.consistency_proof(first.size, last.size)
                consistency.check(first.root)
            except (ProofError, ReadError) as exc:
                problems.append(
                    f"the checkpoint of size {last.size} does not extend size {first.size}: {exc}"
                )
    return Integrity(first, last, consistency, first_index, last_index, tuple(problems))
