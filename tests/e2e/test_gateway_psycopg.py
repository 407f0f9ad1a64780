"""psycopg 3 through the gateway: sync and async, pipeline mode, binary results, COPY, server-side
cursors, cancel, and a client killed mid-query."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psycopg
import pytest
from psycopg import sql

from tests.gateway_support import GatewayEndpoint

pytestmark = pytest.mark.e2e


def connect(gw: GatewayEndpoint, **kw: object) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(gw.dsn(gw.token(groups=("payments-admins",))), connect_timeout=10, **kw)  # type: ignore[arg-type]


def test_sync_queries_and_parameters(gateway: GatewayEndpoint) -> None:
    with connect(gateway) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("pcigate_rw",)
        row = conn.execute("SELECT %s::int + %s::int, %s::text", (40, 2, "x")).fetchone()
        assert row == (42, "x")
        count = conn.execute("SELECT count(*) FROM cards WHERE brand = %s", ("visa",)).fetchone()
        assert count is not None and count[0] >= 0
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM nope")
        conn.rollback()
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_transactions_and_writes(gateway: GatewayEndpoint) -> None:
    with connect(gateway) as conn:
        conn.execute("CREATE TEMP TABLE t (id int primary key, note text)")
        with conn.transaction():
            conn.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
        with pytest.raises(psycopg.errors.UniqueViolation), conn.transaction():
            conn.execute("INSERT INTO t VALUES (1, 'dup')")
        cur = conn.execute("UPDATE t SET note = 'c' WHERE id = 2")
        assert cur.rowcount == 1
        assert conn.execute("SELECT note FROM t ORDER BY id").fetchall() == [("a",), ("c",)]


def test_binary_results(gateway: GatewayEndpoint) -> None:
    with connect(gateway) as conn:
        cur = conn.cursor(binary=True)
        cur.execute("SELECT 1::int8, 'x'::text, 2.5::float8, now()::date, '\\x0102'::bytea")
        row = cur.fetchone()
        assert row is not None and row[0] == 1 and row[1] == "x" and row[2] == 2.5 and row[4] == b"\x01\x02"


def test_pipeline_mode(gateway: GatewayEndpoint) -> None:
    with connect(gateway) as conn:
        conn.execute("CREATE TEMP TABLE p (i int)")
        with conn.pipeline():
            cur = conn.cursor()
            for i in range(50):
                cur.execute("INSERT INTO p VALUES (%s)", (i,))
            results = [conn.execute("SELECT %s::int", (i,)) for i in range(20)]
        assert [r.fetchone() for r in results] == [(i,) for i in range(20)]
        assert conn.execute("SELECT count(*), sum(i) FROM p").fetchone() == (50, sum(range(50)))


def test_pipeline_error_skips_to_sync(gateway: GatewayEndpoint) -> None:
    with connect(gateway, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero), conn.pipeline():
            conn.execute("SELECT 1")
            conn.execute("SELECT 1/0")
            conn.execute("SELECT 2")
        assert conn.execute("SELECT 3").fetchone() == (3,)


def test_executemany(gateway: GatewayEndpoint) -> None:
    with connect(gateway) as conn:
        conn.execute("CREATE TEMP TABLE m (i int, s text)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO m VALUES (%s, %s)", [(i, f"v{i}") for i in range(200)])
        assert conn.execute("SELECT count(*) FROM m").fetchone() == (200,)


def test_copy_in_and_out(gateway: GatewayEndpoint) -> None:
    with connect(gateway) as conn:
        conn.execute("CREATE TEMP TABLE c (i int, s text)")
        with conn.cursor().copy("COPY c FROM STDIN") as copy:
            for i in range(1000):
                copy.write_row((i, f"row {i}"))
        assert conn.execute("SELECT count(*) FROM c").fetchone() == (1000,)
        out = bytearray()
        with conn.cursor().copy("COPY (SELECT i FROM c ORDER BY i LIMIT 5) TO STDOUT") as copy:
            for chunk in copy:
                out += chunk
        assert bytes(out) == b"0\n1\n2\n3\n4\n"
        with conn.cursor().copy("COPY c (i, s) FROM STDIN (FORMAT binary)") as copy:
            copy.set_types(["int4", "text"])
            copy.write_row((5000, "binary"))
        assert conn.execute("SELECT s FROM c WHERE i = 5000").fetchone() == ("binary",)


def test_server_side_cursor(gateway: GatewayEndpoint) -> None:
    with connect(gateway) as conn, conn.cursor(name="big") as cur:
        cur.itersize = 500
        cur.execute("SELECT txn_id FROM transactions ORDER BY txn_id LIMIT 3000")
        rows = sum(1 for _ in cur)
        assert rows == 3000


def test_cancel_through_the_gateway(gateway: GatewayEndpoint) -> None:
    with connect(gateway) as conn:
        timer = threading.Timer(0.5, conn.cancel)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")
        assert time.monotonic() - started < 10
        conn.rollback()
        assert conn.execute("SELECT 1").fetchone() == (1,)


async def test_async_connection(gateway: GatewayEndpoint) -> None:
    dsn = gateway.dsn(gateway.token(groups=("payments-admins",)))
    async with await psycopg.AsyncConnection.connect(dsn, connect_timeout=10) as conn:
        cur = await conn.execute("SELECT %s::int * 2", (21,))
        assert await cur.fetchone() == (42,)
        async with conn.pipeline():
            curs = [await conn.execute("SELECT %s::int", (i,)) for i in range(10)]
        assert [await c.fetchone() for c in curs] == [(i,) for i in range(10)]
        task = asyncio.create_task(conn.execute("SELECT pg_sleep(30)"))
        await asyncio.sleep(0.5)
        conn.cancel()
        with pytest.raises(psycopg.errors.QueryCanceled):
            await task


def _backend_count(gw: GatewayEndpoint, marker: str) -> int:
    with connect(gw, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE {} AND pid <> pg_backend_pid()"
            ).format(sql.Literal(f"%{marker}%"))
        ).fetchone()
        assert row is not None
        return int(row[0])


def test_killed_client_leaves_no_upstream_behind(gateway: GatewayEndpoint) -> None:
    marker = f"pcigate_kill_test_{os.getpid()}"
    code = textwrap.dedent(
        f"""
        import psycopg, sys
        conn = psycopg.connect(sys.argv[1])
        print("connected", flush=True)
        conn.execute("SELECT pg_sleep(60) /* {marker} */")
        """
    )
    dsn = gateway.dsn(gateway.token(groups=("payments-admins",)))
    proc = subprocess.Popen([sys.executable, "-c", code, dsn], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "connected"
        deadline = time.monotonic() + 10
        while _backend_count(gateway, marker) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _backend_count(gateway, marker) == 1
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while _backend_count(gateway, marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _backend_count(gateway, marker) == 0
    finally:
        proc.kill()
        proc.wait()
