"""The console's Sessions tab against the real stack: a psycopg session through the gateway that reads
cards is listed (read from the ledger, the read recorded with the approver as reader) and replays with its
masked rows under "N chunks verified against the ledger"; a chunk forged into the recordings stream stops
the replay with a banner naming it."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import psycopg
from rich.console import Console
from textual.widgets import RichLog, Static

from pcigate.cli_approvals import _ledger_source
from pcigate.config import load_config
from tests.e2e.test_approvals_e2e import ADMINS, BOB, approver, connect, unique
from tests.e2e.test_console_e2e import SIZE, until
from tests.e2e.test_recording_e2e import forge_chunk, no_clear_card, recorded_session
from tests.gateway_support import GatewayEndpoint
from tui.app import ApproverApp
from tui.screens import ReplayScreen
from tui.sessions import Replayed

READ = "SELECT card_id, pan FROM cards ORDER BY card_id LIMIT 3"


def read_cards(gw: GatewayEndpoint, sub: str) -> list[Any]:
    """``sub``'s session through the gateway: the card numbers come back masked."""
    with connect(gw, sub, ADMINS) as conn:
        rows = conn.execute(READ).fetchall()
    assert len(rows) == 3 and all("*" in row[1] for row in rows), rows
    return rows


async def replay(dev_stack: dict[str, Any], gw: GatewayEndpoint, session_id: str) -> tuple[Replayed, str]:
    """Open the console, press 4, select ``session_id`` and enter: what the replay screen read, and the
    text it shows (header, banner when shown, log)."""
    ledger, problem = _ledger_source(load_config(dev_stack["config"]))
    assert ledger is not None, problem
    app = ApproverApp([gw.nats_url], approver(gw), ledger=ledger, ledger_origin="pcigate.dev/ledger")
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.identity is not None and app.link.connected, what="a verified identity")
        await pilot.press("4")
        await until(lambda: app.sessions is not None, within=30, what="the sessions from the ledger")
        rows = app.sessions
        assert isinstance(rows, list), rows
        ids = [row.session_id for row in rows]
        assert session_id in ids, "the session is not listed"
        assert ids.index(session_id) < 50  # newest first: it is one of the latest
        app._sessions_table.move_cursor(row=ids.index(session_id))
        await pilot.press("enter")
        await until(lambda: isinstance(app.screen, ReplayScreen), what="the replay screen")
        screen = app.screen
        assert isinstance(screen, ReplayScreen)
        await until(lambda: screen.replayed is not None, within=30, what="the replay")
        await pilot.pause(0.2)
        replayed = screen.replayed
        assert replayed is not None
        shown = Console(width=200, record=True, file=io.StringIO())
        shown.print(screen.query_one("#replay-facts", Static).content)
        if screen.query_one("#replay-banner", Static).has_class("shown"):
            shown.print(screen.query_one("#replay-banner", Static).content)
        log = screen.query_one("#replay-log", RichLog)
        text = shown.export_text() + "\n".join(strip.text.rstrip() for strip in log.lines)
        await pilot.press("escape")
        await until(lambda: not isinstance(app.screen, ReplayScreen), what="back to the sessions")
    return replayed, text


async def test_a_recorded_session_replays_in_the_console_verified(
    dev_stack: dict[str, Any], gateway: GatewayEndpoint
) -> None:
    alice = unique("alice")
    await asyncio.to_thread(read_cards, gateway, alice)
    session = await asyncio.to_thread(recorded_session, dev_stack["config"], alice)
    replayed, text = await replay(dev_stack, gateway, session["session_id"])
    assert replayed.problem is None and replayed.unavailable is None, replayed
    assert replayed.verified == session["chunks"] and replayed.final
    assert f"{session['chunks']} chunk" in text and "verified against the ledger" in text
    assert f"payments=> {READ}" in text
    assert "(3 rows)" in text and "******" in text  # the rows as the client got them: masked
    assert text.rstrip().endswith("-- session ended (client_closed)")
    no_clear_card(text, "the console's replay")
    with psycopg.connect(dev_stack["ledger_dsn"], connect_timeout=5) as conn:
        purposes = conn.execute(
            "SELECT convert_from(canonical, 'UTF8')::jsonb -> 'data' ->> 'purpose' FROM ledger_entries"
            " WHERE event_type = 'ledger.read' AND actor_sub = %s ORDER BY idx DESC LIMIT 200",
            (BOB,),
        ).fetchall()
    found = {p for (p,) in purposes}  # each read recorded, with the approver as reader
    assert "approver console: recorded sessions" in found
    assert f"approver console: replay of session {session['session_id']}" in found


async def test_a_forged_chunk_stops_the_replay_with_a_banner_naming_it(
    dev_stack: dict[str, Any], gateway: GatewayEndpoint
) -> None:
    alice = unique("alice")
    await asyncio.to_thread(read_cards, gateway, alice)
    session = await asyncio.to_thread(recorded_session, dev_stack["config"], alice)
    sid, seq = session["session_id"], session["chunks"] + 1
    await forge_chunk(gateway.nats_url, sid, seq)
    replayed, text = await replay(dev_stack, gateway, sid)
    assert replayed.problem is not None, replayed
    assert f"chunk {seq} ({sid}.{seq})" in replayed.problem and "not in the ledger" in replayed.problem
    assert f"⚠ replay stopped: chunk {seq} ({sid}.{seq})" in text  # the banner is shown
    assert f"payments=> {READ}" in text  # the chunks verified before it are still shown
