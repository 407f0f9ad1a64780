"""The offline ledger verifier behind ``pcigate verify``: every entry, the tree and the signed checkpoints.

It runs on an auditor's copy of the ledger database and trusts nothing in it but what a trusted key
signed: public keys come from the caller, never from the database (anyone who can write the database
could add one). It only reads, in one ``READ ONLY REPEATABLE READ`` transaction, so it sees one
snapshot even while the evidence service keeps appending.

One streamed pass in index order, memory O(log n) for the tree (the right edge of perfect subtree
roots, as the store keeps it) plus one batch of rows:

- each row: its index follows the previous one (a hole is **missing**), SHA-256(0x00 || canonical) is
  its ``leaf_hash`` and the top-level ``id`` of the canonical JSON is its ``event_id`` column (else
  **changed**); a pruned row (``canonical`` NULL) is trusted by its ``leaf_hash`` and counted;
- each perfect subtree the row completes: the stored ``ledger_nodes`` row must exist and equal the
  recomputed hash (else **changed** or **missing** at the start of its range; a level-1 mismatch that
  two rows trading places explains becomes **reordered**, found by a second pass only then);
- each checkpoint, in size order: signed by a trusted key (else **bad signature**), one origin, its
  row's columns equal its note, and its root equal to the recomputed root of that size (else
  **inconsistent checkpoints**); one larger than the ledger means rows were deleted (**truncated**);
- after the last row: no stored node reaches past the end (**truncated**), and every entry is covered
  by a signed checkpoint (else **extra**, or *pending* when the caller allows it).

The report names the first damage by index (ties: the most precise kind). Details carry indices, kinds
and hashes only, never a payload: canonical events may hold sensitive data.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import asyncpg

from evidence import merkle
from evidence.checkpoint import Checkpoint, NoteError, NoteVerifier, open_note

__all__ = [
    "KINDS",
    "Damage",
    "DamageKind",
    "Progress",
    "VerifyReport",
    "event_id_of",
    "verify_ledger",
]

DamageKind = Literal[
    "changed", "missing", "reordered", "extra", "truncated", "bad signature", "inconsistent checkpoints"
]
KINDS: Final[tuple[DamageKind, ...]] = (
    "changed",
    "missing",
    "reordered",
    "extra",
    "truncated",
    "bad signature",
    "inconsistent checkpoints",
)

Progress = Callable[[int, int], None]
"""Called after each batch with (entries checked, entries expected)."""

BATCH: Final = 10_000
_CHECKPOINT_BATCH: Final = 1_000
_LEVEL_BITS: Final = 6  # node keys are (idx << 6) | level; a level is below 64

# At one index, the more precise finding wins: a row's own fault, then a node's, then the checkpoints'.
_RANK: Final[dict[str, int]] = {
    "changed": 0,
    "reordered": 0,
    "missing": 0,
    "node": 1,
    "truncated": 2,
    "inconsistent checkpoints": 3,
    "bad signature": 4,
    "extra": 5,
}


@dataclass(frozen=True, slots=True)
class Damage:
    """The first thing wrong: the ledger index it points to, its kind, and a payload-free explanation."""

    index: int
    kind: DamageKind
    detail: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    entries: int  # rows checked, in index order
    checkpoints: int  # checkpoints whose signature and root both verified
    root: bytes  # the recomputed root over ``entries``
    pruned: int  # rows whose payload retention removed (trusted by their leaf hash)
    pending: int  # rows beyond the last signed checkpoint, allowed by the caller
    seconds: float
    damage: Damage | None

    @property
    def ok(self) -> bool:
        return self.damage is None

    def as_json(self) -> dict[str, object]:
        d = self.damage
        return {
            "ok": self.ok,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "root": self.root.hex(),
            "pruned": self.pruned,
            "pending": self.pending,
            "seconds": round(self.seconds, 3),
            "damage": None if d is None else {"index": d.index, "kind": d.kind, "detail": d.detail},
        }


# ------------------------------------------------------------------------------------------ event id

_ID_KEY: Final = b'"id":'
_NOT_SKELETON: Final = bytes(b for b in range(256) if b not in b'"{}[]\\')  # string and nesting bounds


def event_id_of(canonical: bytes) -> str | None:
    """The top-level ``id`` string of a JSON object, or None: for valid JSON, what ``json.loads`` gives.

    A fast path for RFC 8785 text, since json.loads costs several times a row's hash. An ``"id":``
    whose quote no backslash escapes is always a member name, and it is top-level when the brackets
    outside strings before it leave depth 1. Keys are sorted, so nested ``id`` members (``data`` <
    ``id``) come first; the search runs from the end, as json.loads keeps the last of duplicate names.
    Whatever the fast path cannot settle goes to json.loads: a backslash before the member or after
    it (an escaped name could be a later ``id``), a bracket inside a string, whitespace around it, or
    no top-level ``"id":`` at all.
    """
    if canonical[:1] != b"{" or canonical[-1:] != b"}":
        return _event_id_slow(canonical)
    end = len(canonical)
    while True:
        at = canonical.rfind(_ID_KEY, 0, end)
        if at < 0:
            return _event_id_slow(canonical)
        skeleton = canonical[:at].translate(None, _NOT_SKELETON).replace(b'""', b"")
        if b'"' in skeleton or b"\\" in skeleton:  # an escape, or a bracket inside a string
            return _event_id_slow(canonical)
        if skeleton.count(b"{") + skeleton.count(b"[") - skeleton.count(b"}") - skeleton.count(b"]") == 1:
            start = at + len(_ID_KEY)
            close = canonical.find(b'"', start + 1)
            if canonical[start : start + 1] != b'"' or close < 0 or _maybe_later_id(canonical, start):
                return _event_id_slow(canonical)
            try:
                return canonical[start + 1 : close].decode("utf-8")
            except UnicodeDecodeError:
                return None
        end = at


def _maybe_later_id(text: bytes, start: int) -> bool:
    """Could a member after ``start`` be an ``id`` written otherwise than ``"id":`` (escaped, spaced)?"""
    if text.find(b"\\", start) >= 0:
        return True
    at = text.find(b'"id"', start)
    while at >= 0:
        if text[at + 4 : at + 5] in (b" ", b"\t", b"\n", b"\r"):
            return True
        at = text.find(b'"id"', at + 4)
    return False


def _event_id_slow(canonical: bytes) -> str | None:
    try:
        obj = json.loads(canonical)
    except (ValueError, RecursionError):
        return None
    value = obj.get("id") if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None


# ------------------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True, slots=True)
class _Note:
    size: int  # where it sits in size order: the row's column, or an external note's (unverified) body
    note: str | bytes
    row_root: bytes | None  # ledger_checkpoints.root; None for an external note
    label: str


def _claimed_size(note: str | bytes) -> int:
    """An external note's size before it is trusted: only to merge it into size order."""
    text = note.decode("utf-8", "replace") if isinstance(note, bytes) else note
    cut = text.rfind("\n\n")
    try:
        return Checkpoint.parse(text[: cut + 1]).size if cut >= 0 else 0
    except NoteError:
        return 0


