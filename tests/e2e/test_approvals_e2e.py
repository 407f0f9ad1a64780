"""Statements held for a person's approval, end to end: psql and psycopg through a real gateway, decisions
through ``pcigate approvals`` and the NATS request/reply it uses, records in KV ``PCIGATE_APPROVALS`` and
events on ``PCIGATE_AUDIT``.

Most tests run a second gateway (same PostgreSQL and NATS as the dev stack) whose policy adds rules the dev
stack does not have: a quorum of two, a two-second timeout, a session-wide approval.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import nats
import psycopg
import pytest

from pcigate.approvals_client import ApprovalsClient
from schemas.approvals import DecideReply, Request
from schemas.ids import format_utc
from tests.e2e.test_masking_e2e import psql_path
from tests.gateway_support import GatewayEndpoint, decide, events_for, pending_requests, private_gateway

pytestmark = pytest.mark.e2e

ADMINS = ("payments-admins",)
APPROVERS = ("approvers",)
BOB = "bob@example.com"

EXTRA_RULES: list[dict[str, Any]] = [
    {
        "name": "pair-customers",
        "match": {"statements": ["write"], "tables": ["public.customers"]},
        "action": "require_approval",
        "approval": {"groups": ["approvers"], "quorum": 2, "timeout": "120s"},
    },
    {
        "name": "quick-deletes",
        "match": {"commands": ["delete"], "tables": ["public.transactions"]},
        "action": "require_approval",
        "approval": {"groups": ["approvers"], "timeout": "2s"},
    },
    {
        "name": "txn-session",
        "match": {"commands": ["update"], "tables": ["public.transactions"]},
        "action": "require_approval",
        "approval": {"groups": ["approvers"], "scope": "session", "session_for": "1m"},
    },
]


@pytest.fixture(scope="module")
def held(
    dev_stack: dict[str, Any], gateway: GatewayEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayEndpoint]:
    """A gateway of its own with the dev stack's policy plus :data:`EXTRA_RULES`."""
    with private_gateway(
        dev_stack["config"], gateway, tmp_path_factory.mktemp("approvals"), EXTRA_RULES
    ) as gw:
        yield gw


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"


def connect(
    gw: GatewayEndpoint, sub: str, groups: tuple[str, ...] = ADMINS, **kw: Any
) -> psycopg.Connection[Any]:
    return psycopg.connect(
        gw.dsn(gw.token(sub=sub, groups=groups, **kw)), connect_timeout=10, autocommit=True
    )


def record(gw: GatewayEndpoint, request_id: str) -> Request:
    async def get() -> Request:
        async with ApprovalsClient([gw.nats_url]) as client:
            return await client.get(request_id)

    return asyncio.run(get())


def approver(gw: GatewayEndpoint, sub: str = BOB, groups: tuple[str, ...] = APPROVERS, **kw: Any) -> str:
    return gw.token(sub=sub, groups=groups, **kw)


def in_thread(fn: Callable[[], Any]) -> Future[Any]:
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn)
    pool.shutdown(wait=False)
    return future


def approval_events(gw: GatewayEndpoint, request_id: str, count: int) -> list[dict[str, Any]]:
    return events_for(
        gw.nats_url,
        lambda e: e["type"].startswith("approval.") and e["data"]["request_id"] == request_id,
        count,
    )


def cli(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "pcigate", *args]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60, env=env, check=False)


# --------------------------------------------------------------------------------------- the dev stack


