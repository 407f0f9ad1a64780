"""asyncpg, pgbench (every query mode) and pg_dump through the gateway."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import asyncpg
import pytest

from pcigate.devstack import binaries
from tests.gateway_support import GatewayEndpoint

pytestmark = pytest.mark.e2e


def tool(name: str) -> str:
    """The dev stack's own client binaries first: pg_dump refuses a server newer than itself."""
    bundled = binaries.postgres_bindir() / name
    return str(bundled) if bundled.exists() else shutil.which(name) or name


def admin_token(gw: GatewayEndpoint) -> str:
    return gw.token(sub="ops@example.com", groups=("payments-admins",))


async def test_asyncpg_prepared_binary_and_copy(gateway: GatewayEndpoint, tmp_path: Path) -> None:
    conn = await asyncpg.connect(
        host=gateway.host,
        port=gateway.port,
        user="ops@example.com",
        password=admin_token(gateway),
        database=gateway.database,
        ssl=False,
        timeout=10,
    )
    try:
        assert await conn.fetchval("SELECT current_user") == "pcigate_rw"
        stmt = await conn.prepare("SELECT card_id, brand FROM cards WHERE card_id = $1")
        for card_id in (1, 2, 3):
            row = await stmt.fetchrow(card_id)
            assert row is not None and row["card_id"] == card_id
        # binary results of several types, asyncpg's default
        row = await conn.fetchrow("SELECT 1::int8 AS a, 2.5::float8 AS b, 'x'::text AS c, now() AS d")
        assert row is not None and (row["a"], row["b"], row["c"]) == (1, 2.5, "x")
        await conn.execute("CREATE TEMP TABLE a (i int, s text)")
        await conn.copy_records_to_table("a", records=[(i, f"s{i}") for i in range(500)])
        assert await conn.fetchval("SELECT count(*) FROM a") == 500
        out = tmp_path / "a.csv"
        await conn.copy_from_query("SELECT i, s FROM a ORDER BY i LIMIT 3", output=str(out), format="csv")
        assert out.read_text() == "0,s0\n1,s1\n2,s2\n"
        await conn.executemany("INSERT INTO a VALUES ($1, $2)", [(i, "m") for i in range(100)])
        assert await conn.fetchval("SELECT count(*) FROM a WHERE s = 'm'") == 100
        async with conn.transaction():
            cur = await conn.cursor("SELECT txn_id FROM transactions ORDER BY txn_id")
            rows = await cur.fetch(1000)
            assert len(rows) == 1000
        with pytest.raises(asyncpg.exceptions.UndefinedTableError):
            await conn.fetch("SELECT * FROM nope")
        assert await conn.fetchval("SELECT 41 + 1") == 42
    finally:
        await conn.close()


def _pgbench_env(gw: GatewayEndpoint) -> dict[str, str]:
    return {
        **os.environ,
        "PGHOST": gw.host,
        "PGPORT": str(gw.port),
        "PGUSER": "ops@example.com",
        "PGDATABASE": gw.database,
        "PGPASSWORD": admin_token(gw),
        "PGSSLMODE": "disable",
    }


@pytest.fixture(scope="module")
def pgbench_tables(gateway: GatewayEndpoint) -> None:
    """pgbench's tables, made directly upstream: ``pgbench -i`` drops and truncates, which the dev policy
    refuses through the gateway (tests/e2e/test_policy_e2e.py); the gateway's role may then use them."""
    url = urllib.parse.urlsplit(gateway.layout.secret("postgres_superuser_dsn").read_text().strip())
    env = {
        **os.environ,
        "PGHOST": url.hostname or "127.0.0.1",
        "PGPORT": str(url.port or 5432),
        "PGUSER": urllib.parse.unquote(url.username or ""),
        "PGPASSWORD": urllib.parse.unquote(url.password or ""),
        "PGDATABASE": gateway.database,
        "PGSSLMODE": "disable",
    }
    grant = "GRANT ALL ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO pcigate_rw"
    for argv in (
        [tool("pgbench"), "-i", "-s", "1", "-q", "--no-vacuum"],
        [tool("psql"), "-X", "-v", "ON_ERROR_STOP=1", "-c", grant],
    ):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench(gateway: GatewayEndpoint, pgbench_tables: None, mode: str) -> None:
    result = subprocess.run(
        [tool("pgbench"), "-M", mode, "-c", "4", "-j", "2", "-t", "200", "--no-vacuum"],
        env=_pgbench_env(gateway),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "number of transactions actually processed: 800/800" in result.stdout
    assert "number of failed transactions: 0" in result.stdout


def test_pg_dump_of_the_demo_database(gateway: GatewayEndpoint, tmp_path: Path) -> None:
    out = tmp_path / "payments.sql"
    result = subprocess.run(
        [tool("pg_dump"), "--no-owner", "--no-privileges", "-f", str(out)],
        env=_pgbench_env(gateway),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    dump = out.read_text()
    for table in ("customers", "cards", "transactions"):
        assert f"CREATE TABLE public.{table}" in dump
        assert f"COPY public.{table}" in dump
    assert dump.count("\n") > 100_000
