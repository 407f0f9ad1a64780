"""The dev stack's policy end to end: psql (simple protocol) and psycopg (extended protocol) through the
gateway; refused statements never reach PostgreSQL, the client gets 42501 with the rule's message, and a
``command.blocked`` event names the rule, with the statement masked like every statement's record."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import psycopg
import pytest

from tests.e2e.test_masking_e2e import psql_path, superuser
from tests.gateway_support import GatewayEndpoint, decide, events_for, pending_requests, private_gateway

pytestmark = pytest.mark.e2e

ADMINS = ("payments-admins",)


def connect(gw: GatewayEndpoint, sub: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(gw.dsn(gw.token(sub=sub, groups=ADMINS)), connect_timeout=10, autocommit=True)


def blocked_events(gw: GatewayEndpoint, sub: str, count: int) -> list[dict[str, object]]:
    return events_for(
        gw.nats_url,
        lambda e: e["type"] == "command.blocked" and e["actor"]["sub"] == sub,
        count,
    )


def test_destructive_statements_are_refused_with_psql(gateway: GatewayEndpoint) -> None:
    sub = f"policy-{uuid.uuid4().hex[:8]}@example.com"
    env = {**os.environ, "PGPASSWORD": gateway.token(sub=sub, groups=ADMINS), "PGSSLMODE": "disable"}
    base = [psql_path(), "-h", gateway.host, "-p", str(gateway.port), "-U", sub, "-d", gateway.database]
    for sql in ("DROP TABLE cards", "TRUNCATE public.cards", "ALTER SYSTEM SET work_mem = '8MB'"):
        run = subprocess.run(
            [*base, "-X", "-v", "ON_ERROR_STOP=1", "-c", sql],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode != 0
        assert "DROP, TRUNCATE and ALTER SYSTEM do not run through the gateway" in run.stderr
        assert "policy rule no-destruction" in run.stderr
    out = subprocess.run(
        [*base, "-X", "-At", "-c", "SELECT count(*) > 0 FROM cards"], env=env, capture_output=True, text=True,
        timeout=60, check=True,
    ).stdout  # fmt: skip
    assert out.strip() == "t"  # the table is still there, and reads are allowed
    events = blocked_events(gateway, sub, 3)
    assert len(events) == 3
    for event in events:
        outcome = event["outcome"]
        assert outcome["result"] == "blocked" and outcome["code"] == "42501"  # type: ignore[index]
        assert "policy rule no-destruction" in outcome["message"]  # type: ignore[index]
        assert event["policy"]["rule"] == "no-destruction"  # type: ignore[index]
        assert event["policy"]["version"].startswith("sha256:")  # type: ignore[index]
        assert event["data"]["reason"] == "policy_rule"  # type: ignore[index]
    texts = sorted(e["data"]["statement"]["text"].split()[0].lower() for e in events)  # type: ignore[index]
    assert texts == ["alter", "drop", "truncate"]


def test_refusal_inside_a_transaction_behaves_like_an_error_with_psycopg(gateway: GatewayEndpoint) -> None:
    sub = f"policy-{uuid.uuid4().hex[:8]}@example.com"
    with connect(gateway, sub) as conn:
        conn.autocommit = False
        assert conn.execute("SELECT count(*) FROM cards WHERE card_id = %s", (1,)).fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
            conn.execute("DROP TABLE cards")
        assert "policy rule no-destruction" in str(err.value)
        # like any error: the transaction is aborted until ROLLBACK, then the session goes on
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SELECT 1").fetchone() == (1,)
        conn.commit()
    (event,) = blocked_events(gateway, sub, 1)
    assert event["data"]["statement"]["text"].lower().startswith("drop table")  # type: ignore[index]


def test_opaque_statements_wait_for_a_person(gateway: GatewayEndpoint) -> None:
    """The dev policy's opaque_action is require_approval: a DO block is held, and denied here."""
    sub = f"policy-{uuid.uuid4().hex[:8]}@example.com"
    with connect(gateway, sub) as conn, ThreadPoolExecutor(1) as pool:
        run = pool.submit(conn.execute, "DO $$ BEGIN PERFORM 1; END $$")
        (request,) = pending_requests(gateway, sub)
        assert request.rule == "opaque" and "DO runs a code block the gateway cannot see into" in request.why
        bob = gateway.token(sub="bob@example.com", groups=("approvers",))
        reply = decide(gateway, request, bob, "deny", reason="not without reading it")
        assert reply.refused is None
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
            run.result(timeout=30)
    assert "was denied by bob@example.com: not without reading it" in str(err.value)
    (event,) = blocked_events(gateway, sub, 1)
    assert event["policy"]["rule"] == "opaque"  # type: ignore[index]
    assert event["data"]["reason"] == "approval_denied"  # type: ignore[index]