def test_update_waits_for_another_approver_then_runs_with_psql(
    gateway: GatewayEndpoint, dev_stack: dict[str, Any]
) -> None:
    """The issue's "done when": alice's UPDATE waits until `pcigate approvals approve` by bob, then
    completes; DROP TABLE is refused with 42501."""
    sub = unique("alice")
    env = {**os.environ, "PGPASSWORD": gateway.token(sub=sub, groups=ADMINS), "PGSSLMODE": "disable"}
    base = [psql_path(), "-X", "-h", gateway.host, "-p", str(gateway.port), "-U", sub, "-d", gateway.database]
    update = "UPDATE cards SET exp_year = exp_year WHERE card_id = 7 RETURNING card_id"
    pipe = subprocess.PIPE
    proc = subprocess.Popen([*base, "-At", "-c", update], env=env, stdout=pipe, stderr=pipe, text=True)
    try:
        (request,) = pending_requests(gateway, sub)
        time.sleep(0.3)
        assert proc.poll() is None, "the statement ran without approval"
        assert request.rule == "card-writes" and request.approver_groups == APPROVERS
        assert request.statement.text.startswith("UPDATE cards") and request.quorum == 1
        config = dev_stack["config"]
        listed = cli("approvals", "list", "--json", "--config", config)
        assert listed.returncode == 0, listed.stderr
        assert request.id in [r["id"] for r in json.loads(listed.stdout)]
        approved = cli(  # the token on stdin, as the docs advise
            "approvals", "approve", request.id, "--reason", "CHG-1234", "--token", "-", "--config", config,
            stdin=approver(gateway) + "\n",
        )  # fmt: skip
        assert approved.returncode == 0, approved.stderr
        assert "approved" in approved.stdout
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.split() == ["7", "UPDATE", "1"]
    # the NoticeResponse, at once: its id, who can approve, how many, until when, and how to withdraw it
    (notice,) = [line for line in err.splitlines() if line.startswith("NOTICE:")]
    assert f"held for approval (rule card-writes): request {request.id};" in notice
    assert "approvers: approvers (1 needed)" in notice
    expires = re.search(r"expires (\S+Z)\.", notice)
    assert expires is not None and expires.group(1) == format_utc(request.expires), notice
    assert timedelta(seconds=299) <= request.expires - request.created <= timedelta(seconds=301)  # 300 s
    assert f"`pcigate approvals approve {request.id} --reason TEXT --token JWT`" in notice
    assert notice.endswith("cancel the statement to withdraw the request."), notice
    requested, decided = approval_events(gateway, request.id, 2)
    assert requested["type"] == "approval.requested" and requested["actor"]["sub"] == sub
    assert requested["outcome"]["result"] == "pending"
    assert requested["data"]["approver_groups"] == ["approvers"] and requested["data"]["scope"] == "once"
    assert decided["type"] == "approval.decided" and decided["actor"]["sub"] == BOB
    assert decided["outcome"]["result"] == "success" and decided["data"]["final"] is True
    assert decided["data"]["channel"] == "cli" and decided["origin"]["client_app"] == "pcigate-cli"
    assert decided["data"]["reason"] == "CHG-1234" and decided["data"]["requester"]["sub"] == sub
    (executed,) = events_for(
        gateway.nats_url,
        lambda e: e["type"] == "command.executed" and e["actor"]["sub"] == sub,
        1,
    )
    assert executed["data"]["approval_id"] == request.id and executed["outcome"]["result"] == "success"
    assert executed["policy"]["rule"] == "card-writes"
    assert record(gateway, request.id).state == "approved"
    dropped = subprocess.run([*base, "-c", "DROP TABLE cards"], env=env, capture_output=True, text=True,
                             timeout=60, check=False)  # fmt: skip
    assert dropped.returncode != 0 and "policy rule no-destruction" in dropped.stderr


def test_a_denied_statement_is_refused_inside_its_transaction_with_psycopg(gateway: GatewayEndpoint) -> None:
    sub = unique("alice")
    notices: list[str] = []
    with connect(gateway, sub) as conn:
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        conn.autocommit = False
        before = conn.execute("SELECT exp_year FROM cards WHERE card_id = %s", (8,)).fetchone()
        update = in_thread(
            lambda: conn.execute("UPDATE cards SET exp_year = %s WHERE card_id = %s", (2099, 8))
        )
        (request,) = pending_requests(gateway, sub)
        assert request.statement.parameters == ("2099", "8")
        reply = decide(gateway, request, approver(gateway), "deny", reason="change freeze until Monday")
        assert reply.refused is None and reply.state == "denied"
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
            update.result(timeout=30)
        assert f"request {request.id} was denied by {BOB}: change freeze until Monday" in str(err.value)
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SELECT exp_year FROM cards WHERE card_id = %s", (8,)).fetchone() == before
    assert any(request.id in n for n in notices)
    (blocked,) = events_for(
        gateway.nats_url, lambda e: e["type"] == "command.blocked" and e["actor"]["sub"] == sub, 1
    )
    assert blocked["data"]["reason"] == "approval_denied" and blocked["data"]["approval_id"] == request.id
    assert blocked["outcome"]["code"] == "42501"