async def _checkpoint_rows(conn: asyncpg.Connection, external: Sequence[_Note]) -> AsyncIterator[_Note]:
    """ledger_checkpoints (streamed) merged with the external notes, by size."""
    cursor = await conn.cursor("SELECT size, root, note FROM ledger_checkpoints ORDER BY size")
    pending = sorted(external, key=lambda n: n.size)
    i = 0
    while True:
        rows = await cursor.fetch(_CHECKPOINT_BATCH)
        for size, root, note in rows:
            while i < len(pending) and pending[i].size <= size:
                yield pending[i]
                i += 1
            yield _Note(size, note, bytes(root), f"the checkpoint of size {size} in ledger_checkpoints")
        if len(rows) < _CHECKPOINT_BATCH:
            break
    for note_ in pending[i:]:
        yield note_


@dataclass(frozen=True, slots=True)
class _Signed:
    size: int
    root: bytes
    label: str


# ----------------------------------------------------------------------------------------- the run


@dataclass(slots=True)
class _Found:
    index: int
    kind: DamageKind
    detail: str
    rank: int
    pair: tuple[int, bytes, bytes, bytes] | None = None  # a level-1 mismatch: (pair, left, right, stored)


class _Run:
    """The state of one verification: the tree's right edge, counters and the best finding so far."""

    def __init__(self, trusted: Sequence[NoteVerifier], origin: str | None, allow_pending: bool) -> None:
        self.trusted = list(trusted)
        self.origin = origin
        self.allow_pending = allow_pending
        self.size = 0  # rows folded into the tree
        self.frontier: list[bytes] = []  # perfect subtree roots of the right edge, largest first
        self.pruned = 0
        self.verified = 0
        self.covered = 0  # the largest size a trusted checkpoint vouches for
        self.last_good = 0  # the size of the last checkpoint whose root matched
        self.hole = False
        self.tree_damaged = False  # a node or checkpoint mismatch: later roots cannot match
        self.last_node_damage = -1  # range start of the last node mismatch (its ancestors follow from it)
        self.found: _Found | None = None

    # -- findings

    def report(
        self,
        index: int,
        kind: DamageKind,
        detail: str,
        *,
        rank: str | None = None,
        pair: tuple[int, bytes, bytes, bytes] | None = None,
    ) -> None:
        r = _RANK[rank or kind]
        if self.found is None or (index, r) < (self.found.index, self.found.rank):
            self.found = _Found(index, kind, detail, r, pair)

    # -- rows

    def fold(self, rows: Sequence[asyncpg.Record], start: int, stop: int, nodes: dict[int, bytes]) -> int:
        """Check rows[start:stop] and add them to the tree; returns where it stopped (early at a hole)."""
        sha = hashlib.sha256
        frontier = self.frontier
        n = self.size
        for k in range(start, stop):
            idx, event_id, canonical, leaf = rows[k]
            if idx != n:
                self.size = n
                self.hole = True
                self.report(n, "missing", f"entry {n} is not in the ledger (the next one is {idx})")
                return k
            if canonical is None:
                self.pruned += 1
            elif sha(b"\x00" + canonical).digest() != leaf:
                self.report(
                    n,
                    "changed",
                    f"entry {n}: SHA-256(0x00 || canonical) is {merkle.leaf_hash(canonical).hex()}, "
                    f"its stored leaf_hash is {bytes(leaf).hex()}",
                )
            elif event_id_of(canonical) != event_id:
                self.report(
                    n, "changed", f"entry {n}: the payload's top-level id is not its event_id ({event_id})"
                )
            h = leaf
            m = n
            level = 0
            while m & 1:
                m >>= 1
                level += 1
                left = frontier.pop()
                right = h
                h = sha(b"\x01" + left + right).digest()
                stored = nodes.get((m << _LEVEL_BITS) | level)
                if stored != h:
                    self.node_damage(level, m, stored, left, right)
            frontier.append(h)
            n += 1
        self.size = n
        return stop

    def node_damage(self, level: int, index: int, stored: bytes | None, left: bytes, right: bytes) -> None:
        start, end = index << level, (index + 1) << level
        where = f"tree node (level {level}, index {index}) over entries [{start}, {end})"
        if stored is None:
            self.report(start, "missing", f"the {where} is not in ledger_nodes", rank="node")
            return
        if self.last_node_damage >= start:  # an ancestor of a node already found wrong
            return
        self.last_node_damage = start
        self.tree_damaged = True
        pair = (index, left, right, bytes(stored)) if level == 1 else None
        self.report(
            start,
            "changed",
            f"the stored {where} is {bytes(stored).hex()}, not the hash of those entries' leaf hashes: "
            "an entry or the node was altered",
            rank="node",
            pair=pair,
        )

    def root(self) -> bytes:
        if not self.frontier:
            return merkle.EMPTY_ROOT
        r = self.frontier[-1]
        for h in reversed(self.frontier[:-1]):
            r = merkle.node_hash(h, r)
        return r

    # -- checkpoints

    def due(self, ahead: deque[_Note]) -> None:
        """Check every note whose size the tree has reached, in size order (bad ones name the last good
        size, so they are opened only now)."""
        while ahead and ahead[0].size <= self.size:
            signed = self.open(ahead.popleft())
            if signed is not None and signed.size == self.size:
                self.compare(signed)

    def open(self, cp: _Note) -> _Signed | None:
        """A note's signature, origin and columns; None (and a finding) if it cannot be trusted."""
        try:
            opened = open_note(cp.note, self.trusted)
        except NoteError as exc:
            self.report(
                self.last_good,
                "bad signature",
                f"{cp.label} is not signed by a trusted key: {exc}",
            )
            return None
        try:
            body = Checkpoint.parse(opened.text)
        except NoteError as exc:
            self.report(self.last_good, "inconsistent checkpoints", f"{cp.label} is not a checkpoint: {exc}")
            return None
        if self.origin is None:
            self.origin = body.origin
        elif body.origin != self.origin:
            self.report(
                self.last_good,
                "inconsistent checkpoints",
                f"{cp.label} is signed for log {body.origin!r}, not {self.origin!r}",
            )
            return None
        if body.size != cp.size or (cp.row_root is not None and body.root != cp.row_root):
            self.report(
                self.last_good,
                "inconsistent checkpoints",
                f"{cp.label}: its size or root columns differ from its signed note (size {body.size}, "
                f"root {body.root.hex()})",
            )
            return None
        self.covered = max(self.covered, body.size)
        return _Signed(body.size, body.root, cp.label)

    def compare(self, cp: _Signed) -> None:
        """At ``self.size == cp.size``: the recomputed root must be the signed one."""
        root = self.root()
        if root == cp.root:
            self.verified += 1
            self.last_good = cp.size
            return
        if not self.tree_damaged:
            self.report(
                self.last_good,
                "inconsistent checkpoints",
                f"{cp.label} signs root {cp.root.hex()}, but the ledger's entries "
                f"[0, {cp.size}) hash to {root.hex()}: entries in [{self.last_good}, {cp.size}) differ "
                "from what was signed",
            )
        self.tree_damaged = True

    def past_the_end(self, cp: _Note) -> None:
        """A note larger than the ledger: if a trusted key signed it, rows were deleted from the end."""
        signed = self.open(cp)
        if signed is not None and not self.hole:
            self.report(
                self.size,
                "truncated",
                f"{cp.label} is signed, but the ledger holds {self.size} entries: entries "
                f"[{self.size}, {signed.size}) were deleted",
            )


