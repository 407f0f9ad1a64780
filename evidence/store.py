"""The ledger in PostgreSQL: entries, the stored Merkle nodes that make proofs O(log n), checkpoints.

Tables (``SCHEMA_SQL``; docs/ledger.md explains them for DBAs and auditors):

- ``ledger_entries``: one row per event, ``idx`` the 0-based leaf index, ``canonical`` the exact RFC 8785
  bytes that were hashed, ``leaf_hash`` = SHA-256(0x00 || canonical), the PCI DSS requirement ids it
  evidences, and where it came from in the stream.
- ``ledger_nodes``: the root of every *complete* perfect subtree above the leaves, keyed ``(level, idx)``
  (level 1 covers leaves 2·idx and 2·idx+1). A node never changes once written, so proofs and roots for
  any past size read at most ~2·log2(n) rows and never rehash the leaves.
- ``ledger_quarantine``: messages refused as events (``evidence.entries``), with the reason, the payload's
  SHA-256 and the payload with its digit runs masked; never silently dropped.
- ``ledger_stream_state``: per stream, the sequence number through which every message is accounted for
  (an entry, a quarantine record, or an ``audit.gap``); it moves in the same transaction as the entries.
- ``ledger_checkpoints``: signed checkpoints (C2SP signed notes) by tree size.

One writer at a time: :meth:`LedgerStore.append` runs in one transaction that first takes a transaction
advisory lock, reads the tree size and the right-edge nodes (the "frontier", one per set bit of the size),
inserts the batch's entries and every node the batch completes, and commits — or nothing. An event id
already in the ledger is skipped, so a redelivered batch is harmless.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final
from uuid import UUID

import asyncpg

from evidence import merkle
from evidence.checkpoint import Checkpoint, NoteSigner

__all__ = [
    "SCHEMA_SQL",
    "Appended",
    "LedgerInconsistentError",
    "LedgerLayoutError",
    "LedgerStore",
    "NewEntry",
    "Partition",
    "Quarantined",
    "StoredCheckpoint",
]

_WRITER_LOCK: Final = 0x7063_6967_6C65_6467  # "pcigledg": the one-writer advisory lock

SCHEMA_SQL: Final = """
CREATE TABLE IF NOT EXISTS ledger_entries (
    idx          bigint      NOT NULL CHECK (idx >= 0),
    event_id     uuid        NOT NULL,
    event_type   text        NOT NULL,
    event_time   timestamptz NOT NULL,
    stream_seq   bigint,
    session_id   text,
    actor_sub    text,
    canonical    bytea,                 -- NULL once retention pruned the payload (leaf_hash stays)
    leaf_hash    bytea       NOT NULL CHECK (length(leaf_hash) = 32),
    pci          text[]      NOT NULL,
    appended_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (idx)
) PARTITION BY RANGE (idx);
CREATE INDEX IF NOT EXISTS ledger_entries_event_id ON ledger_entries (event_id);
-- PostgreSQL cannot make a column other than the partition key unique across partitions: this is
-- where event ids are unique (and found by id in one index lookup).
CREATE TABLE IF NOT EXISTS ledger_event_ids (
    event_id  uuid   PRIMARY KEY,
    idx       bigint NOT NULL UNIQUE CHECK (idx >= 0)
);
CREATE TABLE IF NOT EXISTS ledger_partitions (
    name       text        PRIMARY KEY,
    month      date        NOT NULL UNIQUE,
    first_idx  bigint      NOT NULL CHECK (first_idx >= 0),
    end_idx    bigint      CHECK (end_idx >= first_idx),  -- NULL: the open partition, appended to now
    pruned_at  timestamptz
);
CREATE INDEX IF NOT EXISTS ledger_entries_time ON ledger_entries (event_time);
CREATE INDEX IF NOT EXISTS ledger_entries_type_time ON ledger_entries (event_type, event_time);
CREATE INDEX IF NOT EXISTS ledger_entries_pci ON ledger_entries USING gin (pci);
CREATE INDEX IF NOT EXISTS ledger_entries_session ON ledger_entries (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS ledger_entries_actor_time ON ledger_entries (actor_sub, event_time);
CREATE TABLE IF NOT EXISTS ledger_nodes (
    level  smallint NOT NULL CHECK (level >= 1),
    idx    bigint   NOT NULL CHECK (idx >= 0),
    hash   bytea    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
);
CREATE TABLE IF NOT EXISTS ledger_quarantine (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_seq      bigint,
    subject         text        NOT NULL,
    msg_id          text,
    reason          text        NOT NULL,
    sha256          bytea       NOT NULL CHECK (length(sha256) = 32),
    size            integer     NOT NULL,
    payload_masked  bytea       NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS ledger_quarantine_seq ON ledger_quarantine (stream_seq)
    WHERE stream_seq IS NOT NULL;
CREATE TABLE IF NOT EXISTS ledger_stream_state (
    stream       text        PRIMARY KEY,
    through_seq  bigint      NOT NULL CHECK (through_seq >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ledger_checkpoints (
    size        bigint      PRIMARY KEY CHECK (size >= 0),
    root        bytea       NOT NULL CHECK (length(root) = 32),
    note        text        NOT NULL,
    key_name    text        NOT NULL,
    key_id      bigint      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True, slots=True)
class NewEntry:
    """An event ready for the ledger: its canonical bytes and what the read API indexes it by."""

    event_id: UUID
    event_type: str
    event_time: datetime
    canonical: bytes
    pci: Sequence[str]
    stream_seq: int | None = None
    session_id: str | None = None
    actor_sub: str | None = None


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A message the ledger refused, described without clear card data."""

    stream_seq: int | None
    subject: str
    msg_id: str | None
    reason: str  # names the rule and place, never a value
    sha256: bytes  # of the payload as received
    size: int
    payload_masked: bytes  # at most 64 KiB, digit runs of 8+ replaced


@dataclass(frozen=True, slots=True)
class Appended:
    first_idx: int  # the index the batch's first new entry got
    added: int  # entries written (event ids already present are skipped)
    size: int  # tree size after the batch


@dataclass(frozen=True, slots=True)
class Partition:
    """One month of entries: ``[first_idx, end_idx)``; ``end_idx`` None while the month is open."""

    name: str
    month: date
    first_idx: int
    end_idx: int | None
    pruned: bool


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: str


def this_month() -> date:
    now = datetime.now(UTC)
    return date(now.year, now.month, 1)


def partition_name(month: date) -> str:
    """``ledger_entries_pYYYYMM``: digits only, so it is safe to put into DDL."""
    return f"ledger_entries_p{month.year:04d}{month.month:02d}"


class LedgerLayoutError(Exception):
    """The ledger's tables are not laid out as this version writes them."""


class LedgerInconsistentError(Exception):
    """The stored tree does not extend the last signed checkpoint: signing now would fork the log."""


class LedgerStore:
    """Ledger reads and writes over one asyncpg connection (the caller owns it)."""

    def __init__(self, conn: asyncpg.Connection, month: Callable[[], date] = this_month) -> None:
        self.conn = conn
        self._month = month  # which month's partition new entries go to (tests move it)

    async def create_schema(self) -> None:
        await self.conn.execute(SCHEMA_SQL)
        kind = await self.conn.fetchval(
            "SELECT relkind::text FROM pg_class WHERE oid = 'ledger_entries'::regclass"
        )
        if kind != "p":
            raise LedgerLayoutError(
                "ledger_entries is not partitioned by month: this ledger was created by an earlier "
                "development version of pcigate; copy it into a fresh database (or start a new one)"
            )

    # ---------------------------------------------------------------------------- partitions

    async def _open_partition(self, size: int) -> None:
        """Make sure entry ``size`` onwards goes to this month's partition (caller holds the writer lock).

        Partitions are ranges of ``idx``, one per calendar month (UTC) of appending. The open one runs
        to MAXVALUE; when a month begins it is bounded at the current size — detached, given a CHECK
        that matches the bound (which PostgreSQL validates with one scan of that month), re-attached —
        and the new month's partition is opened from there.
        """
        month = self._month()
        row = await self.conn.fetchrow("SELECT month, first_idx FROM ledger_partitions WHERE end_idx IS NULL")
        if row is not None and row["month"] >= month:
            return  # this month's (or, after the clock stepped back, a later one's): keep appending
        name = partition_name(month)
        if row is None:
            if size:
                raise LedgerLayoutError(
                    f"{size} entries but no open partition: ledger_partitions was altered"
                )
            await self._create_partition(name, month, size)
            return
        old = partition_name(row["month"])  # names are rebuilt from digits, never read into DDL
        if row["first_idx"] == size:  # last month's partition is empty: it becomes this month's
            await self.conn.execute(f"ALTER TABLE {old} RENAME TO {name}")
            await self.conn.execute(
                "UPDATE ledger_partitions SET name = $1, month = $2 WHERE name = $3", name, month, old
            )
            return
        first = int(row["first_idx"])
        await self.conn.execute(f"ALTER TABLE ledger_entries DETACH PARTITION {old}")
        await self.conn.execute(
            f"ALTER TABLE {old} ADD CONSTRAINT {old}_bounds CHECK (idx >= {first} AND idx < {size})"
        )
        await self.conn.execute(
            f"ALTER TABLE ledger_entries ATTACH PARTITION {old} FOR VALUES FROM ({first}) TO ({size})"
        )
        await self.conn.execute("UPDATE ledger_partitions SET end_idx = $1 WHERE name = $2", size, old)
        await self._create_partition(name, month, size)

    async def _create_partition(self, name: str, month: date, first: int) -> None:
        await self.conn.execute(
            f"CREATE TABLE {name} PARTITION OF ledger_entries FOR VALUES FROM ({first}) TO (MAXVALUE)"
        )
        await self.conn.execute(
            "INSERT INTO ledger_partitions (name, month, first_idx) VALUES ($1, $2, $3)", name, month, first
        )

    async def size(self) -> int:
        value = await self.conn.fetchval("SELECT coalesce(max(idx) + 1, 0) FROM ledger_entries")
        return int(value)

    # ------------------------------------------------------------------------------------- nodes

    async def nodes(self, wanted: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """The stored hashes of perfect subtrees ``(level, index)``; level 0 reads leaf hashes."""
        leaves = [i for lvl, i in wanted if lvl == 0]
        inner = [(lvl, i) for lvl, i in wanted if lvl > 0]
        found: dict[tuple[int, int], bytes] = {}
        if leaves:
            rows = await self.conn.fetch(
                "SELECT idx, leaf_hash FROM ledger_entries WHERE idx = ANY($1::bigint[])", leaves
            )
            found.update(((0, r["idx"]), bytes(r["leaf_hash"])) for r in rows)
        if inner:
            rows = await self.conn.fetch(
                "SELECT n.level, n.idx, n.hash FROM ledger_nodes n "
                "JOIN unnest($1::smallint[], $2::bigint[]) AS w(level, idx) USING (level, idx)",
                [lvl for lvl, _ in inner],
                [i for _, i in inner],
            )
            found.update(((r["level"], r["idx"]), bytes(r["hash"])) for r in rows)
        missing = [w for w in wanted if w not in found]
        if missing:
            raise LookupError(f"the ledger lacks tree nodes {missing[:5]}: it is damaged or being pruned")
        return found

    async def _node_source(self, plan: Callable[[merkle.NodeSource], object]) -> merkle.NodeSource:
        """Run ``plan`` once to learn which nodes it reads, fetch them in one query, return a source."""
        asked: list[tuple[int, int]] = []

        def record(level: int, index: int) -> bytes:
            asked.append((level, index))
            return bytes(merkle.HASH_SIZE)

        plan(record)
        fetched = await self.nodes(sorted(set(asked)))
        return lambda level, index: fetched[(level, index)]

    async def root(self, size: int) -> bytes:
        if size == 0:
            return merkle.EMPTY_ROOT
        source = await self._node_source(lambda node: merkle.subtree_root(node, 0, size))
        return merkle.subtree_root(source, 0, size)

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        source = await self._node_source(lambda node: merkle.inclusion_proof(index, size, node))
        return merkle.inclusion_proof(index, size, source)

    async def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        source = await self._node_source(lambda node: merkle.consistency_proof(size1, size2, node))
        return merkle.consistency_proof(size1, size2, source)

    # ------------------------------------------------------------------------------- checkpoints

    async def latest_checkpoint(self) -> StoredCheckpoint | None:
        return await self.checkpoint_at(None)

    async def checkpoint_at(self, size: int | None) -> StoredCheckpoint | None:
        """The stored checkpoint of ``size`` entries (None: the latest), if one was signed."""
        if size is None:
            row = await self.conn.fetchrow(
                "SELECT size, root, note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1"
            )
        else:
            row = await self.conn.fetchrow(
                "SELECT size, root, note FROM ledger_checkpoints WHERE size = $1", size
            )
        return None if row is None else StoredCheckpoint(row["size"], bytes(row["root"]), row["note"])

    async def checkpoint(self, signer: NoteSigner, origin: str) -> StoredCheckpoint:
        """Sign and store a checkpoint of the current tree, unless the last one already covers it.

        Under the writer lock (the size cannot move), the new root is first proved consistent with the
        last signed one from the stored nodes; if it is not, nothing is signed and
        LedgerInconsistentError says so. A log must never sign two inconsistent checkpoints.
        """
        async with self.conn.transaction():
            await self.conn.execute("SELECT pg_advisory_xact_lock($1)", _WRITER_LOCK)
            last = await self.latest_checkpoint()
            size = await self.size()
            if last is not None and last.size == size:
                return last
            if last is not None and last.size > size:
                raise LedgerInconsistentError(
                    f"the ledger holds {size} entries but checkpoint {last.size} was signed: it was truncated"
                )
            root = await self.root(size)
            if last is not None and last.size > 0:
                proof = await self.consistency_proof(last.size, size)
                try:
                    merkle.verify_consistency(last.size, size, proof, last.root, root)
                except merkle.ProofError as exc:
                    raise LedgerInconsistentError(
                        f"the tree of size {size} does not extend signed checkpoint {last.size}: {exc}"
                    ) from None
            note = Checkpoint(origin, size, root).sign([signer])
            await self.conn.execute(
                "INSERT INTO ledger_checkpoints (size, root, note, key_name, key_id)"
                " VALUES ($1, $2, $3, $4, $5)",
                size,
                root,
                note,
                signer.name,
                signer.verifier.key_id,
            )
            return StoredCheckpoint(size, root, note)

    # ------------------------------------------------------------------------------------ append

    async def append(self, entries: Sequence[NewEntry]) -> Appended:
        """Add ``entries`` (in order, skipping event ids already present) and the nodes they complete."""
        async with self.conn.transaction():
            await self.conn.execute("SELECT pg_advisory_xact_lock($1)", _WRITER_LOCK)
            size = await self.size()
            await self._open_partition(size)
            ids = [e.event_id for e in entries]
            present = {
                r["event_id"]
                for r in await self.conn.fetch(
                    "SELECT event_id FROM ledger_event_ids WHERE event_id = ANY($1::uuid[])", ids
                )
            }
            fresh: list[NewEntry] = []
            for entry in entries:
                if entry.event_id not in present:
                    present.add(entry.event_id)
                    fresh.append(entry)
            if not fresh:
                return Appended(size, 0, size)
            leaves = [merkle.leaf_hash(e.canonical) for e in fresh]
            await self.conn.copy_records_to_table(
                "ledger_entries",
                columns=[
                    "idx",
                    "event_id",
                    "event_type",
                    "event_time",
                    "stream_seq",
                    "session_id",
                    "actor_sub",
                    "canonical",
                    "leaf_hash",
                    "pci",
                ],
                records=[
                    (
                        size + i,
                        e.event_id,
                        e.event_type,
                        e.event_time,
                        e.stream_seq,
                        e.session_id,
                        e.actor_sub,
                        e.canonical,
                        h,
                        list(e.pci),
                    )
                    for i, (e, h) in enumerate(zip(fresh, leaves, strict=True))
                ],
            )
            await self.conn.copy_records_to_table(
                "ledger_event_ids",
                columns=["event_id", "idx"],
                records=[(e.event_id, size + i) for i, e in enumerate(fresh)],
            )
            new_nodes = await self._completed_nodes(size, leaves)
            if new_nodes:
                await self.conn.copy_records_to_table(
                    "ledger_nodes", columns=["level", "idx", "hash"], records=new_nodes
                )
            return Appended(size, len(fresh), size + len(fresh))

    async def add_quarantined(self, refused: Sequence[Quarantined]) -> None:
        """Keep refused messages (in the caller's transaction, if any); a redelivered one is kept once."""
        await self.conn.executemany(
            "INSERT INTO ledger_quarantine"
            " (stream_seq, subject, msg_id, reason, sha256, size, payload_masked)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (stream_seq) WHERE stream_seq IS NOT NULL DO NOTHING",
            [
                (q.stream_seq, q.subject, q.msg_id, q.reason, q.sha256, q.size, q.payload_masked)
                for q in refused
            ],
        )

    # ------------------------------------------------------------------------------- retention

    async def partitions(self) -> list[Partition]:
        rows = await self.conn.fetch(
            "SELECT name, month, first_idx, end_idx, pruned_at FROM ledger_partitions ORDER BY month"
        )
        return [
            Partition(r["name"], r["month"], r["first_idx"], r["end_idx"], r["pruned_at"] is not None)
            for r in rows
        ]

    async def prune(self, months: Sequence[Partition], record: NewEntry) -> int:
        """Drop the payloads (``canonical``) of closed ``months``, keeping leaf hashes and nodes, and append
        ``record`` (the ``config.changed`` that says so) in the same transaction. Returns entries pruned."""
        pruned = 0
        async with self.conn.transaction():
            await self.conn.execute("SELECT pg_advisory_xact_lock($1)", _WRITER_LOCK)
            for month in months:
                row = await self.conn.fetchrow(
                    "SELECT end_idx FROM ledger_partitions WHERE name = $1 FOR UPDATE",
                    partition_name(month.month),
                )
                if row is None or row["end_idx"] is None:
                    raise LedgerLayoutError(f"{month.name} is not a closed month partition")
                table = partition_name(month.month)  # built from digits, never from the database
                status = await self.conn.execute(
                    f"UPDATE {table} SET canonical = NULL WHERE canonical IS NOT NULL"  # noqa: S608
                )
                pruned += int(status.split()[-1])
                await self.conn.execute(
                    "UPDATE ledger_partitions SET pruned_at = now() WHERE name = $1", month.name
                )
            await self.append([record])
        return pruned

    async def stream_position(self, stream: str) -> int:
        """The sequence through which ``stream`` is accounted for (0: nothing yet)."""
        value = await self.conn.fetchval(
            "SELECT through_seq FROM ledger_stream_state WHERE stream = $1", stream
        )
        return int(value or 0)

    async def advance_stream(self, stream: str, through_seq: int) -> None:
        """Move the position forward (never back), in the caller's transaction."""
        await self.conn.execute(
            "INSERT INTO ledger_stream_state (stream, through_seq) VALUES ($1, $2)"
            " ON CONFLICT (stream) DO UPDATE SET through_seq ="
            " greatest(ledger_stream_state.through_seq, excluded.through_seq), updated_at = now()",
            stream,
            through_seq,
        )

    async def _completed_nodes(self, size: int, leaves: list[bytes]) -> list[tuple[int, int, bytes]]:
        """Every perfect subtree that leaves ``[size, size + len(leaves))`` complete, level >= 1.

        At each level the only child not computed here is the left neighbour of the first new node: the
        frontier node at that level, which exists exactly when that bit of ``size`` is set.
        """
        end = size + len(leaves)
        frontier_keys = [(lvl, (size >> lvl) - 1) for lvl in range(size.bit_length()) if size >> lvl & 1]
        frontier = await self.nodes(frontier_keys) if frontier_keys else {}
        out: list[tuple[int, int, bytes]] = []
        level_nodes = leaves  # nodes of the current level with index >= first
        first = size
        level = 0
        while True:
            lo, hi = first >> 1, end >> (level + 1)  # parents completed at level + 1: [lo, hi)
            if lo >= hi:
                break
            parents: list[bytes] = []
            for j in range(lo, hi):
                left_i, right_i = 2 * j, 2 * j + 1
                left = level_nodes[left_i - first] if left_i >= first else frontier[(level, left_i)]
                right = level_nodes[right_i - first]
                parents.append(merkle.node_hash(left, right))
            level += 1
            out.extend((level, lo + k, h) for k, h in enumerate(parents))
            # one level up: the parents just made; an older left neighbour comes from the frontier
            level_nodes, first = parents, lo
        return out