# ----------------------------------------------------------------------------- a gateway with more rules


def test_abuse_is_refused_and_recorded(held: GatewayEndpoint) -> None:
    """An agent's large read of cards waits; the agent itself, the human it acts for, a non-approver, a
    service account and a bad token cannot release it; an approver can, once."""
    agent, principal = unique("agent"), unique("carol")
    with connect(held, agent, ("agents",), kind="agent", on_behalf_of=principal) as conn:
        assert len(conn.execute("SELECT card_id FROM cards LIMIT 50").fetchall()) == 50  # under the limit
        read = in_thread(lambda: conn.execute("SELECT card_id, pan FROM cards").fetchall())
        (request,) = pending_requests(held, agent)
        assert request.rule == "agent-card-reads" and request.requester.on_behalf_of == principal
        attempts = [
            (
                held.token(sub=agent, groups=("agents", "approvers"), kind="agent", on_behalf_of=principal),
                "self_approval",
            ),
            (approver(held, principal), "principal_approval"),
            (held.token(sub=unique("eve"), groups=("engineers",)), "not_an_approver"),
            (approver(held, unique("svc"), kind="service"), "not_a_person"),
            ("not-a-jwt", "invalid_token"),
        ]
        for token, refusal in attempts:
            reply = decide(held, request, token)
            assert reply.refused == refusal, reply
        assert not read.done()
        assert decide(held, request, approver(held)).refused is None
        rows = read.result(timeout=30)
        assert len(rows) == 10_000 and all("*" in pan for _, pan in rows[:50])
        assert decide(held, request, approver(held, unique("dave"))).refused == "not_pending"  # single use
    events = approval_events(held, request.id, 7)
    decided = [
        (e["outcome"]["result"], e["outcome"]["code"]) for e in events if e["type"] == "approval.decided"
    ]
    assert decided == [
        ("failure", "self_approval"),
        ("failure", "principal_approval"),
        ("failure", "not_an_approver"),
        ("failure", "not_a_person"),
        ("success", None),
        ("failure", "not_pending"),
    ]
    (bad_token,) = events_for(
        held.nats_url,
        lambda e: e["type"] == "auth.failed" and e["target"]["object"] == f"approval request {request.id}",
        1,
    )
    assert bad_token["target"]["protocol"] == "nats" and bad_token["origin"]["client_app"] == "pcigate-tests"
    assert bad_token["data"]["reason"] == "credential_malformed"


def test_a_quorum_counts_each_approver_once(held: GatewayEndpoint) -> None:
    sub = unique("alice")
    with connect(held, sub) as conn:
        update = in_thread(
            lambda: conn.execute(
                "UPDATE customers SET country = country WHERE customer_id = %s RETURNING customer_id", (3,)
            ).fetchone()
        )
        (request,) = pending_requests(held, sub)
        first = decide(held, request, approver(held))
        assert first.refused is None and (first.state, first.approvals, first.quorum) == ("pending", 1, 2)
        assert decide(held, request, approver(held)).refused == "already_counted"
        time.sleep(0.2)
        assert not update.done()
        dave = unique("dave")
        assert decide(held, request, approver(held, dave)).state == "approved"
        assert update.result(timeout=30) == (3,)
    assert next(a.sub for a in record(held, request.id).approvals) == BOB
    # the refused second count is evidence too, attributed to the approver who tried
    events = approval_events(held, request.id, 4)
    decided = [
        (e["actor"]["sub"], e["outcome"]["result"], e["outcome"]["code"], e["data"]["final"])
        for e in events
        if e["type"] == "approval.decided"
    ]
    assert decided == [
        (BOB, "success", None, False),
        (BOB, "failure", "already_counted", False),
        (dave, "success", None, True),
    ]