def test_statement_boundaries_follow_standard_conforming_strings(gateway: GatewayEndpoint) -> None:
    """With standard_conforming_strings off (here a role default, which the gateway learns from the
    server), ``'x\\''`` is the string ``x'``: the DROP after it is a statement of its own, which the gateway
    must see, instead of reading one long SELECT. (A SET of it in the session is itself held by the policy
    as opaque, and so is a backslash in a plain string.)"""
    sub = f"policy-{uuid.uuid4().hex[:8]}@example.com"
    with superuser(gateway) as admin:
        admin.execute("ALTER ROLE pcigate_ro SET standard_conforming_strings = off")
        admin.execute("ALTER ROLE pcigate_ro SET escape_string_warning = off")
        try:
            token = gateway.token(sub=sub, groups=("engineers",))  # engineers use pcigate_ro
            with psycopg.connect(gateway.dsn(token), connect_timeout=10, autocommit=True) as conn:
                assert conn.pgconn.parameter_status(b"standard_conforming_strings") == b"off"
                with ThreadPoolExecutor(1) as pool:  # simple protocol
                    run = pool.submit(conn.pgconn.exec_, b"SELECT 'x\\''; DROP TABLE cards; --'")
                    # the opaque SELECT waits for a person, ended where the server ends it
                    (request,) = pending_requests(gateway, sub)
                    held = request.statement.text.lower()
                    assert held.startswith("select") and "drop" not in held
                    decide(
                        gateway, request, gateway.token(sub="bob@example.com", groups=("approvers",)), "deny"
                    )
                    result = run.result(timeout=30)
                assert result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"42501"
                assert conn.execute("SELECT count(*) > 0 FROM cards").fetchone() == (True,)
        finally:
            admin.execute("ALTER ROLE pcigate_ro RESET standard_conforming_strings")
            admin.execute("ALTER ROLE pcigate_ro RESET escape_string_warning")
    # The backslash string itself is held as opaque; what matters is where the gateway ended it: the
    # refused statement is the SELECT alone, not one long SELECT that swallowed the DROP.
    (event,) = blocked_events(gateway, sub, 1)
    text = event["data"]["statement"]["text"].lower()  # type: ignore[index]
    assert text.startswith("select") and "drop" not in text


def test_client_encodings_the_lexer_cannot_follow_are_refused(gateway: GatewayEndpoint) -> None:
    """In SJIS a character's second byte may be a backslash or quote: statements could end where the
    gateway does not see them end. Such sessions are refused; a startup search_path is not passed on."""
    token = gateway.token(sub="enc@example.com", groups=ADMINS)
    with pytest.raises(psycopg.OperationalError) as err:
        psycopg.connect(gateway.dsn(token, client_encoding="SJIS"), connect_timeout=10)
    assert "client_encoding SJIS is not supported" in str(err.value)

    async def search_path() -> str:
        conn = await asyncpg.connect(gateway.url(token), ssl=False, server_settings={"search_path": "evil"})
        try:
            return str(await conn.fetchval("SELECT current_setting('search_path')"))
        finally:
            await conn.close()

    assert asyncio.run(search_path()) != "evil"


# --- every kind of rule, through psql (simple protocol) and psycopg (extended), on a gateway of its own ---

KIND_RULES: list[dict[str, object]] = [
    {"name": "engineers-no-customers", "match": {"groups": ["engineers"], "tables": ["public.customers"]},
     "action": "block", "message": "engineers do not read customer records"},
    {"name": "no-cvv", "match": {"columns": ["public.cards.cvv"]}, "action": "block"},
    {"name": "no-server-files", "match": {"functions": ["pg_read_file"]}, "action": "block"},
    {"name": "where-required", "match": {"statements": ["write"], "conditions": ["no_where"]},
     "action": "block"},
    {"name": "night-shift", "match": {"groups": ["night-shift"], "time": {}}, "action": "block",
     "message": "no access in this time window"},
    {"name": "day-shift", "match": {"groups": ["day-shift"], "time": {"outside": True}}, "action": "block"},
    {"name": "auditors-masked", "match": {"groups": ["auditors"], "tables": ["public.transactions"]},
     "action": "mask"},
    {"name": "ci-reads", "match": {"groups": ["ci"], "statements": ["read"]}, "action": "allow"},
    {"name": "ci-nothing-else", "match": {"groups": ["ci"]}, "action": "block"},
]  # fmt: skip

