"""The approver console (``pcigate approve``) driven by Textual's Pilot against the real stack: a statement
held by the gateway appears in the queue; keys approve or deny it with a reason and the client's statement
completes or fails; a watcher who is not an approver cannot decide; an expired request leaves a trace; the
console survives NATS going away and coming back."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import psycopg
import pytest
from rich.console import Console
from textual.widgets import Static

from pcigate.cli_approvals import _ledger_source, _sensitive
from pcigate.config import load_config
from pcigate.devstack.ports import free_port
from schemas.approvals import Request
from tests.e2e.test_approvals_e2e import BOB, approver, connect, in_thread, unique
from tests.gateway_support import GatewayEndpoint, audit_events, decide, private_gateway
from tests.unit.test_approvals_record import request as make_request
from tui.app import ApproverApp
from tui.screens import DetailScreen

pytestmark = pytest.mark.e2e

SIZE = (100, 30)
WRITE = "UPDATE cards SET exp_year = exp_year WHERE card_id = %s"


async def until(check: Callable[[], bool], within: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def hold(gw: GatewayEndpoint, sub: str, card: int = 7) -> Future[Any]:
    """alice-like requester's UPDATE of a card, held by the dev stack's card-writes rule."""
    conn = connect(gw, sub)
    return in_thread(lambda: (conn.execute(WRITE, (card,)).rowcount, conn.close()))


@contextlib.asynccontextmanager
async def console(
    gw: GatewayEndpoint, token: str | None, **kw: Any
) -> AsyncIterator[tuple[ApproverApp, Any]]:
    app = ApproverApp([gw.nats_url], token, **kw)
    async with app.run_test(size=SIZE) as pilot:
        yield app, pilot


async def only(pilot: Any, app: ApproverApp, sub: str) -> None:
    """Filter the queue down to ``sub``'s requests (other tests' may be pending too) and select the first."""
    await pilot.press("slash", *sub, "enter")
    await until(lambda: len(app._shown) == 1, what=f"{sub}'s request in the queue")


async def test_a_held_statement_is_approved_from_the_queue(gateway: GatewayEndpoint) -> None:
    alice = unique("alice")
    async with console(gateway, approver(gateway)) as (app, pilot):
        await until(lambda: app.identity is not None and app.link.connected, what="a verified identity")
        assert app.identity is not None and app.identity.can_decide and app.identity.sub == BOB
        held = hold(gateway, alice)
        await only(pilot, app, alice)
        request = app.queue.get(app._shown[0])
        assert request is not None and request.requester.sub == alice
        await pilot.press("a")
        await pilot.press(*"CHG-77 checked", "enter")
        assert held.result(timeout=30)[0] == 1  # alice's UPDATE completed
        await until(lambda: not app._shown, what="the request leaving the queue")
        assert app.queue.traces[0].state == "approved"
    (decided,) = await audit_events(
        gateway.nats_url,
        lambda e: e["type"] == "approval.decided" and e["data"]["request_id"] == request.id,
        until=lambda found: len(found) >= 1,
        within=15,
    )
    assert decided["data"]["channel"] == "tui" and decided["data"]["reason"] == "CHG-77 checked"


async def test_a_held_statement_raises_a_notification_and_rings(gateway: GatewayEndpoint) -> None:
    alice = unique("alice")
    async with console(gateway, approver(gateway)) as (app, pilot):
        rings: list[float] = []
        app.bell = lambda: rings.append(time.monotonic())  # type: ignore[method-assign]
        await until(lambda: app.identity is not None and app.link.connected, what="a verified identity")
        held = hold(gateway, alice)
        await until(
            lambda: any(n.title == "new request" and alice in n.message for n in app._notifications),
            what="the notification of alice's request",
        )
        assert rings, "no bell"
        await only(pilot, app, alice)
        request = app.queue.get(app._shown[0])
    assert request is not None
    await asyncio.to_thread(decide, gateway, request, approver(gateway), "deny", "test over")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        held.result(timeout=30)


async def test_the_filter_shows_one_requester_and_hides_the_other(gateway: GatewayEndpoint) -> None:
    alice, carol = unique("alice"), unique("carol")
    async with console(gateway, approver(gateway)) as (app, pilot):
        await until(lambda: app.identity is not None and app.link.connected, what="a verified identity")
        held = [hold(gateway, alice), hold(gateway, carol)]
        pending = {alice: "", carol: ""}
        try:

            def both() -> bool:
                for r in app.queue.rows():
                    if r.requester.sub in pending:
                        pending[r.requester.sub] = r.id
                return all(pending.values())

            await until(both, what="both requests pending")
            await until(lambda: {pending[alice], pending[carol]} <= set(app._shown), what="both shown")
            for shown, hidden in ((alice, carol), (carol, alice)):
                await pilot.press("slash", *shown, "enter")
                await until(lambda gone=pending[hidden]: gone not in app._shown, what=f"{hidden} hidden")
                assert app._shown == [pending[shown]], f"filtered to {shown}"
                assert pending[hidden] not in app._shown
                await pilot.press("slash", "escape")  # clears the filter
                await until(lambda: {pending[alice], pending[carol]} <= set(app._shown), what="both again")
                assert app.queue.filter == ""
        finally:
            requests = [app.queue.get(pending[sub]) for sub in (alice, carol) if pending[sub]]
    for request in requests:
        assert request is not None
        await asyncio.to_thread(decide, gateway, request, approver(gateway), "deny", "test over")
    for future in held:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            future.result(timeout=30)


async def test_deny_from_the_detail_screen_needs_a_reason(gateway: GatewayEndpoint) -> None:
    alice = unique("alice")
    async with console(gateway, approver(gateway)) as (app, pilot):
        await until(lambda: app.identity is not None, what="a verified identity")
        held = hold(gateway, alice)
        await only(pilot, app, alice)
        await pilot.press("enter")  # the detail screen
        await until(lambda: type(app.screen).__name__ == "DetailScreen", what="the detail screen")
        await pilot.press("d")
        await pilot.press("enter")  # no reason: refused locally, still on the reason screen
        assert type(app.screen).__name__ == "DecisionScreen"
        await pilot.press(*"no ticket", "enter")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="denied by"):
            held.result(timeout=30)
        await until(lambda: not app._shown, what="the request leaving the queue")
        assert app.queue.traces[0].state == "denied"


async def test_a_non_approver_watches_but_cannot_decide(gateway: GatewayEndpoint) -> None:
    alice = unique("alice")
    watcher = gateway.token(sub=unique("watcher"), groups=("engineers",))
    async with console(gateway, watcher) as (app, pilot):
        await until(lambda: app.identity is not None, what="a verified identity")
        assert app.identity is not None and not app.identity.can_decide
        held = hold(gateway, alice)
        try:
            await only(pilot, app, alice)
            await pilot.press("a")
            await pilot.pause()
            assert type(app.screen).__name__ != "DecisionScreen"
            assert not held.done()
        finally:
            request = app.queue.get(app._shown[0]) if app._shown else None
    assert request is not None  # let it go, so the thread ends
    await asyncio.to_thread(decide, gateway, request, approver(gateway), "deny", "test over")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        held.result(timeout=30)


async def test_an_unverifiable_token_only_watches(gateway: GatewayEndpoint) -> None:
    async with console(gateway, "not-a-jwt") as (app, _pilot):
        await until(lambda: app._identity_problem is not None and "watching only" in app._identity_problem,
                    what="the refusal")  # fmt: skip
        assert app.identity is None


@pytest.fixture(scope="module")
def quick_expiry(
    dev_stack: dict[str, Any], gateway: GatewayEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayEndpoint]:
    rule = {
        "name": "quick-expiry",
        "match": {"statements": ["read"], "tables": ["public.customers"]},
        "action": "require_approval",
        "approval": {"groups": ["approvers"], "timeout": "5s"},
    }
    with private_gateway(dev_stack["config"], gateway, tmp_path_factory.mktemp("expiry"), [rule]) as gw:
        yield gw


async def test_an_expired_request_leaves_a_trace(quick_expiry: GatewayEndpoint) -> None:
    """The console is connected before the statement is held: the request must be seen pending before it
    expires, and a loaded CI machine can take seconds to start a Textual app."""
    gw = quick_expiry
    alice = unique("alice")
    conn = connect(gw, alice)
    try:
        async with console(gw, approver(gw)) as (app, pilot):
            await until(lambda: app.identity is not None and app.link.connected, what="a verified identity")
            read = in_thread(lambda: conn.execute("SELECT count(*) FROM customers").fetchone())
            await only(pilot, app, alice)
            await until(lambda: not app._shown, within=20, what="the request expiring")
            assert app.queue.traces[0].state == "expired"
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="expired"):
                read.result(timeout=30)
    finally:
        conn.close()


@contextlib.contextmanager
def nats_server(port: int, store: Path) -> Iterator[subprocess.Popen[bytes]]:
    binary = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "nats-server"
    proc = subprocess.Popen(
        [str(binary if binary.exists() else "nats-server"), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd",
         str(store)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def _put(url: str, *records: Request) -> None:
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().create_key_value(bucket="PCIGATE_APPROVALS", history=1)
        for r in records:
            await kv.put(r.id, r.model_dump_json().encode())
    finally:
        await nc.close()


async def test_a_nats_outage_shows_a_banner_and_the_console_reconnects(tmp_path: Path) -> None:
    """After the outage the queue is read again from the bucket: what is still pending stays, a request
    decided and one held while the console was away (or just before it came back) show as they are."""
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    now = datetime.now(UTC)
    stays, decided, new = (
        make_request(id=f"019300a0-0000-7000-8000-{n:012d}", created=now, expires=now + timedelta(minutes=9))
        for n in (1, 2, 3)
    )
    with nats_server(port, tmp_path / "js") as first:
        await until(lambda: _reachable(port), what="the NATS server")
        await _put(url, stays, decided)
        app = ApproverApp([url], None, retry_every=0.3)
        async with app.run_test(size=SIZE):
            await until(lambda: app.link.connected, what="the first connection")
            await until(lambda: set(app._shown) == {stays.id, decided.id}, what="the queue filled")
            first.terminate()
            first.wait(timeout=30)
            await until(lambda: not app.link.connected, what="the outage to show")
            banner = app._banner
            assert banner.has_class("down") and "NATS unreachable" in str(banner.render())
            with nats_server(port, tmp_path / "js"):
                await until(lambda: _reachable(port), what="the NATS server again")
                await _put(url, decided.model_copy(update={"state": "approved"}), new)
                await until(lambda: app.link.connected, within=20, what="the reconnection")
                assert not app._banner.has_class("down")
                await until(lambda: set(app._shown) == {stays.id, new.id}, what="the queue filled again")
                assert [(t.request.id, t.state) for t in app.queue.traces] == [(decided.id, "approved")]


def _reachable(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_the_activity_tab_follows_the_audit_stream(gateway: GatewayEndpoint) -> None:
    alice = unique("alice")
    async with console(gateway, approver(gateway)) as (app, pilot):
        await until(lambda: app.link.connected, what="the connection")
        await pilot.press("2")
        await until(lambda: app._tabs.active == "activity-pane", what="the activity tab")
        with connect(gateway, alice) as conn:
            conn.execute("SELECT count(*) FROM customers")
        await until(
            lambda: any(
                line.actor == alice and line.type == "command.executed" for line in app.activity.lines()
            ),
            what="alice's statement in the feed",
        )
        await pilot.press("slash", *alice, "enter")
        shown = list(app.activity.lines())
        assert shown and all(alice in line.haystack for line in shown)
        await pilot.press("f", "f")  # all -> sessions -> commands
        assert app.activity.category == "commands"
        assert {line.type for line in app.activity.lines()} == {"command.executed"}
        await pilot.press("a")  # not the queue tab: nothing to decide here
        assert type(app.screen).__name__ != "DecisionScreen"


async def test_the_ledger_tab_verifies_the_latest_checkpoint(
    dev_stack: dict[str, Any], gateway: GatewayEndpoint
) -> None:
    config = load_config(dev_stack["config"])
    app = ApproverApp(  # as `pcigate approve` starts it: the ledger reader opened once the queue is drawn
        [gateway.nats_url],
        approver(gateway),
        open_ledger=lambda: _ledger_source(config),
        ledger_origin="pcigate.dev/ledger",
    )
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.identity is not None, what="a verified identity")
        await until(lambda: app.ledger is not None, what="the ledger reader opened")
        await pilot.press("3")
        await until(lambda: app.ledger_status is not None, within=30, what="the ledger status")
        status = app.ledger_status
        assert status is not None and status.problem is None, status
        assert status.checkpoint is not None and status.checkpoint.trusted_by
        assert "signature verified" in status.signature
        first = status.checkpoint
        await until(lambda: _signed_after(dev_stack, first.size), within=30, what="a newer checkpoint")
        await pilot.press("r")
        await until(lambda: app.ledger_status is not status, within=30, what="the second read")
        assert app.ledger_status is not None
        assert "extends the checkpoint" in app.ledger_status.consistency, app.ledger_status
    with psycopg.connect(dev_stack["ledger_dsn"], connect_timeout=5) as conn:
        reads = conn.execute(
            "SELECT count(*) FROM ledger_entries WHERE event_type = 'ledger.read' AND actor_sub = %s"
            " AND idx >= %s"
            " AND convert_from(canonical, 'UTF8')::jsonb -> 'data' ->> 'purpose' = %s",
            (BOB, first.size - 1, "approver console: ledger status"),
        ).fetchone()
    assert reads is not None and reads[0] >= 4  # every read is recorded, with the approver as reader


def _signed_after(dev_stack: dict[str, Any], size: int) -> bool:
    """Whether the evidence service signed a checkpoint larger than ``size`` (reads grow the ledger)."""
    with psycopg.connect(dev_stack["ledger_dsn"], connect_timeout=5) as conn:
        row = conn.execute("SELECT max(size) FROM ledger_checkpoints").fetchone()
    return bool(row and row[0] and row[0] > size)


async def test_the_detail_shows_columns_and_the_sessions_earlier_statements(
    dev_stack: dict[str, Any], gateway: GatewayEndpoint
) -> None:
    config = load_config(dev_stack["config"])
    ledger, problem = _ledger_source(config)
    assert ledger is not None, problem
    alice = unique("alice")
    conn = connect(gateway, alice)
    conn.execute("SELECT count(*) FROM customers WHERE customer_id = 41")
    held = in_thread(
        lambda: conn.execute("UPDATE cards SET exp_year = exp_year WHERE pan IS NOT NULL AND card_id = 7")
    )
    app = ApproverApp([gateway.nats_url], approver(gateway), ledger=ledger, sensitive=_sensitive(config))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await only(pilot, app, alice)
            request = app.queue.get(app._shown[0])
            assert request is not None and "public.cards.pan" in request.columns
            await pilot.press("enter")
            await until(lambda: isinstance(app.screen, DetailScreen), what="the detail screen")
            screen = app.screen
            assert isinstance(screen, DetailScreen)
            await until(lambda: screen.history_lines is not None, within=30, what="the session's history")
            history = screen.history_lines
            assert isinstance(history, list), history
            assert [line.summary for line in history][-1].startswith(
                "SELECT 1, 1 rows: SELECT count(*) FROM customers"
            )
            shown = Console(width=120, record=True)
            shown.print(
                screen.query_one("#detail", Static).content, screen.query_one("#history", Static).content
            )
            text = shown.export_text()
            assert "⚠ card data" in text and "SELECT count(*)" in text
            await pilot.press("d", *"not today", "enter")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            held.result(timeout=30)
    finally:
        conn.close()