# ---------------------------------------------------------------------------------------------- run


_ENTRIES_SQL: Final = "SELECT idx, event_id::text, canonical, leaf_hash FROM ledger_entries ORDER BY idx"
# Per level one row: the nodes [lo, hi) as one string of hashes, so a batch costs a handful of values,
# not one record per node. LATERAL ... OFFSET 0 keeps it to one index range scan per level.
_NODES_SQL: Final = (
    "SELECT r.level, r.lo, count(n.idx), coalesce(string_agg(n.hash, ''::bytea ORDER BY n.idx), '')"
    " FROM unnest($1::smallint[], $2::bigint[], $3::bigint[]) AS r(level, lo, hi)"
    " LEFT JOIN LATERAL (SELECT m.idx, m.hash FROM ledger_nodes m"
    " WHERE m.level = r.level AND m.idx >= r.lo AND m.idx < r.hi OFFSET 0) AS n ON true"
    " GROUP BY r.level, r.lo"
)
_NODE_ROWS_SQL: Final = (  # the slow way, for a batch where some node is missing
    "SELECT (idx << 6) | level, hash FROM ledger_nodes WHERE level = $1 AND idx >= $2 AND idx < $3"
)
_NODE_ENDS_SQL: Final = (
    "SELECT l, (SELECT max(idx) FROM ledger_nodes WHERE level = l) FROM generate_series(1, 62) AS l"
)


