"""Monthly partitions of the ledger, and pruning old payloads without breaking the tree (issue 4, point 8)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence import merkle
from evidence.checkpoint import NoteSigner
from evidence.entries import to_entry
from evidence.store import LedgerStore, NewEntry
from evidence.verify import verify_ledger
from pcigate.config import load_config
from tests.evidence_support import event, private_schema

pytestmark = pytest.mark.integration

ORIGIN = "test.pcigate/ledger"


class Calendar:
    """The month the store thinks it is."""

    def __init__(self, month: date) -> None:
        self.month = month

    def __call__(self) -> date:
        return self.month


def _entries(n: int) -> list[NewEntry]:
    out = []
    for _ in range(n):
        obj = event()
        item = to_entry(json.dumps(obj).encode(), stream_seq=None, subject=f"pcigate.audit.{obj['type']}")
        assert isinstance(item, NewEntry)
        out.append(item)
    return out


@pytest.fixture
async def dsn(dev_stack: dict[str, Any]) -> AsyncIterator[str]:
    async with private_schema(dev_stack["ledger_dsn"]) as d:
        yield d


async def _bounds(conn: asyncpg.Connection) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'ledger_entries'::regclass"
    )
    return {r["relname"]: r["bound"] for r in rows}


async def test_each_month_gets_its_partition_and_the_tree_spans_them(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        calendar = Calendar(date(2026, 1, 1))
        store = LedgerStore(conn, month=calendar)
        await store.create_schema()
        batches = _entries(10), _entries(15), _entries(3)
        await store.append(batches[0])
        calendar.month = date(2026, 2, 1)
        await store.append(batches[1])
        calendar.month = date(2026, 4, 1)
        await store.append(batches[2])
        calendar.month = date(2026, 3, 1)  # the clock stepped back: keep appending to April
        await store.append(_entries(1))
        assert await _bounds(conn) == {
            "ledger_entries_p202601": "FOR VALUES FROM ('0') TO ('10')",
            "ledger_entries_p202602": "FOR VALUES FROM ('10') TO ('25')",
            "ledger_entries_p202604": "FOR VALUES FROM ('25') TO (MAXVALUE)",
        }
        # an event id is unique across months: January's first event again in April is skipped
        done = await store.append([batches[0][0]])
        assert done.added == 0 and done.size == 29
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO ledger_event_ids (event_id, idx) VALUES ($1, 99)", batches[0][0].event_id
            )
        rows = await conn.fetch("SELECT canonical FROM ledger_entries ORDER BY idx")
        tree = merkle.MemoryTree([merkle.leaf_hash(bytes(r["canonical"])) for r in rows])
        assert await store.root(29) == tree.root(29)
        assert await store.root(12) == tree.root(12)
    finally:
        await conn.close()


def _prune(config: str, dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pcigate", "ledger", "prune", "--config", config, "--ledger-dsn", dsn, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_pruning_old_months_keeps_a_ledger_that_verifies(dsn: str, dev_stack: dict[str, Any]) -> None:
    config_path = dev_stack["config"]
    assert load_config(config_path).retention.audit.days == 400  # what the refusal below relies on
    signer = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    conn = await asyncpg.connect(dsn)
    try:
        calendar = Calendar(date(2025, 1, 1))
        store = LedgerStore(conn, month=calendar)
        await store.create_schema()
        for month, n in ((date(2025, 1, 1), 12), (date(2025, 2, 1), 7), (date(2026, 11, 1), 5)):
            calendar.month = month
            await store.append(_entries(n))
        await store.checkpoint(signer, ORIGIN)

        # younger than retention.audit (400 days in the dev config): refused, nothing touched
        refused = _prune(config_path, dsn, "--before", "2026-11")
        assert refused.returncode == 2 and "retention.audit" in refused.stderr, refused.stderr
        assert await conn.fetchval("SELECT count(*) FROM ledger_entries WHERE canonical IS NULL") == 0

        dry = _prune(config_path, dsn, "--before", "2025-03", "--dry-run")
        assert dry.returncode == 0 and "2025-01" in dry.stdout and "2025-02" in dry.stdout, dry.stderr
        assert await conn.fetchval("SELECT count(*) FROM ledger_entries WHERE canonical IS NULL") == 0

        done = _prune(config_path, dsn, "--before", "2025-03")
        assert done.returncode == 0, done.stderr
        assert "pruned the payloads of 19 entries" in done.stdout
        pruned = [
            r["idx"] for r in await conn.fetch("SELECT idx FROM ledger_entries WHERE canonical IS NULL")
        ]
        assert sorted(pruned) == list(range(19))
        assert _prune(config_path, dsn, "--before", "2025-03").stdout.startswith("nothing to prune")

        # recorded as config.changed, in the ledger itself
        row = await conn.fetchrow(
            "SELECT canonical FROM ledger_entries WHERE event_type = 'config.changed'"
            " ORDER BY idx DESC LIMIT 1"
        )
        change = json.loads(row["canonical"])
        assert change["data"]["changed_keys"] == ["ledger_entries.canonical"]
        assert "2025-01..2025-02" in change["outcome"]["message"]

        await store.checkpoint(signer, ORIGIN)
        report = await verify_ledger(conn, [signer.verifier], origin=ORIGIN)
        assert report.ok and report.pruned == 19, report.as_json()
    finally:
        await conn.close()