def test_a_decision_cannot_be_replayed_for_another_statement(held: GatewayEndpoint) -> None:
    sub = unique("alice")
    with connect(held, sub) as one, connect(held, sub) as two:
        sql = "UPDATE cards SET exp_month = exp_month WHERE card_id = %s"
        first = in_thread(lambda: one.execute(sql, (11,)))
        second = in_thread(lambda: two.execute(sql, (11,)))  # the same statement, another session
        a, b = pending_requests(held, sub, 2)
        assert a.binding != b.binding
        replayed = decide(held, b.model_copy(update={"binding": a.binding}), approver(held))
        assert replayed.refused == "statement_mismatch"
        assert decide(held, a, approver(held)).refused is None
        first.result(timeout=30)
        assert decide(held, b, approver(held), "deny").refused is None
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            second.result(timeout=30)
    # the replay is recorded against the request it was sent for, refused
    events = approval_events(held, b.id, 3)
    decided = [e for e in events if e["type"] == "approval.decided"]
    assert [(e["outcome"]["result"], e["outcome"]["code"]) for e in decided] == [
        ("failure", "statement_mismatch"),
        ("success", None),
    ]
    assert decided[0]["actor"]["sub"] == BOB and decided[1]["data"]["decision"] == "deny"


def test_expiry_refuses_the_statement_and_later_decisions_do_not_count(held: GatewayEndpoint) -> None:
    sub = unique("alice")
    with connect(held, sub) as conn:
        delete = in_thread(lambda: conn.execute("DELETE FROM transactions WHERE txn_id = %s", (-1,)))
        (request,) = pending_requests(held, sub)
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
            delete.result(timeout=30)
        assert f"request {request.id} expired at" in str(err.value)
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the session goes on
    assert decide(held, request, approver(held)).refused == "expired"
    assert record(held, request.id).state == "expired"
    events = approval_events(held, request.id, 3)
    assert [e["type"] for e in events] == ["approval.requested", "approval.expired", "approval.decided"]
    assert events[1]["outcome"]["code"] == "expired"
    assert (events[2]["outcome"]["result"], events[2]["outcome"]["code"]) == ("failure", "expired")


def test_a_client_cancel_withdraws_the_request(held: GatewayEndpoint) -> None:
    sub = unique("alice")
    with connect(held, sub) as conn:
        update = in_thread(lambda: conn.execute("UPDATE cards SET cvv = cvv WHERE card_id = %s", (12,)))
        (request,) = pending_requests(held, sub)
        conn.cancel()
        with pytest.raises(psycopg.errors.QueryCanceled) as err:
            update.result(timeout=30)
        assert f"request {request.id} withdrawn" in str(err.value)
        assert conn.execute("SELECT 2").fetchone() == (2,)
    deadline = time.monotonic() + 10
    while record(held, request.id).state != "withdrawn":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert decide(held, request, approver(held)).refused == "not_pending"
    (blocked,) = events_for(
        held.nats_url, lambda e: e["type"] == "command.blocked" and e["actor"]["sub"] == sub, 1
    )
    assert blocked["outcome"]["code"] == "57014" and blocked["data"]["approval_id"] == request.id


def test_a_client_that_disconnects_while_held_withdraws_the_request(held: GatewayEndpoint) -> None:
    """Killed psql (Ctrl-C twice, a closed laptop): nobody waits for the statement any more, so nobody can
    approve it into running."""
    sub = unique("alice")
    env = {**os.environ, "PGPASSWORD": held.token(sub=sub, groups=ADMINS), "PGSSLMODE": "disable"}
    argv = [psql_path(), "-X", "-h", held.host, "-p", str(held.port), "-U", sub, "-d", held.database,
            "-c", "UPDATE cards SET cvv = cvv WHERE card_id = 13"]  # fmt: skip
    psql = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        (request,) = pending_requests(held, sub)
    finally:
        psql.kill()
        psql.wait(timeout=30)
    deadline = time.monotonic() + 10
    while record(held, request.id).state != "withdrawn":
        assert time.monotonic() < deadline, record(held, request.id).state
        time.sleep(0.05)
    assert decide(held, request, approver(held)).refused == "not_pending"