async def _nodes_completed(conn: asyncpg.Connection, start: int, end: int) -> dict[int, bytes]:
    """The stored nodes that leaves [start, end) complete: at level l, indices [start >> l, end >> l),
    keyed ``(idx << 6) | level``."""
    levels, los, his = [], [], []
    level = 1
    while end >> level:
        lo, hi = start >> level, end >> level
        if lo < hi:
            levels.append(level)
            los.append(lo)
            his.append(hi)
        level += 1
    if not levels:
        return {}
    found: dict[int, bytes] = {}
    size = merkle.HASH_SIZE
    ends = dict(zip(levels, his, strict=True))
    for level, lo, count, blob in await conn.fetch(_NODES_SQL, levels, los, his):
        hi = ends[level]
        if count == hi - lo and len(blob) == count * size:
            found.update(
                ((lo + k) << _LEVEL_BITS | level, blob[k * size : (k + 1) * size]) for k in range(count)
            )
        else:  # a node is missing (or not 32 bytes): key each one by its own index
            found.update((key, bytes(h)) for key, h in await conn.fetch(_NODE_ROWS_SQL, level, lo, hi))
    return found


async def verify_ledger(
    conn: asyncpg.Connection,
    trusted: Sequence[NoteVerifier],
    *,
    origin: str | None = None,
    external: Sequence[str | bytes] = (),
    allow_pending: bool = False,
    progress: Progress | None = None,
    batch: int = BATCH,
) -> VerifyReport:
    """Verify the ledger ``conn`` reads, against ``trusted`` keys only.

    ``origin``: the log's name (default: the first trusted checkpoint's). ``external``: signed
    checkpoint notes kept outside the database; each must verify and match the ledger's tree.
    ``allow_pending``: entries after the last signed checkpoint are counted as pending, not damage.
    Database errors propagate (asyncpg / OSError); damage is in the report.
    """
    if not trusted:
        raise ValueError("no trusted key: nothing could vouch for the ledger")
    began = time.monotonic()
    run = _Run(trusted, origin, allow_pending)
    notes = []
    for i, note in enumerate(external):
        size = _claimed_size(note)
        notes.append(_Note(size, note, None, f"external checkpoint #{i + 1} (size {size})"))
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        total = int(await conn.fetchval("SELECT coalesce(max(idx) + 1, 0) FROM ledger_entries"))
        checkpoints = _Ahead(_checkpoint_rows(conn, notes))
        await checkpoints.read(0)
        run.due(checkpoints.queue)
        cursor = await conn.cursor(_ENTRIES_SQL)
        rows = await cursor.fetch(batch)
        while rows:
            end = run.size + len(rows)
            await checkpoints.read(end)
            nodes = await _nodes_completed(conn, run.size, end)
            # the next batch travels while this one is hashed; nothing else may use conn meanwhile
            following = asyncio.ensure_future(cursor.fetch(batch)) if len(rows) == batch else None
            await asyncio.sleep(0)
            k = 0
            queue = checkpoints.queue
            while k < len(rows) and not run.hole:
                run.due(queue)  # now every queued note is beyond the tree's size
                stop = len(rows) if not queue else min(len(rows), k + queue[0].size - run.size)
                k = run.fold(rows, k, stop, nodes)
            if not run.hole:
                run.due(queue)
            rows = [] if following is None else await following
            if progress is not None:
                progress(run.size, total)
            if run.hole:
                break
        await checkpoints.read(None)
        for cp in checkpoints.queue:
            run.past_the_end(cp)
        if not run.hole:
            await _check_node_ends(conn, run)
            _check_coverage(run)
        if run.found is not None and run.found.pair is not None:
            await _diagnose_pair(conn, run, run.found, batch)
    seconds = time.monotonic() - began
    found = run.found
    damage = None if found is None else Damage(found.index, found.kind, found.detail)
    pending = max(0, run.size - run.covered) if allow_pending and not run.hole else 0
    return VerifyReport(run.size, run.verified, run.root(), run.pruned, pending, seconds, damage)


