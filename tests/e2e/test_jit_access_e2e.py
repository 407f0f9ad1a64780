"""Just-in-time access (``connections[].jit``) end to end: the first connection waits for a person's
approval, the grant lets later connections in at once, and when it ends every session in it ends;
``access.granted`` / ``access.revoked`` record it; denial, a client that gives up, and identities the
connection's ``jit`` does not apply to."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.e2e.test_approvals_e2e import BOB, approver, in_thread, record, unique
from tests.e2e.test_masking_e2e import psql_path
from tests.gateway_support import GatewayEndpoint, decide, events_for, pending_requests, private_gateway

pytestmark = pytest.mark.e2e

GRANT_SECONDS = 8
JIT = {"jit": {"grant": f"{GRANT_SECONDS}s", "kinds": ["human"], "approval": {"timeout": "60s"}}}


@pytest.fixture(scope="module")
def jit_gateway(
    dev_stack: dict[str, Any], gateway: GatewayEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayEndpoint]:
    with private_gateway(
        dev_stack["config"], gateway, tmp_path_factory.mktemp("jit"), [], connection=JIT
    ) as gw:
        yield gw


def connect(gw: GatewayEndpoint, token: str, timeout: int = 60) -> psycopg.Connection[Any]:
    return psycopg.connect(gw.dsn(token), connect_timeout=timeout, autocommit=True)


def events(gw: GatewayEndpoint, kind: str, sub: str, count: int = 1) -> list[dict[str, Any]]:
    return events_for(
        gw.nats_url,
        lambda e: (
            e["type"] == kind and (e["actor"]["sub"] == sub or e["data"].get("grantee", {}).get("id") == sub)
        ),
        count,
    )


def test_access_waits_for_approval_then_lasts_for_the_grant(jit_gateway: GatewayEndpoint) -> None:
    gw = jit_gateway
    alice = unique("alice")
    token = gw.token(sub=alice, groups=("engineers",))
    waiting = [in_thread(lambda: connect(gw, token)), in_thread(lambda: connect(gw, token))]
    (request,) = pending_requests(gw, alice)  # two connections, one request
    assert request.scope == "access" and request.rule == "jit-access"
    assert request.statement.text.startswith("-- pcigate: access to connection payments")
    assert request.session_for_seconds == GRANT_SECONDS
    assert not any(w.done() for w in waiting)
    # the requester cannot approve their own access
    assert decide(gw, request, approver(gw, sub=alice, groups=("approvers",))).refused == "self_approval"
    assert decide(gw, request, approver(gw)).refused is None
    conns = [w.result(timeout=30) for w in waiting]
    granted_at = time.monotonic()
    conns.append(connect(gw, token, timeout=5))  # inside the grant: no new request, no wait
    try:
        for conn in conns:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        (granted,) = events(gw, "access.granted", alice)
        assert granted["data"]["approval_id"] == request.id
        assert granted["data"]["mechanism"] == "jit_approval" and granted["data"]["privileges"] == ["connect"]
        assert granted["data"]["grantee"]["id"] == alice
        assert granted["actor"]["sub"] == BOB  # who granted it, and why
        assert granted["data"]["justification"] == "checked the change ticket"
        time.sleep(max(0.0, GRANT_SECONDS + 1 - (time.monotonic() - granted_at)))
        for conn in conns:
            with pytest.raises(psycopg.OperationalError) as ended:
                conn.execute("SELECT 1")
            assert "just-in-time access to connection payments ended" in str(ended.value)
    finally:
        for conn in conns:
            conn.close()
    (revoked,) = events(gw, "access.revoked", alice)
    assert revoked["data"]["reason"] == "expired" and revoked["data"]["sessions_terminated"] == 3
    assert revoked["data"]["grant_id"] == granted["data"]["grant_id"]
    assert revoked["actor"]["kind"] == "service" and revoked["actor"]["sub"].startswith("pcigate-gateway/")
    closed = events(gw, "session.closed", alice, 3)
    assert [e["data"]["reason"] for e in closed] == ["access_revoked"] * 3
    # the grant is gone: the next connection asks again
    again = in_thread(lambda: connect(gw, token))
    (second,) = pending_requests(gw, alice)
    assert second.id != request.id
    decide(gw, second, approver(gw), "deny", reason="no change ticket")
    with pytest.raises(psycopg.OperationalError, match="access not granted"):
        again.result(timeout=30)


def test_a_client_that_gives_up_withdraws_its_request(jit_gateway: GatewayEndpoint) -> None:
    gw = jit_gateway
    dave = unique("dave")
    env = {**os.environ, "PGPASSWORD": gw.token(sub=dave, groups=("engineers",)), "PGSSLMODE": "disable"}
    argv = [
        psql_path(),
        "-X",
        "-h",
        gw.host,
        "-p",
        str(gw.port),
        "-U",
        dave,
        "-d",
        gw.database,
        "-c",
        "SELECT 1",
    ]
    psql = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        (request,) = pending_requests(gw, dave)
        assert psql.poll() is None  # still waiting for access
    finally:
        psql.kill()  # like Ctrl-C at the login: the connection closes
        psql.communicate(timeout=30)
    deadline = time.monotonic() + 20
    while record(gw, request.id).state == "pending" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert record(gw, request.id).state == "withdrawn"


def test_identities_the_grant_rule_does_not_name_connect_at_once(jit_gateway: GatewayEndpoint) -> None:
    token = jit_gateway.token(sub=unique("ci"), groups=("ci",), kind="service")
    with connect(jit_gateway, token, timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_gateway_that_stops_ends_its_grants_on_the_record(
    dev_stack: dict[str, Any], gateway: GatewayEndpoint, tmp_path: Any
) -> None:
    """Grants live in the gateway process: stopping it ends them, and ``access.revoked`` says so."""
    erin = unique("erin")
    minute = {"jit": {**JIT["jit"], "grant": "60s"}}
    with private_gateway(dev_stack["config"], gateway, tmp_path, [], connection=minute) as gw:
        token = gw.token(sub=erin, groups=("engineers",))
        waiting = in_thread(lambda: connect(gw, token))
        (request,) = pending_requests(gw, erin)
        decide(gw, request, approver(gw))
        conn = waiting.result(timeout=30)
        assert conn.execute("SELECT 1").fetchone() == (1,)
        (granted,) = events(gw, "access.granted", erin)
        started = time.monotonic()
    # the gateway has stopped (SIGTERM) well inside the grant's minute, with the session in the grant open
    try:
        assert time.monotonic() - started < 30
        with pytest.raises(psycopg.OperationalError) as ended:
            conn.execute("SELECT 1")
        assert "the gateway is stopping; your just-in-time access to connection payments ended" in str(
            ended.value
        )
    finally:
        conn.close()
    (revoked,) = events(gw, "access.revoked", erin)
    assert revoked["data"]["reason"] == "termination" and revoked["data"]["sessions_terminated"] == 1
    assert revoked["data"]["grant_id"] == granted["data"]["grant_id"]