def test_a_session_scope_approval_covers_the_session_for_its_time(held: GatewayEndpoint) -> None:
    sub = unique("alice")
    sql = "UPDATE transactions SET status = status WHERE txn_id = %s"
    with connect(held, sub) as conn:
        first = in_thread(lambda: conn.execute(sql, (1,)))
        (request,) = pending_requests(held, sub)
        assert request.scope == "session" and request.session_for_seconds == 60
        assert decide(held, request, approver(held)).refused is None
        first.result(timeout=30)
        conn.execute(sql, (2,))  # covered: no second request
        conn.execute("UPDATE transactions SET status = status WHERE txn_id = 3")
    with connect(held, sub) as other:  # another session is not
        again = in_thread(lambda: other.execute(sql, (4,)))
        (second,) = pending_requests(held, sub)
        assert second.id != request.id
        decide(held, second, approver(held), "deny")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            again.result(timeout=30)
    executed = events_for(
        held.nats_url, lambda e: e["type"] == "command.executed" and e["actor"]["sub"] == sub, 3
    )
    assert [e["data"]["approval_id"] for e in executed] == [request.id] * 3


def test_fifty_held_statements_decided_concurrently_each_resume_correctly(held: GatewayEndpoint) -> None:
    sub = unique("alice")
    ids = list(range(100, 150))
    conns = [connect(held, sub) for _ in ids]
    try:
        with ThreadPoolExecutor(max_workers=len(ids)) as pool:
            runs = {
                card: pool.submit(
                    lambda c=conn, card=card: c.execute(
                        "UPDATE cards SET exp_year = exp_year WHERE card_id = %s RETURNING card_id", (card,)
                    ).fetchone()
                )
                for conn, card in zip(conns, ids, strict=True)
            }
            requests = pending_requests(held, sub, len(ids), within=60)
            by_card = {int(r.statement.parameters[0]): r for r in requests}  # type: ignore[index]
            assert sorted(by_card) == ids
            bob = approver(held)

            async def all_decisions() -> list[DecideReply]:
                async with ApprovalsClient([held.nats_url]) as client:
                    return await asyncio.gather(
                        *(
                            client.decide(
                                by_card[card],
                                "approve" if card % 2 == 0 else "deny",
                                reason="batch",
                                token=bob,
                                channel="api",
                                client_app="pcigate-tests",
                            )
                            for card in ids
                        )
                    )

            replies = asyncio.run(all_decisions())
            assert all(r.refused is None for r in replies)
            for card, run in runs.items():
                if card % 2 == 0:
                    assert run.result(timeout=60) == (card,)
                else:
                    with pytest.raises(psycopg.errors.InsufficientPrivilege) as err:
                        run.result(timeout=60)
                    assert by_card[card].id in str(err.value)
    finally:
        for conn in conns:
            conn.close()


def test_a_record_rewritten_in_the_bucket_releases_nothing(held: GatewayEndpoint) -> None:
    """Whoever can write to the KV bucket cannot approve: the gateway holding the statement trusts only
    its own copy, and a record changed behind its back makes the decision fail closed."""
    sub = unique("alice")
    with connect(held, sub) as conn:
        update = in_thread(lambda: conn.execute("UPDATE cards SET brand = brand WHERE card_id = %s", (13,)))
        (request,) = pending_requests(held, sub)

        async def forge() -> None:
            nc = await nats.connect(held.nats_url)
            try:
                kv = await nc.jetstream().key_value("PCIGATE_APPROVALS")
                forged = request.model_copy(update={"state": "approved"})
                await kv.put(request.id, forged.model_dump_json().encode())
            finally:
                await nc.close()

        asyncio.run(forge())
        time.sleep(0.5)
        assert not update.done()
        reply = decide(held, request, approver(held))
        assert reply.refused == "unavailable" and "changed outside the gateway" in reply.message
        with pytest.raises(psycopg.errors.SystemError) as err:
            update.result(timeout=30)
        assert "changed outside the gateway" in str(err.value)


