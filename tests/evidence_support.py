"""Shared pieces for evidence service tests: a private NATS server, a private ledger schema, events."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from nats.js import JetStreamContext

from evidence import merkle
from evidence.store import LedgerStore
from pcigate.devstack import binaries, procs
from pcigate.devstack.natsserver import NatsServer
from pcigate.devstack.ports import free_port
from schemas import new_event_id, utc_now
from tests.unit.test_schemas import examples


class PrivateNats:
    """A nats-server of the test's own, so stream sequence numbers are the test's to reason about."""

    def __init__(self, home: Path) -> None:
        self.server = NatsServer(binaries.nats_server_binary(), home, free_port(), free_port())
        self.url = self.server.url
        self.pid = self.server.start()

    def stop(self) -> None:
        procs.terminate(self.pid, self.server.marker)


@asynccontextmanager
async def private_schema(ledger_dsn: str) -> AsyncIterator[str]:
    """A DSN whose search_path is a fresh schema in the ledger database; dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ledger_dsn)
    await admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{ledger_dsn}?options=-csearch_path%3D{schema}"
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


def event(event_type: str = "command.executed", **changes: Any) -> dict[str, Any]:
    """A contract-valid event of ``event_type`` with a fresh id and time."""
    obj: dict[str, Any] = json.loads(json.dumps(examples()[event_type]))
    obj["id"] = new_event_id()
    obj["time"] = utc_now()
    obj.update(changes)
    return obj


async def publish(js: JetStreamContext, obj: dict[str, Any]) -> int:
    """Publish ``obj`` as the gateway does; returns its stream sequence number."""
    ack = await js.publish(
        f"pcigate.audit.{obj['type']}", json.dumps(obj).encode(), headers={"Nats-Msg-Id": obj["id"]}
    )
    return int(ack.seq)


async def wait_for(check: Callable[[], Awaitable[bool]], within: float = 30.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


@dataclass
class LedgerView:
    """What a test reads back from a ledger schema."""

    conn: asyncpg.Connection

    async def ids(self) -> list[str]:
        return [
            str(r["event_id"])
            for r in await self.conn.fetch("SELECT event_id FROM ledger_entries ORDER BY idx")
        ]

    async def types(self) -> list[str]:
        return [
            r["event_type"]
            for r in await self.conn.fetch("SELECT event_type FROM ledger_entries ORDER BY idx")
        ]

    async def events(self, event_type: str) -> list[dict[str, Any]]:
        rows = await self.conn.fetch(
            "SELECT canonical FROM ledger_entries WHERE event_type = $1 ORDER BY idx", event_type
        )
        return [json.loads(r["canonical"]) for r in rows]

    async def count(self, table: str = "ledger_entries") -> int:
        return int(await self.conn.fetchval(f"SELECT count(*) FROM {table}"))

    async def assert_tree_intact(self) -> None:
        """Every stored leaf and node equals the tree recomputed from the canonical bytes."""
        rows = await self.conn.fetch("SELECT idx, canonical, leaf_hash FROM ledger_entries ORDER BY idx")
        assert [r["idx"] for r in rows] == list(range(len(rows)))
        leaves = [merkle.leaf_hash(bytes(r["canonical"])) for r in rows]
        assert leaves == [bytes(r["leaf_hash"]) for r in rows]
        tree = merkle.MemoryTree(leaves)
        nodes = await self.conn.fetch("SELECT level, idx, hash FROM ledger_nodes")
        for n in nodes:
            assert tree.node(n["level"], n["idx"]) == bytes(n["hash"])
        store = LedgerStore(self.conn)
        for cp in await self.conn.fetch("SELECT size, root FROM ledger_checkpoints ORDER BY size"):
            assert tree.root(cp["size"]) == bytes(cp["root"]), cp["size"]
        assert await store.root(len(rows)) == tree.root(len(rows))