CASES = [
    # (groups, statement, refused by rule or None)
    (("engineers",), "SELECT full_name FROM customers LIMIT 1", "engineers-no-customers"),
    (("payments-admins",), "SELECT full_name FROM customers LIMIT 1", None),
    (("engineers",), "SELECT cvv FROM cards LIMIT 1", "no-cvv"),
    (("engineers",), "SELECT brand FROM cards LIMIT 1", None),
    (("engineers",), "SELECT pg_read_file('/etc/hostname')", "no-server-files"),
    # refused before PostgreSQL sees it, in either protocol: else its Parse would fail with 42P01
    (("engineers",), "SELECT pg_read_file('/etc/hostname') FROM no_such_table", "no-server-files"),
    (("payments-admins",), "UPDATE transactions SET status = status", "where-required"),
    (("payments-admins",), "UPDATE transactions SET status = status WHERE txn_id = 1", None),
    (("engineers", "night-shift"), "SELECT 1", "night-shift"),
    (("engineers", "day-shift"), "SELECT 1", None),
    (("ci",), "SELECT count(*) FROM transactions", None),
    (("ci",), "SET work_mem = '8MB'", "ci-nothing-else"),
]


@pytest.fixture(scope="module")
def kinds_gateway(
    dev_stack: dict[str, Any], gateway: GatewayEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayEndpoint]:
    with private_gateway(dev_stack["config"], gateway, tmp_path_factory.mktemp("kinds"), KIND_RULES) as gw:
        yield gw


@pytest.mark.parametrize(
    ("groups", "sql", "rule"), CASES, ids=[f"{c[2] or 'allowed'}-{i}" for i, c in enumerate(CASES)]
)
def test_each_kind_of_rule_decides_with_psql_and_psycopg(
    kinds_gateway: GatewayEndpoint, groups: tuple[str, ...], sql: str, rule: str | None
) -> None:
    gw = kinds_gateway
    sub = f"kinds-{uuid.uuid4().hex[:8]}@example.com"
    token = gw.token(sub=sub, groups=groups)
    env = {**os.environ, "PGPASSWORD": token, "PGSSLMODE": "disable"}
    argv = [
        psql_path(),
        "-X",
        "-At",
        "-h",
        gw.host,
        "-p",
        str(gw.port),
        "-U",
        sub,
        "-d",
        gw.database,
        "-c",
        sql,
    ]
    simple = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    with psycopg.connect(gw.dsn(token), connect_timeout=10, autocommit=True) as conn:
        try:
            conn.execute(sql, prepare=True)  # the extended protocol: Parse/Bind/Execute
            extended: str | None = None
        except psycopg.Error as exc:
            extended = f"{exc.sqlstate} {exc}"
    if rule is None:
        assert simple.returncode == 0, simple.stderr
        assert extended is None, extended
        return
    assert simple.returncode != 0 and f"policy rule {rule}" in simple.stderr
    assert extended is not None and extended.startswith("42501") and f"policy rule {rule}" in extended
    events = blocked_events(gw, sub, 2)
    assert [e["policy"]["rule"] for e in events] == [rule, rule]  # type: ignore[index]


def test_a_mask_rule_hides_every_value_it_returns(kinds_gateway: GatewayEndpoint) -> None:
    gw = kinds_gateway
    token = gw.token(sub="auditor@example.com", groups=("engineers", "auditors"))
    with psycopg.connect(gw.dsn(token), connect_timeout=10, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT merchant, amount_cents FROM transactions ORDER BY txn_id LIMIT 3"
        ).fetchall()
        assert len(rows) == 3
        assert all(
            m is not None and "*" in m and not any(c.isalnum() for c in m) and a is None for m, a in rows
        )
        plain = conn.execute("SELECT brand FROM cards ORDER BY card_id LIMIT 1").fetchone()
        assert plain is not None and plain[0].isalpha()  # what the rule does not name is not masked