def test_the_cli_says_what_is_wrong(held: GatewayEndpoint, dev_stack: dict[str, Any]) -> None:
    config = dev_stack["config"]
    env = {k: v for k, v in os.environ.items() if k != "PCIGATE_TOKEN"}
    no_token = cli("approvals", "deny", str(uuid.uuid4()), "--reason", "x", "--config", config, env=env)
    assert no_token.returncode == 2 and "no token" in no_token.stderr
    unknown = cli("approvals", "approve", "01a24338-0000-7000-8000-000000000000", "--reason", "x", "--token",
                  approver(held), "--config", config)  # fmt: skip
    assert unknown.returncode == 1 and "no approval request" in unknown.stderr
    # a request whose gateway is gone (its statement went with it)
    sub = unique("alice")
    with connect(held, sub) as conn:
        update = in_thread(lambda: conn.execute("UPDATE cards SET brand = brand WHERE card_id = %s", (14,)))
        (request,) = pending_requests(held, sub)
        orphan = request.model_copy(
            update={"id": "01a24338-0000-7000-8000-0000000000ff", "gateway": "gw-gone"}
        )

        async def put() -> None:
            nc = await nats.connect(held.nats_url)
            try:
                kv = await nc.jetstream().key_value("PCIGATE_APPROVALS")
                await kv.put(orphan.id, orphan.model_dump_json().encode())
            finally:
                await nc.close()

        asyncio.run(put())
        gone = cli(
            "approvals", "approve", orphan.id, "--reason", "x", "--token", approver(held), "--config", config
        )
        assert gone.returncode == 1 and "is not running" in gone.stderr
        bob = approver(held)
        denied = cli(
            "approvals", "deny", request.id, "--reason", "not now", "--token", bob, "--config", config
        )
        assert denied.returncode == 0, denied.stderr
        assert "denied" in denied.stdout
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            update.result(timeout=30)
    again = cli(
        "approvals", "approve", request.id, "--reason", "x", "--token", approver(held), "--config", config
    )
    assert again.returncode == 1 and "did not count (not_pending)" in again.stderr
    listed = cli("approvals", "list", "--all", "--config", config)
    assert listed.returncode == 0 and request.id in listed.stdout


def test_statements_of_one_query_are_held_in_turn_and_a_refusal_ends_the_query(held: GatewayEndpoint) -> None:
    sub = unique("alice")
    with connect(held, sub) as conn:
        both = (
            "UPDATE cards SET exp_month = exp_month WHERE card_id = 15; "
            "UPDATE cards SET cvv = cvv WHERE card_id = 15"
        )
        run = in_thread(lambda: conn.pgconn.exec_(both.encode()))  # one simple Query, two statements
        (first,) = pending_requests(held, sub)
        assert "exp_month" in first.statement.text
        assert decide(held, first, approver(held)).refused is None  # the first may run...
        second = next(r for r in pending_requests(held, sub, 1) if r.id != first.id)
        assert "cvv" in second.statement.text
        assert decide(held, second, approver(held), "deny").refused is None  # ...but not the second
        result = run.result(timeout=30)
        assert result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"42501"
        # denied first: the second is never held, and the Query is refused as a whole
        again = in_thread(lambda: conn.pgconn.exec_(both.replace("15", "16").encode()))
        (third,) = pending_requests(held, sub)
        assert decide(held, third, approver(held), "deny").refused is None
        assert again.result(timeout=30).error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"42501"
        time.sleep(0.3)
        assert pending_requests(held, sub, 0) == []


def test_a_decision_sent_the_moment_the_request_appears_counts(held: GatewayEndpoint) -> None:
    """A console watching the bucket may decide before the gateway has finished writing the request: the
    decision waits for it instead of finding no such request."""
    sub = unique("alice")
    bob = approver(held)

    async def watch_and_decide(count: int, ready: threading.Event) -> list[DecideReply]:
        replies: list[DecideReply] = []
        async with ApprovalsClient([held.nats_url]) as watching, ApprovalsClient([held.nats_url]) as client:
            in_place = asyncio.Event()
            stream = watching.watch(in_place)
            first = asyncio.ensure_future(anext(stream))
            await in_place.wait()
            ready.set()
            request = await first
            while True:
                if request.requester.sub == sub and request.state == "pending":
                    reply = await client.decide(
                        request, "approve", reason="at once", token=bob, channel="tui", client_app="tests"
                    )
                    replies.append(reply)
                    if len(replies) == count:
                        await stream.aclose()
                        return replies
                request = await anext(stream)

    ready = threading.Event()
    deciding = in_thread(lambda: asyncio.run(watch_and_decide(10, ready)))
    assert ready.wait(20)
    with connect(held, sub) as conn:
        for card in range(20, 30):
            sql = "UPDATE cards SET exp_year = exp_year WHERE card_id = %s RETURNING card_id"
            assert conn.execute(sql, (card,)).fetchone() == (card,)
    assert all(r.refused is None and r.state == "approved" for r in deciding.result(timeout=60))
