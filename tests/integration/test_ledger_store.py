"""evidence.store against the dev stack's real PostgreSQL ledger database (a private schema per test)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence import merkle
from evidence.checkpoint import Checkpoint, NoteSigner
from evidence.entries import to_entry
from evidence.store import LedgerInconsistentError, LedgerStore, NewEntry, Quarantined
from schemas import new_event_id
from tests.evidence_support import private_schema

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(dev_stack: dict[str, Any]) -> AsyncIterator[LedgerStore]:
    async with private_schema(dev_stack["ledger_dsn"]) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            ledger = LedgerStore(conn)
            await ledger.create_schema()
            yield ledger
        finally:
            await conn.close()


def _entry(n: int) -> NewEntry:
    event = {"id": new_event_id(), "type": "command.executed", "n": n}
    return NewEntry(
        event_id=uuid.UUID(str(event["id"])),
        event_type="command.executed",
        event_time=datetime.now(UTC),
        canonical=rfc8785.dumps(event),
        pci=["10.2.1", "10.2.2"],
        stream_seq=n + 1,
    )


async def test_batches_of_any_size_build_the_rfc9162_tree(store: LedgerStore) -> None:
    entries = [_entry(i) for i in range(300)]
    cuts = [0, 1, 2, 3, 7, 8, 9, 64, 65, 100, 127, 128, 129, 255, 299, 300]
    for a, b in itertools.pairwise(cuts):
        done = await store.append(entries[a:b])
        assert (done.first_idx, done.added, done.size) == (a, b - a, b)
    tree = merkle.MemoryTree([merkle.leaf_hash(e.canonical) for e in entries])
    # every stored node is the in-memory tree's node, and nothing else is stored
    rows = await store.conn.fetch("SELECT level, idx, hash FROM ledger_nodes")
    levels = range(1, len(tree.levels))
    expected = {(lvl, i): tree.node(lvl, i) for lvl in levels for i in range(len(tree.levels[lvl]))}
    assert {(r["level"], r["idx"]): bytes(r["hash"]) for r in rows} == expected
    for size in (1, 2, 5, 128, 129, 300):
        assert await store.root(size) == tree.root(size)
    for index, size in ((0, 1), (0, 300), (129, 130), (299, 300), (77, 200)):
        proof = await store.inclusion_proof(index, size)
        merkle.verify_inclusion(tree.node(0, index), index, size, proof, tree.root(size))
    for size1, size2 in ((1, 300), (128, 300), (129, 130), (200, 200), (5, 7)):
        proof = await store.consistency_proof(size1, size2)
        merkle.verify_consistency(size1, size2, proof, tree.root(size1), tree.root(size2))


async def test_a_redelivered_event_is_not_appended_twice(store: LedgerStore) -> None:
    entries = [_entry(i) for i in range(5)]
    await store.append(entries[:3])
    done = await store.append([entries[1], entries[3], entries[3], entries[4]])
    assert (done.first_idx, done.added, done.size) == (3, 2, 5)
    assert await store.append(entries) == type(done)(5, 0, 5)
    ids = [r["event_id"] for r in await store.conn.fetch("SELECT event_id FROM ledger_entries ORDER BY idx")]
    assert ids == [e.event_id for e in entries]


async def test_a_failed_batch_leaves_nothing_behind(store: LedgerStore) -> None:
    await store.append([_entry(0)])
    bad = _entry(1)
    bad = NewEntry(bad.event_id, bad.event_type, bad.event_time, bad.canonical, ["10.2.1"], stream_seq=None)
    await store.conn.execute("ALTER TABLE ledger_nodes ADD CONSTRAINT no_level_one CHECK (level > 1)")
    with pytest.raises(asyncpg.CheckViolationError):
        await store.append([bad])  # its entry goes in, the node it completes cannot: all of it rolls back
    await store.conn.execute("ALTER TABLE ledger_nodes DROP CONSTRAINT no_level_one")
    assert await store.size() == 1
    assert (await store.append([bad])).size == 2


async def test_concurrent_writers_take_turns(store: LedgerStore, dev_stack: dict[str, Any]) -> None:
    schema = await store.conn.fetchval("SELECT current_schema()")
    other = await asyncpg.connect(dev_stack["ledger_dsn"], server_settings={"search_path": schema})
    try:
        second = LedgerStore(other)
        a = [_entry(i) for i in range(50)]
        b = [_entry(i) for i in range(50, 100)]

        async def write(ledger: LedgerStore, entries: list[NewEntry]) -> None:
            for i in range(0, len(entries), 5):
                await ledger.append(entries[i : i + 5])

        await asyncio.gather(write(store, a), write(second, b))
    finally:
        await other.close()
    rows = await store.conn.fetch("SELECT canonical FROM ledger_entries ORDER BY idx")
    assert len(rows) == 100
    tree = merkle.MemoryTree([merkle.leaf_hash(bytes(r["canonical"])) for r in rows])
    assert await store.root(100) == tree.root()
    assert await store.conn.fetchval("SELECT count(*) FROM ledger_nodes") == sum(
        len(level) for level in tree.levels[1:]
    )


async def test_a_missing_node_is_reported_not_papered_over(store: LedgerStore) -> None:
    await store.append([_entry(i) for i in range(8)])
    await store.conn.execute("DELETE FROM ledger_nodes WHERE level = 2 AND idx = 1")
    with pytest.raises(LookupError, match=r"lacks tree nodes \[\(2, 1\)\]"):
        await store.inclusion_proof(0, 8)


async def test_refused_messages_are_kept_without_card_numbers(store: LedgerStore) -> None:
    payload = b'{"type": "auth.failed", "card": "4111111111111111"}'
    refused = to_entry(payload, stream_seq=9, subject="pcigate.audit.auth.failed", msg_id=None)
    assert isinstance(refused, Quarantined)
    await store.add_quarantined([refused])
    row = await store.conn.fetchrow("SELECT * FROM ledger_quarantine")
    assert row is not None
    assert (row["stream_seq"], row["subject"], row["size"]) == (9, "pcigate.audit.auth.failed", len(payload))
    assert row["reason"].startswith("invalid event:")
    assert b"4111111111111111" not in bytes(row["payload_masked"])


async def test_checkpoints_extend_each_other_and_a_forked_tree_is_never_signed(store: LedgerStore) -> None:
    signer = NoteSigner("pcigate.test/ledger", Ed25519PrivateKey.generate())
    entries = [_entry(i) for i in range(40)]
    await store.append(entries[:13])
    first = await store.checkpoint(signer, "pcigate.test/ledger")
    assert first.size == 13
    assert await store.checkpoint(signer, "pcigate.test/ledger") == first  # nothing new: nothing signed
    await store.append(entries[13:])
    second = await store.checkpoint(signer, "pcigate.test/ledger")
    opened = Checkpoint.open(second.note, [signer.verifier], origin="pcigate.test/ledger")
    assert (opened.size, opened.root) == (40, second.root)
    tree = merkle.MemoryTree([merkle.leaf_hash(e.canonical) for e in entries])
    assert second.root == tree.root() and first.root == tree.root(13)
    # rewrite history below the last checkpoint (an entry and the nodes above it), then add one more entry
    forged = _entry(99)
    await store.conn.execute(
        "UPDATE ledger_entries SET canonical = $1, leaf_hash = $2 WHERE idx = 3",
        forged.canonical,
        merkle.leaf_hash(forged.canonical),
    )
    await store.conn.execute("DELETE FROM ledger_nodes")
    leaves = [
        bytes(r["leaf_hash"])
        for r in await store.conn.fetch("SELECT leaf_hash FROM ledger_entries ORDER BY idx")
    ]
    fake = merkle.MemoryTree(leaves)
    await store.conn.executemany(
        "INSERT INTO ledger_nodes (level, idx, hash) VALUES ($1, $2, $3)",
        [(lvl, i, h) for lvl in range(1, len(fake.levels)) for i, h in enumerate(fake.levels[lvl])],
    )
    await store.append([_entry(100), _entry(101)])
    with pytest.raises(LedgerInconsistentError, match="does not extend signed checkpoint 40"):
        await store.checkpoint(signer, "pcigate.test/ledger")
    assert (await store.latest_checkpoint()) == second
