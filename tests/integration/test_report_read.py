"""An evidence pack's reading of the real ledger (evidence.api): the period's events folded into the
summary page by page, and the integrity evidence for them: the checkpoint chain from the one covering the
period's start to the one covering its end, checked consistency proofs, and the samples' inclusion proofs;
read again once the period is over, all of it is the same."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import psycopg

from evidence.api import LedgerReader, Recorder, ServiceActor, missing_10_2_2
from evidence.proofs import check_bundle
from pcigate.cli_ledger import _log_keys
from pcigate.config import load_config
from reports.read import Period, read_integrity, read_period
from reports.summary import Summary
from tests.gateway_support import GatewayEndpoint


async def test_a_period_is_read_into_the_summary_with_its_integrity(
    dev_stack: dict[str, Any], gateway: GatewayEndpoint
) -> None:
    sub = f"report-{uuid.uuid4().hex[:8]}@example.com"
    start = datetime.now(UTC) - timedelta(seconds=1)
    token = gateway.token(sub=sub, groups=("engineers",))
    await asyncio.to_thread(_traffic, gateway, token)
    config = load_config(dev_stack["config"])
    keys = [k.vkey for k in _log_keys(config, need_current=False)]
    actor = ServiceActor(
        sub="auditor", iss="local:test", host="db", database="ledger", log_origin=config.ledger.origin
    )
    conn = await asyncpg.connect(dev_stack["ledger_dsn"])
    try:
        reader = LedgerReader(conn, Recorder(actor), "evidence pack test", trusted_keys=keys)
        mine = await _until_in_ledger(reader, sub, start)
        summary = Summary(complete=lambda e: not missing_10_2_2(e))
        pages: list[int] = []
        period = Period(start, datetime.now(UTC))
        first, last = await read_period(reader, period, summary, pages.append)
        assert first is not None and last is not None and first <= mine <= last
        assert summary.by_type["session.opened"] >= 1 and summary.by_type["command.executed"] >= 2
        assert sub in summary.identities["human"] and sum(pages) == summary.events
        assert summary.completeness == 100.0, summary.incomplete
        deadline = time.monotonic() + 40
        while (cp := await reader.latest_checkpoint()) is None or cp.size <= last:
            assert time.monotonic() < deadline, "no checkpoint covered the period"
            await asyncio.sleep(0.5)
        integrity = await read_integrity(reader, first, last, summary.samples)
        assert integrity.verified, integrity.problems
        assert integrity.first is not None and integrity.last is not None and integrity.first.size > first
        assert integrity.last.size > last and integrity.chain[0] == integrity.first
        assert integrity.chain[-1] == integrity.last and len(integrity.links) == len(integrity.chain) - 1
        if integrity.first.size < integrity.last.size:
            assert integrity.consistency is not None
        sampled = {x.event_id for kept in summary.samples.values() for x in kept}
        assert {p.bundle.event_id for p in integrity.proven} == sampled and sampled
        assert all(check_bundle(p.bundle, keys).ok for p in integrity.proven)
        assert all(p.bundle.tree_size == integrity.last.size for p in integrity.proven)
        # the period is over: read again (the reads above appended ledger.read entries after it), the same
        again = Summary(complete=lambda e: not missing_10_2_2(e))
        assert await read_period(reader, period, again) == (first, last)
        assert await read_integrity(reader, first, last, again.samples) == integrity
        # scoped to another connection, the gateway's events drop out; the ledger's own stay
        other = Summary(complete=lambda e: not missing_10_2_2(e))
        await read_period(reader, Period(start, datetime.now(UTC), frozenset({"reporting"})), other)
        assert other.by_type["command.executed"] == 0 and other.by_type["ledger.read"] >= 1
    finally:
        await conn.close()


def _traffic(gateway: GatewayEndpoint, token: str) -> None:
    with psycopg.connect(gateway.dsn(token), autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT count(*) FROM customers")
        conn.execute("SELECT 1")


async def _until_in_ledger(reader: LedgerReader, sub: str, since: datetime) -> int:
    deadline = time.monotonic() + 30
    while True:
        page = await reader.events(since=since, actor_sub=sub, types=["session.closed"], limit=10)
        if page.records:
            return page.records[-1].index
        assert time.monotonic() < deadline, "the session's events did not reach the ledger"
        await asyncio.sleep(0.2)