class _Ahead:
    """Checkpoint notes read ahead of the tree, so that hashing a batch needs no query."""

    def __init__(self, source: AsyncIterator[_Note]) -> None:
        self.source = source
        self.queue: deque[_Note] = deque()
        self.done = False

    async def read(self, upto: int | None) -> None:
        """Queue every note up to size ``upto`` (all with None), and one beyond."""
        while not self.done and (upto is None or not self.queue or self.queue[-1].size <= upto):
            try:
                self.queue.append(await anext(self.source))
            except StopAsyncIteration:
                self.done = True


async def _check_node_ends(conn: asyncpg.Connection, run: _Run) -> None:
    """A stored node past the last row: rows at the end were deleted (even with no checkpoint there)."""
    for level, last in await conn.fetch(_NODE_ENDS_SQL):
        if last is not None and (last + 1) << level > run.size:
            run.report(
                run.size,
                "truncated",
                f"ledger_nodes holds tree node (level {level}, index {last}) over entries up to "
                f"{(last + 1) << level}, but the ledger holds {run.size} entries: entries were deleted from "
                "its end",
            )
            return


def _check_coverage(run: _Run) -> None:
    if run.covered >= run.size or run.allow_pending:
        return
    run.report(
        run.covered,
        "extra",
        f"entries [{run.covered}, {run.size}) are not covered by any signed checkpoint; the evidence "
        "service signs one every ledger.checkpoint_interval, so wait and run again, or pass "
        "--allow-pending to count them as pending",
    )


async def _diagnose_pair(conn: asyncpg.Connection, run: _Run, found: _Found, batch: int) -> None:
    """Is the first level-1 mismatch two rows that traded places? Look for the leaf that belongs there.

    The stored node (1, p) is H(leaf 2p, leaf 2p+1) as appended. If H(x, right) or H(left, x) equals it
    for the leaf x now at index j, the row that belongs at 2p (or 2p+1) sits at j. One more pass over the
    leaf hashes, only on a damaged ledger.
    """
    assert found.pair is not None
    p, left, right, stored = found.pair
    node_hash = merkle.node_hash
    if node_hash(right, left) == stored:
        run.found = _Found(
            2 * p, "reordered", f"entries {2 * p} and {2 * p + 1} are in each other's places", 0
        )
        return
    cursor = await conn.cursor("SELECT idx, leaf_hash FROM ledger_entries ORDER BY idx")
    while rows := await cursor.fetch(batch):
        for j, x in rows:
            for here in (2 * p, 2 * p + 1):
                if j == here:
                    continue
                guess = node_hash(x, right) if here == 2 * p else node_hash(left, x)
                if guess == stored:
                    run.found = _Found(
                        min(here, j),
                        "reordered",
                        f"entries {min(here, j)} and {max(here, j)} are in each other's places (the stored "
                        f"tree node (level 1, index {p}) commits to the entry now at {j})",
                        0,
                    )
                    return
        if len(rows) < batch:
            return
