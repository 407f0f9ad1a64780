"""Result limits per identity kind (``limits.results``) end to end: the client gets at most the limit,
then SQLSTATE 54000; the statement is stopped upstream; both sides stay in step (the session goes on where
it safely can, and ends where it cannot); every cut leaves a ``command.blocked`` event naming the limit."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import asyncpg
import psycopg
import pytest
from psycopg import errors

from tests.e2e.test_approvals_e2e import unique
from tests.e2e.test_masking_e2e import psql_path
from tests.gateway_support import GatewayEndpoint, events_for, private_gateway

pytestmark = pytest.mark.e2e

LIMITS = {
    "limits": {
        "results": {
            "agent": {"statement_rows": 100, "session_rows": 1000},
            "service": {"statement_bytes": 20_000},
        }
    }
}
WRITERS = ("payments-admins",)  # their database role may create temporary tables
SLOW_ROWS = "SELECT g, pg_sleep(0.001) FROM generate_series(1, 1000000) g"  # ~17 minutes if not stopped


@pytest.fixture(scope="module")
def limited(
    dev_stack: dict[str, Any], gateway: GatewayEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayEndpoint]:
    with private_gateway(
        dev_stack["config"], gateway, tmp_path_factory.mktemp("limits"), [], connection=LIMITS
    ) as gw:
        yield gw


def agent_token(gw: GatewayEndpoint, sub: str, groups: tuple[str, ...] = ("agents",)) -> str:
    return gw.token(sub=sub, groups=groups, kind="agent", on_behalf_of=unique("human"))


def connect(gw: GatewayEndpoint, token: str, **kw: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(gw.dsn(token), connect_timeout=10, autocommit=True, **kw)


def blocked(gw: GatewayEndpoint, sub: str, count: int = 1) -> list[dict[str, Any]]:
    return events_for(
        gw.nats_url, lambda e: e["type"] == "command.blocked" and e["actor"]["sub"] == sub, count
    )


def test_an_agents_large_read_is_cut_at_the_limit_and_the_session_goes_on(limited: GatewayEndpoint) -> None:
    sub = unique("agent")
    with connect(limited, agent_token(limited, sub)) as conn:
        cur = conn.cursor()
        cur.execute("SELECT g FROM generate_series(1, 100) g")
        assert len(cur.fetchall()) == 100  # at the limit: all of it
        with pytest.raises(errors.ProgramLimitExceeded) as cut:
            cur.execute(SLOW_ROWS)  # stopped upstream: without the cancel this would run for minutes
        assert "limit of 100 rows per statement for agent identities" in str(cut.value)
        assert cut.value.diag.message_hint is not None and "LIMIT" in cut.value.diag.message_hint
        with pytest.raises(errors.ProgramLimitExceeded):
            cur.execute("SELECT g FROM generate_series(1, 150) g")  # completes before any cancel lands
        assert cur.execute("SELECT 41 + 1").fetchone() == (42,)
    events = blocked(limited, sub, 2)
    assert {e["data"]["reason"] for e in events} == {"limit_exceeded"}
    assert {e["data"]["limit"] for e in events} == {"results.agent.statement_rows=100"}
    assert all(e["outcome"]["code"] == "54000" for e in events)
    executed = events_for(
        limited.nats_url,
        lambda e: (
            e["type"] == "command.executed"
            and e["actor"]["sub"] == sub
            and e["outcome"]["result"] == "failure"
        ),
        2,
    )
    assert {e["outcome"]["code"] for e in executed} == {"54000"}


def test_asyncpg_gets_the_cut_and_goes_on(limited: GatewayEndpoint) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(
            host=limited.host, port=limited.port, user="agent", database=limited.database, ssl=False,
            password=agent_token(limited, unique("agent")),
        )  # fmt: skip
        try:
            for sql in (SLOW_ROWS, "SELECT g FROM generate_series(1, $1::int) g"):
                with pytest.raises(asyncpg.ProgramLimitExceededError):
                    await (conn.fetch(sql) if "$1" not in sql else conn.fetch(sql, 150))
                assert await conn.fetchval("SELECT count(*) FROM generate_series(1, $1::int)", 100) == 100
        finally:
            await conn.close()

    asyncio.run(run())


def test_a_cut_inside_a_transaction_fails_it_on_both_sides(limited: GatewayEndpoint) -> None:
    with connect(limited, agent_token(limited, unique("agent"), WRITERS)) as conn:
        conn.execute("CREATE TEMP TABLE seen (n int)")
        for sql in (SLOW_ROWS, "SELECT g FROM generate_series(1, 150) g"):
            conn.execute("BEGIN")
            conn.execute("INSERT INTO seen VALUES (1)")
            with pytest.raises(errors.ProgramLimitExceeded):
                conn.execute(sql)
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
            # the database agrees: the transaction failed there too
            with pytest.raises(errors.InFailedSqlTransaction):
                conn.execute("SELECT 1")
            conn.execute("ROLLBACK")
        assert conn.execute("SELECT count(*) FROM seen").fetchone() == (0,)


def test_a_write_whose_result_is_cut_never_leaves_the_sides_out_of_step(limited: GatewayEndpoint) -> None:
    """Its changes stand only where the client is told so: the connection then ends."""
    with connect(limited, agent_token(limited, unique("agent"), WRITERS)) as conn:
        conn.execute("CREATE TEMP TABLE written (n int)")
        with pytest.raises(errors.ProgramLimitExceeded) as cut:
            conn.execute("INSERT INTO written SELECT g FROM generate_series(1, 150) g RETURNING n")
        if conn.closed or conn.info.status != psycopg.pq.ConnStatus.OK:
            assert "already completed on the database" in str(cut.value)
        else:
            assert conn.execute("SELECT count(*) FROM written").fetchone() == (0,)


def test_psql_and_copy_to_stdout_are_cut_too(limited: GatewayEndpoint) -> None:
    sub = unique("agent")
    env = {**os.environ, "PGPASSWORD": agent_token(limited, sub), "PGSSLMODE": "disable"}
    base = [
        psql_path(),
        "-X",
        "-At",
        "-h",
        limited.host,
        "-p",
        str(limited.port),
        "-U",
        sub,
        "-d",
        limited.database,
    ]
    for sql in (
        "SELECT g FROM generate_series(1, 100000) g",
        "COPY (SELECT g FROM generate_series(1, 100000) g) TO STDOUT",
    ):
        run = subprocess.run(
            [*base, "-c", sql], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert run.returncode != 0
        assert "limit of 100 rows per statement" in run.stderr
        assert len(run.stdout.splitlines()) <= 100
    # not the last statement of its query, and it completed before the cancel: the session ends
    run = subprocess.run(
        [*base, "-c", "SELECT g FROM generate_series(1, 150) g; SELECT 1"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode != 0
    assert "already completed on the database" in run.stderr and "the connection was closed" in run.stderr
    assert len(blocked(limited, sub, 3)) == 3


def test_a_session_limit_ends_the_session(limited: GatewayEndpoint) -> None:
    sub = unique("agent")
    with connect(limited, agent_token(limited, sub)) as conn:
        for _ in range(10):  # 10 x 100 rows: at the session's limit of 1000
            conn.execute("SELECT g FROM generate_series(1, 100) g").fetchall()
        with pytest.raises(psycopg.OperationalError) as ended:
            conn.execute("SELECT 1")
        assert "limit of 1000 rows per session" in str(ended.value)
    (event,) = blocked(limited, sub)
    assert event["data"]["limit"] == "results.agent.session_rows=1000"
    (closed,) = events_for(
        limited.nats_url, lambda e: e["type"] == "session.closed" and e["actor"]["sub"] == sub, 1
    )
    assert closed["data"]["reason"] == "policy_terminated"


def test_bytes_limits_and_unlimited_kinds(limited: GatewayEndpoint) -> None:
    service = unique("svc")
    with connect(limited, limited.token(sub=service, groups=("ci",), kind="service")) as conn:
        rows = conn.execute("SELECT repeat('x', 100) FROM generate_series(1, 100) g").fetchall()
        assert len(rows) == 100  # about 11 kB
        with pytest.raises(errors.ProgramLimitExceeded) as cut:
            conn.execute("SELECT repeat('x', 1000) FROM generate_series(1, 100) g")
        assert "limit of 20000 bytes per statement for service identities" in str(cut.value)
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with connect(limited, limited.token(sub=unique("human"), groups=("engineers",))) as conn:
        assert len(conn.execute("SELECT g FROM generate_series(1, 100000) g").fetchall()) == 100000


def test_a_cut_in_a_pipeline_keeps_the_sides_in_step(limited: GatewayEndpoint) -> None:
    """Statements pipelined behind a cut one: where the client learns they did not run, they did not."""
    with connect(limited, agent_token(limited, unique("agent"), WRITERS)) as conn:
        conn.execute("CREATE TEMP TABLE piped (n int)")
        for big in (SLOW_ROWS, "SELECT g FROM generate_series(1, 150) g"):
            try:
                with conn.pipeline():
                    conn.execute("BEGIN")
                    conn.execute(big)
                    conn.execute("INSERT INTO piped VALUES (1)")
                    conn.execute("COMMIT")
            except errors.ProgramLimitExceeded:
                pass
            except psycopg.OperationalError:  # the gateway could not keep them in step: it ended the session
                assert conn.closed or conn.info.status != psycopg.pq.ConnStatus.OK
                return
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
            assert conn.execute("SELECT count(*) FROM piped").fetchone() == (0,)
