"""A pack's period read from the ledger, through ``evidence.api`` only: its events streamed page by page
into a :class:`~reports.summary.Summary` (bounded memory whatever the period), and the integrity evidence
for them: the signed checkpoint that first covers the period, the latest one, and the checked consistency
proof between the two. Every read is itself recorded (``ledger.read``, with the pack's purpose).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from evidence.api import (
    MAX_LIMIT,
    CheckpointRecord,
    ConsistencyProof,
    EventRecord,
    LedgerReader,
    ProofBundle,
    ProofError,
    ReadError,
)
from reports.summary import Sample, Summary

__all__ = ["CHAIN_LISTED", "Integrity", "Period", "Proven", "read_integrity", "read_period"]

PAGE: Final = MAX_LIMIT
CHAIN_LISTED: Final = 50  # checkpoints a pack lists (and links by consistency proofs) over its period


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
class Proven:
    """A sampled event with its inclusion proof against the pack's checkpoint, and the requirements it is a
    sample of."""

    requirements: tuple[str, ...]
    bundle: ProofBundle


@dataclass(frozen=True, slots=True)
class Integrity:
    """What the pack proves about its events.

    ``first`` is the smallest signed checkpoint covering the period's first event and ``last`` the smallest
    covering its last one: the pack's checkpoint, fixed once signed, so the same ledger gives the same pack.
    ``chain`` runs from ``first`` to ``last`` (at most :data:`CHAIN_LISTED` of the ``chain_total``
    checkpoints in between, evenly by size), ``links`` are the consistency proofs between its neighbours and
    ``consistency`` the one from ``first`` straight to ``last``. ``proven`` are the sampled events' inclusion
    proofs against ``last``.
    """

    first: CheckpointRecord | None
    last: CheckpointRecord | None
    consistency: ConsistencyProof | None
    first_index: int | None  # the period's first and last ledger index
    last_index: int | None
    problems: tuple[str, ...]
    chain: tuple[CheckpointRecord, ...] = ()
    chain_total: int = 0
    links: tuple[ConsistencyProof, ...] = ()
    proven: tuple[Proven, ...] = ()

    @property
    def verified(self) -> bool:
        """Every checkpoint signed by a trusted key, consistent, and every event of the period covered."""
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


async def read_integrity(
    reader: LedgerReader,
    first_index: int | None,
    last_index: int | None,
    samples: Mapping[str, Sequence[Sample]] | None = None,
) -> Integrity:
    """The checkpoint chain, its consistency proofs and the samples' inclusion proofs for the period's
    ledger range. An empty period is shown against the latest checkpoint."""
    problems: list[str] = []
    if first_index is None or last_index is None:
        last = await reader.latest_checkpoint()
        first = last
    else:
        last = await reader.checkpoint_covering(last_index + 1)
        first = await reader.checkpoint_covering(first_index + 1)
    if last is None or first is None:
        latest = await reader.latest_checkpoint()
        if latest is None:
            problems.append("no checkpoint has been signed yet")
        else:
            problems.append(
                f"events after index {latest.size - 1} are not covered by a signed checkpoint yet; "
                "generate the pack again after the next checkpoint"
            )
        return Integrity(None, None, None, first_index, last_index, tuple(problems))
    chain, total = await _chain(reader, first, last)
    for cp in chain:
        if not cp.trusted_by:
            problems.append(f"the checkpoint of size {cp.size} is not signed by a trusted key")
    links = []
    for old, new in itertools.pairwise(chain):
        proof = await _consistency(reader, old, new, problems)
        if proof is not None:
            links.append(proof)
    consistency = await _consistency(reader, first, last, problems) if first.size < last.size else None
    proven = await _prove(reader, last, samples or {}, problems) if not problems else ()
    return Integrity(
        first, last, consistency, first_index, last_index, tuple(problems), chain, total, tuple(links), proven
    )


async def _chain(
    reader: LedgerReader, first: CheckpointRecord, last: CheckpointRecord
) -> tuple[tuple[CheckpointRecord, ...], int]:
    """``first``, then a checkpoint whenever the tree grew by a :data:`CHAIN_LISTED`-th of the span since
    the one kept before, then ``last``; and how many checkpoints there are from ``first`` to ``last``."""
    kept = [first]
    total = 1
    step = (last.size - first.size) / (CHAIN_LISTED - 1)
    after = first.size
    while after < last.size:
        page = await reader.checkpoints(after_size=after, limit=PAGE)
        if not page:
            break
        for cp in page:
            if cp.size > last.size:
                break
            total += 1
            if cp.size == last.size or cp.size >= kept[-1].size + step:
                kept.append(cp)
        after = page[-1].size
    if kept[-1].size != last.size:  # pragma: no cover - the reader found last itself
        kept.append(last)
    return tuple(kept), total


async def _consistency(
    reader: LedgerReader, old: CheckpointRecord, new: CheckpointRecord, problems: list[str]
) -> ConsistencyProof | None:
    try:
        proof = await reader.consistency_proof(old.size, new.size)
        proof.check(old.root)
    except (ProofError, ReadError) as exc:
        problems.append(f"the checkpoint of size {new.size} does not extend size {old.size}: {exc}")
        return None
    return proof


async def _prove(
    reader: LedgerReader,
    checkpoint: CheckpointRecord,
    samples: Mapping[str, Sequence[Sample]],
    problems: list[str],
) -> tuple[Proven, ...]:
    """One inclusion proof per sampled event (an event sampled for several requirements: once)."""
    wanted: dict[str, tuple[Sample, list[str]]] = {}
    for requirement, kept in samples.items():
        for sample in kept:
            wanted.setdefault(sample.event_id, (sample, []))[1].append(requirement)
    proven = []
    for sample, requirements in sorted(wanted.values(), key=lambda item: item[0].index):
        try:
            bundle = await reader.inclusion_proof(sample.event_id, checkpoint_size=checkpoint.size)
        except ReadError as exc:
            problems.append(f"no inclusion proof for the sampled entry {sample.index}: {exc}")
            continue
        proven.append(Proven(tuple(sorted(set(requirements))), bundle))
    return tuple(proven)
