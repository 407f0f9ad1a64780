"""Real gateway traffic (psql) reaches the dev stack's signed ledger, which `pcigate verify` then accepts,
and one of its events is proved with `pcigate ledger proof` / `check-proof`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.e2e.test_cli import psql, run
from tests.gateway_support import GatewayEndpoint

pytestmark = pytest.mark.e2e


async def _ledger_covers(dsn: str, marker: str) -> tuple[str | None, bool]:
    """The id of the statement event carrying ``marker``, and whether its session's close is in the
    ledger and a signed checkpoint covers the whole ledger."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT event_id, session_id FROM ledger_entries WHERE event_type = 'command.executed'"
            " AND convert_from(canonical, 'UTF8') LIKE '%' || $1 || '%'",
            marker,
        )
        if row is None:
            return None, False
        closed = await conn.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE event_type = 'session.closed' AND session_id = $1",
            row["session_id"],
        )
        size = await conn.fetchval("SELECT coalesce(max(idx) + 1, 0) FROM ledger_entries")
        signed = await conn.fetchval("SELECT coalesce(max(size), 0) FROM ledger_checkpoints")
        return str(row["event_id"]), bool(closed and signed == size)
    finally:
        await conn.close()


async def test_gateway_traffic_lands_in_a_ledger_that_verifies(
    dev_stack: dict[str, Any], gateway: GatewayEndpoint, tmp_path: Path
) -> None:
    marker = f"e2e_{uuid.uuid4().hex[:12]}"
    session = [psql(), gateway.dsn(), "-XAt", "-c", f"SELECT '{marker}' AS marker", "-c", "SELECT 1"]
    result = await asyncio.to_thread(subprocess.run, session, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 60  # the service signs at least every ledger.checkpoint_interval (10 s)
    event_id, covered = None, False
    while time.monotonic() < deadline and not covered:
        event_id, covered = await _ledger_covers(dev_stack["ledger_dsn"], marker)
        if not covered:
            await asyncio.sleep(0.5)
    assert event_id and covered, "the session's events never reached a signed checkpoint"

    config = dev_stack["config"]
    # strict: every entry covered by a checkpoint signed with the config's key
    report = json.loads(run("verify", "--config", config, "--json").stdout)
    assert report["ok"] is True and report["damage"] is None and report["entries"] > 0, report

    bundle = tmp_path / "proof.json"
    bundle.write_text(run("ledger", "proof", event_id, "--config", config, "--purpose", "e2e test").stdout)
    assert json.loads(bundle.read_text())["event_id"] == event_id
    run("ledger", "check-proof", str(bundle), "--config", config)
